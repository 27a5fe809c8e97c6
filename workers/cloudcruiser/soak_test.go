//go:build soak

package cloudcruiser

// The memory soak: one accounting date of 2,000,000 records (about 1 GB
// of JSON) goes through a worker whose peak memory is measured.
//
//	go test -tags soak -run TestSoakLargeDate -v -timeout 60m ./workers/cloudcruiser/
//
// USAGEFLEET_SOAK_RECORDS changes the record count; USAGEFLEET_SOAK_MAX_RSS_MB
// the bound asserted (default 400). The test process runs NATS, the
// emulator and the publisher; the worker runs in a child process (this
// test binary again, running TestSoakWorkerProcess), so the figures are
// the worker's alone: its peak RSS (VmHWM from /proc/self/status at exit)
// and its peak HeapInuse (runtime.ReadMemStats every 100 ms).

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/usagefleet/usagefleet/internal/broker/natstest"
	"github.com/usagefleet/usagefleet/internal/config"
	sandbox "github.com/usagefleet/usagefleet/internal/sandbox/cloudcruiser"
	"github.com/usagefleet/usagefleet/internal/usagegen"
	"github.com/usagefleet/usagefleet/messages"
	"github.com/usagefleet/usagefleet/producer"
	"github.com/usagefleet/usagefleet/workers"
)

const (
	soakWorkerEnv = "USAGEFLEET_SOAK_WORKER"
	soakNATSEnv   = "USAGEFLEET_SOAK_NATS"
	soakURLEnv    = "USAGEFLEET_SOAK_URL"
	soakFeed      = "soak"
)

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

func TestSoakLargeDate(t *testing.T) {
	if os.Getenv(soakWorkerEnv) != "" {
		t.Skip("in the worker process")
	}
	n := envInt("USAGEFLEET_SOAK_RECORDS", 2_000_000)
	maxRSS := envInt("USAGEFLEET_SOAK_MAX_RSS_MB", 400)
	ns := natstest.Start(t)
	sb := newSandbox(t, sandbox.Config{}, nil)
	prod, err := producer.New(ns.Connect(t), producer.Options{})
	if err != nil {
		t.Fatal(err)
	}

	// Publish the date in batches, generated on the fly; sum as we go.
	day := time.Date(2024, 8, 16, 0, 0, 0, 0, time.UTC)
	var cost, qty messages.Sum
	began := time.Now()
	const per = 20_000
	for i := 0; i < n; i += per {
		recs := usagegen.Generate(min(per, n-i), usagegen.Options{Seed: uint64(i + 1), Start: day, Hours: 24})
		for k := range recs {
			cost.Add(recs[k].BilledCost)
			qty.Add(recs[k].ConsumedQuantity)
		}
		if _, err := prod.Publish(context.Background(), &messages.Batch{ID: fmt.Sprintf("soak-%d", i), Feed: soakFeed, Source: "soak", Records: recs}); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("published %d records for 2024-08-16 in %s", n, time.Since(began).Round(time.Second))

	// The worker, in its own process.
	cmd := exec.Command(os.Args[0], "-test.run=^TestSoakWorkerProcess$", "-test.v", "-test.timeout=0")
	cmd.Env = append(os.Environ(), soakWorkerEnv+"=1", soakNATSEnv+"="+ns.URL, soakURLEnv+"="+sb.ts.URL)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 64)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	began = time.Now()
	deadline := began.Add(40 * time.Minute)
	for {
		if dt := sb.srv.Dates()["2024-08-16"]; dt.Records == n {
			break
		}
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			t.Fatalf("the date did not arrive: %+v", sb.srv.Dates())
		}
		time.Sleep(500 * time.Millisecond)
	}
	took := time.Since(began)
	_ = stdin.Close() // the worker drains and reports
	var report string
	for l := range lines {
		if strings.HasPrefix(l, "SOAK ") {
			report = l
		}
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("worker process: %v", err)
	}
	dt := sb.srv.Dates()["2024-08-16"]
	if !dt.Cost.Equal(cost.Big()) || !dt.Quantity.Equal(qty.Big()) || dt.Uploads != 1 {
		t.Fatalf("the date holds %+v; want cost %s qty %s in one upload", dt, cost.Decimal(), qty.Decimal())
	}
	ups := sb.srv.Uploads()
	t.Logf("delivered in %s: %d records, %d bytes in one upload; exact cost %s quantity %s", took.Round(time.Second), dt.Records, ups[len(ups)-1].Bytes, cost.Decimal(), qty.Decimal())
	t.Logf("worker: %s", report)
	var hwm int
	for _, f := range strings.Fields(report) {
		if v, ok := strings.CutPrefix(f, "vmhwm_kb="); ok {
			hwm, _ = strconv.Atoi(v)
		}
	}
	if hwm == 0 {
		t.Fatalf("no memory report from the worker: %q", report)
	}
	if hwm/1024 > maxRSS {
		t.Fatalf("the worker's peak RSS was %d MB, over %d MB, for a %d-byte date", hwm/1024, maxRSS, ups[len(ups)-1].Bytes)
	}
}

// TestSoakWorkerProcess is the worker of TestSoakLargeDate; it runs only
// in the child process. It runs a pool until its stdin closes, then prints
// its memory figures on a line starting "SOAK ".
func TestSoakWorkerProcess(t *testing.T) {
	if os.Getenv(soakWorkerEnv) == "" {
		t.Skip("run by TestSoakLargeDate")
	}
	nc, err := nats.Connect(os.Getenv(soakNATSEnv))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	d, err := New("soak", Settings{BaseURL: os.Getenv(soakURLEnv), Token: config.NewSecret(testToken)})
	if err != nil {
		t.Fatal(err)
	}
	p, err := workers.NewPool(nc, d, workers.Options{
		Feeds:       []string{soakFeed},
		HTTPTimeout: time.Hour,         // the pool's cap on one request, file included
		LeaseTTL:    natstest.LeaseTTL, // the test server's lease bucket TTL
		Logger:      slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo})),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var peakHeap, peakSys uint64
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			peakHeap = max(peakHeap, ms.HeapInuse)
			peakSys = max(peakSys, ms.Sys)
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	go func() {
		_, _ = bufio.NewReader(os.Stdin).ReadString('\n') // EOF when the parent closes it
		cancel()
	}()
	if err := p.Run(ctx); err != nil {
		t.Fatal(err)
	}
	<-sampled
	st := p.Stats()
	fmt.Printf("SOAK vmhwm_kb=%d peak_heap_inuse_mb=%d peak_sys_mb=%d jobs=%d acked=%d\n",
		vmHWM(), peakHeap>>20, peakSys>>20, st.Jobs, st.Acked)
}

// vmHWM is the process's peak resident set size in kB.
func vmHWM() int {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return -1
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
			return n
		}
	}
	return -1
}
