package workers

import (
	"context"
	"errors"
	"net/http/httptrace"
	"sync"
	"time"
)

// ErrAttemptTimeout is the cause of an attempt's context once its deadline
// (a destination's stall_timeout) has passed.
var ErrAttemptTimeout = errors.New("stall_timeout elapsed")

// Attempt is the stall deadline of one HTTP attempt sent through Job.Do:
// the meaning of stall_timeout wherever a destination applies it (the
// per-request deadline is the pool's, the destination-level http_timeout,
// Options.HTTPTimeout). It starts
// when the transport asks for a connection, so the time Job.Do spends
// waiting out the destination's cooldown does not count (a Retry-After can
// be longer than any sensible request timeout), and starts again when Do
// re-sends the request (a new attempt). A destination that streams its
// body calls Progress for every piece the connection accepts, and once
// the whole body is out: the deadline then bounds a stall, not the size
// of the body.
type Attempt struct {
	ctx    context.Context
	mu     sync.Mutex
	d      time.Duration
	t      *time.Timer
	cancel context.CancelCauseFunc
	done   bool
}

// NewAttempt returns the context to build the request with (its trace
// starts the deadline) and the Attempt. Stop must be called once the
// answer is read.
func NewAttempt(ctx context.Context, d time.Duration) (context.Context, *Attempt) {
	ctx, cancel := context.WithCancelCause(ctx)
	a := &Attempt{d: d, cancel: cancel}
	a.ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{GetConn: func(string) { a.start() }})
	return a.ctx, a
}

func (a *Attempt) start() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.done {
		return
	}
	if a.t == nil {
		a.t = time.AfterFunc(a.d, func() { a.cancel(ErrAttemptTimeout) })
		return
	}
	a.t.Reset(a.d) // a re-send of the same request: a new attempt
}

// Progress pushes the deadline back by a whole stall_timeout (a streamed
// body made progress). Before the attempt has asked for a connection, and
// after Stop, it does nothing.
func (a *Attempt) Progress() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.t != nil && !a.done {
		a.t.Reset(a.d)
	}
}

// Stop ends the deadline and cancels the attempt's context.
func (a *Attempt) Stop() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.t != nil {
		a.t.Stop()
	}
	a.done = true
	a.cancel(nil)
}

// Expired reports whether the attempt ended because its deadline passed.
func (a *Attempt) Expired() bool { return errors.Is(context.Cause(a.ctx), ErrAttemptTimeout) }
