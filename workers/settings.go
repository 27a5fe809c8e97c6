package workers

import (
	"net/url"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/usagefleet/usagefleet/internal/config"
)

// DecodeSettings decodes a destination's `settings:` node into s with
// config.Decode's strict rules; key is the node's path in the file. The
// field named secret, a credential, is checked first: written as a plain
// value it is refused, naming key.secret, without the value (the YAML
// decoder would quote it in its type error); noun names it in the error
// ("a literal token is not accepted").
func DecodeSettings(node *yaml.Node, key string, s any, secret, noun string) error {
	if node != nil && node.Kind == yaml.MappingNode {
		for i := 0; i+1 < len(node.Content); i += 2 {
			k, v := node.Content[i], node.Content[i+1]
			if k.Value == secret && v.Kind == yaml.ScalarNode && v.Tag != "!!null" {
				return &config.Error{Key: key + "." + secret, Line: v.Line,
					Msg: "a literal " + noun + " is not accepted: set env (a variable name) or file (a path)"}
			}
		}
	}
	return config.Decode(node, s, key)
}

// RegisterSettings registers the destination type typ (Register) whose
// `settings:` node is decoded into S by DecodeSettings (secret and noun
// name its credential field), then handed to build with the destination's
// name and the node's path in the file, used in every error.
func RegisterSettings[S any, D Destination](typ, secret, noun string, build func(name string, s S, key string) (D, error)) {
	Register(typ, func(name string, node *yaml.Node, key string) (Destination, error) {
		var s S
		if err := DecodeSettings(node, key, &s, secret, noun); err != nil {
			return nil, err
		}
		d, err := build(name, s, key)
		if err != nil {
			return nil, err // not a Destination holding a nil D
		}
		return d, nil
	})
}

// StallTimeout reads a destination's stall_timeout setting: how long one
// attempt may go without progress (an Attempt's deadline, pushed back by
// every piece of a streamed body the connection accepts; a body sent
// whole makes no progress until its answer). The per-request deadline is
// the destination's own http_timeout (Options.HTTPTimeout), not a setting
// of its type. old is the same stall timeout under its former name,
// http_timeout in `settings:`, which read as a second per-request timeout
// beside the destination's: still accepted, with a deprecation notice
// (naming key.http_timeout, to be logged once at start: Deprecated).
// Setting both is an error. def applies when neither is set; key is the
// settings' path in the file. It returns the timeout, the name of the key
// it came from (for errors to name it), and the notices.
func StallTimeout(stall, old config.Duration, def time.Duration, key string) (d time.Duration, name string, notices []string, err error) {
	name = "stall_timeout"
	switch {
	case stall != 0 && old != 0:
		return 0, "", nil, config.Errorf(key+".http_timeout", "the former name of stall_timeout: set stall_timeout alone")
	case old != 0:
		name = "http_timeout"
		notices = []string{key + ".http_timeout is deprecated: it is the stall timeout, now " + key + ".stall_timeout (the destination's own http_timeout is the per-request deadline)"}
		stall = old
	}
	if d = stall.D(def); d <= 0 {
		return 0, "", nil, config.Errorf(key+"."+name, "must be positive")
	}
	return d, name, notices, nil
}

// Deprecated is implemented by a destination whose configuration used a
// deprecated key: each notice names the key and what replaces it. The
// fleet logs them as warnings when it starts.
type Deprecated interface {
	Deprecated() []string
}

// Advisor is implemented by a destination whose configuration is valid
// but leaves a risk to the money it carries: each advisory names the key
// and the risk. The fleet logs them as warnings when it starts; validate
// prints them.
type Advisor interface {
	Advisories() []string
}

// BaseURL checks a destination's base_url setting (def when unset): an
// http(s) URL with a host and no query, fragment or credentials. It
// returns it without trailing slashes, for paths to be appended; key is the
// setting's path in the file.
func BaseURL(base, def, key string) (string, error) {
	if base == "" {
		base = def
	}
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return "", config.Errorf(key, "%q: want an http(s) URL with a host and no query, fragment or credentials", base)
	}
	return strings.TrimRight(base, "/"), nil
}
