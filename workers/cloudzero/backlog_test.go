package cloudzero

import (
	"net/http/httptest"
	"testing"
	"time"

	sandbox "github.com/usagefleet/usagefleet/internal/sandbox/cloudzero"
	"github.com/usagefleet/usagefleet/internal/usagegen"
	"github.com/usagefleet/usagefleet/workers/conformance"
)

// A backlog stored longer than the quiet period before the pool starts is
// sent as soon as the pool has read it: its units have been quiet since
// they were stored, and the pool does not wait out the quiet period again
// from the moment it read them. Data published while the pool runs still
// waits for it.
func TestBacklogIsSentOnceRead(t *testing.T) {
	s := sandbox.New(sandbox.Config{Connections: map[string]string{testConn: testKey}})
	ts := httptest.NewServer(s.Handler())
	t.Cleanup(ts.Close)
	e := conformance.NewEnv(t, conformance.Harness{Start: func(t *testing.T) conformance.Sandbox { return &confSandbox{s: s, url: ts.URL} }})
	start := time.Date(2024, 8, 1, 0, 0, 0, 0, time.UTC)
	e.Publish("backlog", usagegen.Generate(600, usagegen.Options{Seed: 3, Start: start, Hours: 6}), 100)

	const quiet = 5 * time.Second
	time.Sleep(quiet + 500*time.Millisecond) // the backlog ages
	opts := conformance.FastOptions()
	opts.Feeds = []string{e.Feed}
	opts.Flush.Quiet, opts.Flush.MaxDelay = quiet, 2*quiet
	began := time.Now()
	e.StartPool("a", opts)
	e.WaitExact(quiet)
	if took := time.Since(began); took > quiet/2 {
		t.Fatalf("the backlog took %v to arrive: the pool waited for quiet (%v) again", took, quiet)
	}

	// New data, published while the pool runs, is quiet for no one yet.
	e.Publish("live", usagegen.Generate(50, usagegen.Options{Seed: 4, Start: start.Add(10 * time.Hour), Hours: 1}), 50)
	time.Sleep(2 * time.Second)
	if got := len(s.Hours(testConn)); got != 6 {
		t.Fatalf("the emulator holds %d hours 2s after a live publish with a %v quiet period: live data was sent before it was quiet", got, quiet)
	}
}
