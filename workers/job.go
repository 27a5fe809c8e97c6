package workers

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"

	"github.com/usagefleet/usagefleet/messages"
)

// job implements Job for both semantics.
type job struct {
	p       *Pool
	log     *slog.Logger
	units   []Unit
	covered uint64
	attempt int
	counts  map[string]uint64 // messages per subject at the covered position

	part *pendingMsg // Append

	// Outcome, filled by Records, Reject and RejectUnit.
	stats       map[string]map[uint64]*seqStat // unit key → part seq → records seen
	rejects     map[RecordRef]rejected
	unitRejects map[string]string
	dead        map[uint64]string // undecodable parts met while rebuilding
	included    map[uint64]bool   // parts whose records the rebuild used
	done        map[string]bool   // units the destination reported delivered

	ra *readAhead // EncodedRecords' read-ahead, while one runs
}

type seqStat struct {
	records int
	cost    messages.Sum
}

type rejected struct {
	unit   string
	reason string
	rec    messages.UsageRecord
}

func (j *job) Units() []Unit     { return j.units }
func (j *job) Covered() uint64   { return j.covered }
func (j *job) Attempt() int      { return j.attempt }
func (j *job) Log() *slog.Logger { return j.log }
func (j *job) destName() string  { return j.p.dest.Name() }

func newJob(p *Pool, units []Unit, attempt int) *job {
	return &job{
		p: p, units: units, attempt: attempt,
		stats:       map[string]map[uint64]*seqStat{},
		rejects:     map[RecordRef]rejected{},
		unitRejects: map[string]string{},
		dead:        map[uint64]string{},
		included:    map[uint64]bool{},
		done:        map[string]bool{},
	}
}

func (j *job) Reject(ref RecordRef, r *messages.UsageRecord, reason string) {
	if _, dup := j.rejects[ref]; dup {
		return
	}
	j.rejects[ref] = rejected{unit: j.unitOf(r), reason: reason, rec: r.Clone()}
}

func (j *job) unitOf(r *messages.UsageRecord) string {
	for _, u := range j.units {
		if u.Contains(r.ChargePeriodStart) {
			return u.Key
		}
	}
	return ""
}

func (j *job) Done(u Unit) { j.done[u.Key] = true }

func (j *job) RejectUnit(u Unit, reason string) {
	if _, dup := j.unitRejects[u.Key]; !dup {
		j.unitRejects[u.Key] = reason
	}
}

// castagnoli is the CRC-32C table (hardware-accelerated on amd64 and arm64).
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// IdempotencyKey: see Job.
func (j *job) IdempotencyKey(scope string, chunk int, body []byte) string {
	// The body's digest: CRC-32C and CRC-32 (IEEE), both in hardware at
	// ~15-20 GB/s, and the length: 64 bits that tell apart the bodies a
	// key could ever be shared by (the same destination, scope, covered
	// position, attempt and chunk index, so the same rebuild). The key is
	// not a secret and need not resist forgery. (HighwayHash-256 of every
	// 5 MB body was 7% of a drain's CPU, SHA-256 more.)
	h := sha256.New()
	attempt := j.attempt
	if j.part != nil {
		// Append: the same part's same chunk keeps its key across tries, so
		// the receiver can drop a repeat whatever answer the first got.
		attempt = 0
	}
	fmt.Fprintf(h, "%s\x00%s\x00%d\x00%d\x00%d\x00%d\x00%08x%08x", j.destName(), scope, j.covered, attempt, chunk,
		len(body), crc32.Checksum(body, castagnoli), crc32.ChecksumIEEE(body))
	return "uf-" + hex.EncodeToString(h.Sum(nil)[:20])
}

// Do: see Job.
func (j *job) Do(ctx context.Context, req *http.Request) (*http.Response, error) {
	p := j.p
	for try := 0; ; try++ {
		if err := p.gate.wait(ctx); err != nil {
			if try == 0 && req.Body != nil {
				_ = req.Body.Close() // as the client would: the caller may wait for it
			}
			return nil, err
		}
		r := req.Clone(ctx)
		if try > 0 && req.Body != nil && req.Body != http.NoBody {
			if req.GetBody == nil {
				return nil, Transient(errors.New("request failed and its streamed body cannot be re-sent"))
			}
			b, err := req.GetBody()
			if err != nil {
				return nil, Transient(err)
			}
			r.Body = b
		}
		p.mu.Lock()
		p.stats.Requests++
		if try > 0 {
			p.stats.Resends++
		}
		p.mu.Unlock()
		resp, err := p.http.Do(r)
		if r.ContentLength > 0 {
			p.metrics.add(ctx, p.metrics.bodyBytes, r.ContentLength)
			p.mu.Lock()
			p.stats.BodyBytes += r.ContentLength
			p.mu.Unlock()
		}
		if err == nil {
			outcome := "success"
			if resp.StatusCode >= 300 {
				outcome = "failure"
			}
			p.metrics.add(ctx, p.metrics.uploads, 1, attribute.String("outcome", outcome), attribute.Int("status_code", resp.StatusCode))
			return resp, nil
		}
		p.metrics.add(ctx, p.metrics.uploads, 1, attribute.String("outcome", "no_response"), attribute.Int("status_code", 0))
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if try >= p.opts.NoResponseRetries || (req.GetBody == nil && req.Body != nil && req.Body != http.NoBody) {
			return nil, &Error{Class: ClassTransient, Err: scrubURL(err)}
		}
		d := backoffDelay(try+1, RetryPolicy{Initial: 200 * time.Millisecond, Max: 5 * time.Second})
		j.log.Warn("no response, re-sending the same request", "err", scrubURL(err), "retry_in", d)
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-t.C:
		}
	}
}

// scrubURL drops the query string from url errors (it could hold a token).
func scrubURL(err error) error {
	var ue interface{ Unwrap() error }
	if errors.As(err, &ue) {
		s := err.Error()
		if i := strings.Index(s, "?"); i >= 0 {
			if k := strings.Index(s[i:], "\""); k >= 0 {
				return errors.New(s[:i] + s[i+k:])
			}
		}
	}
	return err
}

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
		_ = msg.Ack() // markers carry no records
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

// deliverAppend delivers an append job, under the destination's lease when
// it names one.
func (p *Pool) deliverAppend(ctx context.Context, j *job) error {
	lk := p.dest.LeaseKey(Unit{})
	if lk == "" {
		return p.dest.Deliver(ctx, j)
	}
	key := leaseKeyName(p.dest.Name(), lk)
	for {
		rev, ok, err := p.acquire(ctx, key)
		if err != nil {
			return Transient(fmt.Errorf("lease %s: %w", key, err))
		}
		if ok {
			jctx, cancel := context.WithCancel(ctx)
			stopLease := p.keepLease(jctx, key, rev, cancel)
			err := p.dest.Deliver(jctx, j)
			last := stopLease()
			cancel()
			dctx, dcancel := context.WithTimeout(context.Background(), 5*time.Second)
			_ = p.lease.Delete(dctx, key, jetstream.LastRevision(last))
			dcancel()
			return err
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
