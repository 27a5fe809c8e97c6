package webhook_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	tracenoop "go.opentelemetry.io/otel/trace/noop"
	"go.yaml.in/yaml/v3"

	"github.com/usagefleet/usagefleet/internal/broker/natstest"
	"github.com/usagefleet/usagefleet/internal/config"
	"github.com/usagefleet/usagefleet/internal/fleet"
	sbwebhook "github.com/usagefleet/usagefleet/internal/sandbox/webhook"
	"github.com/usagefleet/usagefleet/internal/usagegen"
	"github.com/usagefleet/usagefleet/messages"
	"github.com/usagefleet/usagefleet/workers"
	"github.com/usagefleet/usagefleet/workers/webhook"
)

// The credentials of these tests: distinctive, so finding one anywhere is
// a leak and nothing else.
const (
	hdrAPIKey  = "ak-5b1e0c7d93f24a68"
	hdrFileKey = "sig-0d9c8b7a6f5e4d3c"
	hdrToken   = "tok-7c2a9e41d08b"
)

// buildFromYAML builds a webhook destination from a `settings:` section
// through the registered factory, as the fleet does.
func buildFromYAML(t *testing.T, settings string) (workers.Destination, error) {
	t.Helper()
	var n yaml.Node
	if err := yaml.Unmarshal([]byte(settings), &n); err != nil {
		t.Fatal(err)
	}
	f, ok := workers.Lookup("webhook")
	if !ok {
		t.Fatal("webhook is not registered")
	}
	return f("hook", n.Content[0], "destinations[0](hook).settings")
}

// A header value is a plain string or {env|file}; a secret one that cannot
// be read stops the start with the header's key, and no error ever holds a
// secret's value.
func TestHeaderSecretsConfigErrorsNameTheKey(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty")
	twoLines := filepath.Join(dir, "two-lines")
	os.WriteFile(empty, []byte("\n"), 0o600)
	os.WriteFile(twoLines, []byte(hdrFileKey+"\n"+hdrAPIKey+"\n"), 0o600)
	t.Setenv("UF_TEST_HOOK_API_KEY", hdrAPIKey)
	t.Setenv("UF_TEST_HOOK_TOKEN", hdrToken)
	const base = `
nats:
  data_dir: /tmp/x
destinations:
  - name: hook
    type: webhook
    feeds: [cloud]
    settings:
      url: http://127.0.0.1:9/ingest
      token: {env: UF_TEST_HOOK_TOKEN}
      headers:
        X-Tenant: acme
`
	tests := []struct{ name, headers, want string }{
		{"env not set", "X-Api-Key: {env: UF_TEST_HOOK_MISSING}",
			"config: destinations[0](hook).settings.headers.X-Api-Key: environment variable UF_TEST_HOOK_MISSING is not set"},
		{"no such file", "X-Api-Key: {file: " + filepath.Join(dir, "nope") + "}",
			"config: destinations[0](hook).settings.headers.X-Api-Key: reading secret file: "},
		{"empty file", "X-Api-Key: {file: " + empty + "}",
			"config: destinations[0](hook).settings.headers.X-Api-Key: secret file " + empty + " is empty"},
		{"env and file", "X-Api-Key: {env: UF_TEST_HOOK_API_KEY, file: " + empty + "}",
			"config: destinations[0](hook).settings.headers.X-Api-Key: set env or file, not both"},
		{"neither", "X-Api-Key: {}",
			"config: destinations[0](hook).settings.headers.X-Api-Key: required: set env (a variable name) or file (a path)"},
		{"unknown secret key", "X-Api-Key: {env: UF_TEST_HOOK_API_KEY, value: " + hdrAPIKey + "}",
			`config: destinations[0](hook).settings.headers.X-Api-Key (line 13): a secret takes only env or file, not "value"`},
		{"a list", "X-Api-Key: [" + hdrAPIKey + "]",
			"config: destinations[0](hook).settings.headers.X-Api-Key (line 13): a header value is a string, or a secret written {env: VARIABLE} or {file: PATH}"},
		{"line break in the secret", "X-Api-Key: {file: " + twoLines + "}",
			"config: destinations[0](hook).settings.headers.X-Api-Key: the secret's value holds a line break or a control character (the value is not shown)"},
		{"twice", "x-tenant: {env: UF_TEST_HOOK_API_KEY}",
			`config: destinations[0](hook).settings.headers.x-tenant: the header is set twice (as "X-Tenant" and "x-tenant")`},
		{"beside the token", "Authorization: {env: UF_TEST_HOOK_API_KEY}",
			"config: destinations[0](hook).settings.headers.Authorization: token already sets Authorization: set one of them"},
		{"bad name", `"X Api Key": {env: UF_TEST_HOOK_API_KEY}`,
			`config: destinations[0](hook).settings.headers.X Api Key: "X Api Key" is not a valid header name`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := fleet.Parse([]byte(base + "        " + tc.headers + "\n"))
			if err == nil {
				t.Fatal("accepted")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error\n  %v\nwant it to contain\n  %s", err, tc.want)
			}
			for _, v := range []string{hdrAPIKey, hdrFileKey, hdrToken} {
				if strings.Contains(err.Error(), v) {
					t.Fatalf("the error shows a secret: %v", err)
				}
			}
		})
	}
	// And the good form starts.
	if _, err := fleet.Parse([]byte(base + "        X-Api-Key: {env: UF_TEST_HOOK_API_KEY}\n")); err != nil {
		t.Fatal(err)
	}
}

