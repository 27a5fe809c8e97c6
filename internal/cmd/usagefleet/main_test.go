package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/usagefleet/usagefleet/internal/bench"
)

// TestMain lets the test binary be the bench's worker child too, as main
// does for the binary.
func TestMain(m *testing.M) {
	bench.MaybeChild()
	os.Exit(m.Run())
}

func TestCommands(t *testing.T) {
	for name, tc := range map[string]struct {
		args []string
		code int
		want string
	}{
		"none":              {nil, 2, "usagefleet demo [flags]"},
		"unknown":           {[]string{"run"}, 2, `unknown command "run"`},
		"a bad flag":        {[]string{"demo", "--nope"}, 2, "flag provided but not defined: -nope"},
		"a bad bench dest":  {[]string{"bench", "--records", "10", "--batch", "10", "--dest", "stripe"}, 1, `usagefleet bench: --dest "stripe": want cloudzero or webhook`},
		"a bad bench delay": {[]string{"bench", "--delay", "-1ms"}, 1, "usagefleet bench: --delay -1ms"},
		"a bad bench mode":  {[]string{"bench", "--records", "10", "--batch", "10", "--mode", "soak"}, 1, `usagefleet bench: --mode "soak": want all, publish, raw or drain`},
	} {
		t.Run(name, func(t *testing.T) {
			var out, errb bytes.Buffer
			if code := run(context.Background(), tc.args, &out, &errb); code != tc.code || !strings.Contains(errb.String(), tc.want) {
				t.Errorf("exit %d, stderr %q; want exit %d and %q", code, errb.String(), tc.code, tc.want)
			}
		})
	}
}

// TestBenchIsExact runs a small bench end to end into each destination
// (embedded NATS, the sandbox, a pool) and reads its JSON line: it figures
// nothing about speed, only that the command drains every record exactly.
func TestBenchIsExact(t *testing.T) {
	for _, dest := range []string{"cloudzero", "webhook"} {
		t.Run(dest, func(t *testing.T) {
			var out, errb bytes.Buffer
			code := run(context.Background(), []string{"bench", "--dest", dest, "--records", "2500", "--batch", "500", "--hours", "3", "--json"}, &out, &errb)
			if code != 0 {
				t.Fatalf("exit %d; stderr:\n%s", code, errb.String())
			}
			var r struct {
				Records     int    `json:"records"`
				Destination string `json:"destination"`
				Exact       *bool  `json:"exact"`
				RawExact    *bool  `json:"raw_exact"`
				Detail      string `json:"detail"`
			}
			if err := json.Unmarshal(out.Bytes(), &r); err != nil {
				t.Fatalf("the output is not one JSON line: %v\n%s", err, out.String())
			}
			if r.Records != 2500 || r.Destination != dest || r.Exact == nil || !*r.Exact || r.RawExact == nil || !*r.RawExact {
				t.Errorf("bench: %d records to %s, exact %v, raw exact %v (%s)", r.Records, r.Destination, r.Exact, r.RawExact, r.Detail)
			}
		})
	}
}
