package cloudzero

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/usagefleet/usagefleet/internal/config"
	"github.com/usagefleet/usagefleet/workers/workerstest"
)

func build(t *testing.T, doc string) (*Destination, error) {
	t.Helper()
	d, err := workerstest.Build(t, Type, "cz", doc)
	if err != nil {
		return nil, err
	}
	return d.(*Destination), nil
}

func TestConfigDefaults(t *testing.T) {
	t.Setenv("CZ_TEST_KEY", testKey)
	d, err := build(t, "connection_id: "+testConn+"\napi_key: {env: CZ_TEST_KEY}\n")
	if err != nil {
		t.Fatal(err)
	}
	if d.endpoint != "https://api.cloudzero.com/v2/connections/billing/anycost/"+testConn+"/billing_drops" {
		t.Fatalf("endpoint %s", d.endpoint)
	}
	if d.mode != ModeReplaceHourly || d.maxBody != 5_000_000 || d.timeout != 30*time.Second ||
		d.warnRows != 800_000 || d.warnBytes != 56_000_000 || d.key.Value() != testKey {
		t.Fatalf("defaults: %+v", *d)
	}
	for _, s := range []string{d.String(), fmt.Sprintf("%v %+v %#v %s", d, d, d, d)} {
		if strings.Contains(s, testKey) {
			t.Fatalf("the key prints: %s", s)
		}
	}
}

func TestConfigAll(t *testing.T) {
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "key")
	if err := os.WriteFile(keyFile, []byte(testKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	d, err := build(t, fmt.Sprintf(`
base_url: http://127.0.0.1:8080/
connection_id: %s
api_key: {file: %s}
mode: replace_drop
max_body_bytes: 4500000
http_timeout: 10s
month_warn_fraction: 0.5
`, testConn, keyFile))
	if err != nil {
		t.Fatal(err)
	}
	if d.endpoint != "http://127.0.0.1:8080/v2/connections/billing/anycost/"+testConn+"/billing_drops" ||
		d.mode != ModeReplaceDrop || d.maxBody != 4_500_000 || d.timeout != 10*time.Second ||
		d.warnRows != 500_000 || d.key.Value() != testKey {
		t.Fatalf("settings: %+v", *d)
	}
}

func TestConfigErrors(t *testing.T) {
	t.Setenv("CZ_TEST_KEY", testKey)
	const ok = "connection_id: c1\napi_key: {env: CZ_TEST_KEY}\n"
	tests := []struct {
		name, doc, key, msg string
	}{
		{"no settings", "", "settings.connection_id", "required"},
		{"unknown key", ok + "operation: sum\n", "destinations[0].settings", "operation"},
		{"literal key", "connection_id: c1\napi_key: " + testKey + "\n", "settings.api_key", "literal key is not accepted"},
		{"no key", "connection_id: c1\n", "settings.api_key", "required"},
		{"unset env", "connection_id: c1\napi_key: {env: CZ_TEST_NOT_SET}\n", "settings.api_key", "CZ_TEST_NOT_SET is not set"},
		{"missing file", "connection_id: c1\napi_key: {file: /nonexistent/cz}\n", "settings.api_key", "reading secret file"},
		{"bad mode", ok + "mode: replace\n", "settings.mode", "replace_hourly"},
		{"bad connection", "connection_id: 'a b/c'\napi_key: {env: CZ_TEST_KEY}\n", "settings.connection_id", "a b/c"},
		{"bad url", ok + "base_url: ftp://x\n", "settings.base_url", "http(s)"},
		{"url with credentials", ok + "base_url: https://u:p@x\n", "settings.base_url", "credentials"},
		{"body too large", ok + "max_body_bytes: 6000000\n", "settings.max_body_bytes", "5 MB"},
		{"body too small", ok + "max_body_bytes: 100\n", "settings.max_body_bytes", "1024"},
		{"bad timeout", ok + "http_timeout: soon\n", "destinations[0].settings", "duration"},
		{"bad fraction", ok + "month_warn_fraction: 1.5\n", "settings.month_warn_fraction", "(0, 1]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := build(t, tt.doc)
			if err == nil {
				t.Fatal("accepted")
			}
			if !strings.Contains(err.Error(), tt.key) || !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("err = %q, want key %q and %q", err, tt.key, tt.msg)
			}
			if strings.Contains(err.Error(), testKey) {
				t.Fatalf("the key leaked: %q", err)
			}
		})
	}
}

// stall_timeout bounds an attempt; http_timeout in settings is its former
// name, still read, with a deprecation notice naming the key.
func TestConfigStallTimeoutAndItsFormerName(t *testing.T) {
	t.Setenv("CZ_TEST_KEY", testKey)
	const ok = "connection_id: c1\napi_key: {env: CZ_TEST_KEY}\n"
	d, err := build(t, ok+"stall_timeout: 45s\n")
	if err != nil || d.timeout != 45*time.Second || len(d.Deprecated()) != 0 {
		t.Fatalf("stall_timeout: %v, timeout %s, notices %q", err, d.timeout, d.Deprecated())
	}
	d, err = build(t, ok+"http_timeout: 10s\n")
	if err != nil || d.timeout != 10*time.Second {
		t.Fatalf("http_timeout: %v, timeout %s", err, d.timeout)
	}
	if n := d.Deprecated(); len(n) != 1 || !strings.Contains(n[0], "settings.http_timeout is deprecated") ||
		!strings.Contains(n[0], "settings.stall_timeout") {
		t.Fatalf("notices %q", n)
	}
	_, err = build(t, ok+"http_timeout: 10s\nstall_timeout: 1m\n")
	var ce *config.Error
	if !errors.As(err, &ce) || !strings.HasSuffix(ce.Key, "settings.http_timeout") {
		t.Fatalf("both names: %v", err)
	}
}

// A connection without currency adds every currency's costs as one: the
// destination says so (the worker logs it, validate prints it), naming the
// key; with currency set, or validate_only (nothing stored), it says
// nothing.
func TestConfigWithoutCurrencyIsAdvised(t *testing.T) {
	t.Setenv("CZ_TEST_KEY", testKey)
	const ok = "connection_id: c1\napi_key: {env: CZ_TEST_KEY}\n"
	cases := []struct {
		extra string
		want  bool
	}{
		{"", true},
		{"currency: USD\n", false},
		{"validate_only: true\n", false},
	}
	for _, c := range cases {
		d, err := build(t, ok+c.extra)
		if err != nil {
			t.Fatalf("%q: %v", c.extra, err)
		}
		a := d.Advisories()
		if got := len(a) == 1 && strings.HasSuffix(strings.SplitN(a[0], " ", 2)[0], "settings.currency") && strings.Contains(a[0], "added up as one"); got != c.want || (!c.want && len(a) != 0) {
			t.Errorf("%q: advisories %q, want one: %v", c.extra, a, c.want)
		}
		for _, s := range a {
			if strings.Contains(s, testKey) {
				t.Fatalf("the key leaked: %q", s)
			}
		}
	}
}
