package cloudzero

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/url"
	"time"

	"github.com/usagefleet/usagefleet/messages"

	"github.com/usagefleet/usagefleet/internal/config"
	"github.com/usagefleet/usagefleet/workers"
)

// Type is the destination type in the configuration (`type: cloudzero`).
const Type = "cloudzero"

// ValidatePath is the billing-drop validation endpoint [DOC: "POST
// /v2/connections/billing/anycost/validate_billing_drop", API key scope
// connections:create_billing_anycost_validate_billing_drop].
const ValidatePath = "/v2/connections/billing/anycost/validate_billing_drop"

// Defaults and documented limits.
const (
	DefaultBaseURL           = "https://api.cloudzero.com"
	DefaultMaxBodyBytes      = 5_000_000 // "5MB uncompressed JSON body" [DOC], decimal megabytes
	DefaultStallTimeout      = 30 * time.Second
	DefaultMonthWarnFraction = 0.8
	MonthRowLimit            = 1_000_000  // rows per stream and month [DOC]
	MonthByteLimit           = 70_000_000 // bytes per stream and month [DOC]

	// minMaxBodyBytes leaves room for the envelope and any sensible row.
	minMaxBodyBytes = 1024
)

// Mode says which billing_drops operation replaces what.
type Mode string

const (
	// ModeReplaceHourly replaces UTC hours: units are hours, several whole
	// hours share a request, an hour over the body limit goes as
	// replace_hourly then sum.
	ModeReplaceHourly Mode = "replace_hourly"
	// ModeReplaceDrop replaces months: units are months, sent as one
	// replace_drop, or replace_drop then sum when over the body limit.
	ModeReplaceDrop Mode = "replace_drop"
	// ModeSum appends every stored part with sum: at least once, and no
	// more than once while CloudZero remembers the idempotency key.
	ModeSum Mode = "sum"
)

// Settings are a CloudZero destination's `settings:`. The feeds and the
// flush policy are common destination config, read by the pool.
type Settings struct {
	BaseURL      string        `yaml:"base_url"`      // default DefaultBaseURL
	ConnectionID string        `yaml:"connection_id"` // required
	APIKey       config.Secret `yaml:"api_key"`       // required: {env: NAME} or {file: PATH}
	Mode         Mode          `yaml:"mode"`          // default replace_hourly
	MaxBodyBytes int           `yaml:"max_body_bytes"`
	// StallTimeout is how long a request may go without progress: a body
	// is sent whole, so from asking for a connection to the end of the
	// answer (workers.Attempt). Default DefaultStallTimeout. The
	// per-request deadline is the destination-level http_timeout.
	StallTimeout config.Duration `yaml:"stall_timeout"`
	// HTTPTimeout is the former name of StallTimeout: deprecated, still
	// accepted with a warning (workers.StallTimeout).
	HTTPTimeout config.Duration `yaml:"http_timeout"`
	// MonthWarnFraction of MonthRowLimit / MonthByteLimit a month may reach
	// before every job that touches it logs a warning.
	MonthWarnFraction float64 `yaml:"month_warn_fraction"`
	// ValidateOnly sends every request to validate_billing_drop instead of
	// billing_drops: CloudZero checks the rows and stores nothing. A dry
	// run before sending real data (see the package doc).
	ValidateOnly bool `yaml:"validate_only"`
	// Currency is the one currency this connection's costs are in (ISO
	// 4217). CBF has no currency column: a connection fed two currencies
	// would add JPY to USD. When set, a record billed in another currency
	// is refused with the reason (dead-lettered; the other destinations
	// still take it). Empty: not checked.
	Currency string `yaml:"currency"`
}

func init() { workers.RegisterSettings(Type, "api_key", "key", newDestination) }

// New builds a destination from settings given in code. Errors name keys
// under "settings".
func New(name string, s Settings) (*Destination, error) {
	return newDestination(name, s, "settings")
}