// lockedBuffer is a log sink shared by the pool's goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Secret header values from env and file go with every request, beside the
// plain ones, and appear nowhere else: not in the destination's printed
// form, not in the logs (where a receiver that echoes them in a 401 and a
// 500 answer puts them in the pause and retry reasons), not in any span.
func TestHeaderSecretsSentAndNeverShown(t *testing.T) {
	keyFile := filepath.Join(t.TempDir(), "signing-key")
	if err := os.WriteFile(keyFile, []byte(hdrFileKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("UF_TEST_HOOK_API_KEY", hdrAPIKey)
	t.Setenv("UF_TEST_HOOK_TOKEN", hdrToken)

	// Every span of the pool, its uploads' HTTP client spans included.
	spans := tracetest.NewSpanRecorder()
	otel.SetTracerProvider(sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans)))
	t.Cleanup(func() { otel.SetTracerProvider(tracenoop.NewTracerProvider()) })

	// The receiver: the first request is refused 401, the second answered
	// 500, each echoing the headers it got; then the sandbox takes them.
	var mu sync.Mutex
	var got []http.Header
	f := fixtureWith(t, sbwebhook.Config{MaxBodyBytes: bodyLimit, Token: hdrToken}, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			got = append(got, r.Header.Clone())
			n := len(got)
			mu.Unlock()
			echo := fmt.Sprintf(`{"error":"refused key %s with signature %s and %s"}`, r.Header.Get("X-Api-Key"), r.Header.Get("X-Signature-Key"), r.Header.Get("Authorization"))
			switch n {
			case 1:
				http.Error(w, echo, http.StatusUnauthorized)
			case 2:
				http.Error(w, echo, http.StatusInternalServerError)
			default:
				h.ServeHTTP(w, r)
			}
		})
	})
	dest, err := buildFromYAML(t, fmt.Sprintf(`
url: %s/ingest
max_body_bytes: %d
token: {env: UF_TEST_HOOK_TOKEN}
headers:
  X-Tenant: acme
  X-Api-Key: {env: UF_TEST_HOOK_API_KEY}
  X-Signature-Key: {file: %s}
`, f.srv.URL, bodyLimit, keyFile))
	if err != nil {
		t.Fatal(err)
	}
	printed := fmt.Sprintf("%v %+v %#v", dest, dest, dest)

	var logs lockedBuffer
	logger := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	pool, err := workers.NewPool(f.ns.Connect(t), dest, workers.Options{
		Feeds: []string{"cloud"}, LeaseTTL: natstest.LeaseTTL, Logger: logger,
		PauseProbe: 200 * time.Millisecond, Retry: workers.RetryPolicy{Initial: 50 * time.Millisecond, Max: 200 * time.Millisecond},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); pool.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	recs := usagegen.Generate(300, usagegen.Options{Seed: 31, Hours: 1})
	var want messages.Sum
	for i := range recs {
		want.Add(recs[i].BilledCost)
	}
	res, err := f.prod.Publish(context.Background(), &messages.Batch{ID: "secret-headers", Feed: "cloud", Source: "gen", Records: recs})
	if err != nil {
		t.Fatal(err)
	}
	wctx, wcancel := context.WithTimeout(context.Background(), time.Minute)
	defer wcancel()
	sums, err := f.prod.Wait(wctx, res, []string{"hook"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if s := sums["hook"]; s.Records != len(recs) || s.Rejected != 0 || !s.Cost.Equal(want.Decimal()) {
		t.Fatalf("summary %+v; want %d records costing %s", s, len(recs), want.Decimal())
	}

	// Sent: every request carries every header, secret or not.
	mu.Lock()
	reqs := append([]http.Header(nil), got...)
	mu.Unlock()
	if len(reqs) < 3 {
		t.Fatalf("%d requests: the refused ones were not retried", len(reqs))
	}
	for i, h := range reqs {
		if h.Get("X-Api-Key") != hdrAPIKey || h.Get("X-Signature-Key") != hdrFileKey || h.Get("X-Tenant") != "acme" || h.Get("Authorization") != "Bearer "+hdrToken {
			t.Fatalf("request %d: X-Api-Key %q, X-Signature-Key %q, X-Tenant %q, Authorization %q", i, h.Get("X-Api-Key"), h.Get("X-Signature-Key"), h.Get("X-Tenant"), h.Get("Authorization"))
		}
	}

	// Shown nowhere.
	cancel()
	<-done
	log := logs.String()
	if !strings.Contains(log, "DESTINATION PAUSED") || !strings.Contains(log, "delivery failed, will retry") {
		t.Fatalf("the 401 and the 500 were not logged: the check proved nothing\n%s", log)
	}
	if !strings.Contains(log, "refused key [redacted] with signature [redacted] and Bearer [redacted]") {
		t.Fatalf("the receiver's echo is not in the logs, redacted:\n%s", log)
	}
	var spanText strings.Builder
	httpSpans := 0
	for _, s := range spans.Ended() {
		fmt.Fprintf(&spanText, "%s %s %v\n", s.Name(), s.Status().Description, s.Attributes())
		for _, a := range s.Attributes() {
			if a.Key == attribute.Key("http.request.method") {
				httpSpans++
			}
		}
		for _, ev := range s.Events() {
			fmt.Fprintf(&spanText, "  %s %v\n", ev.Name, ev.Attributes)
		}
	}
	if httpSpans < 3 {
		t.Fatalf("%d HTTP client spans: the trace check proved nothing\n%s", httpSpans, spanText.String())
	}
	for where, text := range map[string]string{"the printed destination": printed, "the logs": log, "the spans": spanText.String()} {
		for _, v := range []string{hdrAPIKey, hdrFileKey, hdrToken} {
			if strings.Contains(text, v) {
				t.Errorf("%s show a secret (%.6s...):\n%s", where, v, text)
			}
		}
	}
}

// In code, SecretHeaders take config.Secret values like Token; the
// caller's settings are left as they were.
func TestSecretHeadersInCode(t *testing.T) {
	s := webhook.Settings{URL: "http://127.0.0.1:9/ingest", SecretHeaders: map[string]config.Secret{"X-Api-Key": configSecret(hdrAPIKey)}}
	d, err := webhook.New("hook", s, "test")
	if err != nil {
		t.Fatal(err)
	}
	if p := fmt.Sprintf("%v %+v %#v %v", d, d, d, s); strings.Contains(p, hdrAPIKey) {
		t.Fatalf("printed: %s", p)
	}
	s.SecretHeaders["X-Other"] = configSecret("")
	if _, err := webhook.New("hook", s, "test"); err == nil || !strings.Contains(err.Error(), "config: test.headers.X-Other: required") {
		t.Fatalf("an empty secret header: %v", err)
	}
}
