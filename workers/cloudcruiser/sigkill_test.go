package cloudcruiser

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/usagefleet/usagefleet/internal/broker/natstest"
	sandbox "github.com/usagefleet/usagefleet/internal/sandbox/cloudcruiser"
	"github.com/usagefleet/usagefleet/internal/usagegen"
	"github.com/usagefleet/usagefleet/messages"
	"github.com/usagefleet/usagefleet/producer"
)

// A real usage-worker process (type: cloudcruiser, zone offset -07:00) is
// killed with SIGKILL while a date's file is part way through its upload,
// and restarted. Every date at the emulator must then hold exactly the
// records published for it (count, quantity and cost), the restarted
// worker must have uploaded, no two uploads of one date overlapped, and
// the token appears in neither worker's log.
func TestSIGKILLMidUpload(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the usage-worker binary")
	}
	bin := natstest.WorkerBinary(t)
	ns := natstest.Start(t)

	// Until the kill, the emulator reads every body slowly, so an upload is
	// still under way when the worker dies; midway fires once an upload has
	// sent 64 KiB.
	var slow atomic.Bool
	slow.Store(true)
	midway := make(chan struct{})
	var fired atomic.Bool
	sb := newSandbox(t, sandbox.Config{ProcessingDelay: 5 * time.Millisecond}, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if slow.Load() && strings.HasPrefix(r.URL.Path, sandbox.UploadPath) {
				r.Body = &slowBody{r: r.Body, onProgress: func(n int64) {
					if n > 64<<10 && fired.CompareAndSwap(false, true) {
						close(midway)
					}
				}}
			}
			h.ServeHTTP(w, r)
		})
	})

	cfg := filepath.Join(t.TempDir(), "worker.yaml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(`
nats: {url: %q}
streams: {lease_ttl: %s}
worker: {drain_timeout: 5s, log_format: json, log_level: debug}
destinations:
  - name: cc
    type: cloudcruiser
    feeds: [kill]
    flush: {max_delay: 300ms, quiet: 100ms}
    retry: {initial: 50ms, max: 500ms}
    http_timeout: 10s
    settings:
      base_url: %s
      token: {env: UF_TEST_CC_TOKEN}
      zone_offset: "-07:00"
`, ns.URL, natstest.LeaseTTL, sb.ts.URL)), 0o644); err != nil {
		t.Fatal(err)
	}
	logs := t.TempDir()
	start := func(name string) *exec.Cmd {
		cmd := exec.Command(bin, "run", "--config", cfg)
		cmd.Env = append(os.Environ(), "UF_TEST_CC_TOKEN="+testToken)
		logf, err := os.Create(filepath.Join(logs, name+".log"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { logf.Close() })
		cmd.Stdout, cmd.Stderr = logf, logf
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return cmd
	}

	// 72 hours from 2024-08-30T00:00Z: four accounting dates in -07:00,
	// about 1.5 MB of file each.
	recs := usagegen.Generate(9000, usagegen.Options{Seed: 99, Start: t0, Hours: 72})
	prod, err := producer.New(ns.Connect(t), producer.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < len(recs); i += 500 {
		b := &messages.Batch{ID: fmt.Sprint("kill-", i), Feed: "kill", Source: "t", Records: recs[i:min(i+500, len(recs))]}
		if _, err := prod.Publish(context.Background(), b); err != nil {
			t.Fatal(err)
		}
	}
	loc := time.FixedZone("-07:00", -7*3600)
	type tot struct {
		n         int
		qty, cost messages.Sum
	}
	want := map[string]*tot{}
	for i := range recs {
		d := recs[i].ChargePeriodStart.In(loc).Format(time.DateOnly)
		if want[d] == nil {
			want[d] = &tot{}
		}
		want[d].n++
		want[d].qty.Add(recs[i].ConsumedQuantity)
		want[d].cost.Add(recs[i].BilledCost)
	}
	if len(want) != 4 {
		t.Fatalf("the records fall on %d dates, want 4", len(want))
	}

	w1 := start("w1")
	select {
	case <-midway:
	case <-time.After(60 * time.Second):
		_ = w1.Process.Kill()
		t.Fatal("the worker never got an upload under way")
	}
	if err := w1.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = w1.Wait()
	slow.Store(false)
	// Let the emulator see the cut connections.
	deadline := time.Now().Add(10 * time.Second)
	cut := 0
	for {
		cut = 0
		for _, u := range sb.srv.Uploads() {
			if !u.Applied {
				cut++
			}
		}
		if cut > 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if cut == 0 {
		t.Fatal("no upload was cut short by the kill: the check proved nothing")
	}
	killedAt := len(sb.srv.Uploads())

	w2 := start("w2")
	exact := func() string {
		got := sb.srv.Dates()
		for d, w := range want {
			g := got[d]
			if g.Records != w.n || !g.Quantity.Equal(w.qty.Big()) || !g.Cost.Equal(w.cost.Big()) {
				return fmt.Sprintf("date %s: have %d records qty %s cost %s, want %d qty %s cost %s",
					d, g.Records, g.Quantity, g.Cost, w.n, w.qty.Decimal(), w.cost.Decimal())
			}
		}
		if len(got) != len(want) {
			return fmt.Sprintf("%d dates at the emulator, want %d", len(got), len(want))
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
			_ = w2.Process.Kill()
			t.Fatalf("after SIGKILL and restart: %s", d)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if len(sb.srv.Uploads()) <= killedAt {
		t.Fatal("the restarted worker uploaded nothing: the check proved nothing")
	}
	if v := sb.srv.ConcurrencyViolations(); v != 0 {
		t.Fatalf("%d uploads of one date overlapped", v)
	}
	t.Logf("killed with %d uploads logged (%d cut short); %d uploads in all", killedAt, cut, len(sb.srv.Uploads()))
	// SIGTERM drains and exits cleanly.
	_ = w2.Process.Signal(syscall.SIGTERM)
	if err := w2.Wait(); err != nil {
		t.Fatalf("worker did not exit cleanly on SIGTERM: %v", err)
	}
	for _, name := range []string{"w1", "w2"} {
		b, err := os.ReadFile(filepath.Join(logs, name+".log"))
		if err != nil {
			t.Fatal(err)
		}
		if len(b) == 0 {
			t.Fatalf("%s logged nothing", name)
		}
		if strings.Contains(string(b), testToken) {
			t.Fatalf("%s's log holds the token", name)
		}
	}
}
