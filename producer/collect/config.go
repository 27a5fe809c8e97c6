package collect

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.yaml.in/yaml/v3"

	"github.com/usagefleet/usagefleet/internal/broker"
	"github.com/usagefleet/usagefleet/internal/config"
	"github.com/usagefleet/usagefleet/messages"
	"github.com/usagefleet/usagefleet/producer"
)

// Config is the collect command's configuration file.
type Config struct {
	NATS       broker.Options    `yaml:"nats"`
	Collectors []CollectorConfig `yaml:"collectors"`

	built []Platform
}

// CollectorConfig is one collector: what every type shares, and the
// type's own settings (credentials, URLs, report options).
type CollectorConfig struct {
	Name     string         `yaml:"name"`
	Type     string         `yaml:"type"`
	Feed     string         `yaml:"feed"`
	Schedule ScheduleConfig `yaml:"schedule"`
	Poll     PollConfig     `yaml:"poll"`
	// NotReadyWait bounds how long --once keeps asking when the API says
	// the usage data is not ready yet (default 30m).
	NotReadyWait config.Duration `yaml:"not_ready_wait"`
	// ReuseReportsFor: how long a checkpointed report stays worth polling
	// (default 24h).
	ReuseReportsFor config.Duration `yaml:"reuse_reports_for"`
	HTTPTimeout     config.Duration `yaml:"http_timeout"` // per request (default 60s)
	RetryFor        config.Duration `yaml:"retry_for"`    // transient API failures are retried this long (default 5m)
	Settings        yaml.Node       `yaml:"settings"`
}

// ScheduleConfig is Schedule in YAML.
type ScheduleConfig struct {
	Interval config.Duration `yaml:"interval"`
	Period   string          `yaml:"period"`
	Periods  int             `yaml:"periods"`
	Lag      config.Duration `yaml:"lag"`
	CatchUp  int             `yaml:"catch_up"`
}

// PollConfig is Poll in YAML.
type PollConfig struct {
	Interval    config.Duration `yaml:"interval"`
	MaxInterval config.Duration `yaml:"max_interval"`
	Timeout     config.Duration `yaml:"timeout"`
}

// Env is what a platform is built with.
type Env struct {
	HTTP  *http.Client
	Retry Retry
	Now   func() time.Time
	Log   *slog.Logger
}

// WithDefaults fills what is unset.
func (e Env) WithDefaults() Env {
	if e.HTTP == nil {
		e.HTTP = &http.Client{Timeout: 60 * time.Second}
	}
	if e.Now == nil {
		e.Now = time.Now
	}
	if e.Log == nil {
		e.Log = slog.Default()
	}
	return e
}

// Factory builds a platform from its settings node; key is the node's
// path for errors (use DecodeStrict).
type Factory func(settings *yaml.Node, key string, env Env) (Platform, error)

var (
	regMu    sync.Mutex
	registry = map[string]Factory{}
)

// Register makes a collector type available to configuration files. The
// acronis and here packages register themselves: import them (for their
// side effect) where configuration files are read.
func Register(typ string, f Factory) {
	regMu.Lock()
	defer regMu.Unlock()
	registry[typ] = f
}

// Types lists the registered types.
func Types() []string {
	regMu.Lock()
	defer regMu.Unlock()
	var out []string
	for t := range registry {
		out = append(out, t)
	}
	sort.Strings(out)
	return out
}

func lookupType(typ string) (Factory, bool) {
	regMu.Lock()
	defer regMu.Unlock()
	f, ok := registry[typ]
	return f, ok
}

// LoadConfig reads and validates a configuration file; errors name the
// file, the key and, where known, the line.
func LoadConfig(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	cfg, err := ParseConfig(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return cfg, nil
}

// ParseConfig reads and validates configuration from YAML: unknown keys are
// refused with their path, secrets are resolved (a missing one names its
// key), and every collector's platform is built.
func ParseConfig(b []byte) (*Config, error) {
	var root yaml.Node
	if err := yaml.NewDecoder(bytes.NewReader(b)).Decode(&root); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("config: the file is empty")
		}
		return nil, fmt.Errorf("config: %v", err)
	}
	doc := &root
	if doc.Kind == yaml.DocumentNode && len(doc.Content) == 1 {
		doc = doc.Content[0]
	}
	var cfg Config
	if err := DecodeStrict(doc, &cfg, ""); err != nil {
		return nil, err
	}
	if err := cfg.Validate(Env{}); err != nil {
		return nil, err
	}
	return &cfg, nil
}

