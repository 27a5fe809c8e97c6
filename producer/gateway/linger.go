package gateway

import (
	"context"
	"sync"
	"time"

	"go.opentelemetry.io/otel/trace"
)

// The linger groups concurrent single-event requests of one (source, feed)
// into one batch: the first event opens a group, which closes at once when
// no earlier group of its (source, feed) is being stored (group commit: an
// idle gateway adds no delay), else when the store before it finishes,
// after linger.delay, or at linger.max_records, whichever comes first. A
// closed group is published as one batch (one part per hour) while the next
// group fills. Each request is answered once the part carrying its event is
// stored. Under load the groups grow with the store's latency, so the cost
// per request (a part, a claim check, the claims' commit) shrinks as the
// load grows.

// outcome is what happened to one event.
type outcome struct {
	status  string // stored, duplicate
	batchID string
	err     *Problem
}

type waiter struct {
	ev   *event
	ctx  context.Context
	done chan outcome
}

type lingerKey struct{ source, feed string }

// A lingerer lives while its group is open: closing the group removes it
// from Gateway.lingers, so a long-running gateway keeps one per (source,
// feed) with an open group, not one per pair ever seen.
type lingerer struct {
	g       *Gateway
	key     lingerKey
	mu      sync.Mutex
	group   []*waiter
	timer   *time.Timer
	storing int  // groups of this key being stored
	retired bool // removed from Gateway.lingers: submit takes a new one
}

func (g *Gateway) lingererFor(k lingerKey) *lingerer {
	if l, ok := g.lingers.Load(k); ok {
		return l.(*lingerer)
	}
	l, _ := g.lingers.LoadOrStore(k, &lingerer{g: g, key: k})
	return l.(*lingerer)
}

// submit adds ev to the open group of k and waits for its outcome.
func (g *Gateway) submit(ctx context.Context, k lingerKey, ev *event) outcome {
	l := g.lingererFor(k)
	l.mu.Lock()
	for l.retired {
		l.mu.Unlock()
		l = g.lingererFor(k)
		l.mu.Lock()
	}
	return l.submitLocked(ctx, ev)
}

func (l *lingerer) submitLocked(ctx context.Context, ev *event) outcome {
	w := &waiter{ev: ev, ctx: ctx, done: make(chan outcome, 1)}
	l.group = append(l.group, w)
	switch {
	case len(l.group) >= l.g.cfg.Linger.MaxRecords || l.g.linger <= 0 || l.storing < l.g.pipeline:
		l.flushLocked()
	case len(l.group) == 1:
		l.timer = time.AfterFunc(l.g.linger, l.flush)
	}
	l.mu.Unlock()
	select {
	case o := <-w.done:
		return o
	case <-ctx.Done():
		// The caller went away (the request has no deadline of its own:
		// its group's store has one).
		return outcome{err: storeTimedOut()}
	}
}

// storeTimedOut: the group may still store the event: the caller retries
// with the same id, and the claim makes the retry a duplicate.
func storeTimedOut() *Problem {
	p := problem(503, typeTimeout, "Timed out waiting for the store", "the event may or may not be stored: retry with the same id, a stored one answers duplicate")
	p.retryAfter = time.Second
	return p
}

func (l *lingerer) flush() {
	l.mu.Lock()
	l.flushLocked()
	l.mu.Unlock()
}

func (l *lingerer) flushLocked() {
	if l.timer != nil {
		l.timer.Stop()
		l.timer = nil
	}
	if len(l.group) == 0 {
		return
	}
	group := l.group
	l.group = nil
	l.storing++
	l.g.flushWG.Add(1)
	l.g.goStore(func() {
		defer l.g.flushWG.Done()
		outs := l.g.storeGroup(l.key, group)
		l.mu.Lock()
		l.storing--
		switch {
		case len(l.group) > 0 && l.storing < l.g.pipeline:
			// The next group waited for this store: it goes now.
			l.flushLocked()
		case len(l.group) == 0 && l.storing == 0:
			// Retired once idle: the next event of this (source, feed)
			// opens a new lingerer, and a pair that stops sending leaves
			// nothing behind.
			l.retired = true
			l.g.lingers.CompareAndDelete(l.key, l)
		}
		l.mu.Unlock()
		for i, w := range group {
			w.done <- outs[i]
		}
	})
}

// storerIdle is how long a storer goroutine waits for the next group
// before it ends.
const storerIdle = time.Second

// goStore runs store on a storer goroutine: an idle one if there is one,
// else a new one. A storer waits up to storerIdle for the next group
// before it ends: a goroutine per group grew its stack anew through the
// publish path each time (about 1% of the gateway's CPU in the
// single-event bench).
func (g *Gateway) goStore(store func()) {
	select {
	case g.storeq <- store:
	default:
		go g.storer(store)
	}
}

func (g *Gateway) storer(store func()) {
	idle := time.NewTimer(storerIdle)
	defer idle.Stop()
	for {
		store()
		idle.Reset(storerIdle)
		select {
		case store = <-g.storeq:
		case <-idle.C:
			return
		}
	}
}

// storeGroup publishes a group's events as one batch and says what became
// of each.
func (g *Gateway) storeGroup(k lingerKey, group []*waiter) []outcome {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(group[0].ctx), g.timeout)
	defer cancel()
	if !g.cfg.SkipSpans {
		// The batch's trace continues the first request's; the others
		// link to it.
		var links []trace.Link
		for _, w := range group[1:] {
			if sc := trace.SpanContextFromContext(w.ctx); sc.IsValid() {
				links = append(links, trace.Link{SpanContext: sc})
			}
		}
		var span trace.Span
		ctx, span = tracer().Start(ctx, "gateway group", trace.WithLinks(links...))
		defer span.End()
	}
	evs := make([]*event, len(group))
	for i, w := range group {
		evs[i] = w.ev
	}
	outs := g.storeEvents(ctx, k.source, k.feed, evs)
	if ctx.Err() == context.DeadlineExceeded {
		// limits.request_timeout ran out while the group was stored: the
		// requests' answer, as when each request had its own deadline.
		for i := range outs {
			if outs[i].err != nil {
				outs[i].err = storeTimedOut()
			}
		}
	}
	return outs
}