func newDestination(name string, s Settings, key string) (*Destination, error) {
	d := &Destination{
		name:    name,
		conn:    s.ConnectionID,
		mode:    s.Mode,
		maxBody: s.MaxBodyBytes,
		usage:   newMonthUsage(),
		repairs: &repairCounter{},
	}
	var err error
	if d.timeout, d.stallKey, d.deprecated, err = workers.StallTimeout(s.StallTimeout, s.HTTPTimeout, DefaultStallTimeout, key); err != nil {
		return nil, err
	}
	if d.mode == "" {
		d.mode = ModeReplaceHourly
	}
	switch d.mode {
	case ModeReplaceHourly, ModeReplaceDrop, ModeSum:
	default:
		return nil, config.Errorf(key+".mode", "%q: want replace_hourly, replace_drop or sum", string(s.Mode))
	}
	if d.conn == "" {
		return nil, config.Errorf(key+".connection_id", "required (Settings → Billing Connections → the AnyCost Stream connection)")
	}
	if !validConnectionID(d.conn) {
		return nil, config.Errorf(key+".connection_id", "%q: want 1-128 of A-Z a-z 0-9 _ . = -", d.conn)
	}
	base, err := workers.BaseURL(s.BaseURL, DefaultBaseURL, key+".base_url")
	if err != nil {
		return nil, err
	}
	d.endpoint = base + "/v2/connections/billing/anycost/" + url.PathEscape(d.conn) + "/billing_drops"
	if s.Currency != "" && !messages.IsCurrency(s.Currency) {
		return nil, config.Errorf(key+".currency", "%q: want an ISO 4217 code, like USD", s.Currency)
	}
	d.currency = s.Currency
	if s.Currency == "" && !s.ValidateOnly {
		d.advisories = append(d.advisories, key+".currency is not set: CBF has no currency column, so costs billed in "+
			"different currencies are added up as one; set it to the connection's currency (like USD) to dead-letter, with the reason, "+
			"a record billed in another")
	}
	if s.ValidateOnly {
		d.validateOnly = true
		d.endpoint = base + ValidatePath
	}
	d.leaseKey = connectionLease(d.conn, d.validateOnly)
	switch {
	case d.maxBody == 0:
		d.maxBody = DefaultMaxBodyBytes
	case d.maxBody < minMaxBodyBytes || d.maxBody > DefaultMaxBodyBytes:
		return nil, config.Errorf(key+".max_body_bytes", "%d: want %d to %d (the API refuses bodies over 5 MB)", d.maxBody, minMaxBodyBytes, DefaultMaxBodyBytes)
	}
	frac := s.MonthWarnFraction
	switch {
	case frac == 0:
		frac = DefaultMonthWarnFraction
	case frac < 0 || frac > 1:
		return nil, config.Errorf(key+".month_warn_fraction", "%g: want a fraction in (0, 1]", frac)
	}
	d.warnRows = int64(frac * MonthRowLimit)
	d.warnBytes = int64(frac * MonthByteLimit)
	if !s.APIKey.IsSet() {
		return nil, config.Errorf(key+".api_key", "required: set env (a variable name) or file (a path)")
	}
	if err := s.APIKey.Resolve(key + ".api_key"); err != nil {
		return nil, err
	}
	d.key = s.APIKey
	return d, nil
}

// validConnectionID keeps the id safe in a URL path and as a KV lease key.
func validConnectionID(s string) bool {
	if len(s) == 0 || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '_', c == '.', c == '=', c == '-':
		default:
			return false
		}
	}
	return true
}

// String names the destination without its key.
func (d *Destination) String() string {
	if d.validateOnly {
		return fmt.Sprintf("cloudzero %s (connection %s, %s, validate only: nothing is stored)", d.name, d.conn, d.mode)
	}
	return fmt.Sprintf("cloudzero %s (connection %s, %s)", d.name, d.conn, d.mode)
}

// GoString is String: %#v must not print the key either.
func (d *Destination) GoString() string { return d.String() }

// connectionLease is the fleet-wide lease key of a connection: the
// connection id alone, so every destination name, base URL and spelling
// of it (a proxy in front of the API included) takes one lease; the
// validation endpoint stores nothing and has a lease of its own.
func connectionLease(conn string, validateOnly bool) string {
	what := "cloudzero\x00"
	if validateOnly {
		what = "cloudzero-validate\x00"
	}
	sum := sha256.Sum256([]byte(what + conn))
	return workers.FleetLeasePrefix + hex.EncodeToString(sum[:12])
}
