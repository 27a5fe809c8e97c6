// Package fleet wires a worker process together from its configuration:
// NATS (embedded or a cluster), the streams, and one pool per destination.
// The usage-worker binary, its demo and its bench share it.
package fleet

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/usagefleet/usagefleet/internal/broker"
	"github.com/usagefleet/usagefleet/internal/config"
	"github.com/usagefleet/usagefleet/internal/endpoint"
	"github.com/usagefleet/usagefleet/messages"
	"github.com/usagefleet/usagefleet/workers"
)

// Config is the worker's configuration file.
type Config struct {
	NATS         broker.Options       `yaml:"nats"`
	Streams      broker.StreamOptions `yaml:"streams"`
	Worker       WorkerConfig         `yaml:"worker"`
	Destinations []DestinationConfig  `yaml:"destinations"`
	// Sources binds each source to the public user nkeys its producers sign
	// with (messages.SourceKeys). When set, the workers refuse (dead-letter
	// with the reason) a part that is unsigned, signed by another source's
	// key, or changed after signing. Empty: sources are not bound.
	Sources messages.SourceKeys `yaml:"sources"`

	built []builtDest
	// consumerInactive: see LoadValidateOnly.
	consumerInactive time.Duration
}

// WorkerConfig is process-wide settings.
type WorkerConfig struct {
	ID           string          `yaml:"id"`            // lease owner name; default host-pid-random
	DrainTimeout config.Duration `yaml:"drain_timeout"` // default 20s
	LogLevel     string          `yaml:"log_level"`     // debug, info (default), warn, error
	LogFormat    string          `yaml:"log_format"`    // text (default) or json
	Metrics      MetricsConfig   `yaml:"metrics"`
	// MemoryLimit is the Go runtime's soft memory limit ("100MiB", "1GiB";
	// empty: none, or GOMEMLIMIT when set, which wins). With it a worker's
	// RSS stays near the limit whatever the backlog: measured 121 MB peak
	// draining a 10M-record backlog at 100MiB.
	MemoryLimit string `yaml:"memory_limit"`
	// Reconcile runs the reconciliation of every destination on a
	// schedule (usage-worker reconcile, exported as gauges): off unless
	// every is set.
	Reconcile ReconcileConfig `yaml:"reconcile"`
	// NewerSchemaMaxHold is how long after it was stored a part of a newer
	// schema than this worker reads may hold its unit (waiting for an
	// upgraded worker) before it is dead-lettered and the unit delivered
	// without it (workers.Options.NewerSchemaMaxHold; default 24h).
	NewerSchemaMaxHold config.Duration `yaml:"newer_schema_max_hold"`
}

// ReconcileConfig is the worker's reconciliation schedule.
type ReconcileConfig struct {
	Every  config.Duration `yaml:"every"`  // how often; 0: never
	Window config.Duration `yaml:"window"` // the usage hours reconciled, back from now (default 48h)
}

// DefaultReconcileWindow is the window of a scheduled reconciliation.
const DefaultReconcileWindow = 48 * time.Hour

// MemoryLimitBytes parses MemoryLimit (0 when unset).
func (w WorkerConfig) MemoryLimitBytes() (int64, error) {
	s := strings.TrimSpace(w.MemoryLimit)
	if s == "" {
		return 0, nil
	}
	units := []struct {
		suffix string
		mult   int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"GB", 1e9}, {"MB", 1e6}, {"KB", 1e3}, {"B", 1}}
	for _, u := range units {
		if strings.HasSuffix(s, u.suffix) {
			n, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(s, u.suffix)), 10, 64)
			if err != nil || n <= 0 {
				break
			}
			return n * u.mult, nil
		}
	}
	return 0, config.Errorf("worker.memory_limit", "%q: want a size like 100MiB or 1GiB", w.MemoryLimit)
}

// MetricsConfig is the listener for /metrics, /healthz and /readyz.
type MetricsConfig struct {
	Listen string `yaml:"listen"` // e.g. ":9090"; empty: not served
}

