package cloudcruiser

import (
	"fmt"
	"strings"
	"time"

	"github.com/usagefleet/usagefleet/internal/config"
	"github.com/usagefleet/usagefleet/workers"
)

// Type is the destination type in the configuration (`type: cloudcruiser`).
const Type = "cloudcruiser"

// Defaults of the settings.
const (
	DefaultBaseURL      = "https://na1.cloudcruiser.com" // the documented resource URL's host
	DefaultStallTimeout = 30 * time.Second
	DefaultProviderType = "Public"
	DefaultTagPrefix    = "tag:"
)

// Settings are a Cloud Cruiser destination's `settings:`. The feeds, the
// flush policy and the per-request deadline (the destination-level
// http_timeout, which bounds the whole upload, file included) are common
// destination config, read by the pool.
type Settings struct {
	BaseURL string        `yaml:"base_url"` // default DefaultBaseURL
	Token   config.Secret `yaml:"token"`    // required: {env: NAME} or {file: PATH}
	// ZoneOffset is the accounting dates' UTC offset ("-7", "-07:00",
	// "+05:30", "-07:01:30"); empty, "Z", "UTC" or "0" is UTC.
	ZoneOffset string   `yaml:"zone_offset"`
	Defaults   Defaults `yaml:"defaults"`
	// TagPrefix names the extra field a tag is sent as (prefix + key);
	// default DefaultTagPrefix. OmitTags sends no tags at all.
	TagPrefix string `yaml:"tag_prefix"`
	OmitTags  bool   `yaml:"omit_tags"`
	// ExtraFields chooses the extra typed fields: which x_ columns and
	// tags are sent, under which name, as FLOAT, INT or STRING. Empty:
	// every x_ column (typed by its kind) and every tag (STRING, named
	// tag_prefix + key; none with omit_tags).
	ExtraFields []ExtraField `yaml:"extra_fields"`
	// OmitCosts leaves out the FLOAT extra fields "Effective Cost" and
	// "List Cost" (EffectiveCost and ListCost), sent by default.
	OmitCosts bool `yaml:"omit_costs"`
	// StallTimeout is how long an upload may go without progress: between
	// two pieces of the file accepted by the connection, and from the end
	// of the file to the answer. Default DefaultStallTimeout.
	StallTimeout config.Duration `yaml:"stall_timeout"`
	// HTTPTimeout is the former name of StallTimeout (it read as a second
	// per-request timeout, which it is not): deprecated, still accepted
	// with a warning (workers.StallTimeout).
	HTTPTimeout config.Duration `yaml:"http_timeout"`
	// ContentLength sends each file with a Content-Length header instead of
	// chunked transfer encoding, at the price of rebuilding the date twice
	// (once to measure it). For servers or proxies that refuse chunked
	// request bodies (411 Length Required).
	ContentLength bool `yaml:"content_length"`
}

// Defaults fill Cloud Cruiser's required fields when a record lacks what
// they map from (see the package doc's mapping table). An empty default
// means none: the record is rejected instead.
type Defaults struct {
	AccountID    string `yaml:"account_id"`
	AccountName  string `yaml:"account_name"`
	Provider     string `yaml:"provider"`
	ProviderType string `yaml:"provider_type"` // Public (default) or Private
	Product      string `yaml:"product"`
	MeterID      string `yaml:"meter_id"`
	MeterName    string `yaml:"meter_name"`
	Units        string `yaml:"units"`
}

func init() { workers.RegisterSettings(Type, "token", "token", newDestination) }

// New builds a destination from settings given in code. Errors name keys
// under "settings".
func New(name string, s Settings) (*Destination, error) {
	return newDestination(name, s, "settings")
}

