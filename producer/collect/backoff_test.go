package collect

import (
	"testing"
	"time"

	"github.com/cenkalti/backoff/v5"
)

// The collector's retry policy stops once its time is up (Retry.For), as
// v4's MaxElapsedTime did, and grows up to its cap until then.
func TestRetryBackoffStopsWhenTimeIsUp(t *testing.T) {
	bo := Retry{Initial: 10 * time.Millisecond, Max: 40 * time.Millisecond, For: time.Hour}.backoff()
	for i := 0; i < 20; i++ {
		d := bo.NextBackOff()
		if d == backoff.Stop || d <= 0 || d > 60*time.Millisecond {
			t.Fatalf("try %d: wait %v; want a wait up to the cap (40ms and jitter)", i, d)
		}
	}
	bo.max = 50 * time.Millisecond
	bo.start = time.Now().Add(-45 * time.Millisecond)
	if d := bo.NextBackOff(); d != backoff.Stop {
		t.Fatalf("past its time: wait %v, want backoff.Stop", d)
	}
	bo.Reset()
	if d := bo.NextBackOff(); d == backoff.Stop {
		t.Fatal("Reset did not restart the clock")
	}
	if def := (Retry{}).backoff(); def.max != 5*time.Minute || def.InitialInterval != 500*time.Millisecond || def.MaxInterval != 30*time.Second {
		t.Fatalf("defaults: %v %v %v", def.max, def.InitialInterval, def.MaxInterval)
	}
}
