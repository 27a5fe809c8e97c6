package cloudcruiser

import (
	"context"
	"testing"
	"time"

	"github.com/usagefleet/usagefleet/internal/config"
	sandbox "github.com/usagefleet/usagefleet/internal/sandbox/cloudcruiser"
	"github.com/usagefleet/usagefleet/internal/usagegen"
	"github.com/usagefleet/usagefleet/workers"
	"github.com/usagefleet/usagefleet/workers/conformance"
)

// An upload that outlasts http_timeout is abandoned by the worker, but the
// API goes on with it. The next upload of that date (the job's retry) must
// not reach the API while the abandoned one may still be at work: it waits
// the lease's guard, as another worker would. The soak test saw retries
// overlap a timed-out upload of their date 40 times in 10 minutes, and a
// stale upload applied after a newer one would leave the date older than
// what was acked.
func TestRetryWaitsForAnAbandonedUpload(t *testing.T) {
	sb := startCC(t, "", 0, sandbox.Config{ProcessingDelay: 1500 * time.Millisecond}, nil)
	e := conformance.NewEnv(t, conformance.Harness{Start: func(t *testing.T) conformance.Sandbox { return sb }})
	d := sb.dest(t, Settings{HTTPTimeout: config.Duration(time.Second)})
	d.name = "cc-slow"
	opts := conformance.FastOptions() // retries after 50-400 ms
	opts.Feeds = []string{e.Feed}
	opts.HTTPTimeout = time.Second
	p, err := workers.NewPool(e.NS.Connect(t), d, opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = p.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	e.Publish("slow", usagegen.Generate(50, usagegen.Options{Seed: 3, Start: t0, Hours: 2}), 50)

	// Every upload takes 1.5 s at the API, past the 1 s http_timeout: wait
	// (bounded, 40 s) until a second one has arrived, then no two may
	// have been at the API at once.
	for deadline := time.Now().Add(40 * time.Second); len(sb.srv.Uploads()) < 2; {
		if time.Now().After(deadline) {
			t.Fatalf("%d uploads in 40 s: the retry never came", len(sb.srv.Uploads()))
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(2 * time.Second) // the last one arrived ends at the API
	if n := sb.srv.ConcurrencyViolations(); n != 0 {
		t.Fatalf("%d uploads reached the API while an abandoned upload of their date was still at work", n)
	}
}
