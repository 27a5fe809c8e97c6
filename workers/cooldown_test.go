package workers

import (
	"context"
	"testing"
	"time"
)

func TestBackoffDelayGrowsWithJitterUnderTheCap(t *testing.T) {
	p := RetryPolicy{Initial: 100 * time.Millisecond, Max: time.Second}
	for n, base := range map[int]time.Duration{1: 100 * time.Millisecond, 2: 200 * time.Millisecond, 3: 400 * time.Millisecond, 4: 800 * time.Millisecond, 5: time.Second, 50: time.Second} {
		seen := map[time.Duration]bool{}
		for range 200 {
			d := backoffDelay(n, p)
			if d < base/2 || d > base {
				t.Fatalf("try %d: delay %v outside [%v, %v]", n, d, base/2, base)
			}
			seen[d] = true
		}
		if len(seen) < 10 {
			t.Errorf("try %d: %d distinct delays in 200: no jitter", n, len(seen))
		}
	}
}

// One cooldown per destination: a Retry-After holds every uploader (wait)
// and the scheduler (ready) for that long; repeated failures without one
// back off exponentially; a success resets the count and lifts a pause.
func TestGateCooldownAndPause(t *testing.T) {
	var g gate
	p := RetryPolicy{Initial: 40 * time.Millisecond, Max: 200 * time.Millisecond}
	if d := g.transient(300*time.Millisecond, p); d != 300*time.Millisecond {
		t.Fatalf("cooldown %v, want the Retry-After of 300ms", d)
	}
	if g.ready(time.Now()) {
		t.Fatal("ready during the cooldown")
	}
	start := time.Now()
	if err := g.wait(context.Background()); err != nil {
		t.Fatal(err)
	}
	if waited := time.Since(start); waited < 250*time.Millisecond {
		t.Fatalf("wait returned after %v, inside the 300ms cooldown", waited)
	}
	if !g.ready(time.Now()) {
		t.Fatal("not ready after the cooldown")
	}
	// Without Retry-After: the second failure in a row waits longer than
	// the first could.
	g.success()
	if d := g.transient(0, p); d > 40*time.Millisecond {
		t.Fatalf("first failure: %v, want at most 40ms", d)
	}
	if d := g.transient(0, p); d < 40*time.Millisecond || d > 80*time.Millisecond {
		t.Fatalf("second failure in a row: %v, want [40ms, 80ms]", d)
	}
	g.success()
	if d := g.transient(0, p); d > 40*time.Millisecond {
		t.Fatalf("after a success the count restarts: %v", d)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	g.pause("credentials refused", time.Hour)
	if paused, reason, _ := g.state(); !paused || reason != "credentials refused" {
		t.Fatalf("state %v %q", paused, reason)
	}
	if err := g.wait(ctx); err == nil {
		t.Fatal("a paused gate let an uploader through")
	}
	if resumed, _ := g.success(); !resumed || !g.ready(time.Now().Add(time.Second)) {
		t.Fatal("a success did not lift the pause")
	}
}
