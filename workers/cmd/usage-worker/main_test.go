package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/usagefleet/usagefleet/internal/sandbox/fault"
	sbwebhook "github.com/usagefleet/usagefleet/internal/sandbox/webhook"
	"github.com/usagefleet/usagefleet/internal/usagegen"
	"github.com/usagefleet/usagefleet/messages"
	"github.com/usagefleet/usagefleet/producer"
)

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func writeConfig(t *testing.T, text string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "worker.yaml")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestRunRefusesABadConfig(t *testing.T) {
	t.Setenv("UF_MAIN_TEST_TOKEN", "tok-never-printed")
	var out, errb syncBuffer
	if code := run([]string{"run"}, &out, &errb); code != exitUsage || !strings.Contains(errb.String(), "--config FILE is required") {
		t.Fatalf("run without --config: exit %d, stderr %q", code, errb.String())
	}
	for name, tc := range map[string]struct{ config, want string }{
		"unknown key": {"destinations:\n  - name: hook\n    type: webhook\n    feeds: [cloud]\n    wokers: 2\n    settings: {url: http://127.0.0.1:9/, token: {env: UF_MAIN_TEST_TOKEN}}\n",
			"config: destinations[0].wokers (line 5): unknown key (known: name, type"},
		"missing secret": {"destinations:\n  - name: hook\n    type: webhook\n    feeds: [cloud]\n    settings: {url: http://127.0.0.1:9/, token: {env: UF_MAIN_TEST_UNSET}}\n",
			"config: destinations[0](hook).settings.token: environment variable UF_MAIN_TEST_UNSET is not set"},
		"bad value": {"worker: {drain_timeout: forever}\ndestinations: []\n",
			`config: worker.drain_timeout (line 1): "forever" is not a duration`},
	} {
		t.Run(name, func(t *testing.T) {
			path := writeConfig(t, tc.config)
			var out, errb syncBuffer
			code := run([]string{"run", "--config", path}, &out, &errb)
			if code != 1 {
				t.Errorf("exit %d, want 1", code)
			}
			if want := "usage-worker: " + path + ": " + tc.want; !strings.HasPrefix(errb.String(), want) {
				t.Errorf("stderr %q\nwant it to start %q", errb.String(), want)
			}
			if strings.Contains(errb.String(), "tok-never-printed") {
				t.Errorf("the secret is in the output: %s", errb.String())
			}
		})
	}
}