// Validate checks every key and builds the platforms with env. Call it once.
// A collector publishes to the fleet's cluster, never to a private
// embedded server: without nats.url it uses $NATS_URL, else
// nats://127.0.0.1:4222.
func (c *Config) Validate(env Env) error {
	if c.NATS.URL == "" {
		c.NATS.URL = os.Getenv("NATS_URL")
	}
	if c.NATS.URL == "" {
		c.NATS.URL = nats.DefaultURL
	}
	if err := c.NATS.Validate("nats"); err != nil {
		return err
	}
	if len(c.Collectors) == 0 {
		return config.Errorf("collectors", "none configured (types: %s)", strings.Join(Types(), ", "))
	}
	seen := map[string]bool{}
	c.built = nil
	for i := range c.Collectors {
		cc := &c.Collectors[i]
		key := fmt.Sprintf("collectors[%d]", i)
		if !messages.ValidToken(cc.Name) {
			return config.Errorf(key+".name", "%q: want 1-64 of A-Z a-z 0-9 _ - (it is the batches' source and a subject token)", cc.Name)
		}
		key = fmt.Sprintf("collectors[%d](%s)", i, cc.Name)
		if seen[cc.Name] {
			return config.Errorf(key+".name", "%q is used twice: each collector needs its own name (its checkpoint and its snapshots are keyed by it)", cc.Name)
		}
		seen[cc.Name] = true
		if !messages.ValidToken(cc.Feed) {
			return config.Errorf(key+".feed", "%q: want 1-64 of A-Z a-z 0-9 _ -", cc.Feed)
		}
		f, ok := lookupType(cc.Type)
		if !ok {
			return config.Errorf(key+".type", "%q is not a collector type (types: %s)", cc.Type, strings.Join(Types(), ", "))
		}
		s := cc.Schedule
		switch Unit(s.Period) {
		case "", Day, Month:
		default:
			return config.Errorf(key+".schedule.period", "%q: want day or month", s.Period)
		}
		if s.Interval != 0 && s.Interval.D(0) < time.Minute {
			return config.Errorf(key+".schedule.interval", "at least 1m")
		}
		if s.Periods < 0 || s.Periods > 400 {
			return config.Errorf(key+".schedule.periods", "%d: want 1 to 400", s.Periods)
		}
		if s.CatchUp < 0 || s.CatchUp > 400 {
			return config.Errorf(key+".schedule.catch_up", "%d: want 1 to 400", s.CatchUp)
		}
		if cc.Poll.Interval != 0 && cc.Poll.Interval.D(0) < 100*time.Millisecond {
			return config.Errorf(key+".poll.interval", "at least 100ms")
		}
		e := env.WithDefaults()
		if env.HTTP == nil {
			e.HTTP = &http.Client{Timeout: cc.HTTPTimeout.D(60 * time.Second)}
		}
		e.Retry = Retry{For: cc.RetryFor.D(5 * time.Minute)}
		e.Log = e.Log.With("collector", cc.Name)
		p, err := f(&cc.Settings, key+".settings", e)
		if err != nil {
			return err
		}
		if p.Limits().RowSpan == Month && Unit(s.Period) != Month {
			return config.Errorf(key+".schedule.period", "the reports' rows are per month (settings), so the period must be month")
		}
		c.built = append(c.built, p)
	}
	return nil
}

// Options returns the Options of collector i (Now and Log not set).
func (cc *CollectorConfig) Options() Options {
	return Options{
		Name: cc.Name,
		Feed: cc.Feed,
		Schedule: Schedule{
			Interval: cc.Schedule.Interval.D(0),
			Period:   Unit(cc.Schedule.Period),
			Periods:  cc.Schedule.Periods,
			Lag:      cc.Schedule.Lag.D(0),
			CatchUp:  cc.Schedule.CatchUp,
		},
		Poll:            Poll{Interval: cc.Poll.Interval.D(0), MaxInterval: cc.Poll.MaxInterval.D(0), Timeout: cc.Poll.Timeout.D(0)},
		Retry:           Retry{For: cc.RetryFor.D(5 * time.Minute)},
		NotReadyWait:    cc.NotReadyWait.D(30 * time.Minute),
		ReuseReportsFor: cc.ReuseReportsFor.D(0),
	}
}

// BuildWithDeadLetters returns the configured collectors, publishing with
// prod, checkpointing in kv and keeping rejected report rows in the DEAD
// stream through js (Options.DeadLetters). once keeps NotReadyWait (a
// single run waits for the data); otherwise a not-ready answer ends the
// run until the next interval.
func (c *Config) BuildWithDeadLetters(prod *producer.Producer, js jetstream.JetStream, kv jetstream.KeyValue, log *slog.Logger, once bool) ([]*Collector, error) {
	if len(c.built) != len(c.Collectors) {
		return nil, errors.New("collect: Config.Validate was not called")
	}
	var out []*Collector
	for i := range c.Collectors {
		o := c.Collectors[i].Options()
		o.Log = log
		o.DeadLetters = js
		if !once {
			o.NotReadyWait = 0
		}
		col, err := New(c.built[i], prod, kv, o)
		if err != nil {
			return nil, err
		}
		out = append(out, col)
	}
	return out, nil
}

// Build is BuildWithDeadLetters without a dead-letter stream: a run that
// rejects a report row then fails before publishing that report's periods
// (see Options.DeadLetters). Use BuildWithDeadLetters.
func (c *Config) Build(prod *producer.Producer, kv jetstream.KeyValue, log *slog.Logger, once bool) ([]*Collector, error) {
	return c.BuildWithDeadLetters(prod, nil, kv, log, once)
}

// DecodeStrict decodes node into out, refusing unknown keys with their
// full path ("collectors[0].schedule.perods (line 7): unknown key (known:
// ...)") and line, and naming the key of a value that does not decode. key
// is node's path ("" at the top). It is the worker configuration's
// decoder (config.DecodeStrict).
func DecodeStrict(node *yaml.Node, out any, key string) error {
	return config.DecodeStrict(node, out, key)
}
