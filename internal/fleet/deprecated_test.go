package fleet

import (
	"strings"
	"testing"
)

// A destination's deprecated setting reaches Config.Deprecated (which the
// worker logs at start and validate prints), naming the key in the file;
// a config without one has none.
func TestDeprecatedSettingsAreListed(t *testing.T) {
	t.Setenv("UF_TEST_CC_TOKEN", "tok-123")
	doc := func(settings string) string {
		return "nats: {data_dir: /tmp/x}\ndestinations:\n" +
			"  - {name: cc, type: cloudcruiser, feeds: [msp], settings: {token: {env: UF_TEST_CC_TOKEN}, base_url: 'http://127.0.0.1:9'" + settings + "}}\n"
	}
	cfg, err := Parse([]byte(doc(", http_timeout: 45s")))
	if err != nil {
		t.Fatal(err)
	}
	if n := cfg.Deprecated(); len(n) != 1 || !strings.HasPrefix(n[0], "destinations[0](cc).settings.http_timeout is deprecated") {
		t.Fatalf("notices %q", n)
	}
	cfg, err = Parse([]byte(doc(", stall_timeout: 45s")))
	if err != nil {
		t.Fatal(err)
	}
	if n := cfg.Deprecated(); len(n) != 0 {
		t.Fatalf("notices %q", n)
	}
}

// A destination's advisory reaches Config.Advisories, naming the key in
// the file: a CloudZero connection without currency.
func TestAdvisoriesAreListed(t *testing.T) {
	t.Setenv("UF_TEST_CZ_KEY", "key-123")
	doc := func(settings string) string {
		return "nats: {data_dir: /tmp/x}\ndestinations:\n" +
			"  - {name: cz, type: cloudzero, feeds: [cloud], settings: {connection_id: c1, api_key: {env: UF_TEST_CZ_KEY}, base_url: 'http://127.0.0.1:9'" + settings + "}}\n"
	}
	cfg, err := Parse([]byte(doc("")))
	if err != nil {
		t.Fatal(err)
	}
	if n := cfg.Advisories(); len(n) != 1 || !strings.HasPrefix(n[0], "destinations[0](cz).settings.currency is not set") {
		t.Fatalf("advisories %q", n)
	}
	cfg, err = Parse([]byte(doc(", currency: USD")))
	if err != nil {
		t.Fatal(err)
	}
	if n := cfg.Advisories(); len(n) != 0 {
		t.Fatalf("advisories %q", n)
	}
}
