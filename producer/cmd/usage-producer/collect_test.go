package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestCollectServesHealthAndMetrics runs the collector on its schedule with
// --metrics-listen: /healthz, /readyz and /metrics answer while it runs
// (its platform failing meanwhile), and a signal stops it with status 0.
func TestCollectServesHealthAndMetrics(t *testing.T) {
	n := startNATS(t)
	down := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "down for maintenance", http.StatusServiceUnavailable)
	}))
	defer down.Close()
	t.Setenv("UF_COLLECT_TEST_SECRET", "client-secret-never-logged")
	cfg := write(t, t.TempDir(), "collectors.yaml", fmt.Sprintf(`
nats: {url: %s}
collectors:
  - name: acronis-test
    type: acronis
    feed: msp
    schedule: {interval: 1h, period: day, periods: 1}
    settings:
      base_url: %s
      client_id: test-client
      client_secret: {env: UF_COLLECT_TEST_SECRET}
      tenant_id: aba5581d-dc72-41d7-ba03-c86aae74d158
      kind: usage_daily
`, n.url, down.URL))
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out, errb syncBuffer
	exit := make(chan int, 1)
	go func() {
		exit <- runContext(ctx, []string{"collect", "--config", cfg, "--metrics-listen", addr, "--log-format", "json"}, &out, &errb)
	}()
	get := func(path string) (int, string) {
		resp, err := http.Get("http://" + addr + path)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	for _, path := range []string{"/healthz", "/readyz", "/metrics"} {
		var code int
		var body string
		for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			if code, body = get(path); code == http.StatusOK || time.Now().After(deadline) {
				break
			}
		}
		if code != http.StatusOK {
			t.Fatalf("%s: %d %s\nstderr:\n%s", path, code, body, errb.String())
		}
	}
	cancel() // as SIGTERM does
	select {
	case code := <-exit:
		if code != exitOK {
			t.Errorf("exit %d after the signal, want 0; stderr:\n%s", code, errb.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatal("collect did not stop within 20s of the signal")
	}
	if strings.Contains(errb.String()+out.String(), "client-secret-never-logged") {
		t.Errorf("the client secret is in the output:\n%s", errb.String())
	}
	if !strings.Contains(errb.String(), `"msg":"serving /metrics, /healthz and /readyz"`) {
		t.Errorf("no JSON log line about the listener:\n%s", errb.String())
	}

	// Bad flag values are usage errors.
	for _, args := range [][]string{
		{"collect", "--config", cfg, "--metrics-listen", "9092"},
		{"collect", "--config", cfg, "--log-format", "xml"},
	} {
		if code, _, stderr := cli(t, args...); code != exitUsage || !strings.Contains(stderr, args[3]) {
			t.Errorf("%v: exit %d, stderr %q", args, code, stderr)
		}
	}
}
