// Package config reads usagefleet's YAML configuration strictly: an unknown
// or misspelt key, a bad value or a missing secret stops the process with
// the key's path and line ("destinations[0].settings.api_key: ...").
// Secrets come from environment variables or files and never print.
package config

import (
	"fmt"
	"os"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Error names the configuration key (and line, when known) of a problem.
type Error struct {
	Key  string
	Line int
	Msg  string
}

func (e *Error) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("config: %s (line %d): %s", e.Key, e.Line, e.Msg)
	}
	return fmt.Sprintf("config: %s: %s", e.Key, e.Msg)
}

// Errorf builds an Error for key.
func Errorf(key string, format string, args ...any) error {
	return &Error{Key: key, Msg: fmt.Sprintf(format, args...)}
}

// Decode decodes node into out, refusing unknown keys. key is the path of
// node in the file, used in errors: an unknown key or a bad value is named
// by its full path and its line in the file (see DecodeStrict).
func Decode(node *yaml.Node, out any, key string) error { return DecodeStrict(node, out, key) }

// Secret is a credential read from an environment variable or a file. It
// never prints: String, GoString and MarshalYAML redact it.
type Secret struct {
	Env  string `yaml:"env"`
	File string `yaml:"file"`
	val  string
}

// NewSecret returns a Secret holding v (for programs that build config in
// code, such as the demo).
func NewSecret(v string) Secret { return Secret{val: v} }

// Resolve reads the secret. key is its config path for errors; the error
// never contains the value.
func (s *Secret) Resolve(key string) error {
	switch {
	case s.val != "":
		return nil
	case s.Env != "" && s.File != "":
		return Errorf(key, "set env or file, not both")
	case s.Env != "":
		v, ok := os.LookupEnv(s.Env)
		if !ok || strings.TrimSpace(v) == "" {
			return Errorf(key, "environment variable %s is not set", s.Env)
		}
		s.val = strings.TrimSpace(v)
	case s.File != "":
		b, err := os.ReadFile(s.File)
		if err != nil {
			return Errorf(key, "reading secret file: %v", err)
		}
		v := strings.TrimSpace(string(b))
		if v == "" {
			return Errorf(key, "secret file %s is empty", s.File)
		}
		s.val = v
	default:
		return Errorf(key, "required: set env (a variable name) or file (a path)")
	}
	return nil
}

// IsSet reports whether a source or value is configured.
func (s Secret) IsSet() bool { return s.val != "" || s.Env != "" || s.File != "" }

// Value returns the resolved secret. Use it only to build a request.
func (s Secret) Value() string { return s.val }

func (s Secret) String() string   { return "[redacted]" }
func (s Secret) GoString() string { return "config.Secret{[redacted]}" }

// UnmarshalYAML accepts only {env: VAR} or {file: PATH}. An inline value is
// refused without repeating it: a secret written into a config file would
// end up in version control and in error messages.
func (s *Secret) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.MappingNode {
		return fmt.Errorf("line %d: write a secret as {env: VARIABLE} or {file: PATH}, never inline (the value was not read)", n.Line)
	}
	var v struct {
		Env  string `yaml:"env"`
		File string `yaml:"file"`
	}
	dec := n.Decode(&v)
	if dec != nil {
		return fmt.Errorf("line %d: a secret takes only env or file", n.Line)
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if k := n.Content[i].Value; k != "env" && k != "file" {
			return fmt.Errorf("line %d: a secret takes only env or file, not %q", n.Content[i].Line, k)
		}
	}
	s.Env, s.File = v.Env, v.File
	return nil
}

// MarshalYAML keeps where the secret comes from, never its value.
func (s Secret) MarshalYAML() (any, error) {
	return map[string]string{"env": s.Env, "file": s.File}, nil
}

// Duration is a time.Duration written as "30s", "5m".
type Duration time.Duration

// UnmarshalYAML reads a Go duration string.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	var s string
	if err := n.Decode(&s); err != nil {
		return fmt.Errorf("line %d: want a duration like 30s", n.Line)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("line %d: %q is not a duration (like 30s, 5m)", n.Line, s)
	}
	if v < 0 {
		return fmt.Errorf("line %d: %q is negative", n.Line, s)
	}
	*d = Duration(v)
	return nil
}

// MarshalYAML writes the duration string.
func (d Duration) MarshalYAML() (any, error) { return time.Duration(d).String(), nil }

// D returns the time.Duration, or def when unset.
func (d Duration) D(def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return time.Duration(d)
}
