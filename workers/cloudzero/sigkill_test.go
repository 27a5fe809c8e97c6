package cloudzero_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/usagefleet/usagefleet/internal/broker/natstest"
	sbcz "github.com/usagefleet/usagefleet/internal/sandbox/cloudzero"
	"github.com/usagefleet/usagefleet/internal/sandbox/fault"
	"github.com/usagefleet/usagefleet/internal/usagegen"
	"github.com/usagefleet/usagefleet/messages"
	"github.com/usagefleet/usagefleet/producer"
)

// A real usage-worker process is killed with SIGKILL while one of its
// requests is in flight at the API (held there: the sandbox saw it
// arrive, so the test knows it was sent and not answered), in the middle
// of a multi-part hour (replace_hourly, then sum parts). The API then
// goes on with the request, as a server whose client died may. A second
// worker started at once must leave every hour exactly as published,
// without any request overlapping another at the API.
func TestSIGKILLMidMultiPartHour(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the usage-worker binary")
	}
	// A short lease TTL, request deadline and ack wait: the second worker
	// waits out the dead one's lease, about 10 s.
	r := sigkillRun(t, "streams: {lease_ttl: 10s}", `
    http_timeout: 5s
    ack_wait: 3s
    flush: {max_delay: 300ms, quiet: 100ms}
    retry: {initial: 50ms, max: 500ms}`)
	t.Logf("recovered %s after the kill (lease_ttl 10s, http_timeout 5s, ack_wait 3s)", r.Round(100*time.Millisecond))
}

// BenchmarkSIGKILLRecovery measures crash recovery with the default lease
// TTL, request deadline, ack wait and flush policy: the time from a
// SIGKILL of a worker with a request in flight until a worker started at
// once has left every hour exact. Run it once:
//
//	go test -run '^$' -bench SIGKILLRecovery -benchtime 1x ./workers/cloudzero/
func BenchmarkSIGKILLRecovery(b *testing.B) {
	var total time.Duration
	for i := 0; i < b.N; i++ {
		total += sigkillRun(b, "", "")
	}
	b.ReportMetric(total.Seconds()/float64(b.N), "s/recovery")
}

