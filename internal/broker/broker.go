// Package broker connects the binaries to NATS: an embedded nats-server
// with JetStream when no URL is configured, or a real cluster with token,
// user/password, nkey, creds-file and TLS authentication. It creates or
// updates the streams and KV buckets the fleet uses.
package broker

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/usagefleet/usagefleet/internal/config"
	"github.com/usagefleet/usagefleet/messages"
)

// Options is how to reach NATS. An empty URL means "start an embedded
// server" (see Embedded).
type Options struct {
	URL       string        `yaml:"url"`
	CredsFile string        `yaml:"creds_file"`
	NKeyFile  string        `yaml:"nkey_file"`
	Token     config.Secret `yaml:"token"`
	User      string        `yaml:"user"`
	Password  config.Secret `yaml:"password"`
	TLS       TLSOptions    `yaml:"tls"`
	// InboxPrefix is where replies and pulled messages arrive (default
	// _INBOX_<user> for a user/password login, else _INBOX): a server that
	// gives each user only its own inbox (deploy/nats) keeps one client
	// from reading another's replies.
	InboxPrefix string `yaml:"inbox_prefix"`
	// Embedded server settings (URL empty).
	DataDir string `yaml:"data_dir"` // JetStream store; default ./data/nats
	Port    int    `yaml:"port"`     // default: a random loopback port
}

// TLSOptions configures TLS to the server.
type TLSOptions struct {
	CAFile   string `yaml:"ca_file"`
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
}

// Validate resolves secrets and checks the combination; key prefixes errors.
func (o *Options) Validate(key string) error {
	if o.URL == "" {
		if o.CredsFile != "" || o.NKeyFile != "" || o.Token.IsSet() || o.User != "" {
			return config.Errorf(key+".url", "credentials are set but no url: set url, or remove them to use the embedded server")
		}
		return nil
	}
	n := 0
	for _, set := range []bool{o.CredsFile != "", o.NKeyFile != "", o.Token.IsSet(), o.User != ""} {
		if set {
			n++
		}
	}
	if n > 1 {
		return config.Errorf(key, "set one of creds_file, nkey_file, token, user/password")
	}
	if o.Token.IsSet() {
		if err := o.Token.Resolve(key + ".token"); err != nil {
			return err
		}
	}
	if o.User != "" {
		if err := o.Password.Resolve(key + ".password"); err != nil {
			return err
		}
	}
	for k, f := range map[string]string{"creds_file": o.CredsFile, "nkey_file": o.NKeyFile, "tls.ca_file": o.TLS.CAFile, "tls.cert_file": o.TLS.CertFile, "tls.key_file": o.TLS.KeyFile} {
		if f == "" {
			continue
		}
		if _, err := os.Stat(f); err != nil {
			return config.Errorf(key+"."+k, "%v", err)
		}
	}
	if p := o.InboxPrefix; p != "" && (strings.ContainsAny(p, "*> \t") || strings.HasPrefix(p, ".") || strings.HasSuffix(p, ".")) {
		return config.Errorf(key+".inbox_prefix", "%q: want a subject prefix without wildcards, like _INBOX_worker", p)
	}
	if (o.TLS.CertFile == "") != (o.TLS.KeyFile == "") {
		return config.Errorf(key+".tls", "cert_file and key_file go together")
	}
	return nil
}

// Client pings: a connection that goes silent (its node's machine or
// network gone without a FIN or RST) is declared stale 20-30 s later
// (between maxPingsOut and maxPingsOut+1 ping intervals) and replaced,
// about the worker's default 30 s AckWait. With nats.go's defaults
// (2 min, 2 outstanding) that took 4-6 minutes, with publishes hanging and
// pulls and heartbeats going nowhere meanwhile.
const (
	pingInterval = 10 * time.Second
	maxPingsOut  = 2
)