// DestinationConfig is one destination: what is common to every type, and
// the type's own settings.
type DestinationConfig struct {
	Name          string          `yaml:"name"`
	Type          string          `yaml:"type"`
	Feeds         []string        `yaml:"feeds"`
	Workers       int             `yaml:"workers"`
	MaxAckPending int             `yaml:"max_ack_pending"`
	AckWait       config.Duration `yaml:"ack_wait"`
	Flush         FlushConfig     `yaml:"flush"`
	Retry         RetryConfig     `yaml:"retry"`
	PauseProbe    config.Duration `yaml:"pause_probe"`
	HTTPTimeout   config.Duration `yaml:"http_timeout"`
	Settings      yaml.Node       `yaml:"settings"`
}

// FlushConfig is the flush policy of replace destinations.
type FlushConfig struct {
	MaxDelay   config.Duration `yaml:"max_delay"`
	Quiet      config.Duration `yaml:"quiet"`
	MaxRecords int             `yaml:"max_records"`
}

// RetryConfig is the backoff between failed tries.
type RetryConfig struct {
	Initial config.Duration `yaml:"initial"`
	Max     config.Duration `yaml:"max"`
}

type builtDest struct {
	dest workers.Destination
	opts workers.Options
}

// Load reads and validates a configuration file. Every error names the
// file, the key and, where known, the line.
func Load(path string) (*Config, error) {
	return load(path, false)
}

// LoadValidateOnly loads path for a CloudZero dry run (usage-worker run
// --validate-only): every CloudZero destination becomes <name>-validate with
// validate_only (its requests go to validate_billing_drop: nothing is
// stored), on a durable consumer of its own that the server deletes an hour
// after the run (so the real destination's consumer is never read or
// acked), and every other destination is left out, so a dry run sends
// nothing real anywhere.
func LoadValidateOnly(path string) (*Config, error) {
	return load(path, true)
}

func load(path string, validateOnly bool) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	cfg, err := parse(b, validateOnly)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return cfg, nil
}

// Parse reads and validates configuration from YAML bytes. An unknown key
// or a value that does not decode is named by its path and line
// ("destinations[0].flush.max_delay (line 8): ...").
func Parse(b []byte) (*Config, error) { return parse(b, false) }

func parse(b []byte, validateOnly bool) (*Config, error) {
	var root yaml.Node
	if err := yaml.NewDecoder(bytes.NewReader(b)).Decode(&root); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("config: the file is empty")
		}
		return nil, fmt.Errorf("config: %v", err)
	}
	if err := refuseURLCredentials(&root, ""); err != nil {
		return nil, err
	}
	var cfg Config
	if err := config.DecodeStrict(&root, &cfg, ""); err != nil {
		return nil, err
	}
	if err := refuseExplicitZero(&root, "destinations", "workers", "want 1 to 256 (remove the key for the default)"); err != nil {
		return nil, err
	}
	if validateOnly {
		if err := cfg.validateOnly(); err != nil {
			return nil, err
		}
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &cfg, nil
}

// validateOnlyInactive is how long a validate-only destination's consumer
// outlives the last pull.
const validateOnlyInactive = time.Hour

// validateOnly turns the configuration into a CloudZero dry run (see
// LoadValidateOnly).
func (c *Config) validateOnly() error {
	var keep []DestinationConfig
	for _, d := range c.Destinations {
		if d.Type != "cloudzero" {
			continue
		}
		d.Name += "-validate"
		if d.Settings.Kind == 0 {
			d.Settings = yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
		}
		if d.Settings.Kind != yaml.MappingNode {
			return config.Errorf("destinations("+d.Name+").settings", "want a mapping")
		}
		set := false
		for i := 0; i+1 < len(d.Settings.Content); i += 2 {
			if d.Settings.Content[i].Value == "validate_only" {
				d.Settings.Content[i+1] = &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!bool", Value: "true"}
				set = true
			}
		}
		if !set {
			d.Settings.Content = append(d.Settings.Content,
				&yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: "validate_only"},
				&yaml.Node{Kind: yaml.ScalarNode, Tag: "!!bool", Value: "true"})
		}
		keep = append(keep, d)
	}
	if len(keep) == 0 {
		return config.Errorf("destinations", "--validate-only: no destination of type cloudzero to validate for")
	}
	c.Destinations = keep
	c.consumerInactive = validateOnlyInactive
	return nil
}

