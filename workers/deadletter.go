package workers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

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
	dl := messages.DeadLetter{Destination: p.dest.Name(), Reason: deadReason(why), BatchID: meta.BatchID, Part: meta.Part, Source: meta.Source, Feed: meta.Feed, Subject: raw.Subject, StreamSeq: seq, Header: raw.Header, Payload: raw.Data, Time: time.Now().UTC()}
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
// read, terminates it so the consumer moves on, and tells its producer. A
// part written by a newer schema is not bad data but data this worker is
// too old for: it stays in the stream, handed back for an upgraded worker,
// and the worker says so loudly.
func (p *Pool) deadMessage(ctx context.Context, msg jetstream.Msg, seq uint64, meta messages.PartMeta, cause error) {
	if errors.Is(cause, messages.ErrNewerSchema) {
		p.log.Error("a part of a newer schema than this worker reads: upgrade usage-worker; the part stays in the stream and is offered again", "stream_seq", seq, "batch", meta.BatchID, "part", meta.Part, "err", cause, "retry_in", newerSchemaDelay)
		_ = msg.NakWithDelay(newerSchemaDelay)
		return
	}
	data := msg.Data()
	hdr := msg.Headers()
	if p.sem == Replace { // headers-only delivery: fetch the stored bytes
		if raw, err := p.usage.GetMsg(ctx, seq); err == nil {
			data, hdr = raw.Data, raw.Header
		}
	}
	dl := messages.DeadLetter{Destination: p.dest.Name(), Reason: deadReason(cause.Error()), BatchID: meta.BatchID, Part: meta.Part, Source: meta.Source, Feed: meta.Feed, Subject: msg.Subject(), StreamSeq: seq, Header: hdr, Payload: data, Time: time.Now().UTC()}
	// The same wait after each failure: the second step of the retry policy.
	d := min(2*p.opts.Retry.Initial, p.opts.Retry.Max)
	err := retry(ctx, &jitterBackOff{p: RetryPolicy{Initial: d, Max: d}}, func() error {
		return p.publishDead(ctx, meta.Source, dl, fmt.Sprintf("%s/dead/%d", p.dest.Name(), seq))
	}, func(err error, _ time.Duration) { p.log.Warn("dead letter publish failed, retrying", "err", err) })
	if err != nil {
		return // shutting down; not terminated: it will be redelivered
	}
	if err := msg.Term(); err != nil {
		p.log.Warn("terminating a dead-lettered message failed: it is redelivered after AckWait and dead-lettered again under the same id", "stream_seq", seq, "err", err)
	}
	_ = p.publishAck(ctx, messages.Ack{BatchID: meta.BatchID, Part: meta.Part, Feed: meta.Feed, Source: meta.Source, Destination: p.dest.Name(), Status: messages.AckDead, Rejected: meta.Records, Cost: messages.DecimalFromInt(0), Reason: dl.Reason, Time: time.Now().UTC()})
}
