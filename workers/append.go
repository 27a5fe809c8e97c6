package workers

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/usagefleet/usagefleet/messages"
)

func (p *Pool) enqueueAppend(ctx context.Context, msg jetstream.Msg, work chan func(context.Context)) {
	seq := seqOf(msg)
	p.metrics.add(ctx, p.metrics.streamRead, int64(len(msg.Data())))
	meta, err := messages.ParseMeta(msg.Headers())
	var part messages.Part
	if err == nil {
		part, err = messages.DecodePart(msg.Headers(), msg.Data())
	}
	if err == nil && meta.Kind != messages.KindSnapshotEnd {
		for i := range part.Records {
			if !part.Records[i].ChargePeriodStart.Truncate(time.Hour).Equal(meta.Hour) {
				err = fmt.Errorf("record %d is not in the part's hour", i)
				break
			}
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
	pm := &pendingMsg{msg: newAcker(p.nc, msg), size: len(msg.Data()), trace: traceOf(msg.Headers()), seq: seq, meta: meta, part: &part, seen: true}
	p.mu.Lock()
	if _, dup := p.pending[seq]; dup {
		p.mu.Unlock()
		return
	}
	p.pending[seq] = pm
	p.mu.Unlock()
	select {
	case work <- func(ctx context.Context) { p.runAppend(ctx, pm) }:
	case <-ctx.Done():
	}
}

func (j *job) appendRecords(fn func(RecordRef, *messages.UsageRecord) error) error {
	recs := j.part.part.Records
	st := &seqStat{}
	j.stats[""] = map[uint64]*seqStat{j.part.seq: st}
	for i := range recs {
		st.records++
		st.cost.Add(recs[i].BilledCost)
		if err := fn(RecordRef{Seq: j.part.seq, Index: i}, &recs[i]); err != nil {
			return err
		}
	}
	return nil
}

func (p *Pool) runAppend(ctx context.Context, pm *pendingMsg) {
	log := p.log.With("batch", pm.meta.BatchID, "part", pm.meta.Part)
	for attempt := 0; ; attempt++ {
		if err := p.gate.wait(ctx); err != nil {
			return // shutting down: handed back by drain
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
			for try := 1; ; try++ {
				err := p.finishAppend(ctx, j, pm, "")
				if err == nil || ctx.Err() != nil {
					return
				}
				log.Warn("settling a delivered part failed, retrying", "err", err)
				if !sleepCtx(ctx, backoffDelay(try, p.opts.Retry)) {
					return
				}
			}
		} else if ctx.Err() != nil {
			return
		} else {
			retry := p.failed(j.log, derr, j)
			if retry < 0 {
				if err := p.finishAppend(ctx, j, pm, derr.Error()); err == nil {
					return
				}
				retry = backoffDelay(1, p.opts.Retry)
			}
			if retry == 0 {
				retry = backoffDelay(attempt+1, p.opts.Retry)
			}
			t := time.NewTimer(retry)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
		}
	}
}

// deliverAppend delivers an append job, under the destination's lease when
// it names one.
func (p *Pool) deliverAppend(ctx context.Context, j *job) error {
	lk := p.dest.LeaseKey(Unit{})
	if lk == "" {
		return p.dest.Deliver(ctx, j)
	}
	key := leaseKeyName(p.dest.Name(), lk)
	for {
		jctx, cancel := context.WithCancel(ctx)
		lease, err := p.takeLease(jctx, key, cancel)
		if err == nil {
			err = p.dest.Deliver(jctx, j)
			lease.release()
			cancel()
			return err
		}
		cancel()
		if !errors.Is(err, errLeaseHeld) {
			return Transient(fmt.Errorf("lease %s: %w", key, err))
		}
		p.mu.Lock()
		p.stats.LeaseConflict++
		p.mu.Unlock()
		p.metrics.add(ctx, p.metrics.leaseConflicts, 1)
		if !sleepCtx(ctx, 20*time.Millisecond+time.Duration(rand.Int64N(int64(80*time.Millisecond)))) {
			return ctx.Err()
		}
	}
}

func (p *Pool) finishAppend(ctx context.Context, j *job, pm *pendingMsg, refused string) error {
	recs := pm.part.Records
	var rej []rejectedRecord
	if refused != "" {
		for i := range recs {
			rej = append(rej, rejectedRecord{ref: RecordRef{Seq: pm.seq, Index: i}, reason: refused, rec: recs[i]})
		}
	} else {
		for ref, rj := range j.rejects {
			rej = append(rej, rejectedRecord{ref: ref, reason: rj.reason, rec: rj.rec})
		}
	}
	if err := p.deadRecords(ctx, "records", rej); err != nil {
		return err
	}
	var cost messages.Sum
	reasons := []string{}
	rejectedIdx := map[int]bool{}
	for _, r := range rej {
		rejectedIdx[r.ref.Index] = true
		reasons = appendReason(reasons, r.reason)
	}
	for i := range recs {
		if !rejectedIdx[i] {
			cost.Add(recs[i].BilledCost)
		}
	}
	pm.records, pm.reject, pm.cost, pm.reasons = len(recs)-len(rejectedIdx), len(rejectedIdx), cost, reasons
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
	return nil
}

// sleepCtx sleeps for d or until ctx ends; it reports whether it slept.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
