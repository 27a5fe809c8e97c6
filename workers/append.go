package workers

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/usagefleet/usagefleet/messages"
)

func (p *Pool) enqueueAppend(ctx context.Context, msg jetstream.Msg, work chan func(context.Context)) {
	seq := seqOf(msg)
	p.metrics.add(ctx, p.metrics.streamRead, int64(len(msg.Data())))
	if !messages.ForDestination(msg.Headers(), p.dest.Name()) {
		p.ack(msg, seq) // another destination's (a dead letter replayed to it)
		return
	}
	meta, err := p.admitStored(msg.Subject(), msg.Headers(), msg.Data(), storedAt(msg)) // sources.go
	enc, inSlot := p.appendEncoding()
	var recs *[]messages.UsageRecord
	if err == nil && meta.Kind != messages.KindSnapshotEnd && !inSlot {
		// Decoded into the records (and their maps) of a part delivered
		// before: they point into this message's payload (decodeInto
		// checks the count and the hour of each).
		recs = appendRecords.Get().(*[]messages.UsageRecord)
		*recs, err = decodeInto((*recs)[:0], msg.Headers(), msg.Data(), meta)
		if err != nil {
			appendRecords.Put(recs)
		}
	}
	if err != nil {
		p.deadMessage(ctx, msg, seq, meta, err)
		return
	}
	if meta.Kind == messages.KindSnapshotEnd {
		p.ack(msg, seq) // markers carry no records
		return
	}
	pm := &pendingMsg{msg: newAcker(p.nc, msg), size: len(msg.Data()), trace: traceOf(msg.Headers()), seq: seq, meta: meta, seen: true}
	if inSlot {
		pm.raw = msg // decoded and encoded in its slot (appendrows.go)
	} else {
		pm.part, pm.recs = &messages.Part{Meta: meta, Records: *recs}, recs
	}
	p.mu.Lock()
	if _, dup := p.pending[seq]; dup {
		p.mu.Unlock()
		if recs != nil {
			appendRecords.Put(recs)
		}
		return
	}
	p.pending[seq] = pm
	p.mu.Unlock()
	run := func(jctx context.Context) {
		if pm.raw != nil && pm.enc == nil {
			if err := pm.encodeAppend(enc); err != nil {
				p.mu.Lock()
				delete(p.pending, seq)
				p.mu.Unlock()
				p.deadMessage(ctx, msg, seq, meta, err)
				return
			}
		}
		p.runAppend(jctx, ctx.Done(), pm)
	}
	select {
	case work <- run:
	case <-ctx.Done():
	}
}

// appendRecords keeps the decoded records of append parts, with their
// Tags and Ext maps, from one part to the next: decoding each part into
// new ones was most of an append drain's allocation.
var appendRecords = sync.Pool{New: func() any { return new([]messages.UsageRecord) }}

// releaseRecords hands pm's records back for another part, once it is
// settled and nothing reads them (a rejected record's dead letter holds a
// shallow copy: those are left to the GC).
func (pm *pendingMsg) releaseRecords(rejected int) {
	pm.releaseEncoded(rejected)
	if pm.recs == nil || rejected > 0 {
		return
	}
	*pm.recs = (*pm.recs)[:0]
	appendRecords.Put(pm.recs)
	pm.recs, pm.part = nil, nil
}

func (j *job) appendRecords(fn func(RecordRef, *messages.UsageRecord) error) error {
	recs, err := j.part.wholeRecords()
	if err != nil {
		return err
	}
	st := &seqStat{}
	j.stats[""] = map[uint64]*seqStat{j.part.seq: st}
	for i := range recs {
		// No st.cost: finishAppend sums what was delivered, once.
		st.records++
		if err := fn(RecordRef{Seq: j.part.seq, Index: i}, &recs[i]); err != nil {
			return err
		}
	}
	return nil
}

func (p *Pool) runAppend(ctx context.Context, stop <-chan struct{}, pm *pendingMsg) {
	log := p.log.With("batch", pm.meta.BatchID, "part", pm.meta.Part)
	attempt := 0
	// Waits (the gate's cooldown, the backoff between tries) end when the
	// pool stops: a part that is only waiting is handed back by the drain
	// at once (not acked, redelivered), instead of holding the stop for its
	// whole DrainTimeout. A try in flight keeps ctx, the drain's.
	waits, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-stop:
			cancel()
		case <-waits.Done():
		}
	}()
	// Each try waits out the gate, then delivers; the wait before the next
	// is what the failure's class says (failed), so the policy's own
	// delays are not used. Shutting down ends it: drain hands the part back.
	_ = retry(waits, &jitterBackOff{p: p.opts.Retry}, func() error {
		defer func() { attempt++ }()
		return p.tryAppend(ctx, waits, pm, attempt, log)
	}, nil)
}

