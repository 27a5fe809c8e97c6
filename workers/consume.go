package workers

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/trace"

	"github.com/usagefleet/usagefleet/messages"
)

// fetch takes messages from the consumer until ctx ends.
func (p *Pool) fetch(ctx context.Context, cons jetstream.Consumer, work chan func(context.Context)) error {
	batch := 256
	if p.sem == Append {
		// Messages in the client's buffer get no heartbeats: keep it to
		// what the workers take next, so none outwaits its AckWait there.
		batch = min(p.opts.Workers*2, p.opts.MaxAckPending)
	}
	// A short pull expiry: when the node leading the consumer dies, the
	// next pull goes to the new leader within seconds instead of after
	// the default 30 s (measured in the 3-node cluster test: 28-53 s
	// stalls became ~7 s).
	it, err := cons.Messages(jetstream.PullMaxMessages(batch), jetstream.PullExpiry(5*time.Second))
	if err != nil {
		return err
	}
	// On shutdown the iterator drains: the messages already in its buffer
	// (pulled, so delivered to us, but not yet taken) come out of Next and
	// are handed back at once, instead of waiting out AckWait.
	stop := context.AfterFunc(ctx, it.Drain)
	defer stop()
	defer it.Stop()
	bo := consumerError()
	for {
		msg, err := p.next(ctx, it, bo)
		switch {
		case errors.Is(err, errIteratorDone):
			return nil
		case err != nil && ctx.Err() != nil && errors.Is(err, context.Cause(ctx)):
			// The wait after an error was cut short by the shutdown: go on
			// taking what the draining iterator still holds.
			continue
		case err != nil:
			return err
		}
		if ctx.Err() != nil {
			_ = msg.NakWithDelay(time.Second)
			continue
		}
		p.mu.Lock()
		p.stats.Received++
		p.mu.Unlock()
		if n, err := strconv.Atoi(msg.Headers().Get(messages.HdrRecords)); err == nil && n > 0 {
			p.metrics.add(ctx, p.metrics.recordsIn, int64(n))
		}
		if p.sem == Replace {
			p.mark(ctx, msg)
		} else {
			p.enqueueAppend(ctx, msg, work)
		}
	}
}

// errIteratorDone says the consumer's iterator ended: it was drained or
// stopped, or the pool is shutting down.
var errIteratorDone = errors.New("message iterator done")

// next takes the iterator's next message. An error of the iterator is
// logged and the pull tried again, waiting as bo says (consumerError):
// errors in a row wait longer, a message resets the wait. It returns
// errIteratorDone when the iterator ended (or failed during the
// shutdown), an error wrapping nats.ErrConnectionClosed when the
// connection closed, and the context's error when the shutdown cut a wait
// short.
func (p *Pool) next(ctx context.Context, it jetstream.MessagesContext, bo backoff.BackOff) (jetstream.Msg, error) {
	msg, err := it.Next()
	if err == nil {
		return msg, nil // the common case, without the retry's allocations per message
	}
	tried := false
	return backoff.Retry(ctx, func() (jetstream.Msg, error) {
		if tried {
			msg, err = it.Next()
		}
		tried = true
		switch {
		case err == nil:
			return msg, nil
		case ctx.Err() != nil || errors.Is(err, jetstream.ErrMsgIteratorClosed):
			return nil, backoff.Permanent(errIteratorDone)
		case errors.Is(err, nats.ErrConnectionClosed) || p.nc.IsClosed():
			return nil, backoff.Permanent(fmt.Errorf("consumer: %w", nats.ErrConnectionClosed))
		}
		return nil, err
	}, backoff.WithBackOff(bo), backoff.WithMaxElapsedTime(0), backoff.WithNotify(func(err error, d time.Duration) {
		p.log.Warn("consumer", "err", err, "retry_in", d)
	}))
}

// mark records a Replace message: its units become dirty; it stays pending
// until they are uploaded by a rebuild that began after it was stored.
func (p *Pool) mark(ctx context.Context, msg jetstream.Msg) {
	var seq, numPending uint64
	var stored time.Time
	if md, err := msg.Metadata(); err == nil {
		seq, numPending, stored = md.Sequence.Stream, md.NumPending, md.Timestamp
	}
	meta, err := messages.ParseMeta(msg.Headers())
	if err == nil {
		var hour time.Time
		var feed string
		feed, hour, err = messages.ParseUsageSubject(msg.Subject())
		if err == nil && (feed != meta.Feed || !hour.Equal(meta.Hour)) {
			err = fmt.Errorf("headers say feed %q hour %s, subject says %q %s", meta.Feed, meta.Hour.Format(time.RFC3339), feed, hour.Format(time.RFC3339))
		}
	}
	err = p.admit(msg.Subject(), msg.Headers(), meta, stored, err) // sources.go
	if err != nil {
		p.deadMessage(ctx, msg, seq, meta, err)
		return
	}
	units := p.dest.Units(meta.Hour)
	now := time.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.caughtUp = numPending == 0
	if old, dup := p.pending[seq]; dup {
		old.msg = newAcker(p.nc, msg) // a redelivery of what we hold: keep the newest handle
		return
	}
	size, _ := strconv.Atoi(msg.Headers().Get(nats.MsgSize))
	pm := &pendingMsg{msg: newAcker(p.nc, msg), size: size, trace: traceOf(msg.Headers()), seq: seq, meta: meta, units: make([]string, 0, len(units))}
	p.pending[seq] = pm
	for _, u := range units {
		pm.units = append(pm.units, u.Key)
		us := p.dirty[u.Key]
		if us == nil {
			us = &unitState{unit: u, lease: p.dest.LeaseKey(u), seqs: map[uint64]bool{}}
			p.dirty[u.Key] = us
		}
		us.seqs[seq] = true
		if us.flush.Add(p.opts.Flush, now, stored, meta.Records) {
			p.poke()
		}
	}
	if len(units) == 0 {
		// A destination that maps an hour to no unit does not want it.
		delete(p.pending, seq)
		p.ack(msg, seq)
	}
}

