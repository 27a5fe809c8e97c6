package workers

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"

	"github.com/usagefleet/usagefleet/messages"
)

// finishReplace settles the units of g after an upload: dead letters first
// (nothing is acked before its rejected records are kept), then the
// covered position, then ack events and acks for every pending part the
// rebuild covered.
func (p *Pool) finishReplace(ctx context.Context, j *job, g *replaceJob) error {
	settle := map[string]bool{}
	for _, us := range g.units {
		settle[us.unit.Key] = true
	}
	if err := p.deadLetterJob(ctx, j, settle); err != nil {
		return err
	}
	p.putCovered(ctx, j, settle)
	rejs := j.recordRejects(settle)
	var done []*pendingMsg
	now := time.Now()
	p.mu.Lock()
	for _, us := range g.units {
		key := us.unit.Key
		reason, whole := j.unitRejects[key]
		done = append(done, settleUnit(us, p.pending, j.covered, unitOutcome{
			stats: j.stats[key], rejects: rejs[key], rejected: whole, reason: reason,
			included: j.included, dead: j.dead,
		}, now)...)
		if len(us.seqs) == 0 {
			delete(p.dirty, key)
		}
	}
	p.stats.Jobs++
	p.stats.Rejected += int64(len(j.rejects))
	p.mu.Unlock()
	p.noteSuccess()
	return p.ackOutStatus(ctx, done, j.dead)
}

// coveredPuts is how many covered positions are stored at once.
const coveredPuts = 64

// putCovered stores the covered position of every unit settled. The puts
// go out together, at most coveredPuts in flight: one after another they
// cost a round trip to the server each, and a month of hour units is 720
// of them (about 1.4 s of a drain whose server is 1 ms away). They are
// best effort, as they always were: a position not stored only makes the
// next rebuild of its unit start from an older one.
func (p *Pool) putCovered(ctx context.Context, j *job, settle map[string]bool) {
	val := []byte(strconv.FormatUint(j.covered, 10))
	sem := make(chan struct{}, coveredPuts)
	var wg sync.WaitGroup
	for _, u := range j.units {
		if !settle[u.Key] {
			continue
		}
		sem <- struct{}{}
		wg.Add(1)
		go func(key string) {
			defer wg.Done()
			_, _ = p.units.Put(ctx, key, val)
			<-sem
		}(p.dest.Name() + "." + u.Key)
	}
	wg.Wait()
}

// settleRetry is the wait before a job whose settling failed (a dead
// letter, the covered position or an ack event could not be stored) is
// tried again: the retry policy's growing delay by the units' attempts, as
// for any failure, never a fixed step that would upload the units again
// and again.
func (p *Pool) settleRetry(g *replaceJob) time.Duration {
	p.mu.Lock()
	n := 0
	for _, us := range g.units {
		n = max(n, us.attempt)
	}
	p.mu.Unlock()
	return backoffDelay(n+1, p.opts.Retry)
}

// rejStat sums the records of one part a destination rejected one by one.
type rejStat struct {
	n       int
	cost    messages.CurrencySums
	reasons messages.ReasonCounts
}

// recordRejects sums the per-record rejections of the units to settle, by
// unit and part (the records of a unit rejected whole are counted there).
func (j *job) recordRejects(settle map[string]bool) map[string]map[uint64]*rejStat {
	rejs := map[string]map[uint64]*rejStat{}
	for ref, rj := range j.rejects {
		if _, whole := j.unitRejects[rj.unit]; whole || !settle[rj.unit] {
			continue
		}
		m := rejs[rj.unit]
		if m == nil {
			m = map[uint64]*rejStat{}
			rejs[rj.unit] = m
		}
		rs := m[ref.Seq]
		if rs == nil {
			rs = &rejStat{}
			m[ref.Seq] = rs
		}
		rs.n++
		rs.cost.Add(rj.rec.BillingCurrency, rj.rec.BilledCost)
		rs.reasons.Add(rj.reason, 1)
	}
	return rejs
}

