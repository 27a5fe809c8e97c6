package cloudzero_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/usagefleet/usagefleet/internal/broker/natstest"
	sbcz "github.com/usagefleet/usagefleet/internal/sandbox/cloudzero"
	"github.com/usagefleet/usagefleet/internal/usagegen"
	"github.com/usagefleet/usagefleet/messages"
	"github.com/usagefleet/usagefleet/producer"
	"github.com/usagefleet/usagefleet/workers"
)

// Two real usage-worker processes share one CloudZero destination (one
// durable consumer, one connection) while data keeps arriving. Each
// reaches the emulator through its own listener, so the test knows both
// sent requests; the emulator holds every POST 20 ms and counts any that
// arrives while another for the connection is in flight. Violations must
// be zero, and every hour must end up exact.
func TestTwoProcessesNeverOverlapOnAConnection(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the usage-worker binary")
	}
	bin := natstest.WorkerBinary(t)
	ns := natstest.Start(t)
	const conn, key = "two-conn", "two-key-51c9"
	sb := sbcz.New(sbcz.Config{Connections: map[string]string{conn: key}, ProcessingDelay: 20 * time.Millisecond})
	var sent [2]atomic.Int64
	front := func(i int) *httptest.Server {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodPost {
				sent[i].Add(1)
			}
			sb.Handler().ServeHTTP(w, r)
		}))
		t.Cleanup(srv.Close)
		return srv
	}

	logDir := t.TempDir()
	logPath := [2]string{filepath.Join(logDir, "worker1.log"), filepath.Join(logDir, "worker2.log")}
	start := func(i int, url string) *exec.Cmd {
		cfg := filepath.Join(t.TempDir(), "worker.yaml")
		if err := os.WriteFile(cfg, []byte(fmt.Sprintf(`
nats: {url: %q}
streams: {lease_ttl: %s}
worker: {drain_timeout: 5s, log_format: json}
destinations:
  - name: cz
    type: cloudzero
    feeds: [two]
    workers: 4
    flush: {max_delay: 200ms, quiet: 50ms}
    retry: {initial: 50ms, max: 500ms}
    settings:
      base_url: %s
      connection_id: %s
      api_key: {env: UF_TEST_CZ_KEY}
      max_body_bytes: 40000
`, ns.URL, natstest.LeaseTTL, url, conn)), 0o644); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(bin, "run", "--config", cfg)
		cmd.Env = append(os.Environ(), "UF_TEST_CZ_KEY="+key)
		logf, err := os.Create(logPath[i])
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { logf.Close() })
		cmd.Stdout, cmd.Stderr = logf, logf
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		return cmd
	}
	w := [2]*exec.Cmd{start(0, front(0).URL), start(1, front(1).URL)}

	prod, err := producer.New(ns.Connect(t), producer.Options{})
	if err != nil {
		t.Fatal(err)
	}
	// Waves over 48 hours, each as many small batches (one part per batch
	// and hour, ~1,000 parts a wave: more than one pull takes), so both
	// processes receive parts and keep taking jobs for the one connection.
	var recs []messages.UsageRecord
	for wave := range 10 {
		batch := usagegen.Generate(1000, usagegen.Options{Seed: uint64(300 + wave), Start: time.Date(2024, 9, 10, 0, 0, 0, 0, time.UTC), Hours: 48})
		for i := 0; i < len(batch); i += 50 {
			b := &messages.Batch{ID: fmt.Sprint("two-", wave, "-", i), Feed: "two", Source: "t", Records: batch[i:min(i+50, len(batch))]}
			if _, err := prod.Publish(context.Background(), b); err != nil {
				t.Fatal(err)
			}
		}
		recs = append(recs, batch...)
		time.Sleep(500 * time.Millisecond)
	}

	type total struct {
		n    int
		cost messages.Sum
	}
	want := map[time.Time]*total{}
	for i := range recs {
		h := recs[i].ChargePeriodStart.UTC().Truncate(time.Hour)
		if want[h] == nil {
			want[h] = &total{}
		}
		want[h].n++
		want[h].cost.Add(recs[i].BilledCost)
	}
	exact := func() string {
		got := sb.Hours(conn)
		for h, w := range want {
			g := got[h]
			if g.Rows != w.n || !messages.FromBig(g.Cost).Equal(w.cost.Decimal()) {
				return fmt.Sprintf("hour %s: have %d rows cost %s, want %d cost %s", h.Format(time.RFC3339), g.Rows, g.Cost, w.n, w.cost.Decimal())
			}
		}
		if len(got) != len(want) {
			return fmt.Sprintf("%d hours at the sandbox, want %d", len(got), len(want))
		}
		return ""
	}
	// Done when every part is acked (each process delivered the parts it
	// received: the second one often only once the first is idle, since
	// the connection's lease serialises them) and every hour is exact.
	js, err := jetstream.New(ns.Connect(t))
	if err != nil {
		t.Fatal(err)
	}
	settled := func() string {
		cons, err := js.Consumer(context.Background(), messages.StreamUsage, workers.ConsumerName("cz"))
		if err != nil {
			return err.Error()
		}
		info, err := cons.Info(context.Background())
		if err != nil {
			return err.Error()
		}
		if info.NumPending != 0 || info.NumAckPending != 0 {
			return fmt.Sprintf("consumer: %d parts not delivered, %d not acked", info.NumPending, info.NumAckPending)
		}
		return exact()
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		if c, _ := sb.Violations(); c != 0 {
			t.Fatalf("%d requests for one connection arrived while another was in flight", c)
		}
		d := settled()
		if d == "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("with two worker processes: %s", d)
		}
		time.Sleep(100 * time.Millisecond)
	}
	a, b := sent[0].Load(), sent[1].Load()
	t.Logf("requests: process 1 sent %d, process 2 sent %d", a, b)
	if a == 0 || b == 0 {
		t.Fatalf("only one process uploaded (%d and %d requests): the check proved nothing", a, b)
	}
	if c, k := sb.Violations(); c != 0 || k != 0 {
		t.Fatalf("violations: %d concurrent requests for one connection, %d idempotency keys reused for another body", c, k)
	}
	for i, cmd := range w {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		if err := cmd.Wait(); err != nil {
			t.Fatalf("worker %d did not exit cleanly on SIGTERM: %v", i+1, err)
		}
		b, err := os.ReadFile(logPath[i])
		if err != nil {
			t.Fatal(err)
		}
		if len(b) == 0 || strings.Contains(string(b), key) {
			t.Fatalf("worker %d's log is empty or holds the API key (%d bytes)", i+1, len(b))
		}
	}
}