func newDestination(name string, s Settings, key string) (*Destination, error) {
	d := &Destination{name: name, contentLength: s.ContentLength}
	var err error
	if d.timeout, d.stallKey, d.deprecated, err = workers.StallTimeout(s.StallTimeout, s.HTTPTimeout, DefaultStallTimeout, key); err != nil {
		return nil, err
	}
	base, err := workers.BaseURL(s.BaseURL, DefaultBaseURL, key+".base_url")
	if err != nil {
		return nil, err
	}
	d.endpoint = base + uploadPath

	secs, err := ParseZoneOffset(s.ZoneOffset)
	if err != nil {
		return nil, config.Errorf(key+".zone_offset", "%v", err)
	}
	d.offset = secs
	if secs == 0 {
		d.loc = time.UTC
	} else {
		d.loc = time.FixedZone(FormatZoneOffset(secs), secs)
		// '+' in a query string means a space: send it as %2B.
		d.query = "zoneOffset=" + strings.ReplaceAll(FormatZoneOffset(secs), "+", "%2B")
	}

	def := s.Defaults
	if def.ProviderType == "" {
		def.ProviderType = DefaultProviderType
	}
	if def.ProviderType != "Public" && def.ProviderType != "Private" {
		return nil, config.Errorf(key+".defaults.provider_type", "%q: want Public or Private", def.ProviderType)
	}
	for _, f := range []struct{ name, v string }{
		{"account_id", def.AccountID}, {"account_name", def.AccountName}, {"provider", def.Provider},
		{"product", def.Product}, {"meter_id", def.MeterID}, {"meter_name", def.MeterName}, {"units", def.Units},
	} {
		if f.v != "" && strings.TrimSpace(f.v) == "" {
			return nil, config.Errorf(key+".defaults."+f.name, "blank: Cloud Cruiser refuses blank required fields; leave the key out for no default")
		}
	}
	prefix := s.TagPrefix
	if prefix == "" {
		prefix = DefaultTagPrefix
	}
	if strings.HasPrefix(strings.ToLower(prefix), "x_") {
		return nil, config.Errorf(key+".tag_prefix", "%q: x_ is where extension columns go; pick another prefix", prefix)
	}
	d.m = mapper{loc: d.loc, suffix: offsetSuffix(secs), offset: secs, def: def, tagPrefix: prefix, omitTags: s.OmitTags, costs: !s.OmitCosts}
	if len(s.ExtraFields) > 0 {
		if d.m.extra, err = compileExtra(s.ExtraFields, prefix, key+".extra_fields"); err != nil {
			return nil, err
		}
	}

	if !s.Token.IsSet() {
		return nil, config.Errorf(key+".token", "required: set env (a variable name) or file (a path) holding the Upload Usage API collection's token")
	}
	if err := s.Token.Resolve(key + ".token"); err != nil {
		return nil, err
	}
	d.token = s.Token
	return d, nil
}

// maxOffset is the largest UTC offset, as java.time.ZoneOffset allows.
const maxOffset = 18 * 3600

// ParseZoneOffset reads a UTC offset as Cloud Cruiser's zoneOffset takes
// it: a sign, then hours (one or two digits), hh:mm or hh:mm:ss, at most
// 18 hours ("-7", "+05", "-07:00", "+05:30", "-07:01:30"). "", "Z", "UTC"
// and "0" are UTC. It returns seconds east of UTC.
func ParseZoneOffset(s string) (int, error) {
	switch s {
	case "", "Z", "UTC", "0", "+0", "-0":
		return 0, nil
	}
	bad := fmt.Errorf("%q: want a UTC offset like -7, -07:00, +05:30 or -07:01:30 (sign required, at most 18 hours)", s)
	if s[0] != '+' && s[0] != '-' {
		return 0, bad
	}
	parts := strings.Split(s[1:], ":")
	if len(parts) > 3 {
		return 0, bad
	}
	secs := 0
	for i, p := range parts {
		if len(p) == 0 || len(p) > 2 || (i > 0 && len(p) != 2) {
			return 0, bad
		}
		n := 0
		for _, c := range []byte(p) {
			if c < '0' || c > '9' {
				return 0, bad
			}
			n = n*10 + int(c-'0')
		}
		if i > 0 && n > 59 {
			return 0, bad
		}
		secs = secs*60 + n
	}
	for range 3 - len(parts) {
		secs *= 60
	}
	if secs > maxOffset {
		return 0, bad
	}
	if s[0] == '-' {
		secs = -secs
	}
	return secs, nil
}

// FormatZoneOffset renders an offset in seconds as ±hh:mm, or ±hh:mm:ss
// when it has seconds ("+00:00" for UTC).
func FormatZoneOffset(secs int) string {
	sign := byte('+')
	if secs < 0 {
		sign, secs = '-', -secs
	}
	h, m, s := secs/3600, secs/60%60, secs%60
	if s != 0 {
		return fmt.Sprintf("%c%02d:%02d:%02d", sign, h, m, s)
	}
	return fmt.Sprintf("%c%02d:%02d", sign, h, m)
}

// offsetSuffix is what follows the seconds of a Usage Start or End, in the
// seed's form: "Z" for UTC, "+03" for whole hours (the documented example
// offset), "+05:30" with minutes ([INFER]: the docs show only ±hh). An
// offset with seconds has no documented form in a time value: the times
// are then written without an offset, which the API reads in the
// request's zoneOffset (sent with every upload), where seconds are
// documented ("-07:01:30").
func offsetSuffix(secs int) string {
	switch {
	case secs == 0:
		return "Z"
	case secs%60 != 0:
		return ""
	case secs%3600 == 0:
		return FormatZoneOffset(secs)[:3]
	}
	return FormatZoneOffset(secs)
}

// String names the destination without its token.
func (d *Destination) String() string {
	return fmt.Sprintf("cloudcruiser %s (%s, zone %s)", d.name, d.endpoint, FormatZoneOffset(d.offset))
}

// GoString is String: %#v must not print the token either.
func (d *Destination) GoString() string { return d.String() }
