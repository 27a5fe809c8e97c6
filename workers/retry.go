package workers

import (
	"context"
	"time"

	"github.com/cenkalti/backoff/v5"
)

// Every wait between tries in the pool goes through cenkalti/backoff/v5:
// an operation, a policy, backoff.Permanent to stop, and a
// *backoff.RetryAfterError when the failure itself says how long to wait
// (a Retry-After, the destination's cooldown). The destination-wide
// cooldown and pause stay in the gate (cooldown.go): they hold every
// uploader of a destination, not one loop.

// jitterBackOff is a RetryPolicy as a backoff.BackOff: the n-th wait is
// backoffDelay(n), exponential from Initial, capped at Max, with full
// jitter in [d/2, d]. It never stops: billing data is tried until it goes.
type jitterBackOff struct {
	p RetryPolicy
	n int
}

func (b *jitterBackOff) NextBackOff() time.Duration {
	b.n++
	return backoffDelay(b.n, b.p)
}

func (b *jitterBackOff) Reset() { b.n = 0 }

// retry runs op until it succeeds, returns a backoff.Permanent error, or
// ctx ends, waiting as b says between tries (no limit on tries or time).
// notify, if not nil, hears each failure and the wait before the next try.
func retry(ctx context.Context, b backoff.BackOff, op func() error, notify backoff.Notify) error {
	_, err := backoff.Retry(ctx, func() (struct{}, error) { return struct{}{}, op() },
		backoff.WithBackOff(b), backoff.WithMaxElapsedTime(0), backoff.WithNotify(notify))
	return err
}

// waitFor makes a failed try wait d before the next (instead of what the
// policy says): the delay a classified failure or the gate chose.
func waitFor(d time.Duration) error { return &backoff.RetryAfterError{Duration: d} }

// leaseWait is how long a delivery waits before trying a lease another
// worker holds again: uniform in [20ms, 100ms], so waiters spread out.
func leaseWait() backoff.BackOff {
	return &backoff.ExponentialBackOff{
		InitialInterval:     60 * time.Millisecond,
		RandomizationFactor: 2.0 / 3,
		Multiplier:          1,
		MaxInterval:         100 * time.Millisecond,
	}
}

// orderedRefetch spaces the re-fetches of a rebuild's ordered consumer
// that found no responder (rebuild.go): exponential from 25 ms, capped at
// 200 ms, jittered in [d/2, d]; with orderedNoResponders re-fetches that is
// 0.8-1.6 s in all before the rebuild fails (the linear 25 ms steps before
// it waited 1.4 s), long enough for a new consumer's interest to cross a
// cluster, short enough that a unit whose consumer never appears fails
// and is tried again whole.
func orderedRefetch() backoff.BackOff {
	return &jitterBackOff{p: RetryPolicy{Initial: 25 * time.Millisecond, Max: 200 * time.Millisecond}}
}

// consumerError spaces the pulls again after the consumer's message
// iterator reported an error (consume.go): exponential from 100 ms (the
// fixed pause it had before), capped at 2 s, jittered in [d/2, d], and back
// to 100 ms after a message comes. An error that repeats (a consumer
// deleted under us, a stream leader lost for a while) no longer logs ten
// warnings a second, while a failover's lone error still resumes within a
// tenth of a second.
func consumerError() backoff.BackOff {
	return &jitterBackOff{p: RetryPolicy{Initial: 100 * time.Millisecond, Max: 2 * time.Second}}
}
