package gateway

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/usagefleet/usagefleet/internal/broker"
	"github.com/usagefleet/usagefleet/internal/config"
	"github.com/usagefleet/usagefleet/messages"
)

// Config is the gateway's configuration file (see the README section
// "Publishing over HTTP: usage-gateway" for an example).
type Config struct {
	Listen  string               `yaml:"listen"` // default ":8080"
	TLS     TLSConfig            `yaml:"tls"`
	NATS    broker.Options       `yaml:"nats"`
	Streams broker.StreamOptions `yaml:"streams"` // used only with the embedded server
	Limits  Limits               `yaml:"limits"`
	Linger  Linger               `yaml:"linger"`
	Keys    []KeyConfig          `yaml:"keys"`
	// Metrics serves /metrics, /healthz and /readyz on their own listener
	// too (they are always on the API listener).
	Metrics      MetricsConfig   `yaml:"metrics"`
	DrainTimeout config.Duration `yaml:"drain_timeout"` // default 20s
	LogLevel     string          `yaml:"log_level"`
	LogFormat    string          `yaml:"log_format"`
	// DedupWindow is how long an event's (source, id) is remembered
	// (default 48h, the USAGE stream's duplicate window).
	DedupWindow config.Duration `yaml:"dedup_window"`
	// SkipSpans: the gateway starts no spans of its own (a request's
	// server span, a group's span). The binary sets it when no trace
	// exporter is configured: those spans were recorded and dropped, a
	// few CPU-µs a request. The caller's trace context (traceparent)
	// still reaches the parts' headers.
	SkipSpans bool `yaml:"-"`
}

// TLSConfig turns on HTTPS.
type TLSConfig struct {
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
}

// MetricsConfig is an optional second listener.
type MetricsConfig struct {
	Listen string `yaml:"listen"`
}

// Limits bound what one request may cost.
type Limits struct {
	MaxBodyBytes         int64           `yaml:"max_body_bytes"`         // as sent (default 16 MiB)
	MaxDecompressedBytes int64           `yaml:"max_decompressed_bytes"` // after gzip (default 64 MiB)
	MaxRecords           int             `yaml:"max_records"`            // per request (default 100,000)
	RequestTimeout       config.Duration `yaml:"request_timeout"`        // default 30s
	MaxWait              config.Duration `yaml:"max_wait"`               // longest ?wait= (default 60s)
	MaxInFlight          int             `yaml:"max_in_flight"`          // concurrent publishing requests (default 1024)
}

// Linger groups single events into parts.
type Linger struct {
	Delay      config.Duration `yaml:"delay"`       // default 3ms
	MaxRecords int             `yaml:"max_records"` // a part closes at this many (default 1000)
}

// KeyConfig is one API key and what it may publish.
type KeyConfig struct {
	Name    string        `yaml:"name"`    // for logs and metrics; never the secret
	Secret  config.Secret `yaml:"secret"`  // {env: VAR} or {file: PATH}
	Sources []string      `yaml:"sources"` // fleet sources it may publish as ("*": any)
	Feeds   []string      `yaml:"feeds"`   // feeds it may publish to ("*": any)
}

// Defaults.
const (
	DefaultMaxBody         = 16 << 20
	DefaultMaxDecompressed = 64 << 20
	DefaultMaxRecords      = 100_000
	DefaultRequestTimeout  = 30 * time.Second
	DefaultMaxWait         = 60 * time.Second
	DefaultLinger          = 3 * time.Millisecond
	DefaultLingerRecords   = 1000
	DefaultMaxInFlight     = 1024
)

// Load reads and validates a configuration file.
func Load(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	cfg, err := Parse(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return cfg, nil
}

// Parse decodes YAML strictly (an unknown key is named with its path and
// line, as the worker's configuration is) and validates it.
func Parse(b []byte) (*Config, error) {
	var root yaml.Node
	if err := yaml.NewDecoder(bytes.NewReader(b)).Decode(&root); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("config: the file is empty")
		}
		return nil, fmt.Errorf("config: %v", err)
	}
	var cfg Config
	if err := config.DecodeStrict(&root, &cfg, ""); err != nil {
		return nil, err
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &cfg, nil
}