// Validate checks every key and builds the destinations (resolving their
// secrets). Call it once.
func (c *Config) Validate() error {
	if err := c.NATS.Validate("nats"); err != nil {
		return err
	}
	if err := c.Sources.Validate("sources"); err != nil {
		return config.Errorf("sources", "%v", strings.TrimPrefix(err.Error(), "sources: "))
	}
	if c.Streams.Replicas < 0 || c.Streams.Replicas > 5 {
		return config.Errorf("streams.replicas", "%d: want 1 to 5", c.Streams.Replicas)
	}
	if c.Streams.LeaseTTL != 0 && c.Streams.LeaseTTL.D(0) < 10*time.Second {
		return config.Errorf("streams.lease_ttl", "%s is too short: keep it well above the HTTP timeout", c.Streams.LeaseTTL.D(0))
	}
	if err := c.Worker.validate(); err != nil {
		return err
	}
	if len(c.Destinations) == 0 {
		return config.Errorf("destinations", "none configured (types: %s)", strings.Join(workers.Types(), ", "))
	}
	seen := map[string]bool{}
	targets := map[string]string{} // Targeter id -> the key of the destination using it
	c.built = nil
	for i := range c.Destinations {
		d := &c.Destinations[i]
		key, err := destinationKey(i, d.Name, seen)
		if err != nil {
			return err
		}
		factory, ok := workers.Lookup(d.Type)
		if !ok {
			return config.Errorf(key+".type", "%q is not a destination type (types: %s)", d.Type, strings.Join(workers.Types(), ", "))
		}
		if err := c.checkDestination(key, d); err != nil {
			return err
		}
		dest, err := factory(d.Name, &d.Settings, key+".settings")
		if err != nil {
			return err
		}
		if t, ok := dest.(workers.Targeter); ok {
			id, what := t.Target()
			id = endpoint.Normalize(id)
			if other, dup := targets[id]; dup {
				return config.Errorf(key+".settings", "writes to the same %s as %s: each would overwrite the other's units; serve both feeds from one destination", what, other)
			}
			targets[id] = key
		}
		c.built = append(c.built, builtDest{dest: dest, opts: c.options(d)})
	}
	return nil
}

// Deprecated lists the notices of the deprecated settings the
// destinations use (workers.Deprecated), each naming its key: the worker
// logs them at start, validate prints them.
func (c *Config) Deprecated() []string {
	var out []string
	for _, b := range c.built {
		if dep, ok := b.dest.(workers.Deprecated); ok {
			out = append(out, dep.Deprecated()...)
		}
	}
	return out
}

// Advisories lists the warnings of the destinations' configurations
// (workers.Advisor), each naming its key: the worker logs them at start,
// validate prints them.
func (c *Config) Advisories() []string {
	var out []string
	for _, b := range c.built {
		if a, ok := b.dest.(workers.Advisor); ok {
			out = append(out, a.Advisories()...)
		}
	}
	return out
}

// validate checks the worker section: logging, metrics, memory.
func (w *WorkerConfig) validate() error {
	switch w.LogLevel {
	case "", "debug", "info", "warn", "error":
	default:
		return config.Errorf("worker.log_level", "%q: want debug, info, warn or error", w.LogLevel)
	}
	switch w.LogFormat {
	case "", "text", "json":
	default:
		return config.Errorf("worker.log_format", "%q: want text or json", w.LogFormat)
	}
	if l := w.Metrics.Listen; l != "" {
		host, _, err := net.SplitHostPort(l)
		if err != nil {
			return config.Errorf("worker.metrics.listen", "%q: want host:port, like 127.0.0.1:9090", l)
		}
		if host == "" {
			// /metrics and /readyz have no authentication: every interface
			// is an exposure to choose, not a default.
			return config.Errorf("worker.metrics.listen", "%q listens on every interface, unauthenticated: write 127.0.0.1%s for this host only, or 0.0.0.0%s to expose it on purpose (behind a NetworkPolicy or firewall)", l, l, l)
		}
	}
	if h := w.NewerSchemaMaxHold; h != 0 && h.D(0) < time.Minute {
		// Below a minute an upgrade in progress (a rolling restart) would
		// lose the part to DEAD before a new worker could read it.
		return config.Errorf("worker.newer_schema_max_hold", "%s is too short: at least 1m, so an upgrade in progress can read the part", h.D(0))
	}
	if n, err := w.MemoryLimitBytes(); err != nil {
		return err
	} else if n != 0 && n < 32<<20 {
		return config.Errorf("worker.memory_limit", "%q is below 32MiB", w.MemoryLimit)
	}
	r := w.Reconcile
	if e := r.Every.D(0); e != 0 && e < time.Minute {
		// Each run reads the window's parts and the destination's API.
		return config.Errorf("worker.reconcile.every", "%s: want at least 1m (each run reads the whole window from the stream and the API)", e)
	}
	if win := r.Window.D(0); win != 0 {
		if r.Every == 0 {
			return config.Errorf("worker.reconcile.window", "set without worker.reconcile.every: nothing would run")
		}
		if win < time.Hour || win > 31*24*time.Hour {
			return config.Errorf("worker.reconcile.window", "%s: want 1h to 744h (31 days)", win)
		}
	}
	return nil
}

