package workers

import (
	"context"
	"math/rand/v2"
	"sync"
	"time"
)

// gate holds every uploader of one destination: a cooldown after 429/503
// with Retry-After or repeated 5xx (no retry storm), and a pause after the
// destination refused our credentials.
type gate struct {
	mu          sync.Mutex
	until       time.Time // cooldown end
	pausedUntil time.Time // next probe of a paused destination
	paused      bool
	pauseReason string
	consecutive int // transient failures in a row
}

func (g *gate) wait(ctx context.Context) error {
	for {
		g.mu.Lock()
		until := g.until
		if g.pausedUntil.After(until) {
			until = g.pausedUntil
		}
		g.mu.Unlock()
		d := time.Until(until)
		if d <= 0 {
			return nil
		}
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

// ready reports whether jobs may start now.
func (g *gate) ready(now time.Time) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return !now.Before(g.until) && !now.Before(g.pausedUntil)
}

// transient records a transient failure and returns the cooldown applied:
// Retry-After when the server gave one, else exponential backoff with full
// jitter once failures repeat.
func (g *gate) transient(retryAfter time.Duration, p RetryPolicy) time.Duration {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.consecutive++
	d := retryAfter
	if d == 0 {
		d = backoffDelay(g.consecutive, p)
	}
	if u := time.Now().Add(d); u.After(g.until) {
		g.until = u
	}
	return d
}

func (g *gate) success() (resumed bool, reason string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.consecutive = 0
	resumed, reason = g.paused, g.pauseReason
	g.paused, g.pauseReason = false, ""
	g.pausedUntil = time.Time{}
	return resumed, reason
}

func (g *gate) pause(reason string, probe time.Duration) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.paused, g.pauseReason = true, reason
	g.pausedUntil = time.Now().Add(probe)
}

func (g *gate) state() (paused bool, reason string, coolUntil time.Time) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.paused, g.pauseReason, g.until
}

// backoffDelay is the n-th (from 1) exponential delay with full jitter in
// [d/2, d], capped at p.Max.
func backoffDelay(n int, p RetryPolicy) time.Duration {
	d := p.Initial
	for i := 1; i < n && d < p.Max; i++ {
		d *= 2
	}
	if d > p.Max {
		d = p.Max
	}
	return d/2 + time.Duration(rand.Int64N(int64(d/2)+1))
}
