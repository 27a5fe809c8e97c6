package fleet

import (
	"strings"
	"testing"
	"time"
)

const goodConfig = `
nats:
  data_dir: /tmp/x
destinations:
  - name: hook
    type: webhook
    feeds: [cloud]
    flush: {max_delay: 5s}
    settings:
      url: http://127.0.0.1:9/ingest
      token: {env: UF_TEST_HOOK_TOKEN}
`

func TestParseGood(t *testing.T) {
	t.Setenv("UF_TEST_HOOK_TOKEN", "tok-123")
	cfg, err := Parse([]byte(goodConfig))
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.built) != 1 || cfg.built[0].dest.Name() != "hook" || cfg.built[0].opts.Flush.MaxDelay.Seconds() != 5 {
		t.Fatalf("built %+v", cfg.built)
	}
}

func TestParseErrorsNameTheKey(t *testing.T) {
	t.Setenv("UF_TEST_HOOK_TOKEN", "tok-123")
	tests := []struct {
		name, edit, want string
	}{
		{"unknown top key", "destinations:", "config: destinatons (line 4): unknown key (known: nats, streams, worker, destinations, sources)"},
		{"unknown settings key", "      url:", "config: destinations[0](hook).settings.ur1 (line 10): unknown key (known: url, "},
		{"bad type", "type: webhook", `destinations[0](hook).type: "webhok" is not a destination type (types: `},
		{"bad duration", "max_delay: 5s", `config: destinations[0].flush.max_delay (line 8): "5 seconds" is not a duration`},
		{"bad number", "feeds: [cloud]", "config: destinations[0].workers (line 8): cannot unmarshal !!str `four` into int"},
		{"inline secret", "{env: UF_TEST_HOOK_TOKEN}", "config: destinations[0](hook).settings.token (line 11): write a secret as {env: VARIABLE} or {file: PATH}, never inline"},
		{"unknown nats key", "data_dir: /tmp/x", "config: nats.data_dri (line 3): unknown key (known: url, "},
		{"bad feed", "feeds: [cloud]", `destinations[0](hook).feeds[0]: "clo.ud"`},
		{"missing secret", "UF_TEST_HOOK_TOKEN", "destinations[0](hook).settings.token: environment variable UF_TEST_MISSING is not set"},
		{"bad url", "http://127.0.0.1:9/ingest", `destinations[0](hook).settings.url: want an http(s) URL, got "ftp://x"`},
		{"credentials without url", "data_dir: /tmp/x", "nats.url: credentials are set but no url"},
		{"bad memory limit", "nats:", `worker.memory_limit: "lots": want a size like 100MiB`},
		{"reserved name", "name: hook", `destinations[0](_collect).name: "_collect": a name may not start with _ (reserved)`},
		{"reconcile too often", "nats:", "worker.reconcile.every: 10s: want at least 1m"},
		{"reconcile window alone", "nats:", "worker.reconcile.window: set without worker.reconcile.every"},
		{"reconcile window too long", "nats:", "worker.reconcile.window: 2160h0m0s: want 1h to 744h"},
		{"reconcile unknown key", "nats:", "config: worker.reconcile.evry (line 2): unknown key (known: every, window)"},
	}
	replace := map[string][2]string{
		"unknown top key":           {"destinations:", "destinatons:"},
		"unknown settings key":      {"      url:", "      ur1:"},
		"bad type":                  {"type: webhook", "type: webhok"},
		"bad duration":              {"max_delay: 5s", "max_delay: 5 seconds"},
		"bad number":                {"feeds: [cloud]", "feeds: [cloud]\n    workers: four"},
		"inline secret":             {"{env: UF_TEST_HOOK_TOKEN}", "tok-123"},
		"unknown nats key":          {"data_dir: /tmp/x", "data_dri: /tmp/x"},
		"bad feed":                  {"feeds: [cloud]", "feeds: [clo.ud]"},
		"missing secret":            {"UF_TEST_HOOK_TOKEN", "UF_TEST_MISSING"},
		"bad url":                   {"http://127.0.0.1:9/ingest", "ftp://x"},
		"credentials without url":   {"data_dir: /tmp/x", "creds_file: /etc/x.creds"},
		"bad memory limit":          {"nats:", "worker: {memory_limit: lots}\nnats:"},
		"reserved name":             {"name: hook", "name: _collect"},
		"reconcile too often":       {"nats:", "worker: {reconcile: {every: 10s}}\nnats:"},
		"reconcile window alone":    {"nats:", "worker: {reconcile: {window: 24h}}\nnats:"},
		"reconcile window too long": {"nats:", "worker: {reconcile: {every: 1h, window: 2160h}}\nnats:"},
		"reconcile unknown key":     {"nats:", "worker: {reconcile: {evry: 1h}}\nnats:"},
	}
	for _, tt := range tests {
		r := replace[tt.name]
		src := strings.Replace(goodConfig, r[0], r[1], 1)
		_, err := Parse([]byte(src))
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: err = %v\nwant it to contain %q", tt.name, err, tt.want)
		}
		if err != nil && strings.Contains(err.Error(), "tok-123") {
			t.Errorf("%s: the error shows the secret: %v", tt.name, err)
		}
	}
}