// Connect connects to o.URL with its credentials. It reconnects forever
// with backoff and jitter: a node loss is carried over, not fatal, whether
// the node's connections close or just go silent.
func Connect(ctx context.Context, o Options, name string) (*nats.Conn, error) {
	if o.URL == "" {
		return nil, errors.New("broker: no url (use Embedded)")
	}
	opts := []nats.Option{
		nats.Name(name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(500 * time.Millisecond),
		nats.ReconnectJitter(500*time.Millisecond, 2*time.Second),
		nats.RetryOnFailedConnect(false),
		nats.PingInterval(pingInterval),
		nats.MaxPingsOutstanding(maxPingsOut),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				slog.Warn("nats disconnected", "err", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) { slog.Info("nats reconnected", "url", nc.ConnectedUrlRedacted()) }),
		// Asynchronous errors (a slow consumer, a revoked authorization, a
		// broken pipe) go to the structured log, not as raw text to stderr.
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			if sub != nil {
				slog.Warn("nats", "subject", sub.Subject, "err", err)
				return
			}
			slog.Warn("nats", "err", err)
		}),
	}
	switch {
	case o.CredsFile != "":
		opts = append(opts, nats.UserCredentials(o.CredsFile))
	case o.NKeyFile != "":
		opt, err := nats.NkeyOptionFromSeed(o.NKeyFile)
		if err != nil {
			return nil, fmt.Errorf("nkey_file: %w", err)
		}
		opts = append(opts, opt)
	case o.Token.Value() != "":
		opts = append(opts, nats.Token(o.Token.Value()))
	case o.User != "":
		opts = append(opts, nats.UserInfo(o.User, o.Password.Value()))
	}
	if o.TLS.CAFile != "" || o.TLS.CertFile != "" {
		tc, err := tlsConfig(o.TLS)
		if err != nil {
			return nil, err
		}
		opts = append(opts, nats.Secure(tc))
	}
	if p := InboxPrefix(o); p != "" {
		opts = append(opts, nats.CustomInboxPrefix(p))
	}
	nc, err := nats.Connect(o.URL, opts...)
	if err != nil {
		// nats errors do not carry the credentials; the URL may, so redact.
		return nil, fmt.Errorf("connecting to NATS at %s: %w", redactURL(o.URL), err)
	}
	return nc, nil
}

// InboxPrefix is the inbox prefix Connect uses for o: InboxPrefix, or
// _INBOX_<user> for a user/password login whose name can be a subject
// token, or "" (nats.go's _INBOX).
func InboxPrefix(o Options) string {
	if o.InboxPrefix != "" {
		return o.InboxPrefix
	}
	if o.User != "" && messages.ValidToken(o.User) {
		return "_INBOX_" + o.User
	}
	return ""
}

