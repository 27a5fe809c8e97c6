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

// replaceRun is one try of a replace job. Its end puts the units back in
// the schedule: settled, retried later, or held for an upgraded worker.
type replaceRun struct {
	p       *Pool
	g       *replaceJob
	settled map[string]bool // units settled although the job failed
	held    string          // a unit that must wait for an upgraded worker
}

// end releases the job's marks; the units not settled are tried again
// after retryIn (a held one after newerSchemaDelay).
func (r *replaceRun) end(ok bool, retryIn time.Duration) {
	p := r.p
	p.mu.Lock()
	defer p.mu.Unlock()
	delete(p.busy, r.g.lease)
	for _, us := range r.g.units {
		us.inJob = false
		switch {
		case us.unit.Key == r.held:
			us.notBefore = time.Now().Add(newerSchemaDelay)
		case !ok && !r.settled[us.unit.Key]:
			us.attempt++
			us.notBefore = time.Now().Add(retryIn)
		}
	}
	p.poke()
}

// runReplace runs a replace job under its lease: rebuild, deliver, settle.
func (p *Pool) runReplace(ctx context.Context, g *replaceJob) {
	r := &replaceRun{p: p, g: g, settled: map[string]bool{}}
	if ctx.Err() != nil {
		r.end(false, 0)
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
		r.end(false, 200*time.Millisecond+time.Duration(rand.Int64N(int64(300*time.Millisecond))))
		return
	}
	defer lease.release()
	r.end(r.deliver(withLease(jctx, lease)))
}

// deliver rebuilds the job's units and has the destination deliver them.
// It reports whether every unit was settled, or else when to try again.
func (r *replaceRun) deliver(ctx context.Context) (ok bool, retryIn time.Duration) {
	p, g := r.p, r.g
	ctx, span := p.startSpan(ctx, "deliver "+p.dest.Name(), g)
	defer span.End()
	units := make([]Unit, len(g.units))
	attempt := 0
	for i, us := range g.units {
		units[i] = us.unit
		if us.attempt > attempt {
			attempt = us.attempt
		}
	}
	job, err := p.newReplaceJob(ctx, units, attempt)
	if err != nil {
		p.log.Warn("rebuild", "err", err)
		return false, p.gate.transient(0, p.opts.Retry)
	}
	if span.SpanContext().IsValid() {
		job.log = job.log.With("trace_id", span.SpanContext().TraceID().String())
	}
	derr := p.dest.Deliver(ctx, job)
	job.stopReadAhead()
	if derr == nil {
		return r.settleAll(ctx, job, "finishing job")
	}
	return r.failed(ctx, job, derr)
}

// settleAll settles every unit of the job, or has them tried again after
// the first step of the retry policy.
func (r *replaceRun) settleAll(ctx context.Context, job *job, what string) (bool, time.Duration) {
	if err := r.p.finishReplace(ctx, job, r.g); err != nil {
		r.p.log.Warn(what, "err", err)
		return false, r.p.settleRetry(r.g)
	}
	return true, 0
}

// failed handles a failed delivery: refused content dead-letters every
// unit; otherwise the units the destination finished are settled and the
// rest is tried again (a unit with a part too new for this worker waits).
func (r *replaceRun) failed(ctx context.Context, job *job, derr error) (bool, time.Duration) {
	p := r.p
	var newer *newerSchemaError
	retry := time.Duration(0)
	if errors.As(derr, &newer) {
		// Not the destination's failure: no cooldown, no backoff. The unit
		// waits for a worker that reads the part; the others go on at once.
		r.held = newer.unit
		job.log.Error("a unit holds a part of a newer schema than this worker reads: it waits for an upgraded usage-worker; the other units go on", "unit", newer.unit, "stream_seq", newer.seq, "err", newer.err, "retry_in", newerSchemaDelay)
	} else {
		retry = p.failed(job.log, derr, job)
	}
	if retry < 0 { // refused content: dead-letter the units
		for _, u := range job.units {
			job.RejectUnit(u, derr.Error())
		}
		return r.settleAll(ctx, job, "finishing rejected job")
	}
	r.settleFinished(ctx, job)
	return false, retry
}

// settleFinished settles what the destination finished before a failure
// (units it reported Done or rejected), so a retry redoes only the rest.
func (r *replaceRun) settleFinished(ctx context.Context, job *job) {
	var part []*unitState
	for _, us := range r.g.units {
		if job.done[us.unit.Key] || job.unitRejects[us.unit.Key] != "" {
			part = append(part, us)
		}
	}
	if len(part) == 0 || ctx.Err() != nil {
		return
	}
	if err := r.p.finishReplace(ctx, job, &replaceJob{lease: r.g.lease, units: part}); err != nil {
		r.p.log.Warn("settling the finished units of a failed job", "err", err)
		return
	}
	for _, us := range part {
		r.settled[us.unit.Key] = true
	}
}
