package workers

import (
	"context"
	"errors"
	"math/rand/v2"
	"sort"
	"time"
)

// schedule starts a job for each lease key with due units.
func (p *Pool) schedule(ctx context.Context, work chan func(context.Context)) {
	tick := p.opts.Flush.Quiet / 4
	if tick > 250*time.Millisecond {
		tick = 250 * time.Millisecond
	}
	if tick < 10*time.Millisecond {
		tick = 10 * time.Millisecond
	}
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-p.wake:
		}
		now := time.Now()
		if !p.gate.ready(now) {
			continue
		}
		for _, j := range p.dueJobs(now) {
			select {
			case work <- j:
			case <-ctx.Done():
				p.release(j)
				return
			}
		}
	}
}

type replaceJob struct {
	lease string
	units []*unitState
}

// dueJobs picks due units, grouped by lease key, skipping lease keys that
// already have a job here. It marks them in-job.
func (p *Pool) dueJobs(now time.Time) []func(context.Context) {
	p.mu.Lock()
	defer p.mu.Unlock()
	groups := map[string]*replaceJob{}
	var order []string
	for _, us := range p.dirty {
		if us.inJob || p.busy[us.lease] || now.Before(us.notBefore) {
			continue
		}
		if !us.flush.Due(p.opts.Flush, now, p.caughtUp) {
			continue
		}
		g := groups[us.lease]
		if g == nil {
			g = &replaceJob{lease: us.lease}
			groups[us.lease] = g
			order = append(order, us.lease)
		}
		g.units = append(g.units, us)
	}
	sort.Strings(order)
	var jobs []func(context.Context)
	for _, lk := range order {
		g := groups[lk]
		p.busy[lk] = true
		sort.Slice(g.units, func(i, j int) bool { return g.units[i].unit.Start.Before(g.units[j].unit.Start) })
		for _, us := range g.units {
			us.inJob = true
		}
		jobs = append(jobs, func(ctx context.Context) { p.runReplace(ctx, g) })
	}
	return jobs
}

// release undoes dueJobs's marks for a job that will not run.
func (p *Pool) release(j func(context.Context)) {
	// The job closure owns its group; running it with a cancelled context
	// releases the marks.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	j(ctx)
}

func (p *Pool) runReplace(ctx context.Context, g *replaceJob) {
	settled := map[string]bool{}
	held := "" // a unit that must wait for an upgraded worker
	finish := func(ok bool, retryIn time.Duration) {
		p.mu.Lock()
		defer p.mu.Unlock()
		delete(p.busy, g.lease)
		for _, us := range g.units {
			us.inJob = false
			switch {
			case us.unit.Key == held:
				us.notBefore = time.Now().Add(newerSchemaDelay)
			case !ok && !settled[us.unit.Key]:
				us.attempt++
				us.notBefore = time.Now().Add(retryIn)
			}
		}
		p.poke()
	}
	if ctx.Err() != nil {
		finish(false, 0)
		return
	}
	key := leaseKeyName(p.dest.Name(), g.lease)
	jctx, cancel := context.WithCancel(ctx)
	defer cancel()
	lease, err := p.takeLease(jctx, key, cancel)
	if err != nil {
		if !errors.Is(err, errLeaseHeld) {
			p.log.Warn("lease", "lease", key, "err", err)
		}
		p.mu.Lock()
		p.stats.LeaseConflict++
		p.mu.Unlock()
		p.metrics.add(ctx, p.metrics.leaseConflicts, 1)
		finish(false, 200*time.Millisecond+time.Duration(rand.Int64N(int64(300*time.Millisecond))))
		return
	}
	defer lease.release()

	jctx, span := p.startSpan(jctx, "deliver "+p.dest.Name(), g)
	defer span.End()
	units := make([]Unit, len(g.units))
	attempt := 0
	for i, us := range g.units {
		units[i] = us.unit
		if us.attempt > attempt {
			attempt = us.attempt
		}
	}
	job, err := p.newReplaceJob(jctx, units, attempt)
	if err == nil && span.SpanContext().IsValid() {
		job.log = job.log.With("trace_id", span.SpanContext().TraceID().String())
	}
	if err != nil {
		p.log.Warn("rebuild", "err", err)
		finish(false, p.gate.transient(0, p.opts.Retry))
		return
	}
	derr := p.dest.Deliver(jctx, job)
	job.stopReadAhead()
	if derr == nil {
		if err := p.finishReplace(jctx, job, g); err != nil {
			p.log.Warn("finishing job", "err", err)
			finish(false, backoffDelay(1, p.opts.Retry))
			return
		}
		finish(true, 0)
		return
	}
	var newer *newerSchemaError
	retry := time.Duration(0)
	if errors.As(derr, &newer) {
		// Not the destination's failure: no cooldown, no backoff. The unit
		// waits for a worker that reads the part; the others go on at once.
		held = newer.unit
		job.log.Error("a unit holds a part of a newer schema than this worker reads: it waits for an upgraded usage-worker; the other units go on", "unit", newer.unit, "stream_seq", newer.seq, "err", newer.err, "retry_in", newerSchemaDelay)
	} else {
		retry = p.failed(job.log, derr, job)
	}
	if retry >= 0 {
		// Settle what the destination finished before the failure, so a
		// retry redoes only the rest.
		var part []*unitState
		for _, us := range g.units {
			if job.done[us.unit.Key] || job.unitRejects[us.unit.Key] != "" {
				part = append(part, us)
			}
		}
		if len(part) > 0 && jctx.Err() == nil {
			if err := p.finishReplace(jctx, job, &replaceJob{lease: g.lease, units: part}); err != nil {
				p.log.Warn("settling the finished units of a failed job", "err", err)
			} else {
				for _, us := range part {
					settled[us.unit.Key] = true
				}
			}
		}
	}
	if retry < 0 { // refused content: dead-letter the units
		for _, u := range units {
			job.RejectUnit(u, derr.Error())
		}
		if err := p.finishReplace(jctx, job, g); err != nil {
			p.log.Warn("finishing rejected job", "err", err)
			finish(false, backoffDelay(1, p.opts.Retry))
			return
		}
		finish(true, 0)
		return
	}
	finish(false, retry)
}