// TestRunServesHealthAndDrains runs the worker command as a process would
// (embedded NATS, a webhook destination, the metrics listener), checks
// /healthz, /readyz and /metrics, makes the destination pause on refused
// credentials (readyz must say so), checks the JSON logs carry no secret,
// and stops it as SIGTERM does.
func TestRunServesHealthAndDrains(t *testing.T) {
	const token = "wrong-token-never-logged"
	t.Setenv("UF_MAIN_TEST_TOKEN", token)
	sb := sbwebhook.New(sbwebhook.Config{Token: "the-right-one"})
	// One 503 first: "delivery failed, will retry" is logged too.
	sb.Faults().Set(fault.Rule{Kind: fault.Status, Code: 503, Count: 1, RetryAfter: "1"})
	srv := httptest.NewServer(sb.Handler())
	defer srv.Close()
	natsPort, metricsPort := freePort(t), freePort(t)
	path := writeConfig(t, fmt.Sprintf(`
nats:
  data_dir: %q
  port: %d
streams: {lease_ttl: 10s}
worker:
  log_format: json
  log_level: debug
  drain_timeout: 5s
  metrics: {listen: "127.0.0.1:%d"}
destinations:
  - name: hook
    type: webhook
    feeds: [cloud]
    pause_probe: 1s
    settings:
      url: %s/ingest
      token: {env: UF_MAIN_TEST_TOKEN}
`, filepath.Join(t.TempDir(), "nats"), natsPort, metricsPort, srv.URL))

	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	var logs syncBuffer
	exit := make(chan int, 1)
	go func() { exit <- cmdRun(ctx, []string{"--config", path}, &logs) }()

	base := fmt.Sprintf("http://127.0.0.1:%d", metricsPort)
	get := httpGetter(base)
	waitFor := pollUntil(t, 30*time.Second, &logs)
	waitFor("/healthz", func() bool { c, _ := get("/healthz"); return c == 200 })
	waitFor("/readyz", func() bool { c, _ := get("/readyz"); return c == 200 })

	nc, err := nats.Connect(fmt.Sprintf("nats://127.0.0.1:%d", natsPort))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	prod, err := producer.New(nc, producer.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := prod.Publish(ctx, &messages.Batch{ID: "main-1", Feed: "cloud", Source: "svc", Records: usagegen.Generate(50, usagegen.Options{Seed: 1, Hours: 1})}); err != nil {
		t.Fatal(err)
	}

	// The receiver refuses the token: the destination pauses, and the
	// process says it is not ready, and why.
	var body string
	waitFor("/readyz to report the pause", func() bool {
		var c int
		c, body = get("/readyz")
		return c == http.StatusServiceUnavailable
	})
	if !strings.Contains(body, "destination hook paused") {
		t.Errorf("/readyz body %q does not name the paused destination", body)
	}
	_, metrics := get("/metrics")
	for _, want := range []string{`usagefleet_destination_paused{destination="hook"`, `usagefleet_records_in_total{destination="hook"`, `usagefleet_uploads_total{destination="hook"`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if st := sb.Stats(); st.Records != 0 {
		t.Errorf("the receiver applied %d records with a refused token", st.Records)
	}

	stop() // as SIGTERM does
	select {
	case code := <-exit:
		if code != 0 {
			t.Errorf("exit %d after the drain, want 0; logs:\n%s", code, logs.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the worker did not stop within 30s of SIGTERM")
	}

	text := logs.String()
	if strings.Contains(text, token) {
		t.Errorf("the token is in the logs:\n%s", text)
	}
	var paused, drained, retried bool
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		var rec map[string]any
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			t.Errorf("log line is not JSON: %q", sc.Text())
			continue
		}
		if k := duplicateKey(sc.Bytes()); k != "" {
			t.Errorf("key %q appears twice in a log line: %s", k, sc.Text())
		}
		for _, k := range []string{"retry_in", "probe_in", "timeout"} {
			if v, ok := rec[k]; ok {
				if _, isText := v.(string); !isText {
					t.Errorf("%s is written as %v, not as a duration: %s", k, v, sc.Text())
				}
			}
		}
		msg, _ := rec["msg"].(string)
		if strings.HasPrefix(msg, "DESTINATION PAUSED") {
			paused = true
			if _, ok := rec["trace_id"]; !ok {
				t.Errorf("the pause is logged without a trace id: %s", sc.Text())
			}
		}
		drained = drained || msg == "drained and stopped"
		retried = retried || msg == "delivery failed, will retry"
	}
	if !paused || !drained || !retried {
		t.Errorf("logs lack the pause (%v), the drain (%v) or the retry (%v):\n%s", paused, drained, retried, text)
	}
}

// duplicateKey returns a key that appears twice in one JSON object of
// line (at any depth), or "".
func duplicateKey(line []byte) string {
	dec := json.NewDecoder(bytes.NewReader(line))
	type obj struct {
		keys     map[string]bool
		wantsKey bool
	}
	var stack []*obj
	for {
		tok, err := dec.Token()
		if err != nil {
			return ""
		}
		top := func() *obj {
			if len(stack) == 0 {
				return nil
			}
			return stack[len(stack)-1]
		}
		switch v := tok.(type) {
		case json.Delim:
			switch v {
			case '{':
				if o := top(); o != nil {
					o.wantsKey = true // the object is the value of a key
				}
				stack = append(stack, &obj{keys: map[string]bool{}, wantsKey: true})
				continue
			case '[':
				stack = append(stack, nil)
				continue
			case '}', ']':
				stack = stack[:len(stack)-1]
			}
		case string:
			if o := top(); o != nil && o.wantsKey {
				if o.keys[v] {
					return v
				}
				o.keys[v] = true
				o.wantsKey = false
				continue
			}
		}
		if o := top(); o != nil {
			o.wantsKey = true // a value was read: the next string is a key
		}
	}
}

// httpGetter GETs base+path and returns the status and body (0 and the
// error's text when the request fails).
func httpGetter(base string) func(path string) (int, string) {
	return func(p string) (int, string) {
		resp, err := http.Get(base + p)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
}

// pollUntil returns a wait that checks cond every 50 ms and fails the test
// with the worker's logs after timeout.
func pollUntil(t *testing.T, timeout time.Duration, logs *syncBuffer) func(what string, cond func() bool) {
	return func(what string, cond func() bool) {
		t.Helper()
		for deadline := time.Now().Add(timeout); !cond(); time.Sleep(50 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s; logs:\n%s", what, logs.String())
			}
		}
	}
}
