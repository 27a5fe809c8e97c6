package cloudzero_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/usagefleet/usagefleet/internal/natsutil/natstest"
	sbcz "github.com/usagefleet/usagefleet/internal/sandbox/cloudzero"
	"github.com/usagefleet/usagefleet/internal/usagegen"
	"github.com/usagefleet/usagefleet/messages"
	"github.com/usagefleet/usagefleet/producer"
)

// A real usage-worker process is killed with SIGKILL in the middle of a
// multi-part hour (replace_hourly, then sum parts), and restarted. Every
// hour at the sandbox must then hold exactly the hour's published records.
func TestSIGKILLMidMultiPartHour(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the usage-worker binary")
	}
	bin := natstest.WorkerBinary(t)
	ns := natstest.Start(t)
	const conn, key = "kill-conn", "kill-key-7f3a"
	sb := sbcz.New(sbcz.Config{Connections: map[string]string{conn: key}, ProcessingDelay: 20 * time.Millisecond})
	srv := httptest.NewServer(sb.Handler())
	defer srv.Close()

	cfg := filepath.Join(t.TempDir(), "worker.yaml")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`
nats: {url: %q}
streams: {lease_ttl: 10s}
worker: {drain_timeout: 5s, log_format: json}
destinations:
  - name: cz
    type: cloudzero
    feeds: [kill]
    flush: {max_delay: 300ms, quiet: 100ms}
    retry: {initial: 50ms, max: 500ms}
    settings:
      base_url: %s
      connection_id: %s
      api_key: {env: UF_TEST_CZ_KEY}
      max_body_bytes: 40000
`, ns.URL, srv.URL, conn)), 0o644)
	start := func() *exec.Cmd {
		cmd := exec.Command(bin, "run", "--config", cfg)
		cmd.Env = append(os.Environ(), "UF_TEST_CZ_KEY="+key)
		logf, _ := os.Create(filepath.Join(t.TempDir(), "worker.log"))
		cmd.Stdout, cmd.Stderr = logf, logf
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return cmd
	}

	// 12 hours of 400 records: ~250 KB of CBF each, so 6+ requests an hour.
	recs := usagegen.Generate(4800, usagegen.Options{Seed: 77, Start: time.Date(2024, 9, 3, 0, 0, 0, 0, time.UTC), Hours: 12})
	prod, err := producer.New(ns.Connect(t), producer.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := prod.Publish(context.Background(), &messages.Batch{ID: "kill-1", Feed: "kill", Source: "t", Records: recs}); err != nil {
		t.Fatal(err)
	}

	w1 := start()
	// Kill it once a sum part went out: an hour is half sent.
	deadline := time.Now().Add(60 * time.Second)
	for {
		n := 0
		for _, r := range sb.Requests(conn) {
			if r.Operation == sbcz.OpSum && r.Status == 200 {
				n++
			}
		}
		if n >= 1 {
			break
		}
		if time.Now().After(deadline) {
			w1.Process.Kill()
			t.Fatal("no multi-part hour was started")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := w1.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	w1.Wait()
	killedAt := len(sb.Requests(conn))

	w2 := start()
	want := map[time.Time][2]any{}
	perHour := map[time.Time]*messages.Sum{}
	count := map[time.Time]int{}
	for i := range recs {
		h := recs[i].ChargePeriodStart.Truncate(time.Hour)
		if perHour[h] == nil {
			perHour[h] = &messages.Sum{}
		}
		perHour[h].Add(recs[i].BilledCost)
		count[h]++
	}
	for h, s := range perHour {
		want[h] = [2]any{count[h], s.Decimal()}
	}
	exact := func() string {
		got := sb.Hours(conn)
		for h, w := range want {
			g := got[h]
			if g.Rows != w[0].(int) || !messages.FromBig(g.Cost).Equal(w[1].(messages.Decimal)) {
				return fmt.Sprintf("hour %s: have %d rows cost %s, want %d cost %s", h.Format(time.RFC3339), g.Rows, g.Cost, w[0], w[1])
			}
		}
		if len(got) != len(want) {
			return fmt.Sprintf("%d hours at the sandbox, want %d", len(got), len(want))
		}
		return ""
	}
	deadline = time.Now().Add(90 * time.Second)
	for {
		d := exact()
		if d == "" {
			break
		}
		if time.Now().After(deadline) {
			w2.Process.Kill()
			t.Fatalf("after SIGKILL and restart: %s", d)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if len(sb.Requests(conn)) <= killedAt {
		t.Fatal("the restarted worker sent nothing: the check proved nothing")
	}
	if c, k := sb.Violations(); c != 0 || k != 0 {
		t.Fatalf("violations: %d concurrent requests, %d idempotency keys reused for another body", c, k)
	}
	// SIGTERM drains and exits cleanly.
	w2.Process.Signal(syscall.SIGTERM)
	if err := w2.Wait(); err != nil {
		t.Fatalf("worker did not exit cleanly on SIGTERM: %v", err)
	}
}