// Validate applies defaults, resolves the key secrets and checks every key.
func (c *Config) Validate() error {
	if c.Listen == "" {
		c.Listen = ":8080"
	}
	if (c.TLS.CertFile == "") != (c.TLS.KeyFile == "") {
		return config.Errorf("tls", "cert_file and key_file go together")
	}
	for k, f := range map[string]string{"tls.cert_file": c.TLS.CertFile, "tls.key_file": c.TLS.KeyFile} {
		if f != "" {
			if _, err := os.Stat(f); err != nil {
				return config.Errorf(k, "%v", err)
			}
		}
	}
	if err := c.NATS.Validate("nats"); err != nil {
		return err
	}
	l := &c.Limits
	for _, v := range []struct {
		key string
		n   int64
	}{{"limits.max_body_bytes", l.MaxBodyBytes}, {"limits.max_decompressed_bytes", l.MaxDecompressedBytes}, {"limits.max_records", int64(l.MaxRecords)}, {"limits.max_in_flight", int64(l.MaxInFlight)}, {"linger.max_records", int64(c.Linger.MaxRecords)}} {
		if v.n < 0 {
			return config.Errorf(v.key, "must not be negative")
		}
	}
	setDefault(&l.MaxBodyBytes, DefaultMaxBody)
	setDefault(&l.MaxDecompressedBytes, DefaultMaxDecompressed)
	setDefault(&l.MaxRecords, DefaultMaxRecords)
	setDefault(&l.MaxInFlight, DefaultMaxInFlight)
	setDefault(&c.Linger.MaxRecords, DefaultLingerRecords)
	if l.MaxDecompressedBytes < l.MaxBodyBytes {
		return config.Errorf("limits.max_decompressed_bytes", "%d is below limits.max_body_bytes %d", l.MaxDecompressedBytes, l.MaxBodyBytes)
	}
	if d := time.Duration(c.Linger.Delay); d < 0 || d > time.Second {
		return config.Errorf("linger.delay", "%v: want 0 to 1s", d)
	}
	if c.LogLevel != "" && c.LogLevel != "debug" && c.LogLevel != "info" && c.LogLevel != "warn" && c.LogLevel != "error" {
		return config.Errorf("log_level", "%q: want debug, info, warn or error", c.LogLevel)
	}
	if c.LogFormat != "" && c.LogFormat != "text" && c.LogFormat != "json" {
		return config.Errorf("log_format", "%q: want text or json", c.LogFormat)
	}
	if len(c.Keys) == 0 {
		return config.Errorf("keys", "required: at least one API key (name, secret, sources, feeds)")
	}
	names := map[string]bool{}
	for i := range c.Keys {
		k := &c.Keys[i]
		key := fmt.Sprintf("keys[%d]", i)
		if k.Name == "" {
			return config.Errorf(key+".name", "required")
		}
		if names[k.Name] {
			return config.Errorf(key+".name", "%q is used twice", k.Name)
		}
		names[k.Name] = true
		if err := k.Secret.Resolve(key + ".secret"); err != nil {
			return err
		}
		if len(k.Secret.Value()) < 16 {
			return config.Errorf(key+".secret", "shorter than 16 characters")
		}
		if err := checkTokens(key+".sources", k.Sources); err != nil {
			return err
		}
		if err := checkTokens(key+".feeds", k.Feeds); err != nil {
			return err
		}
	}
	return nil
}

func checkTokens(key string, v []string) error {
	if len(v) == 0 {
		return config.Errorf(key, "required: a list of names, or [\"*\"]")
	}
	for i, s := range v {
		if s != "*" && !messages.ValidToken(s) {
			return config.Errorf(fmt.Sprintf("%s[%d]", key, i), "%q: want 1-64 of A-Z a-z 0-9 _ - (or *)", s)
		}
	}
	return nil
}

func setDefault[T int | int64](p *T, def T) {
	if *p == 0 {
		*p = def
	}
}
