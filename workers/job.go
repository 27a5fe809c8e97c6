package workers

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/minio/highwayhash"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

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
func (j *job) unitStats(key string) map[uint64]*seqStat {
	m := j.stats[key]
	if m == nil {
		m = map[uint64]*seqStat{}
		j.stats[key] = m
	}
	return m
}

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
	j.rejects[ref] = rejected{unit: j.unitOf(r), reason: reason, rec: cloneRecord(r)}
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

func cloneRecord(r *messages.UsageRecord) messages.UsageRecord {
	c := *r
	if r.Tags != nil {
		c.Tags = make(map[string]string, len(r.Tags))
		for k, v := range r.Tags {
			c.Tags[k] = v
		}
	}
	if r.Ext != nil {
		c.Ext = make(map[string]messages.ExtValue, len(r.Ext))
		for k, v := range r.Ext {
			c.Ext[k] = v
		}
	}
	return c
}

// idemHashKey keys the body digest of idempotency keys. It is not a
// secret: the digest only has to tell bodies apart.
var idemHashKey = [32]byte{'u', 's', 'a', 'g', 'e', 'f', 'l', 'e', 'e', 't', '-', 'i', 'd', 'e', 'm', 'p', 'o', 't', 'e', 'n', 'c', 'y', '-', 'k', 'e', 'y', '-', 'v', '1', 0, 0, 0}

// IdempotencyKey: see Job.
func (j *job) IdempotencyKey(scope string, chunk int, body []byte) string {
	// The body's digest: HighwayHash-256 (a keyed hash built for speed, ~5x
	// SHA-256 here) under a fixed key; only the final derivation is SHA-256.
	bh := highwayhash.Sum(body, idemHashKey[:])
	h := sha256.New()
	attempt := j.attempt
	if j.part != nil {
		// Append: the same part's same chunk keeps its key across tries, so
		// the receiver can drop a repeat whatever answer the first got.
		attempt = 0
	}
	fmt.Fprintf(h, "%s\x00%s\x00%d\x00%d\x00%d\x00", j.destName(), scope, j.covered, attempt, chunk)
	h.Write(bh[:])
	return "uf-" + hex.EncodeToString(h.Sum(nil)[:20])
}

