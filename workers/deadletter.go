package workers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/usagefleet/usagefleet/messages"
)

// deadLetterJob keeps what the job refused before anything of it is acked:
// the records of the units it rejected whole (read again from the stream),
// the records it rejected one by one, and the parts it could not decode.
// Only the units in settle count.
func (p *Pool) deadLetterJob(ctx context.Context, j *job, settle map[string]bool) error {
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
			recs = append(recs, rejectedRecord{ref: ref, reason: reason, rec: r.Clone()})
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
	return nil
}

type rejectedRecord struct {
	ref    RecordRef
	reason string
	rec    messages.UsageRecord
}

// A dead letter always fits in one message: it refers to the original by
// its USAGE stream sequence (the stream keeps it until its max age) and
// keeps bounded copies only. These bound each piece; deadLimit bounds the
// whole against the connection's max payload.
const (
	deadExcerpt   = 4 << 10 // bytes kept of an undecodable payload, of a record's JSON
	deadReasonMax = 2 << 10 // bytes of a reason
	deadValueMax  = 1 << 10 // bytes of one header value, of an id field
	deadHeaderMax = 8 << 10 // bytes of all the headers kept
	deadHeadroom  = 8 << 10 // the publish's own headers and the protocol
	deadPerLetter = 500     // records at most in one dead letter
	deadInFlight  = 64      // dead letters of undecodable messages being stored at once
	deadTimeout   = 10 * time.Second
	deadLogEvery  = 30 * time.Second
)

// deadLimit is the largest dead letter body this connection can publish.
func (p *Pool) deadLimit() int {
	mp := int(p.nc.MaxPayload())
	if mp <= 0 {
		mp = 1 << 20
	}
	if mp > 2*deadHeadroom {
		return mp - deadHeadroom
	}
	return mp / 2
}

// clip cuts s to at most n bytes on a UTF-8 boundary; cut says it did.
func clip(s string, n int) (out string, cut bool) {
	if len(s) <= n {
		return s, false
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n], true
}

// boundHeader copies h with each value clipped and at most deadHeaderMax
// bytes in all, keys in order; cut says something was left out.
func boundHeader(h map[string][]string) (out map[string][]string, cut bool) {
	if len(h) == 0 {
		return nil, false
	}
	keys := make([]string, 0, len(h))
	for k := range h {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out = make(map[string][]string, len(h))
	total := 0
	for _, k := range keys {
		k2, c := clip(k, deadValueMax)
		cut = cut || c
		for _, v := range h[k] {
			v2, c := clip(v, deadValueMax)
			cut = cut || c
			if total+len(k2)+len(v2) > deadHeaderMax {
				return out, true
			}
			total += len(k2) + len(v2)
			out[k2] = append(out[k2], v2)
		}
	}
	return out, cut
}

// boundLetter clips the identifying fields and the reason of dl.
func boundLetter(dl *messages.DeadLetter) {
	var c [6]bool
	dl.Reason, c[0] = clip(dl.Reason, deadReasonMax)
	dl.BatchID, c[1] = clip(dl.BatchID, deadValueMax)
	dl.Source, c[2] = clip(dl.Source, deadValueMax)
	dl.Feed, c[3] = clip(dl.Feed, deadValueMax)
	dl.Subject, c[4] = clip(dl.Subject, deadValueMax)
	dl.Header, c[5] = boundHeader(dl.Header)
	for _, x := range c {
		dl.Truncated = dl.Truncated || x
	}
}

// undecodableLetter is the dead letter of a stored message that cannot be
// decoded: a reference to it, bounded headers, the first deadExcerpt bytes
// of its payload and its size, and the reason.
func (p *Pool) undecodableLetter(seq uint64, subject string, meta messages.PartMeta, hdr map[string][]string, data []byte, why string) messages.DeadLetter {
	dl := messages.DeadLetter{Destination: p.dest.Name(), Reason: deadReason(why), BatchID: meta.BatchID, Part: meta.Part, Source: meta.Source, Feed: meta.Feed, Subject: subject, StreamSeq: seq, Header: hdr, PayloadSize: len(data), Time: time.Now().UTC()}
	ex := data
	if len(ex) > deadExcerpt {
		ex, dl.Truncated = ex[:deadExcerpt], true
	}
	dl.PayloadExcerpt = append([]byte(nil), ex...)
	boundLetter(&dl)
	return dl
}

// encodeDead encodes dl in at most limit bytes: what it cannot keep goes
// first the payload excerpt (halved until it fits), then the headers,
// then most of the reason. Records are never cut here (deadRecords sizes
// them).
func encodeDead(dl messages.DeadLetter, limit int) ([]byte, error) {
	for {
		b, err := json.Marshal(dl)
		if err != nil || len(b) <= limit {
			return b, err
		}
		dl.Truncated = true
		switch {
		case len(dl.PayloadExcerpt) > 0:
			dl.PayloadExcerpt = dl.PayloadExcerpt[:len(dl.PayloadExcerpt)/2]
		case len(dl.Header) > 0:
			dl.Header = nil
		case len(dl.Reason) > 256:
			dl.Reason, _ = clip(dl.Reason, 256)
		default:
			return nil, fmt.Errorf("dead letter of %d: %d bytes, over the %d this connection can publish", dl.StreamSeq, len(b), limit)
		}
	}
}

// deadRecords keeps rejected records in the dead-letter stream, grouped by
// part, as many records a message as fit in deadLimit (at most
// deadPerLetter). A record too large to fit alone is kept as its index,
// its reason and the first deadExcerpt bytes of its JSON: the part stays in
// USAGE at StreamSeq until its max age, whole.
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
	limit := p.deadLimit()
	for start := 0; start < len(recs); {
		seq := recs[start].ref.Seq
		meta := p.metaOf(ctx, seq)
		dl := messages.DeadLetter{Destination: p.dest.Name(), Reason: recs[start].reason, BatchID: meta.BatchID, Part: meta.Part, Source: meta.Source, Feed: meta.Feed, Subject: messages.UsageSubject(meta.Feed, meta.Hour), StreamSeq: seq, Time: time.Now().UTC()}
		boundLetter(&dl)
		env, err := json.Marshal(dl)
		if err != nil {
			return err
		}
		const more = `,"records":[],"truncated":true` // what the records add besides themselves
		size := len(env) + len(more)
		alone := limit - size // the room of a record alone in a dead letter
		end := start
		for end < len(recs) && recs[end].ref.Seq == seq && end-start < deadPerLetter {
			rr, n := fitRecord(recs[end], alone)
			if end > start && size+n+1 > limit {
				break
			}
			size += n + 1
			dl.Records = append(dl.Records, rr)
			dl.Truncated = dl.Truncated || rr.Truncated
			end++
		}
		id := fmt.Sprintf("%s/%s/%d/%d", p.dest.Name(), scope, seq, recs[start].ref.Index)
		if err := p.publishDead(ctx, meta.Source, dl, id); err != nil {
			return err
		}
		start = end
	}
	return nil
}