// Two destinations that write to one CloudZero connection or one Cloud
// Cruiser account would overwrite each other's units: the configuration
// is refused, naming both, and never showing the token. Other pairs are
// fine.
func TestSharedTargetsAreRefused(t *testing.T) {
	t.Setenv("UF_TEST_CZ_KEY", "cz-secret-1")
	t.Setenv("UF_TEST_CC_TOKEN", "cc-secret-1")
	t.Setenv("UF_TEST_CC_TOKEN2", "cc-secret-2")
	cz := func(name, conn, feed string) string {
		return "  - {name: " + name + ", type: cloudzero, feeds: [" + feed + "], settings: {connection_id: " + conn + ", api_key: {env: UF_TEST_CZ_KEY}, base_url: 'http://127.0.0.1:9'}}\n"
	}
	cc := func(name, tokenVar, feed string) string {
		return "  - {name: " + name + ", type: cloudcruiser, feeds: [" + feed + "], settings: {token: {env: " + tokenVar + "}, base_url: 'http://127.0.0.1:9'}}\n"
	}
	for _, tc := range []struct {
		name, dests, want string
	}{
		{"one connection twice", cz("a", "c1", "f1") + cz("b", "c1", "f2"), "destinations[1](b).settings: writes to the same CloudZero connection c1 as destinations[0](a)"},
		{"two connections", cz("a", "c1", "f1") + cz("b", "c2", "f2"), ""},
		{"one account twice", cc("a", "UF_TEST_CC_TOKEN", "f1") + cc("b", "UF_TEST_CC_TOKEN", "f2"), "destinations[1](b).settings: writes to the same Cloud Cruiser account"},
		{"two accounts", cc("a", "UF_TEST_CC_TOKEN", "f1") + cc("b", "UF_TEST_CC_TOKEN2", "f2"), ""},
	} {
		_, err := Parse([]byte("nats: {data_dir: /tmp/x}\ndestinations:\n" + tc.dests))
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: err = %v, want it to contain %q", tc.name, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "secret") {
			t.Errorf("%s: the error shows a secret: %v", tc.name, err)
		}
	}
}

// One CloudZero connection spelt two ways is still one connection.
func TestSharedTargetSpellingsAreRefused(t *testing.T) {
	t.Setenv("UF_TEST_CZ_KEY", "cz-secret-1")
	cz := func(name, base string) string {
		s := "  - {name: " + name + ", type: cloudzero, feeds: [f-" + name + "], settings: {connection_id: c1, api_key: {env: UF_TEST_CZ_KEY}"
		if base != "" {
			s += ", base_url: '" + base + "'"
		}
		return s + "}}\n"
	}
	for _, tc := range []struct{ a, b string }{
		{"http://127.0.0.1:9", "HTTP://127.0.0.1:9"},
		{"https://api.cloudzero.com", ""},
		{"https://api.cloudzero.com:443", ""},
		{"https://API.cloudzero.com/", "https://api.cloudzero.com"},
		{"http://127.0.0.1:80", "http://127.0.0.1"},
	} {
		_, err := Parse([]byte("nats: {data_dir: /tmp/x}\ndestinations:\n" + cz("a", tc.a) + cz("b", tc.b)))
		if err == nil || !strings.Contains(err.Error(), "writes to the same CloudZero connection c1 as destinations[0](a)") {
			t.Errorf("%q and %q: err = %v, want the shared connection refused", tc.a, tc.b, err)
		}
	}
}