// unitOutcome is what an upload did with one unit.
type unitOutcome struct {
	stats    map[uint64]*seqStat // records of each part the rebuild passed on
	rejects  map[uint64]*rejStat // of those, rejected one by one
	rejected bool                // the unit was rejected whole, with reason
	reason   string
	included map[uint64]bool   // parts whose records the rebuild used
	dead     map[uint64]string // parts the rebuild found undecodable
}

// settleUnit is the rule "a part is acked only after an upload that saw
// it", for one uploaded unit, with no I/O: every part of the unit stored
// at or before covered (the rebuild began after it was stored, so the
// upload carried it) counts the unit's outcome and leaves the unit; one
// stored later stays, and the unit stays dirty for it. A part that has no
// unit left to upload is returned, in stream order: it is to be acked now.
// A part the rebuild neither included nor found dead was superseded (a
// snapshot generation that was replaced or never completed).
func settleUnit(us *unitState, pending map[uint64]*pendingMsg, covered uint64, o unitOutcome, now time.Time) (done []*pendingMsg) {
	key := us.unit.Key
	seqs := make([]uint64, 0, len(us.seqs))
	for seq := range us.seqs {
		seqs = append(seqs, seq)
	}
	slices.Sort(seqs)
	for _, seq := range seqs {
		if seq > covered {
			continue // stored after the rebuild began: stays dirty
		}
		pm := pending[seq]
		delete(us.seqs, seq)
		if pm == nil {
			continue
		}
		if st := o.stats[seq]; st != nil {
			pm.count(st, o.rejects[seq], o.rejected, o.reason)
		}
		if o.included[seq] {
			pm.seen = true
		}
		if why, ok := o.dead[seq]; ok {
			pm.reasons.Add(deadReason(why), 0) // counted in its dead ack
			pm.seen = true
		}
		pm.units = slices.DeleteFunc(pm.units, func(k string) bool { return k == key })
		if len(pm.units) == 0 {
			delete(pending, seq)
			done = append(done, pm)
		}
	}
	left := 0
	for seq := range us.seqs {
		if pm := pending[seq]; pm != nil {
			left += pm.meta.Records
		}
	}
	if len(us.seqs) > 0 {
		us.flush.Restart(now, left)
	}
	us.attempt = 0
	return done
}

// count adds what one unit's upload did with the part's records: st of
// them were in the unit, rs of those rejected one by one, or all of them
// when the unit was rejected whole.
func (pm *pendingMsg) count(st *seqStat, rs *rejStat, unitRejected bool, unitReason string) {
	if unitRejected {
		pm.reject += st.records
		pm.reasons.Add(unitReason, st.records)
		return
	}
	delivered := st.cost
	n := st.records
	if rs != nil {
		n -= rs.n
		pm.reject += rs.n
		delivered = delivered.Minus(rs.cost)
		pm.reasons.Merge(&rs.reasons)
	}
	pm.records += n
	pm.cost.AddSums(delivered)
	pm.warns += st.warnings
}

// ack acks a settled message. A failed ack is logged, not retried: the
// message is redelivered after AckWait and settled again, and its ack
// event carries the same message id, so the stream drops the repeat.
func (p *Pool) ack(m interface{ Ack() error }, seq uint64) {
	if err := m.Ack(); err != nil {
		p.log.Warn("ack failed: the message is redelivered after AckWait", "stream_seq", seq, "err", err)
	}
}

// ackOutStatus publishes ack events; parts that were undecodable are "dead".
func (p *Pool) ackOutStatus(ctx context.Context, pms []*pendingMsg, dead map[uint64]string) error {
	if len(dead) == 0 {
		return p.ackOut(ctx, pms)
	}
	var live []*pendingMsg
	var deadAcks []messages.Ack
	for _, pm := range pms {
		if why, ok := dead[pm.seq]; ok {
			deadAcks = append(deadAcks, messages.Ack{BatchID: pm.meta.BatchID, Part: pm.meta.Part, Feed: pm.meta.Feed, Source: pm.meta.Source, Destination: p.dest.Name(), Status: messages.AckDead, Rejected: pm.meta.Records, Reason: deadReason(why), Reasons: deadReasons(why, pm.meta.Records), Cost: messages.DecimalFromInt(0), Time: time.Now().UTC()})
			p.ack(pm.msg, pm.seq)
			continue
		}
		live = append(live, pm)
	}
	for _, a := range deadAcks {
		if err := p.publishAck(ctx, a); err != nil {
			return err
		}
	}
	return p.ackOut(ctx, live)
}