// Do: see Job.
func (j *job) Do(ctx context.Context, req *http.Request) (*http.Response, error) {
	p := j.p
	for try := 0; ; try++ {
		if err := p.gate.wait(ctx); err != nil {
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

// ---- Replace: rebuilding units from the stream ----

func (p *Pool) newReplaceJob(ctx context.Context, units []Unit, attempt int) (*job, error) {
	j := newJob(p, units, attempt)
	keys := make([]string, len(units))
	for i, u := range units {
		keys[i] = u.Key
	}
	j.log = p.log.With("units", summarizeKeys(keys), "attempt", attempt)
	// One stream info gives both the covered position and the number of
	// messages on every subject at that position.
	filter := coveringFilter(units)
	info, err := p.usage.Info(ctx, jetstream.WithSubjectFilter(filter))
	if err != nil {
		return nil, fmt.Errorf("stream info: %w", err)
	}
	j.covered = info.State.LastSeq
	j.counts = make(map[string]uint64, len(info.State.Subjects))
	for s, n := range info.State.Subjects {
		j.counts[s] = n
	}
	return j, nil
}

func summarizeKeys(keys []string) string {
	if len(keys) <= 3 {
		return strings.Join(keys, ",")
	}
	return fmt.Sprintf("%s..%s (%d)", keys[0], keys[len(keys)-1], len(keys))
}

// coveringFilter is one subject filter covering every hour of the units.
func coveringFilter(units []Unit) string {
	first, last := units[0].Start.UTC(), units[0].End.UTC()
	for _, u := range units {
		if u.Start.Before(first) {
			first = u.Start.UTC()
		}
		if u.End.After(last) {
			last = u.End.UTC()
		}
	}
	lastHour := last.Add(-time.Nanosecond)
	y1, m1, d1 := first.Date()
	y2, m2, d2 := lastHour.Date()
	switch {
	case y1 == y2 && m1 == m2 && d1 == d2 && first.Hour() == lastHour.Hour():
		return fmt.Sprintf("usage.*.%04d.%02d.%02d.%02d", y1, m1, d1, first.Hour())
	case y1 == y2 && m1 == m2 && d1 == d2:
		return fmt.Sprintf("usage.*.%04d.%02d.%02d.*", y1, m1, d1)
	case y1 == y2 && m1 == m2:
		return fmt.Sprintf("usage.*.%04d.%02d.*.*", y1, m1)
	case y1 == y2:
		return fmt.Sprintf("usage.*.%04d.*.*.*", y1)
	}
	return "usage.*.*.*.*.*"
}

// unitSubjects lists the hour subjects of u for the destination's feeds
// that hold messages at the covered position, and how many they hold.
func (j *job) unitSubjects(u Unit) ([]string, uint64) {
	var subs []string
	var n uint64
	for h := u.Start.UTC().Truncate(time.Hour); h.Before(u.End); h = h.Add(time.Hour) {
		for _, f := range j.p.opts.Feeds {
			s := messages.UsageSubject(f, h)
			if c := j.counts[s]; c > 0 {
				subs = append(subs, s)
				n += c
			}
		}
	}
	sort.Strings(subs)
	return subs, n
}

type snapPart struct {
	seq  uint64
	key  string
	gen  int64
	hour time.Time
}

type markerKey struct {
	key  string
	gen  int64
	hour time.Time
}

// Records streams the records of u as the stream held them at Covered:
// every append part, and for each (source, period) the newest snapshot
// generation that is complete in the hour.
func (j *job) Records(ctx context.Context, u Unit, fn func(RecordRef, *messages.UsageRecord) error) error {
	if j.part != nil {
		return j.appendRecords(fn)
	}
	ctx, span := j.p.metrics.tracer.Start(ctx, "rebuild "+u.Key, trace.WithAttributes(attribute.Int64("usagefleet.covered_seq", int64(j.covered))))
	defer span.End()
	stats := map[uint64]*seqStat{}
	j.stats[u.Key] = stats // a re-read starts the unit's count afresh
	subs, expected := j.unitSubjects(u)
	if expected == 0 {
		return nil
	}
	var (
		snaps   []snapPart
		markers = map[markerKey]int{}
		recs    []messages.UsageRecord
	)
	emit := func(seq uint64, recs []messages.UsageRecord) error {
		for i := range recs {
			r := &recs[i]
			if !u.Contains(r.ChargePeriodStart) {
				continue
			}
			st := stats[seq]
			if st == nil {
				st = &seqStat{}
				stats[seq] = st
			}
			st.records++
			st.cost.Add(r.BilledCost)
			if err := fn(RecordRef{Seq: seq, Index: i}, r); err != nil {
				return err
			}
		}
		return nil
	}
	// handle processes one stored message of the unit.
	handle := func(seq uint64, h nats.Header, data []byte) error {
		meta, err := messages.ParseMeta(h)
		if err != nil {
			j.dead[seq] = err.Error()
			return nil
		}
		switch meta.Kind {
		case messages.KindSnapshotEnd:
			markers[markerKey{meta.SnapshotKey(), meta.Generation, meta.Hour}] = meta.Parts
		case messages.KindSnapshot:
			snaps = append(snaps, snapPart{seq: seq, key: meta.SnapshotKey(), gen: meta.Generation, hour: meta.Hour})
		default:
			recs, err = decodeInto(recs[:0], h, data, meta)
			if err != nil {
				j.dead[seq] = err.Error()
				return nil
			}
			j.included[seq] = true
			return emit(seq, recs)
		}
		return nil
	}
	// Fast path: when this worker holds every message the unit's subjects
	// had at the covered position (the common case when one worker drains
	// its backlog), read exactly those with direct gets instead of creating
	// an ordered consumer per unit.
	if seqs := j.p.localSeqs(u.Key, j.covered); uint64(len(seqs)) == expected {
		for _, seq := range seqs {
			raw, err := j.p.usage.GetMsg(ctx, seq)
			if err != nil {
				return Transient(fmt.Errorf("rebuild %s: message %d: %w", u.Key, seq, err))
			}
			if err := handle(seq, raw.Header, raw.Data); err != nil {
				return err
			}
		}
		return j.finishSnapshots(ctx, u, snaps, markers, recs, emit)
	}
	if j.p.nc.IsClosed() {
		return Transient(fmt.Errorf("rebuild %s: %w", u.Key, nats.ErrConnectionClosed))
	}
	// A bounded number of resets: by default an ordered consumer retries
	// its reset forever and ignores the context, so a worker whose
	// connection closed mid-rebuild could never stop.
	cons, err := j.p.usage.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{FilterSubjects: subs, MaxResetAttempts: 5})
	if err != nil {
		return Transient(fmt.Errorf("rebuild %s: %w", u.Key, err))
	}
	var read uint64
	for read < expected {
		// Fetch by count, not by bytes: FetchBytes sizes its channels for a
		// million messages per call (tens of MB each), which dominated the
		// heap and the GC time of a drain. Parts are at most the max
		// payload, so 32 bound a fetch's memory.
		n := min(expected-read, 32)
		batch, err := cons.Fetch(int(n), jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			return Transient(fmt.Errorf("rebuild %s: %w", u.Key, err))
		}
		got := 0
		end := false
		for msg := range batch.Messages() {
			got++
			md, err := msg.Metadata()
			if err != nil {
				return Transient(fmt.Errorf("rebuild %s: %w", u.Key, err))
			}
			seq := md.Sequence.Stream
			if seq > j.covered {
				end = true
				break
			}
			read++
			if md.NumPending == 0 {
				end = true
			}
			if err := handle(seq, msg.Headers(), msg.Data()); err != nil {
				return err
			}
			if end {
				break
			}
		}
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) {
			return Transient(fmt.Errorf("rebuild %s: %w", u.Key, err))
		}
		if end {
			break
		}
		if got == 0 && ctx.Err() != nil {
			return ctx.Err()
		}
		if got == 0 {
			// Nothing came within the wait: messages may have aged out of
			// the stream since the count. Stop rather than wait forever.
			j.log.Warn("rebuild read fewer messages than counted", "unit", u.Key, "read", read, "counted", expected)
			break
		}
	}
	return j.finishSnapshots(ctx, u, snaps, markers, recs, emit)
}

// finishSnapshots emits, per (source, period) and hour, the records of the
// newest snapshot generation whose closing marker is stored and whose parts
// are all here.
func (j *job) finishSnapshots(ctx context.Context, u Unit, snaps []snapPart, markers map[markerKey]int, recs []messages.UsageRecord, emit func(uint64, []messages.UsageRecord) error) error {
	type kh struct {
		key  string
		hour time.Time
	}
	partsSeen := map[markerKey]int{}
	for _, s := range snaps {
		partsSeen[markerKey{s.key, s.gen, s.hour}]++
	}
	best := map[kh]int64{}
	for mk, want := range markers {
		if partsSeen[mk] != want {
			continue
		}
		k := kh{mk.key, mk.hour}
		if mk.gen > best[k] {
			best[k] = mk.gen
		}
	}
	for _, s := range snaps {
		if best[kh{s.key, s.hour}] != s.gen {
			continue
		}
		raw, err := j.p.usage.GetMsg(ctx, s.seq)
		if err != nil {
			return Transient(fmt.Errorf("rebuild %s: snapshot part %d: %w", u.Key, s.seq, err))
		}
		meta, err := messages.ParseMeta(raw.Header)
		if err == nil {
			recs, err = decodeInto(recs[:0], raw.Header, raw.Data, meta)
		}
		if err != nil {
			j.dead[s.seq] = err.Error()
			continue
		}
		j.included[s.seq] = true
		if err := emit(s.seq, recs); err != nil {
			return err
		}
	}
	return nil
}

func decodeInto(dst []messages.UsageRecord, h nats.Header, data []byte, meta messages.PartMeta) ([]messages.UsageRecord, error) {
	recs, err := messages.DecodeRecords(dst, data)
	if err != nil {
		return dst, err
	}
	if len(recs) != meta.Records {
		return dst, fmt.Errorf("payload has %d records, header %s says %d", len(recs), messages.HdrRecords, meta.Records)
	}
	for i := range recs {
		if h := recs[i].ChargePeriodStart.Truncate(time.Hour); !h.Equal(meta.Hour) {
			return dst, fmt.Errorf("record %d: ChargePeriodStart %s is not in the part's hour %s", i, recs[i].ChargePeriodStart.Format(time.RFC3339), meta.Hour.Format(time.RFC3339))
		}
	}
	return recs, nil
}

// finishReplace settles a successful job: dead letters first (nothing is
// acked before its rejected records are kept), then the covered position,
// then ack events and acks for every pending part the rebuild covered.
func (p *Pool) finishReplace(ctx context.Context, j *job, g *replaceJob) error {
	settle := map[string]bool{}
	for _, us := range g.units {
		settle[us.unit.Key] = true
	}
	// Rejected units: read them again to keep their records.
	for _, u := range j.units {
		if !settle[u.Key] {
			continue
		}
		reason, ok := j.unitRejects[u.Key]
		if !ok {
			continue
		}
		var recs []rejectedRecord
		j.stats[u.Key] = nil
		err := j.Records(ctx, u, func(ref RecordRef, r *messages.UsageRecord) error {
			recs = append(recs, rejectedRecord{ref: ref, reason: reason, rec: cloneRecord(r)})
			return nil
		})
		if err != nil {
			return err
		}
		if err := p.deadRecords(ctx, u.Key, recs); err != nil {
			return err
		}
	}
	var recs []rejectedRecord
	for ref, rj := range j.rejects {
		if _, whole := j.unitRejects[rj.unit]; whole || !settle[rj.unit] {
			continue
		}
		recs = append(recs, rejectedRecord{ref: ref, reason: rj.reason, rec: rj.rec})
	}
	if err := p.deadRecords(ctx, "records", recs); err != nil {
		return err
	}
	for seq, why := range j.dead {
		if err := p.deadStored(ctx, seq, why); err != nil {
			return err
		}
	}
	for _, u := range j.units {
		if settle[u.Key] {
			_, _ = p.units.Put(ctx, p.dest.Name()+"."+u.Key, []byte(strconv.FormatUint(j.covered, 10)))
		}
	}
	// Per-record rejections, by unit and part.
	type rejStat struct {
		n       int
		cost    messages.Sum
		reasons []string
	}
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
		rs.cost.Add(rj.rec.BilledCost)
		rs.reasons = appendReason(rs.reasons, rj.reason)
	}
	// Settle the pending parts.
	var done []*pendingMsg
	p.mu.Lock()
	for _, us := range g.units {
		key := us.unit.Key
		unitReason, unitRejected := j.unitRejects[key]
		for seq := range us.seqs {
			if seq > j.covered {
				continue // stored after the rebuild began: stays dirty
			}
			pm := p.pending[seq]
			delete(us.seqs, seq)
			if pm == nil {
				continue
			}
			if st := j.stats[key][seq]; st != nil {
				switch {
				case unitRejected:
					pm.reject += st.records
					pm.reasons = appendReason(pm.reasons, unitReason)
				default:
					delivered := st.cost.Big()
					n := st.records
					if rs := rejs[key][seq]; rs != nil {
						n -= rs.n
						pm.reject += rs.n
						delivered = delivered.Sub(rs.cost.Big())
						for _, r := range rs.reasons {
							pm.reasons = appendReason(pm.reasons, r)
						}
					}
					pm.records += n
					pm.cost.Add(messages.FromBig(delivered))
				}
			}
			if j.included[seq] {
				pm.seen = true
			}
			if why, ok := j.dead[seq]; ok {
				pm.reasons = appendReason(pm.reasons, "undecodable: "+why)
				pm.seen = true
			}
			delete(pm.units, key)
			if len(pm.units) == 0 {
				delete(p.pending, seq)
				done = append(done, pm)
			}
		}
		us.records = 0
		for seq := range us.seqs {
			if pm := p.pending[seq]; pm != nil {
				us.records += pm.meta.Records
			}
		}
		if len(us.seqs) == 0 {
			delete(p.dirty, key)
		} else {
			us.first, us.last = time.Now(), time.Now()
		}
		us.attempt = 0
	}
	p.stats.Jobs++
	p.stats.Rejected += int64(len(j.rejects))
	p.mu.Unlock()
	p.noteSuccess()
	return p.ackOutStatus(ctx, done, j.dead)
}