// fitRecord is r as kept in a dead letter, in at most room bytes of JSON
// when it can be, and that size: whole, or else its index, clipped reason
// and an excerpt of its JSON.
func fitRecord(r rejectedRecord, room int) (messages.RejectedRecord, int) {
	reason, cut := clip(r.reason, deadReasonMax)
	rr := messages.RejectedRecord{Index: r.ref.Index, Reason: reason, Record: r.rec, Truncated: cut}
	b, _ := json.Marshal(rr)
	if len(b) <= room {
		return rr, len(b)
	}
	whole, _ := json.Marshal(r.rec)
	rr.Record, rr.Truncated = messages.UsageRecord{}, true
	for n := deadExcerpt; ; n /= 2 {
		rr.Excerpt, _ = clip(string(whole), n)
		b, _ = json.Marshal(rr)
		if len(b) <= room || n == 0 {
			return rr, len(b)
		}
	}
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

// deadStored keeps a reference to a stored message that cannot be decoded
// in the dead-letter stream, with an excerpt of it.
func (p *Pool) deadStored(ctx context.Context, seq uint64, why string) error {
	raw, err := p.usage.GetMsg(ctx, seq)
	if err != nil {
		return fmt.Errorf("dead letter of %d: %w", seq, err)
	}
	meta, _ := messages.ParseMeta(raw.Header)
	dl := p.undecodableLetter(seq, raw.Subject, meta, raw.Header, raw.Data, why)
	return p.publishDead(ctx, meta.Source, dl, fmt.Sprintf("%s/dead/%d", p.dest.Name(), seq))
}

func (p *Pool) publishDead(ctx context.Context, source string, dl messages.DeadLetter, id string) error {
	if !messages.ValidToken(source) {
		source = ""
	}
	b, err := encodeDead(dl, p.deadLimit())
	if err != nil {
		p.deadHealth.failed(p.log, err)
		return err
	}
	m := &nats.Msg{Subject: messages.DeadSubject(p.dest.Name(), source), Data: b, Header: nats.Header{}}
	m.Header.Set(messages.HdrMsgID, id)
	if _, err := p.js.PublishMsg(ctx, m); err != nil {
		err = fmt.Errorf("dead letter: %w", err)
		if ctx.Err() == nil || errors.Is(ctx.Err(), context.DeadlineExceeded) {
			p.deadHealth.failed(p.log, err) // not when shutting down
		}
		return err
	}
	p.deadHealth.ok(p.log)
	p.mu.Lock()
	p.stats.DeadLetters++
	p.mu.Unlock()
	p.metrics.add(ctx, p.metrics.deadLetters, 1)
	p.log.Warn("dead-lettered", "reason", dl.Reason, "batch", dl.BatchID, "part", dl.Part, "records", len(dl.Records), "stream_seq", dl.StreamSeq, "bytes", len(b))
	return nil
}

// deadHealth says whether dead letters can be stored: the first failure
// since the last success, and the failures since the last log line (a
// failure is logged once per deadLogEvery, not once per try).
type deadHealth struct {
	mu       sync.Mutex
	since    time.Time // first failure since the last success; zero: healthy
	last     error
	logged   time.Time
	unlogged int
	inFlight int
}

func (h *deadHealth) failed(log interface{ Warn(string, ...any) }, err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	now := time.Now()
	if h.since.IsZero() {
		h.since = now
	}
	h.last = err
	h.unlogged++
	if now.Sub(h.logged) >= deadLogEvery {
		log.Warn("dead letters cannot be stored: undecodable messages are offered again later, jobs with rejected records retry with backoff", "err", err, "failures", h.unlogged, "failing_since", h.since.UTC().Format(time.RFC3339))
		h.logged, h.unlogged = now, 0
	}
}

func (h *deadHealth) ok(log interface{ Warn(string, ...any) }) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.since.IsZero() {
		log.Warn("dead letters are stored again", "failing_since", h.since.UTC().Format(time.RFC3339))
	}
	h.since, h.last, h.unlogged, h.logged = time.Time{}, nil, 0, time.Time{}
}