// destinationKey checks destination i's name (valid, not reserved, not
// used twice) and returns the key path that names it in errors.
func destinationKey(i int, name string, seen map[string]bool) (string, error) {
	key := fmt.Sprintf("destinations[%d]", i)
	if !messages.ValidToken(name) {
		return "", config.Errorf(key+".name", "%q: want 1-64 of A-Z a-z 0-9 _ -", name)
	}
	key = fmt.Sprintf("destinations[%d](%s)", i, name)
	if strings.HasPrefix(name, "_") {
		// dead._collect.<collector> holds the report rows collectors
		// rejected; names with a leading _ are kept for such uses.
		return "", config.Errorf(key+".name", "%q: a name may not start with _ (reserved)", name)
	}
	if seen[name] {
		return "", config.Errorf(key+".name", "%q is used twice", name)
	}
	seen[name] = true
	return key, nil
}

// checkDestination checks a destination's feeds and its delivery limits.
func (c *Config) checkDestination(key string, d *DestinationConfig) error {
	if len(d.Feeds) == 0 {
		return config.Errorf(key+".feeds", "required: the feeds this destination serves")
	}
	for j, f := range d.Feeds {
		if !messages.ValidToken(f) {
			return config.Errorf(fmt.Sprintf("%s.feeds[%d]", key, j), "%q: want 1-64 of A-Z a-z 0-9 _ -", f)
		}
	}
	if d.Retry.Initial != 0 && d.Retry.Max != 0 && d.Retry.Max < d.Retry.Initial {
		return config.Errorf(key+".retry.max", "%s is below retry.initial %s: the backoff would shrink", d.Retry.Max.D(0), d.Retry.Initial.D(0))
	}
	if lease := c.Streams.LeaseTTL.D(broker.DefaultLeaseTTL); d.HTTPTimeout != 0 && d.HTTPTimeout.D(0) > lease {
		return config.Errorf(key+".http_timeout", "%s is above streams.lease_ttl %s: a lease could lapse while a request is still in flight and a second worker upload the same unit; raise streams.lease_ttl or lower http_timeout", d.HTTPTimeout.D(0), lease)
	}
	if d.Workers < 0 || d.Workers > 256 {
		return config.Errorf(key+".workers", "%d: want 1 to 256", d.Workers)
	}
	if d.MaxAckPending < 0 {
		return config.Errorf(key+".max_ack_pending", "must not be negative")
	}
	if d.AckWait != 0 && d.AckWait.D(0) < time.Second {
		return config.Errorf(key+".ack_wait", "at least 1s")
	}
	return nil
}

// options are the pool options of destination d.
func (c *Config) options(d *DestinationConfig) workers.Options {
	return workers.Options{
		Feeds:              d.Feeds,
		Workers:            d.Workers,
		MaxAckPending:      d.MaxAckPending,
		AckWait:            d.AckWait.D(0),
		Flush:              workers.FlushPolicy{MaxDelay: d.Flush.MaxDelay.D(0), Quiet: d.Flush.Quiet.D(0), MaxRecords: d.Flush.MaxRecords},
		Retry:              workers.RetryPolicy{Initial: d.Retry.Initial.D(0), Max: d.Retry.Max.D(0)},
		LeaseTTL:           c.Streams.LeaseTTL.D(broker.DefaultLeaseTTL),
		PauseProbe:         d.PauseProbe.D(0),
		HTTPTimeout:        d.HTTPTimeout.D(0),
		DrainTimeout:       c.Worker.DrainTimeout.D(0),
		WorkerID:           c.Worker.ID,
		SourceKeys:         c.Sources,
		ConsumerInactive:   c.consumerInactive,
		NewerSchemaMaxHold: c.Worker.NewerSchemaMaxHold.D(0),
	}
}
