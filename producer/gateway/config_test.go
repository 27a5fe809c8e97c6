package gateway

import (
	"strings"
	"testing"
)

func TestConfigNamesTheKeyAtFault(t *testing.T) {
	t.Setenv("GW_KEY", "a-long-enough-secret-value")
	t.Setenv("GW_SHORT", "short")
	base := "keys:\n  - name: a\n    secret: {env: GW_KEY}\n    sources: [billing]\n    feeds: [metered]\n"
	cases := []struct{ yaml, want string }{
		{base, ""},
		{base + "lingr: {delay: 2ms}\n", "lingr (line 6): unknown key"},
		{base + "linger: {delay: 2 ms}\n", "linger.delay"},
		{base + "linger: {delay: 2s}\n", "linger.delay"},
		{base + "limits: {max_body_bytes: 100, max_decompressed_bytes: 10}\n", "limits.max_decompressed_bytes"},
		{"keys:\n  - name: a\n    secret: inline-secret-value\n    sources: [b]\n    feeds: [f]\n", "never inline"},
		{"keys:\n  - name: a\n    secret: {env: GW_SHORT}\n    sources: [b]\n    feeds: [f]\n", "keys[0].secret: shorter than 16"},
		{"keys:\n  - name: a\n    secret: {env: GW_UNSET_VAR}\n    sources: [b]\n    feeds: [f]\n", "keys[0].secret: environment variable GW_UNSET_VAR is not set"},
		{"keys:\n  - name: a\n    secret: {env: GW_KEY}\n    sources: [\"bad source\"]\n    feeds: [f]\n", "keys[0].sources[0]"},
		{"keys:\n  - name: a\n    secret: {env: GW_KEY}\n    sources: [b]\n", "keys[0].feeds: required"},
		{"listen: \":1\"\n", "keys: required"},
		{base + "tls: {cert_file: /nonexistent.pem}\n", "tls: cert_file and key_file go together"},
	}
	for _, c := range cases {
		_, err := Parse([]byte(c.yaml))
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%q: %v", c.yaml, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%q: got %v, want %q", c.yaml, err, c.want)
		}
		if err != nil && (strings.Contains(err.Error(), "a-long-enough-secret-value") || strings.Contains(err.Error(), "inline-secret-value")) {
			t.Errorf("the error shows a secret: %v", err)
		}
	}
}

func TestKeyLookupAndBindings(t *testing.T) {
	cfg := testConfig()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	ks := newKeyring(cfg.Keys)
	if k := ks.lookup(testKey); k == nil || k.name != "billing" {
		t.Fatalf("lookup(testKey) = %v", k)
	}
	for _, bad := range []string{"", testKey[:len(testKey)-1], testKey + "x", strings.ToUpper(testKey)} {
		if ks.lookup(bad) != nil {
			t.Errorf("lookup(%q) found a key", bad)
		}
	}
	k := ks.lookup(testKey)
	if s, f, p := k.resolve("", ""); p != nil || s != testSource || f != testFeed {
		t.Errorf("defaults: %s %s %v", s, f, p)
	}
	if _, _, p := k.resolve("other", ""); p == nil || p.Status != 403 {
		t.Errorf("another source: %v", p)
	}
	o := ks.lookup(otherKey)
	if _, _, p := o.resolve("", ""); p == nil || p.Status != 400 {
		t.Errorf("a key with any feed and no feed named: %v", p)
	}
}
