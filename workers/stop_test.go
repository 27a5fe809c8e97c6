package workers

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/usagefleet/usagefleet/messages"
)

// flakyAppend is an append destination that answers a transient failure
// with a long Retry-After (fail) or takes every record (count).
type flakyAppend struct {
	fail bool
	mu   sync.Mutex
	got  int
	seen chan struct{}
}

func (d *flakyAppend) Name() string           { return "flaky" }
func (d *flakyAppend) Semantics() Semantics   { return Append }
func (d *flakyAppend) Units(time.Time) []Unit { return nil }
func (d *flakyAppend) LeaseKey(Unit) string   { return "" }
func (d *flakyAppend) Deliver(ctx context.Context, j Job) error {
	select {
	case d.seen <- struct{}{}:
	default:
	}
	if d.fail {
		return &Error{Class: ClassTransient, Status: 503, Message: "busy", RetryAfter: time.Hour}
	}
	n := 0
	err := j.Records(ctx, Unit{}, func(RecordRef, *messages.UsageRecord) error { n++; return nil })
	d.mu.Lock()
	d.got += n
	d.mu.Unlock()
	return err
}

func (d *flakyAppend) records() int { d.mu.Lock(); defer d.mu.Unlock(); return d.got }

// Issue 15 item 5: a stopping worker does not wait its whole drain timeout
// for a job that is only sleeping in backoff; the part is not lost: it is
// handed back unacked and the next worker delivers it.
func TestStopDoesNotWaitForABackoff(t *testing.T) {
	r := newRig(t)
	r.publishPart(t, "b1", []messages.UsageRecord{record(1, "a"), record(2, "b")})
	opts := Options{Feeds: []string{"f"}, Logger: quietLog, DrainTimeout: 10 * time.Minute, AckWait: time.Minute}
	bad := &flakyAppend{fail: true, seen: make(chan struct{}, 1)}
	p, err := NewPool(r.nc, bad, opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	select {
	case <-bad.seen: // the first try failed: the job now sleeps for an hour
	case <-time.After(30 * time.Second):
		t.Fatal("the pool never tried the part")
	}
	waitUntil(t, 10*time.Second, "the failure to be counted", func() bool { return p.Stats().JobFailures > 0 })
	cancel()
	// Bounded: far under the 10-minute drain timeout and the hour of
	// backoff, far over what a stop takes on a loaded machine.
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("Run waited for a job that only sleeps in backoff")
	}
	if p.Stats().Acked != 0 {
		t.Fatalf("the undelivered part was acked: %+v", p.Stats())
	}
	good := &flakyAppend{seen: make(chan struct{}, 1)}
	p2, err := NewPool(r.nc, good, opts)
	if err != nil {
		t.Fatal(err)
	}
	runPool(t, p2)
	waitUntil(t, 30*time.Second, "the handed-back part to be delivered by the next worker", func() bool { return p2.Stats().Acked == 1 })
	if n := good.records(); n != 2 {
		t.Fatalf("the next worker delivered %d records, want the part's 2", n)
	}
}