func tlsConfig(t TLSOptions) (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("tls.ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("tls.ca_file: %s holds no PEM certificate", t.CAFile)
		}
		tc.RootCAs = pool
	}
	if t.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("tls.cert_file/key_file: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

func redactURL(u string) string {
	// nats URLs may be user:pass@host; keep only what follows '@'.
	for i := len(u) - 1; i >= 0; i-- {
		if u[i] == '@' {
			for j := 0; j < i; j++ {
				if u[j] == '/' && j+1 < len(u) && u[j+1] == '/' {
					return u[:j+2] + "[redacted]@" + u[i+1:]
				}
			}
			return "[redacted]@" + u[i+1:]
		}
	}
	return u
}

// ensureStream creates cfg's stream when it is missing. An existing stream
// is changed only when update is set, never to shrink its retention or
// duplicate window; without update a setting set (explicit) that differs
// from the server's is refused with the way to change it.
func ensureStream(ctx context.Context, js jetstream.JetStream, cfg jetstream.StreamConfig, explicit map[string]bool, update bool) error {
	st, err := js.Stream(ctx, cfg.Name)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		if _, err := js.CreateStream(ctx, cfg); err != nil {
			return fmt.Errorf("stream %s: %w", cfg.Name, err)
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("stream %s: %w", cfg.Name, err)
	}
	have := st.CachedInfo().Config
	diffs := streamDiffs(have, cfg)
	if len(diffs) == 0 {
		return nil
	}
	for _, d := range diffs {
		if d.shrink {
			return config.Errorf("streams."+d.key, "%s would shrink stream %s's %s from %s to %s, deleting stored messages or forgetting published ids; a worker never shrinks a shared stream (an operator can: nats stream edit %s)", d.want, cfg.Name, d.what, d.have, d.want, cfg.Name)
		}
	}
	if !update {
		for _, d := range diffs {
			if explicit[d.key] {
				return config.Errorf("streams."+d.key, "%s differs from stream %s's %s on the server (%s); stream settings are shared by the whole fleet: set streams.update: true to change them on purpose, or remove the key to use the server's", d.want, cfg.Name, d.what, d.have)
			}
		}
		return nil // the server's settings stand
	}
	// Keep what the server has beyond what we manage (sealed, mirrors...):
	// change only the fields compared.
	next := have
	next.MaxAge, next.Duplicates, next.Replicas, next.MaxMsgSize = cfg.MaxAge, cfg.Duplicates, cfg.Replicas, cfg.MaxMsgSize
	next.Description, next.AllowDirect = cfg.Description, cfg.AllowDirect
	if _, err := js.UpdateStream(ctx, next); err != nil {
		return fmt.Errorf("stream %s: updating %s: %w", cfg.Name, diffs[0].what, err)
	}
	return nil
}

type streamDiff struct {
	key, what, have, want string
	shrink                bool
}

// streamDiffs lists the managed settings of want that differ from have.
func streamDiffs(have, want jetstream.StreamConfig) []streamDiff {
	var d []streamDiff
	ageKey := map[string]string{messages.StreamUsage: "usage_max_age", messages.StreamAcks: "acks_max_age", messages.StreamDead: "dead_max_age"}[want.Name]
	if have.MaxAge != want.MaxAge {
		// 0 is "keep forever": anything else shrinks it.
		shrink := have.MaxAge == 0 || (want.MaxAge != 0 && want.MaxAge < have.MaxAge)
		d = append(d, streamDiff{key: ageKey, what: "max age", have: ageString(have.MaxAge), want: ageString(want.MaxAge), shrink: shrink})
	}
	if have.Duplicates != want.Duplicates && want.Name == messages.StreamUsage {
		d = append(d, streamDiff{key: "duplicate_window", what: "duplicate window", have: have.Duplicates.String(), want: want.Duplicates.String(), shrink: want.Duplicates < have.Duplicates})
	}
	if have.Replicas != want.Replicas {
		d = append(d, streamDiff{key: "replicas", what: "replicas", have: strconv.Itoa(have.Replicas), want: strconv.Itoa(want.Replicas)})
	}
	if max(have.MaxMsgSize, 0) != max(want.MaxMsgSize, 0) && want.Name == messages.StreamUsage {
		d = append(d, streamDiff{key: "max_msg_size", what: "max message size", have: strconv.Itoa(int(have.MaxMsgSize)), want: strconv.Itoa(int(want.MaxMsgSize))})
	}
	return d
}

func ageString(d time.Duration) string {
	if d == 0 {
		return "unlimited"
	}
	return d.String()
}

// Embedded is an in-process nats-server with JetStream on loopback.
type Embedded struct {
	Server *server.Server
	URL    string
}

// StartEmbedded starts a JetStream server storing in dir, listening on
// 127.0.0.1:port (0 = a random port).
func StartEmbedded(dir string, port int) (*Embedded, error) {
	if dir == "" {
		dir = filepath.Join("data", "nats")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("embedded nats: data dir: %w", err)
	}
	if port == 0 {
		port = server.RANDOM_PORT
	}
	opts := &server.Options{
		ServerName: "usagefleet-embedded",
		Host:       "127.0.0.1",
		Port:       port,
		JetStream:  true,
		StoreDir:   dir,
		NoSigs:     true,
		MaxPayload: 8 << 20,
		// Pending bytes per client: large enough for a bulk publisher.
		MaxPending: 256 << 20,
	}
	s, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("embedded nats: %w", err)
	}
	go s.Start()
	if !s.ReadyForConnections(30 * time.Second) {
		s.Shutdown()
		return nil, errors.New("embedded nats: not ready after 30s")
	}
	addr := s.Addr().(*net.TCPAddr)
	return &Embedded{Server: s, URL: "nats://127.0.0.1:" + strconv.Itoa(addr.Port)}, nil
}

// Close shuts the server down and waits for it.
func (e *Embedded) Close() {
	e.Server.Shutdown()
	e.Server.WaitForShutdown()
}

// StreamOptions sizes the streams. Zero values take the defaults.
type StreamOptions struct {
	Replicas        int             `yaml:"replicas"`         // default 1; 3 on a cluster
	UsageMaxAge     config.Duration `yaml:"usage_max_age"`    // default 62 days: a month unit plus a month of late data
	DuplicateWindow config.Duration `yaml:"duplicate_window"` // default 48h
	AcksMaxAge      config.Duration `yaml:"acks_max_age"`     // default 14 days
	DeadMaxAge      config.Duration `yaml:"dead_max_age"`     // default 90 days
	LeaseTTL        config.Duration `yaml:"lease_ttl"`        // default 40s: above every destination's http_timeout (30s) by a margin
	MaxMsgSize      int32           `yaml:"max_msg_size"`     // default: the server's max payload
	// Update lets this process change the settings of streams that exist.
	// Without it an existing stream is left as the server has it, and a
	// setting written here that differs from the server's is refused: the
	// streams are shared by every worker and producer, so changing them is
	// an operator's explicit act, not a side effect of one worker's file.
	// Even with it, a retention or duplicate window is never shrunk (that
	// deletes stored parts or reopens the door to duplicates): do that
	// with "nats stream edit".
	Update bool `yaml:"update"`
}