func (p *Pool) poke() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// heartbeats keeps every message we hold from being redelivered elsewhere.
func (p *Pool) heartbeats(ctx context.Context) {
	t := time.NewTicker(p.opts.AckWait / 3)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		p.mu.Lock()
		msgs := make([]acker, 0, len(p.pending))
		for _, pm := range p.pending {
			msgs = append(msgs, pm.msg)
		}
		p.mu.Unlock()
		for _, m := range msgs {
			if err := m.InProgress(); err != nil && ctx.Err() == nil {
				p.log.Debug("in-progress heartbeat", "err", err)
			}
		}
		if p.cons != nil {
			ictx, cancel := context.WithTimeout(ctx, 5*time.Second)
			if ci, err := p.cons.Info(ictx); err == nil {
				p.mu.Lock()
				p.consumerPending, p.consumerAckPending = ci.NumPending, uint64(ci.NumAckPending)
				p.mu.Unlock()
			}
			cancel()
		}
	}
}

// handBack naks what was not delivered, so another worker takes it now
// rather than after AckWait.
func (p *Pool) handBack() {
	p.mu.Lock()
	msgs := make([]acker, 0, len(p.pending))
	for seq, pm := range p.pending {
		msgs = append(msgs, pm.msg)
		delete(p.pending, seq)
	}
	p.dirty = map[string]*unitState{}
	p.mu.Unlock()
	for _, m := range msgs {
		_ = m.NakWithDelay(time.Second)
	}
	if len(msgs) > 0 {
		p.log.Info("handed back undelivered messages", "count", len(msgs))
	}
}

func seqOf(msg jetstream.Msg) uint64 {
	md, err := msg.Metadata()
	if err != nil {
		return 0
	}
	return md.Sequence.Stream
}

// acker acks one delivered message through its reply subject with the
// JetStream ack protocol (+ACK, -NAK, +WPI), as jetstream.Msg does, and
// holds nothing else of the message: a pool holds up to max_ack_pending of
// them, and a delivery's parsed headers were ~1.8 KB of each.
type acker struct {
	nc    *nats.Conn
	reply string
}

func newAcker(nc *nats.Conn, m jetstream.Msg) acker { return acker{nc: nc, reply: m.Reply()} }

func (a acker) Ack() error { return a.nc.Publish(a.reply, []byte("+ACK")) }

func (a acker) InProgress() error { return a.nc.Publish(a.reply, []byte("+WPI")) }

func (a acker) NakWithDelay(d time.Duration) error {
	return a.nc.Publish(a.reply, fmt.Appendf(nil, "-NAK {\"delay\": %d}", d.Nanoseconds()))
}

type pendingMsg struct {
	msg   acker
	size  int               // stored payload bytes (Nats-Msg-Size of a headers-only delivery), 0 if unknown
	trace trace.SpanContext // the producer's, from the headers
	seq   uint64
	meta  messages.PartMeta
	part  *messages.Part          // Append: decoded records
	recs  *[]messages.UsageRecord // Append: part.Records' slice from appendRecords, to give back
	// Append, for a destination that encodes rows from the part
	// (appendrows.go): the part as delivered, until its slot encodes it;
	// then its records and rows, whether they were read without their
	// maps, and (once asked for) the records whole.
	raw     jetstream.Msg
	enc     *encodedPart
	skinny  bool
	whole   []messages.UsageRecord
	units   []string // Replace: units still to upload (one or two)
	records int      // delivered
	reject  int
	cost    messages.CurrencySums // delivered, per currency
	reasons messages.ReasonCounts // rejected records per reason
	warns   int                   // delivered records with labels repaired (RowWarner)
	seen    bool                  // the part's records were seen by a rebuild (not superseded)
}

type unitState struct {
	unit      Unit
	lease     string
	flush     unitFlush // when it is due
	seqs      map[uint64]bool
	attempt   int
	notBefore time.Time
	inJob     bool
}
