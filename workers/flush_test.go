package workers

import (
	"testing"
	"time"
)

// The flush policy, without NATS: a unit is due MaxDelay after it became
// dirty, Quiet after its last part was taken, Quiet after its newest part
// was stored once the consumer has caught up, or once MaxRecords wait;
// UntilNext says when the first of these comes.
func TestFlushPolicy(t *testing.T) {
	p := FlushPolicy{MaxDelay: 10 * time.Second, Quiet: 2 * time.Second, MaxRecords: 100}
	t0 := time.Date(2024, 8, 16, 13, 0, 0, 0, time.UTC)
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	type add struct {
		at, stored time.Duration // since t0; stored is the server's clock
		records    int
	}
	for _, tc := range []struct {
		name     string
		adds     []add
		now      time.Duration
		caughtUp bool
		full     bool // the last Add reported the unit full
		want     time.Duration
	}{
		{"fresh part waits out Quiet", []add{{0, 0, 10}}, 0, false, false, 2 * time.Second},
		{"partly quiet", []add{{0, 0, 10}}, 1500 * time.Millisecond, false, false, 500 * time.Millisecond},
		{"quiet", []add{{0, 0, 10}}, 2 * time.Second, false, false, 0},
		{"long quiet stays due", []add{{0, 0, 10}}, time.Minute, false, false, 0},
		{"each part restarts Quiet", []add{{0, 0, 10}, {1500 * time.Millisecond, 1500 * time.Millisecond, 10}}, 2 * time.Second, false, false, 1500 * time.Millisecond},
		{"a steady trickle is cut at MaxDelay", []add{{0, 0, 1}, {3 * time.Second, 0, 1}, {6 * time.Second, 0, 1}, {9 * time.Second, 0, 1}}, 9500 * time.Millisecond, false, false, 500 * time.Millisecond},
		{"MaxDelay reached", []add{{0, 0, 1}, {3 * time.Second, 0, 1}, {6 * time.Second, 0, 1}, {9 * time.Second, 0, 1}}, 10 * time.Second, false, false, 0},
		{"size trigger", []add{{0, 0, 60}, {time.Second, time.Second, 40}}, time.Second, false, true, 0},
		{"under the size", []add{{0, 0, 60}, {time.Second, time.Second, 39}}, time.Second, false, false, 2 * time.Second},
		{"backlog stored long ago, caught up: due on read", []add{{time.Hour, 0, 10}}, time.Hour, true, false, 0},
		{"backlog stored long ago, still reading: waits Quiet", []add{{time.Hour, 0, 10}}, time.Hour, false, false, 2 * time.Second},
		{"caught up, stored a moment ago", []add{{0, -500 * time.Millisecond, 10}}, 0, true, false, 1500 * time.Millisecond},
		{"stored times only move forward", []add{{0, 0, 1}, {time.Second, -time.Hour, 1}}, 1500 * time.Millisecond, true, false, 500 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var f unitFlush
			full := false
			for _, a := range tc.adds {
				full = f.Add(p, at(a.at), at(a.stored), a.records)
			}
			if full != tc.full {
				t.Errorf("Add reported full %v, want %v", full, tc.full)
			}
			now := at(tc.now)
			if got := f.UntilNext(p, now, tc.caughtUp); got != tc.want {
				t.Errorf("UntilNext = %v, want %v", got, tc.want)
			}
			if got := f.Due(p, now, tc.caughtUp); got != (tc.want == 0) {
				t.Errorf("Due = %v, want %v", got, tc.want == 0)
			}
		})
	}
}

// A unit left with parts stored after its upload's rebuild began starts
// its delays again, counting only what is left.
func TestFlushRestart(t *testing.T) {
	p := FlushPolicy{MaxDelay: 10 * time.Second, Quiet: 2 * time.Second, MaxRecords: 100}
	t0 := time.Date(2024, 8, 16, 13, 0, 0, 0, time.UTC)
	var f unitFlush
	f.Add(p, t0, t0, 150)
	if !f.Due(p, t0, false) {
		t.Fatal("a full unit is not due")
	}
	f.Restart(t0.Add(20*time.Second), 30)
	if got := f.UntilNext(p, t0.Add(20*time.Second), false); got != 2*time.Second {
		t.Fatalf("after Restart: UntilNext %v, want Quiet (2s)", got)
	}
	for at := 21 * time.Second; at < 29*time.Second; at += 1500 * time.Millisecond {
		if full := f.Add(p, t0.Add(at), t0.Add(at), 1); full {
			t.Fatalf("%d records reported full", f.records)
		}
	}
	if got := f.UntilNext(p, t0.Add(29*time.Second), false); got != time.Second {
		t.Fatalf("MaxDelay counts from the restart: UntilNext %v, want 1s", got)
	}
}