// Defaults applied by EnsureStreams.
const (
	DefaultUsageMaxAge     = 62 * 24 * time.Hour
	DefaultDuplicateWindow = 48 * time.Hour
	DefaultAcksMaxAge      = 14 * 24 * time.Hour
	DefaultDeadMaxAge      = 90 * 24 * time.Hour
	DefaultLeaseTTL        = 40 * time.Second
)

// EnsureStreams creates or updates the USAGE, ACKS and DEAD streams and the
// lease, unit and checkpoint buckets.
func EnsureStreams(ctx context.Context, js jetstream.JetStream, o StreamOptions) error {
	r := o.Replicas
	if r == 0 {
		r = 1
	}
	streams := []jetstream.StreamConfig{
		{
			Name:        messages.StreamUsage,
			Description: "usage parts: the source of truth for what a unit contains",
			Subjects:    []string{messages.UsageSubjects},
			Storage:     jetstream.FileStorage,
			Retention:   jetstream.LimitsPolicy,
			MaxAge:      o.UsageMaxAge.D(DefaultUsageMaxAge),
			Duplicates:  o.DuplicateWindow.D(DefaultDuplicateWindow),
			Replicas:    r,
			AllowDirect: true,
			MaxMsgSize:  o.MaxMsgSize,
			Discard:     jetstream.DiscardOld,
		},
		{
			Name:        messages.StreamAcks,
			Description: "delivery acks per part and destination",
			Subjects:    []string{messages.AcksSubjects},
			Storage:     jetstream.FileStorage,
			MaxAge:      o.AcksMaxAge.D(DefaultAcksMaxAge),
			Duplicates:  10 * time.Minute,
			Replicas:    r,
			AllowDirect: true,
		},
		{
			Name:        messages.StreamDead,
			Description: "dead letters: undecodable parts and rejected records, with reasons",
			Subjects:    []string{messages.DeadSubjects},
			Storage:     jetstream.FileStorage,
			MaxAge:      o.DeadMaxAge.D(DefaultDeadMaxAge),
			Duplicates:  10 * time.Minute,
			Replicas:    r,
		},
	}
	explicit := []map[string]bool{
		{"replicas": o.Replicas != 0, "usage_max_age": o.UsageMaxAge != 0, "duplicate_window": o.DuplicateWindow != 0, "max_msg_size": o.MaxMsgSize != 0},
		{"replicas": o.Replicas != 0, "acks_max_age": o.AcksMaxAge != 0},
		{"replicas": o.Replicas != 0, "dead_max_age": o.DeadMaxAge != 0},
	}
	for i, cfg := range streams {
		if err := ensureStream(ctx, js, cfg, explicit[i], o.Update); err != nil {
			return err
		}
	}
	// Batch claims live as long as USAGE remembers message ids (the
	// server's window when this process left the stream as it was).
	window := o.DuplicateWindow.D(DefaultDuplicateWindow)
	if st, err := js.Stream(ctx, messages.StreamUsage); err == nil && st.CachedInfo().Config.Duplicates > 0 {
		window = st.CachedInfo().Config.Duplicates
	}
	buckets := []jetstream.KeyValueConfig{
		{Bucket: messages.BucketBatches, Description: "batch claims: the content digest of each batch id per source and feed", TTL: window, History: 1, Replicas: r, Storage: jetstream.FileStorage},
		{Bucket: messages.BucketLeases, Description: "unit leases", TTL: o.LeaseTTL.D(DefaultLeaseTTL), History: 1, Replicas: r, Storage: jetstream.FileStorage},
		{Bucket: messages.BucketUnits, Description: "stream position each unit's last upload covered", History: 1, Replicas: r, Storage: jetstream.FileStorage},
		{Bucket: messages.BucketCheckpoints, Description: "collector checkpoints", History: 5, Replicas: r, Storage: jetstream.FileStorage},
	}
	for _, cfg := range buckets {
		if _, err := js.CreateOrUpdateKeyValue(ctx, cfg); err != nil {
			return fmt.Errorf("bucket %s: %w", cfg.Bucket, err)
		}
	}
	return nil
}