func appendReason(rs []string, r string) []string {
	for _, x := range rs {
		if x == r {
			return rs
		}
	}
	if len(rs) >= 20 {
		return rs
	}
	return append(rs, r)
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
			deadAcks = append(deadAcks, messages.Ack{BatchID: pm.meta.BatchID, Part: pm.meta.Part, Feed: pm.meta.Feed, Source: pm.meta.Source, Destination: p.dest.Name(), Status: messages.AckDead, Rejected: pm.meta.Records, Reason: "undecodable: " + why, Cost: messages.DecimalFromInt(0), Time: time.Now().UTC()})
			_ = pm.msg.Ack()
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

// ---- dead letters ----

type rejectedRecord struct {
	ref    RecordRef
	reason string
	rec    messages.UsageRecord
}

// deadRecords keeps rejected records in the dead-letter stream, grouped by
// part, at most 500 records a message.
func (p *Pool) deadRecords(ctx context.Context, scope string, recs []rejectedRecord) error {
	if len(recs) == 0 {
		return nil
	}
	sort.Slice(recs, func(a, b int) bool {
		if recs[a].ref.Seq != recs[b].ref.Seq {
			return recs[a].ref.Seq < recs[b].ref.Seq
		}
		return recs[a].ref.Index < recs[b].ref.Index
	})
	for start := 0; start < len(recs); {
		end := start
		for end < len(recs) && recs[end].ref.Seq == recs[start].ref.Seq && end-start < 500 {
			end++
		}
		seq := recs[start].ref.Seq
		meta := p.metaOf(ctx, seq)
		dl := messages.DeadLetter{Destination: p.dest.Name(), Reason: recs[start].reason, BatchID: meta.BatchID, Part: meta.Part, Source: meta.Source, Feed: meta.Feed, Subject: messages.UsageSubject(meta.Feed, meta.Hour), StreamSeq: seq, Time: time.Now().UTC()}
		for _, r := range recs[start:end] {
			dl.Records = append(dl.Records, messages.RejectedRecord{Index: r.ref.Index, Reason: r.reason, Record: r.rec})
		}
		id := fmt.Sprintf("%s/%s/%d/%d", p.dest.Name(), scope, seq, recs[start].ref.Index)
		if err := p.publishDead(ctx, meta.Source, dl, id); err != nil {
			return err
		}
		start = end
	}
	return nil
}

func (p *Pool) metaOf(ctx context.Context, seq uint64) messages.PartMeta {
	p.mu.Lock()
	pm := p.pending[seq]
	p.mu.Unlock()
	if pm != nil {
		return pm.meta
	}
	raw, err := p.usage.GetMsg(ctx, seq)
	if err != nil {
		return messages.PartMeta{}
	}
	m, _ := messages.ParseMeta(raw.Header)
	return m
}

// deadStored copies a stored message that cannot be decoded into the
// dead-letter stream.
func (p *Pool) deadStored(ctx context.Context, seq uint64, why string) error {
	raw, err := p.usage.GetMsg(ctx, seq)
	if err != nil {
		return fmt.Errorf("dead letter of %d: %w", seq, err)
	}
	meta, _ := messages.ParseMeta(raw.Header)
	dl := messages.DeadLetter{Destination: p.dest.Name(), Reason: "undecodable: " + why, BatchID: meta.BatchID, Part: meta.Part, Source: meta.Source, Feed: meta.Feed, Subject: raw.Subject, StreamSeq: seq, Header: raw.Header, Payload: raw.Data, Time: time.Now().UTC()}
	return p.publishDead(ctx, meta.Source, dl, fmt.Sprintf("%s/dead/%d", p.dest.Name(), seq))
}

func (p *Pool) publishDead(ctx context.Context, source string, dl messages.DeadLetter, id string) error {
	if !messages.ValidToken(source) {
		source = ""
	}
	b, err := json.Marshal(dl)
	if err != nil {
		return err
	}
	m := &nats.Msg{Subject: messages.DeadSubject(p.dest.Name(), source), Data: b, Header: nats.Header{}}
	m.Header.Set(messages.HdrMsgID, id)
	if _, err := p.js.PublishMsg(ctx, m); err != nil {
		return fmt.Errorf("dead letter: %w", err)
	}
	p.mu.Lock()
	p.stats.DeadLetters++
	p.mu.Unlock()
	p.metrics.add(ctx, p.metrics.deadLetters, 1)
	p.log.Warn("dead-lettered", "reason", dl.Reason, "batch", dl.BatchID, "part", dl.Part, "records", len(dl.Records), "stream_seq", dl.StreamSeq)
	return nil
}

// deadMessage dead-letters a message whose headers or payload cannot be
// read, terminates it so the consumer moves on, and tells its producer.
func (p *Pool) deadMessage(ctx context.Context, msg jetstream.Msg, seq uint64, meta messages.PartMeta, cause error) {
	data := msg.Data()
	hdr := msg.Headers()
	if p.sem == Replace { // headers-only delivery: fetch the stored bytes
		if raw, err := p.usage.GetMsg(ctx, seq); err == nil {
			data, hdr = raw.Data, raw.Header
		}
	}
	dl := messages.DeadLetter{Destination: p.dest.Name(), Reason: "undecodable: " + cause.Error(), BatchID: meta.BatchID, Part: meta.Part, Source: meta.Source, Feed: meta.Feed, Subject: msg.Subject(), StreamSeq: seq, Header: hdr, Payload: data, Time: time.Now().UTC()}
	for {
		err := p.publishDead(ctx, meta.Source, dl, fmt.Sprintf("%s/dead/%d", p.dest.Name(), seq))
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return // not terminated: it will be redelivered
		}
		p.log.Warn("dead letter publish failed, retrying", "err", err)
		time.Sleep(backoffDelay(2, p.opts.Retry))
	}
	_ = msg.Term()
	_ = p.publishAck(ctx, messages.Ack{BatchID: meta.BatchID, Part: meta.Part, Feed: meta.Feed, Source: meta.Source, Destination: p.dest.Name(), Status: messages.AckDead, Rejected: meta.Records, Cost: messages.DecimalFromInt(0), Reason: dl.Reason, Time: time.Now().UTC()})
}

// ---- Append ----

func (p *Pool) enqueueAppend(ctx context.Context, msg jetstream.Msg, work chan func(context.Context)) {
	seq := seqOf(msg)
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
	pm := &pendingMsg{msg: msg, seq: seq, meta: meta, part: &part, seen: true}
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

// localSeqs lists, in order, the messages of unit key this worker holds
// that were stored at or before covered.
func (p *Pool) localSeqs(key string, covered uint64) []uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	us := p.dirty[key]
	if us == nil {
		return nil
	}
	out := make([]uint64, 0, len(us.seqs))
	for seq := range us.seqs {
		if seq <= covered {
			out = append(out, seq)
		}
	}
	sort.Slice(out, func(a, b int) bool { return out[a] < out[b] })
	return out
}