// tryAppend is one try of an append part: nil once it is delivered (or
// refused) and settled. The gate is waited for on waits (ends at stop),
// the delivery and settling run on ctx.
func (p *Pool) tryAppend(ctx, waits context.Context, pm *pendingMsg, attempt int, log *slog.Logger) error {
	if err := p.gate.wait(waits); err != nil {
		return backoff.Permanent(err)
	}
	j := newJob(p, nil, attempt)
	j.part, j.covered, j.log = pm, pm.seq, log.With("attempt", attempt)
	sctx, span := p.startSpan(ctx, "deliver "+p.dest.Name(), &replaceJob{units: []*unitState{{seqs: map[uint64]bool{pm.seq: true}}}})
	if span.SpanContext().IsValid() {
		j.log = j.log.With("trace_id", span.SpanContext().TraceID().String())
	}
	derr := p.deliverAppend(sctx, j)
	if derr != nil {
		span.RecordError(derr)
	}
	span.End()
	if derr == nil {
		// Delivered: only settling (dead letters, ack event, ack) is
		// retried from here; the destination is not sent it again.
		_ = retry(ctx, &jitterBackOff{p: p.opts.Retry}, func() error { return p.finishAppend(ctx, j, pm, "") },
			func(err error, _ time.Duration) { log.Warn("settling a delivered part failed, retrying", "err", err) })
		return nil
	}
	if ctx.Err() != nil {
		return backoff.Permanent(ctx.Err())
	}
	wait := p.failed(j.log, derr, j)
	if wait < 0 {
		if err := p.finishAppend(ctx, j, pm, derr.Error()); err == nil {
			return nil
		}
		wait = backoffDelay(attempt+1, p.opts.Retry) // settling failed: back off like any failure
	}
	if wait == 0 {
		wait = backoffDelay(attempt+1, p.opts.Retry)
	}
	return waitFor(wait)
}

// deliverAppend delivers an append job, under the destination's lease when
// it names one.
func (p *Pool) deliverAppend(ctx context.Context, j *job) error {
	lk := p.dest.LeaseKey(Unit{})
	if lk == "" {
		return p.dest.Deliver(ctx, j)
	}
	key := leaseKeyName(p.dest.Name(), lk)
	// Another worker holding the lease is waited for (leaseWait); the
	// delivery's own error ends the loop, whatever it is.
	var derr error
	err := retry(ctx, leaseWait(), func() error {
		jctx, cancel := context.WithCancel(ctx)
		defer cancel()
		lease, err := p.takeLease(jctx, key, cancel)
		if errors.Is(err, errLeaseHeld) {
			p.mu.Lock()
			p.stats.LeaseConflict++
			p.mu.Unlock()
			p.metrics.add(ctx, p.metrics.leaseConflicts, 1)
			return err
		}
		if err != nil {
			return backoff.Permanent(Transient(fmt.Errorf("lease %s: %w", key, err)))
		}
		derr = p.dest.Deliver(withLease(jctx, lease), j)
		lease.release()
		return nil
	}, nil)
	if err != nil {
		return err
	}
	return derr
}

func (p *Pool) finishAppend(ctx context.Context, j *job, pm *pendingMsg, refused string) error {
	recs := pm.part.Records
	var rej []rejectedRecord
	if refused != "" {
		for i := range recs {
			rej = append(rej, rejectedRecord{ref: RecordRef{Seq: pm.seq, Index: i}, reason: refused, rec: *pm.wholeRecord(i, &recs[i])})
		}
	} else {
		for ref, rj := range j.rejects {
			rej = append(rej, rejectedRecord{ref: ref, reason: rj.reason, rec: rj.rec})
		}
	}
	if err := p.deadRecords(ctx, "records", rej); err != nil {
		return err
	}
	var reasons messages.ReasonCounts
	rejectedIdx := map[int]bool{}
	for _, r := range rej {
		if !rejectedIdx[r.ref.Index] {
			reasons.Add(r.reason, 1)
		}
		rejectedIdx[r.ref.Index] = true
	}
	cost := deliveredCost(recs, rejectedIdx)
	warns := 0
	if st := j.stats[""][pm.seq]; st != nil && refused == "" {
		warns = st.warnings
	}
	pm.records, pm.reject, pm.cost, pm.reasons, pm.warns = len(recs)-len(rejectedIdx), len(rejectedIdx), cost, reasons, warns
	p.mu.Lock()
	delete(p.pending, pm.seq)
	p.stats.Jobs++
	p.stats.Rejected += int64(len(rejectedIdx))
	p.mu.Unlock()
	if refused == "" {
		p.noteSuccess()
	}
	if err := p.ackOut(ctx, []*pendingMsg{pm}); err != nil {
		p.mu.Lock()
		p.pending[pm.seq] = pm
		p.mu.Unlock()
		return err
	}
	pm.releaseRecords(len(rej))
	return nil
}

// deliveredCost is the cost of recs but the rejected ones, per currency.
func deliveredCost(recs []messages.UsageRecord, rejected map[int]bool) messages.CurrencySums {
	var cost messages.CurrencySums
	run := costRun{sums: &cost}
	for i := range recs {
		if len(rejected) == 0 || !rejected[i] {
			run.add(&recs[i])
		}
	}
	run.flush()
	return cost
}

// costRun adds records' costs to sums per currency. A run of records in
// one currency (a part is nearly always one) is summed apart and added
// once, at the next currency or flush: a currency looked up in the map
// for every record was most of settling a part, and 6% of a CloudZero
// drain's CPU.
type costRun struct {
	sums *messages.CurrencySums
	run  messages.Sum
	cur  string
	n    int
}

func (c *costRun) add(r *messages.UsageRecord) {
	if !r.BilledCost.IsSet() {
		return
	}
	if c.n > 0 && r.BillingCurrency != c.cur {
		c.flush()
	}
	c.cur = r.BillingCurrency
	c.run.Add(r.BilledCost)
	c.n++
}

// flush adds the run to sums; call it once the records are all added.
func (c *costRun) flush() {
	if c.n > 0 {
		c.sums.Add(c.cur, c.run.Decimal())
	}
	c.run, c.n = messages.Sum{}, 0
}