// sigkillRun publishes 12 multi-request hours, starts a worker, holds one
// of its requests at the API once a sum part went out, SIGKILLs it, lets
// the API finish the request, starts a second worker and waits until every
// hour is exact. It returns the time from the kill to exact. streams is
// the config's streams line, dest extra destination keys.
func sigkillRun(tb testing.TB, streams, dest string) time.Duration {
	bin := natstest.WorkerBinary(tb)
	ns := natstest.Start(tb)
	const conn, key = "kill-conn", "kill-key-7f3a"
	sb := sbcz.New(sbcz.Config{Connections: map[string]string{conn: key}, ProcessingDelay: 20 * time.Millisecond})
	hold := fault.NewHolder(http.MethodPost, "/v2/connections/billing/anycost/")
	srv := httptest.NewServer(hold.Wrap(sb.Handler()))
	defer srv.Close()

	cfg := filepath.Join(tb.TempDir(), "worker.yaml")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`
nats: {url: %q}
%s
worker: {drain_timeout: 5s, log_format: json}
destinations:
  - name: cz
    type: cloudzero
    feeds: [kill]%s
    settings:
      base_url: %s
      connection_id: %s
      api_key: {env: UF_TEST_CZ_KEY}
      max_body_bytes: 40000
`, ns.URL, streams, dest, srv.URL, conn)), 0o644)
	logs := tb.TempDir()
	start := func(name string) *exec.Cmd {
		cmd := exec.Command(bin, "run", "--config", cfg)
		cmd.Env = append(os.Environ(), "UF_TEST_CZ_KEY="+key)
		logf, _ := os.Create(filepath.Join(logs, name+".log"))
		cmd.Stdout, cmd.Stderr = logf, logf
		if err := cmd.Start(); err != nil {
			tb.Fatal(err)
		}
		return cmd
	}

	// 12 hours of 400 records: ~250 KB of CBF each, so 6+ requests an hour.
	recs := usagegen.Generate(4800, usagegen.Options{Seed: 77, Start: time.Date(2024, 9, 3, 0, 0, 0, 0, time.UTC), Hours: 12})
	prod, err := producer.New(ns.Connect(tb), producer.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := prod.Publish(context.Background(), &messages.Batch{ID: "kill-1", Feed: "kill", Source: "t", Records: recs}); err != nil {
		tb.Fatal(err)
	}

	w1 := start("w1")
	defer w1.Process.Kill()
	// Once a sum part went out (an hour is half sent), the next request
	// is held at the API: it is certainly in flight when the kill comes.
	deadline := time.Now().Add(60 * time.Second)
	for !hasSum(sb.Requests(conn)) {
		if time.Now().After(deadline) {
			tb.Fatal("no multi-part hour was started")
		}
		time.Sleep(5 * time.Millisecond)
	}
	hold.HoldNext(1)
	var held *fault.Held
	for held == nil {
		select {
		case hr := <-hold.Arrived():
			if hr.Held() {
				held = hr
				defer held.Drop() // a failure must not leave srv.Close waiting
			}
		case <-time.After(60 * time.Second):
			tb.Fatal("the worker sent nothing more after its first sum part")
		}
	}
	if err := w1.Process.Signal(syscall.SIGKILL); err != nil {
		tb.Fatal(err)
	}
	w1.Wait()
	killed := time.Now()
	before := hold.Seen()
	// The API goes on with the dead worker's request (its body arrived
	// whole or not): whatever it applies, the next worker must mend.
	held.Release()
	<-held.Done()

	w2 := start("w2")
	defer w2.Process.Kill()
	want := hourTotals(recs)
	exact := func() string {
		got := sb.Hours(conn)
		for h, w := range want {
			g := got[h]
			if g.Rows != w.rows || !messages.FromBig(g.Cost).Equal(w.cost) {
				return fmt.Sprintf("hour %s: have %d rows cost %s, want %d cost %s", h.Format(time.RFC3339), g.Rows, g.Cost, w.rows, w.cost)
			}
		}
		if len(got) != len(want) {
			return fmt.Sprintf("%d hours at the sandbox, want %d", len(got), len(want))
		}
		return ""
	}
	deadline = time.Now().Add(3 * time.Minute)
	for {
		d := exact()
		if d == "" {
			break
		}
		if time.Now().After(deadline) {
			tb.Fatalf("after SIGKILL and restart: %s", d)
		}
		time.Sleep(20 * time.Millisecond)
	}
	recovered := time.Since(killed)
	if hold.Seen() <= before {
		tb.Fatal("the restarted worker sent nothing: the check proved nothing")
	}
	if n := hold.Overlaps(); n != 0 {
		tb.Fatalf("%d requests arrived while another was in flight at the API", n)
	}
	if c, k := sb.Violations(); c != 0 || k != 0 {
		tb.Fatalf("violations: %d concurrent requests, %d idempotency keys reused for another body", c, k)
	}
	// SIGTERM drains and exits cleanly.
	w2.Process.Signal(syscall.SIGTERM)
	if err := w2.Wait(); err != nil {
		tb.Fatalf("worker did not exit cleanly on SIGTERM: %v", err)
	}
	return recovered
}

func hasSum(reqs []sbcz.RequestLog) bool {
	for _, r := range reqs {
		if r.Operation == sbcz.OpSum && r.Status == 200 {
			return true
		}
	}
	return false
}

type hourTotal struct {
	rows int
	cost messages.Decimal
}

func hourTotals(recs []messages.UsageRecord) map[time.Time]hourTotal {
	sums := map[time.Time]*messages.Sum{}
	count := map[time.Time]int{}
	for i := range recs {
		h := recs[i].ChargePeriodStart.Truncate(time.Hour)
		if sums[h] == nil {
			sums[h] = &messages.Sum{}
		}
		sums[h].Add(recs[i].BilledCost)
		count[h]++
	}
	out := map[time.Time]hourTotal{}
	for h, s := range sums {
		out[h] = hourTotal{count[h], s.Decimal()}
	}
	return out
}