// take reserves one of deadInFlight slots for storing a dead letter off the
// fetch path.
func (h *deadHealth) take() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.inFlight >= deadInFlight {
		return false
	}
	h.inFlight++
	return true
}

func (h *deadHealth) done() {
	h.mu.Lock()
	h.inFlight--
	h.mu.Unlock()
}

// DeadLettersFailing reports whether the last try to store a dead letter
// failed (and none succeeded since), and why: undecodable messages then
// wait in the stream and jobs with rejected records back off, so the
// process is not ready.
func (p *Pool) DeadLettersFailing() (bool, string) {
	h := &p.deadHealth
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.since.IsZero() {
		return false, ""
	}
	return true, fmt.Sprintf("since %s: %v", h.since.UTC().Format(time.RFC3339), h.last)
}

// deadRetry is how long an undecodable message whose dead letter could not
// be stored waits before it is offered again.
func (p *Pool) deadRetry() time.Duration { return min(p.opts.Retry.Max, 30*time.Second) }

// deadMessage dead-letters a message whose headers or payload cannot be
// read, terminates it so the consumer moves on, and tells its producer.
// Nothing here blocks the fetch path: the dead letter is stored on its own
// goroutine, and when it cannot be stored the message is not terminated
// but handed back (nak with deadRetry), to be dead-lettered when it comes
// again. A part written by a newer schema is not bad data but data this
// worker is too old for: it stays in the stream, handed back for an
// upgraded worker, and the worker says so loudly.
func (p *Pool) deadMessage(ctx context.Context, msg jetstream.Msg, seq uint64, meta messages.PartMeta, cause error) {
	if errors.Is(cause, messages.ErrNewerSchema) {
		p.log.Error("a part of a newer schema than this worker reads: upgrade usage-worker; the part stays in the stream and is offered again", "stream_seq", seq, "batch", meta.BatchID, "part", meta.Part, "err", cause, "retry_in", newerSchemaDelay)
		_ = msg.NakWithDelay(newerSchemaDelay)
		return
	}
	if !p.deadHealth.take() {
		_ = msg.NakWithDelay(p.deadRetry())
		return
	}
	go func() {
		defer p.deadHealth.done()
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), deadTimeout)
		defer cancel()
		p.storeDeadMessage(dctx, msg, seq, meta, cause)
	}()
}

func (p *Pool) storeDeadMessage(ctx context.Context, msg jetstream.Msg, seq uint64, meta messages.PartMeta, cause error) {
	data := msg.Data()
	hdr := msg.Headers()
	if p.sem == Replace { // headers-only delivery: fetch the stored bytes
		if raw, err := p.usage.GetMsg(ctx, seq); err == nil {
			data, hdr = raw.Data, raw.Header
		}
	}
	dl := p.undecodableLetter(seq, msg.Subject(), meta, hdr, data, cause.Error())
	if err := p.publishDead(ctx, meta.Source, dl, fmt.Sprintf("%s/dead/%d", p.dest.Name(), seq)); err != nil {
		// Not terminated: offered again later, dead-lettered then.
		_ = msg.NakWithDelay(p.deadRetry())
		return
	}
	if err := msg.Term(); err != nil {
		p.log.Warn("terminating a dead-lettered message failed: it is redelivered after AckWait and dead-lettered again under the same id", "stream_seq", seq, "err", err)
	}
	_ = p.publishAck(ctx, messages.Ack{BatchID: meta.BatchID, Part: meta.Part, Feed: meta.Feed, Source: meta.Source, Destination: p.dest.Name(), Status: messages.AckDead, Rejected: meta.Records, Cost: messages.DecimalFromInt(0), Reason: dl.Reason, Time: time.Now().UTC()})
}
