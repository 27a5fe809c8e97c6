package workers

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/cenkalti/backoff/v5"
)

// The policy as a backoff.BackOff grows like backoffDelay, never stops,
// and starts over on Reset.
func TestJitterBackOff(t *testing.T) {
	p := RetryPolicy{Initial: 100 * time.Millisecond, Max: 400 * time.Millisecond}
	b := &jitterBackOff{p: p}
	for round := range 2 {
		for n, base := range []time.Duration{100, 200, 400, 400, 400} {
			base *= time.Millisecond
			d := b.NextBackOff()
			if d == backoff.Stop || d < base/2 || d > base {
				t.Fatalf("round %d, try %d: %v outside [%v, %v]", round, n+1, d, base/2, base)
			}
		}
		b.Reset()
	}
}

// A lease another worker holds is tried again after 20-100ms.
func TestLeaseWait(t *testing.T) {
	b := leaseWait()
	b.Reset()
	for range 200 {
		if d := b.NextBackOff(); d < 20*time.Millisecond || d > 100*time.Millisecond {
			t.Fatalf("lease wait %v outside [20ms, 100ms]", d)
		}
	}
}

// retry tries until success, stops on a permanent error (returning what it
// wraps) or when ctx ends, and waits what waitFor says instead of the
// policy's delay.
func TestRetry(t *testing.T) {
	slow := &jitterBackOff{p: RetryPolicy{Initial: time.Hour, Max: time.Hour}}
	fast := &jitterBackOff{p: RetryPolicy{Initial: time.Millisecond, Max: time.Millisecond}}
	stop := errors.New("refused")
	for _, tc := range []struct {
		name  string
		b     backoff.BackOff
		fails []error // what the tries return before success
		want  error
		tries int
	}{
		{"first try", fast, nil, nil, 1},
		{"until success", fast, []error{errors.New("a"), errors.New("b")}, nil, 3},
		{"permanent stops", fast, []error{errors.New("a"), backoff.Permanent(stop)}, stop, 2},
		{"waitFor overrides an hour's delay", slow, []error{waitFor(time.Millisecond), waitFor(0)}, nil, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tries, notified := 0, 0
			err := retry(context.Background(), tc.b, func() error {
				tries++
				if tries <= len(tc.fails) {
					return tc.fails[tries-1]
				}
				return nil
			}, func(error, time.Duration) { notified++ })
			if !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
				t.Fatalf("err %v, want %v", err, tc.want)
			}
			if tries != tc.tries || notified != tries-1 {
				t.Fatalf("%d tries, %d notified, want %d and %d", tries, notified, tc.tries, tc.tries-1)
			}
		})
	}
	ctx, cancel := context.WithCancel(context.Background())
	tries := 0
	err := retry(ctx, slow, func() error { tries++; cancel(); return errors.New("down") }, nil)
	if !errors.Is(err, context.Canceled) || tries != 1 {
		t.Fatalf("after cancel: %v after %d tries", err, tries)
	}
}