// Values that decode but cannot work are refused with their key, and a
// password inside a URL is never printed.
func TestParseRefusesImpossibleValues(t *testing.T) {
	t.Setenv("UF_TEST_HOOK_TOKEN", "tok-123")
	for _, tc := range []struct{ name, from, to, want string }{
		{"workers 0", "feeds: [cloud]", "feeds: [cloud]\n    workers: 0", "destinations[0].workers (line 8): 0: want 1 to 256"},
		{"retry max below initial", "flush: {max_delay: 5s}", "flush: {max_delay: 5s}\n    retry: {initial: 10s, max: 1s}", "destinations[0](hook).retry.max: 1s is below retry.initial 10s"},
		{"http timeout above lease", "flush: {max_delay: 5s}", "flush: {max_delay: 5s}\n    http_timeout: 5m", "destinations[0](hook).http_timeout: 5m0s is above streams.lease_ttl 40s"},
		{"http timeout above a set lease", "nats:", "streams: {lease_ttl: 30s}\nnats:", ""},
		{"password in the nats url", "data_dir: /tmp/x", "url: nats://alice:hunter2-pw@127.0.0.1:4222", "nats.url (line 3): the URL carries credentials"},
		{"password in a cluster url list", "data_dir: /tmp/x", "url: 'nats://127.0.0.1:4222,nats://bob:hunter2-pw@127.0.0.2:4222'", "nats.url (line 3): the URL carries credentials"},
		{"password in a destination url", "http://127.0.0.1:9/ingest", "https://alice:hunter2-pw@127.0.0.1:9/ingest", "destinations[0].settings.url (line 10): the URL carries credentials"},
	} {
		src := strings.Replace(goodConfig, tc.from, tc.to, 1)
		_, err := Parse([]byte(src))
		if tc.name == "http timeout above a set lease" {
			src = strings.Replace(src, "flush: {max_delay: 5s}", "flush: {max_delay: 5s}\n    http_timeout: 40s", 1)
			_, err = Parse([]byte(src))
			if err == nil || !strings.Contains(err.Error(), "http_timeout: 40s is above streams.lease_ttl 30s") {
				t.Errorf("%s: err = %v", tc.name, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v\nwant it to contain %q", tc.name, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "hunter2") {
			t.Errorf("%s: the error shows the password: %v", tc.name, err)
		}
	}
}

func TestSourcesTakePublicKeysOnly(t *testing.T) {
	t.Setenv("UF_TEST_HOOK_TOKEN", "tok-123")
	const pub = "UDXU4RCSJNZOIQHZNWXHXORDPRTGNJAHAHFRGZNEEJCPQTT2M7NLCNF4"
	cfg, err := Parse([]byte(goodConfig + "sources:\n  team-a: [" + pub + "]\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Sources["team-a"]; len(got) != 1 || got[0] != pub {
		t.Fatalf("sources %v", cfg.Sources)
	}
	for _, b := range cfg.built { // the workers get the keys, or they bind nothing
		if got := b.opts.SourceKeys["team-a"]; len(got) != 1 || got[0] != pub {
			t.Fatalf("destination %s: pool options carry sources %v", b.dest.Name(), b.opts.SourceKeys)
		}
	}
	if len(cfg.built) == 0 {
		t.Fatal("no destination built")
	}
	_, err = Parse([]byte(goodConfig + "sources:\n  team-a: [SUAMLK2ZNL35WSMW37E7UD4VZ7ELPKW7DHC3BWBSD2GCZ7IUQQXZIORRBU]\n"))
	if err == nil || !strings.Contains(err.Error(), "team-a[0]: not a public user nkey") || strings.Contains(err.Error(), "SUAM") {
		t.Fatalf("a seed in sources: %v", err)
	}
}

// /metrics and /readyz are unauthenticated: every interface must be asked
// for by name.
func TestMetricsListenIsLoopbackUnlessExposedByName(t *testing.T) {
	t.Setenv("UF_TEST_HOOK_TOKEN", "tok-123")
	for listen, want := range map[string]string{
		":9090":          `worker.metrics.listen: ":9090" listens on every interface, unauthenticated: write 127.0.0.1:9090 for this host only, or 0.0.0.0:9090 to expose it on purpose`,
		"127.0.0.1:9090": "",
		"0.0.0.0:9090":   "",
		"[::1]:9090":     "",
		"9090":           "want host:port",
	} {
		_, err := Parse([]byte(goodConfig + "worker: {metrics: {listen: \"" + listen + "\"}}\n"))
		switch {
		case want == "" && err != nil:
			t.Errorf("%s: %v", listen, err)
		case want != "" && (err == nil || !strings.Contains(err.Error(), want)):
			t.Errorf("%s: err = %v, want %q", listen, err, want)
		}
	}
}

// worker.newer_schema_max_hold reaches every pool (issue 12 item 3: how
// long a newer-schema part may hold its unit is the operator's choice);
// below a minute it is refused by its key.
func TestNewerSchemaMaxHoldReachesThePools(t *testing.T) {
	t.Setenv("UF_TEST_HOOK_TOKEN", "tok-123")
	cfg, err := Parse([]byte(goodConfig + "worker: {newer_schema_max_hold: 2h}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.built) == 0 {
		t.Fatal("no destination built")
	}
	for _, b := range cfg.built {
		if got := b.opts.NewerSchemaMaxHold; got != 2*time.Hour {
			t.Fatalf("destination %s: NewerSchemaMaxHold %s, want 2h", b.dest.Name(), got)
		}
	}
	_, err = Parse([]byte(goodConfig + "worker: {newer_schema_max_hold: 5s}\n"))
	if err == nil || !strings.Contains(err.Error(), "worker.newer_schema_max_hold: 5s is too short") {
		t.Fatalf("a 5s hold: err = %v", err)
	}
}