func (p *Pool) publishAck(ctx context.Context, a messages.Ack) error {
	if !messages.ValidToken(a.Source) {
		return nil
	}
	b, _ := messages.EncodeAck(a)
	m := &nats.Msg{Subject: messages.AckSubject(a.Source, a.Destination), Data: b, Header: nats.Header{}}
	m.Header.Set(messages.HdrMsgID, a.MsgID())
	if _, err := p.js.PublishMsg(ctx, m); err != nil {
		return fmt.Errorf("ack event: %w", err)
	}
	p.mu.Lock()
	p.stats.AckEvents++
	p.mu.Unlock()
	return nil
}

// ackEvent publishes the outcome of pm and acks the message.
func (p *Pool) ackOut(ctx context.Context, pms []*pendingMsg) error {
	var futs []jetstream.PubAckFuture
	for _, pm := range pms {
		if pm.meta.Kind == messages.KindSnapshotEnd || pm.meta.Source == "" {
			continue
		}
		a := messages.Ack{BatchID: pm.meta.BatchID, Part: pm.meta.Part, Feed: pm.meta.Feed, Source: pm.meta.Source, Destination: p.dest.Name(), Records: pm.records, Rejected: pm.reject, Cost: pm.cost.Total(), Costs: pm.cost.Decimals(), Reasons: pm.reasons.Map(), Warnings: pm.warns, Time: time.Now().UTC()}
		switch {
		case pm.meta.Kind == messages.KindSnapshot && !pm.seen:
			a.Status = messages.AckSuperseded
			a.Reason = "snapshot generation " + strconv.FormatInt(pm.meta.Generation, 10) + " was replaced by a newer complete generation, or never completed"
		case pm.reject > 0:
			a.Status = messages.AckRejected
		default:
			a.Status = messages.AckDelivered
		}
		if pm.reasons.Len() > 0 {
			a.Reason = joinReasons(pm.reasons.First(), pm.reasons.Len())
		}
		b, _ := messages.EncodeAck(a)
		m := &nats.Msg{Subject: messages.AckSubject(a.Source, a.Destination), Data: b, Header: nats.Header{}}
		m.Header.Set(messages.HdrMsgID, a.MsgID())
		f, err := p.js.PublishMsgAsync(m)
		if err != nil {
			return fmt.Errorf("ack event: %w", err)
		}
		futs = append(futs, f)
	}
	for _, f := range futs {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			return fmt.Errorf("ack event: %w", err)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	for _, pm := range pms {
		p.ack(pm.msg, pm.seq)
	}
	p.mu.Lock()
	p.stats.AckEvents += int64(len(futs))
	p.stats.Acked += int64(len(pms))
	p.mu.Unlock()
	var delivered, rejected int64
	for _, pm := range pms {
		delivered += int64(pm.records)
		rejected += int64(pm.reject)
	}
	if delivered > 0 {
		p.metrics.add(ctx, p.metrics.recordsOut, delivered, attribute.String("outcome", "delivered"))
	}
	if rejected > 0 {
		p.metrics.add(ctx, p.metrics.recordsOut, rejected, attribute.String("outcome", "rejected"))
	}
	return nil
}

// joinReasons is the Reason of an ack, for readers that predate Reasons:
// the first five of the part's n reasons.
func joinReasons(rs []string, n int) string {
	s := ""
	for i, r := range rs {
		if i == 5 {
			s += fmt.Sprintf("; and %d more", n-5)
			break
		}
		if i > 0 {
			s += "; "
		}
		s += r
	}
	return s
}

// deadReasons is the Reasons of an undecodable part's ack: every record
// under the one reason.
func deadReasons(why string, records int) map[string]int {
	var c messages.ReasonCounts
	c.Add(deadReason(why), records)
	return c.Map()
}

func (p *Pool) noteSuccess() {
	if resumed, reason := p.gate.success(); resumed {
		p.log.Warn("destination resumed after pause", "was", reason)
	}
}
