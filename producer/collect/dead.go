package collect

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/usagefleet/usagefleet/messages"
)

// DeadDestination is the destination token of the dead letters collectors
// write: a rejected report row never reached a destination, so its dead
// letter is kept on messages.DeadSubject(DeadDestination, collector name),
// dead._collect.<collector>, with DeadLetter.Destination = DeadDestination.
// (The leading underscore keeps it apart from configured destination
// names, as "_" marks "no source" in messages.DeadSubject.)
const DeadDestination = "_collect"

// MaxDeadRowBytes bounds the raw row a dead letter carries; a longer row
// is cut (its DeadHdrRowBytes says how long it was, and the reason says
// so). Report rows are a few hundred bytes.
const MaxDeadRowBytes = 64 << 10

// Keys of DeadLetter.Header in a collector's dead letters: where the
// rejected row came from. DeadLetter.Payload is the row itself, raw.
const (
	DeadHdrType      = "Usage-Collector-Type" // acronis, here
	DeadHdrAccount   = "Usage-Account"        // tenant id, realm
	DeadHdrReport    = "Usage-Report"         // the report id
	DeadHdrRange     = "Usage-Range"          // the report range the collector planned (RFC 3339 start/end)
	DeadHdrLine      = "Usage-Line"           // the row's line in the file (the header is line 1)
	DeadHdrColumn    = "Usage-Column"         // the column at fault, when one is
	DeadHdrCSVHeader = "Usage-Csv-Header"     // the file's header line, raw, to read the row by
	DeadHdrRowBytes  = "Usage-Row-Bytes"      // the row's length, when the payload is cut at MaxDeadRowBytes
)

// deadPublishWindow bounds the dead letters published and not yet
// stored.
const deadPublishWindow = 128

// deadTimeouts: how long a dead letter's ack is waited for (JetStream
// never answers a publish the server refused for lack of permission: the
// refusal goes to the connection's error handler), and how long a dead
// letter is tried again before the run fails. Tests shorten them.
var deadTimeouts = struct{ ack, retryFor time.Duration }{ack: 10 * time.Second, retryFor: time.Minute}

// deadRow is a rejected row waiting for its download to complete.
type deadRow struct {
	err        RowError
	raw        []byte // at most MaxDeadRowBytes
	size       int    // the whole row's length
	header     []byte
	sum        [32]byte // of the whole row
	occurrence int      // 1 for the first row of the report with these bytes, 2 for the next, ...
}

// DeadLetterID is the Nats-Msg-Id of the dead letter of a rejected row:
// the collector, the platform and account, the report range the
// collector planned, and the row's bytes with their occurrence in the
// report (the second identical row of a report is a row of its own). The
// report id and the line are left out on purpose: collecting the same
// range again asks for a new report whose lines may have moved, and the
// same bad row must not be kept twice.
func DeadLetterID(collector, typ, account string, rg Range, row [32]byte, occurrence int) string {
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%s\x00%s\x00%s\x00", typ, account, rg.Start.UTC().Format(time.RFC3339), rg.End.UTC().Format(time.RFC3339))
	h.Write(row[:])
	fmt.Fprintf(h, "\x00%d", occurrence)
	return "collect/" + collector + "/" + hex.EncodeToString(h.Sum(nil)[:16])
}

// keepRejected stores the rows rejected in report id (planned range rg)
// in DEAD, one dead letter per row, and returns once JetStream has stored
// them all. A row already kept (by an earlier run of the same range, or
// an earlier try of this one) is not stored again: the DEAD stream's
// Nats-Msg-Id window covers a retry, the dead letters already on the
// collector's subject (read once per run) cover re-runs after it.
func (r *run) keepRejected(ctx context.Context, id string, rg Range) error {
	if len(r.dead) == 0 {
		return nil
	}
	c := r.c
	subj := r.res.DeadSubject
	if c.o.DeadLetters == nil {
		return fmt.Errorf("collector %s: %d row(s) of report %s were rejected and there is no dead-letter stream to keep them in "+
			"(Options.DeadLetters is nil): nothing of the report was published", c.o.Name, len(r.dead), id)
	}
	if r.deadKept == nil {
		kept, err := c.keptDeadLetters(ctx, subj, r.res.Window.Start.Add(-time.Hour))
		if err != nil {
			return fmt.Errorf("collector %s: reading the dead letters already kept on %s: %w%s", c.o.Name, subj, err, permissionHint(err, subj))
		}
		r.deadKept = kept
	}
	now := c.o.Now().UTC()
	var msgs []*nats.Msg
	for _, d := range r.dead {
		msgID := DeadLetterID(c.o.Name, c.p.Type(), c.p.Account(), rg, d.sum, d.occurrence)
		if r.deadKept[msgID] {
			r.res.DeadKnown++
			continue
		}
		reason := d.err.Error()
		hdr := map[string][]string{
			DeadHdrType:      {c.p.Type()},
			DeadHdrAccount:   {c.p.Account()},
			DeadHdrReport:    {id},
			DeadHdrRange:     {rg.String()},
			DeadHdrLine:      {strconv.Itoa(d.err.Line)},
			DeadHdrCSVHeader: {string(d.header)},
		}
		if d.err.Column != "" {
			hdr[DeadHdrColumn] = []string{d.err.Column}
		}
		if d.size > len(d.raw) {
			hdr[DeadHdrRowBytes] = []string{strconv.Itoa(d.size)}
			reason += fmt.Sprintf(" (the row is kept cut to its first %d of %d bytes)", len(d.raw), d.size)
		}
		dl := messages.DeadLetter{Destination: DeadDestination, Reason: reason, Source: c.o.Name, Feed: c.o.Feed,
			Header: hdr, Payload: d.raw, Time: now}
		b, err := json.Marshal(dl)
		if err != nil {
			return fmt.Errorf("collector %s: dead letter of report %s line %d: %w", c.o.Name, id, d.err.Line, err)
		}
		m := &nats.Msg{Subject: subj, Data: b, Header: nats.Header{}}
		m.Header.Set(messages.HdrMsgID, msgID)
		m.Header.Set(messages.HdrSource, c.o.Name)
		m.Header.Set(messages.HdrFeed, c.o.Feed)
		msgs = append(msgs, m)
	}
	stored, dup, err := publishDead(ctx, c.o.DeadLetters, msgs)
	r.res.DeadLetters += stored
	r.res.DeadKnown += dup
	if err != nil {
		return fmt.Errorf("collector %s: keeping the %d rejected row(s) of report %s in %s: %w%s", c.o.Name, len(r.dead), id, subj, err, permissionHint(err, subj))
	}
	for _, m := range msgs {
		r.deadKept[m.Header.Get(messages.HdrMsgID)] = true
	}
	c.log.Warn("rejected rows kept in the dead-letter stream", "report", id, "subject", subj, "rows", len(r.dead), "stored", stored, "already_kept", len(r.dead)-stored)
	clear(r.dead)
	r.dead = r.dead[:0]
	return nil
}

// publishDead publishes msgs with at most deadPublishWindow in flight and
// returns how many were stored and how many JetStream already had (a
// duplicate Nats-Msg-Id). A publish that failed or got no ack is tried
// again, with the same id, for up to deadTimeouts.retryFor.
func publishDead(ctx context.Context, js jetstream.JetStream, msgs []*nats.Msg) (stored, dup int, err error) {
	for start := 0; start < len(msgs); start += deadPublishWindow {
		chunk := msgs[start:min(start+deadPublishWindow, len(msgs))]
		futs := make([]jetstream.PubAckFuture, len(chunk))
		errs := make([]error, len(chunk))
		for i, m := range chunk {
			futs[i], errs[i] = js.PublishMsgAsync(m)
		}
		wait := time.NewTimer(deadTimeouts.ack)
		timedOut := false
		for i, m := range chunk {
			var ack *jetstream.PubAck
			noAck := fmt.Errorf("no ack within %s: %w", deadTimeouts.ack, nats.ErrTimeout)
			switch {
			case errs[i] != nil:
			case timedOut: // the chunk's time is up: take what has arrived
				select {
				case ack = <-futs[i].Ok():
				case errs[i] = <-futs[i].Err():
				default:
					errs[i] = noAck
				}
			default:
				select {
				case ack = <-futs[i].Ok():
				case errs[i] = <-futs[i].Err():
				case <-wait.C:
					timedOut, errs[i] = true, noAck
				case <-ctx.Done():
					wait.Stop()
					return stored, dup, ctx.Err()
				}
			}
			if errs[i] != nil {
				if ack, err = publishDeadRetry(ctx, js, m, errs[i]); err != nil {
					wait.Stop()
					return stored, dup, err
				}
			}
			if ack.Duplicate {
				dup++
			} else {
				stored++
			}
		}
		wait.Stop()
	}
	return stored, dup, nil
}

func publishDeadRetry(ctx context.Context, js jetstream.JetStream, m *nats.Msg, first error) (*jetstream.PubAck, error) {
	err := first
	bo := Retry{Initial: 200 * time.Millisecond, Max: 5 * time.Second, For: deadTimeouts.retryFor}.backoff()
	for {
		if errors.Is(err, nats.ErrPermissionViolation) || errors.Is(err, nats.ErrConnectionClosed) || ctx.Err() != nil {
			return nil, err
		}
		d := bo.NextBackOff()
		if d == backoff.Stop {
			return nil, err
		}
		if serr := sleep(ctx, d); serr != nil {
			return nil, err
		}
		actx, cancel := context.WithTimeout(ctx, deadTimeouts.ack)
		ack, perr := js.PublishMsg(actx, m)
		cancel()
		if perr == nil {
			return ack, nil
		}
		err = perr
	}
}

// keptDeadLetters returns the Nats-Msg-Id of every dead letter on subj
// stored since since (headers only: the bodies are not read). A run only
// keeps rows of ranges inside its window, and a range's rows are kept
// only by runs at or after its start, so since = the window's start (less
// clock skew) misses none.
func (c *Collector) keptDeadLetters(ctx context.Context, subj string, since time.Time) (map[string]bool, error) {
	kept := map[string]bool{}
	js := c.o.DeadLetters
	st, err := js.Stream(ctx, messages.StreamDead)
	if err != nil {
		return nil, err
	}
	last, err := st.GetLastMsgForSubject(ctx, subj)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return kept, nil
	}
	if err != nil {
		return nil, err
	}
	if last.Time.Before(since) {
		return kept, nil
	}
	cons, err := st.CreateConsumer(ctx, jetstream.ConsumerConfig{
		Description:       "collector " + c.o.Name + ": dead letters already kept",
		FilterSubject:     subj,
		DeliverPolicy:     jetstream.DeliverByStartTimePolicy,
		OptStartTime:      &since,
		AckPolicy:         jetstream.AckNonePolicy,
		HeadersOnly:       true,
		InactiveThreshold: time.Minute,
		MemoryStorage:     true,
	})
	if err != nil {
		return nil, err
	}
	defer func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = st.DeleteConsumer(dctx, cons.CachedInfo().Name)
	}()
	if cons.CachedInfo().NumPending == 0 {
		return kept, nil
	}
	for {
		batch, err := cons.Fetch(512, jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			return nil, err
		}
		n, done := 0, false
		for m := range batch.Messages() {
			n++
			if id := m.Headers().Get(messages.HdrMsgID); id != "" {
				kept[id] = true
			}
			if md, err := m.Metadata(); err == nil && (md.NumPending == 0 || md.Sequence.Stream >= last.Sequence) {
				done = true
			}
		}
		if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) {
			return nil, err
		}
		if done || n == 0 {
			return kept, nil
		}
	}
}

// permissionHint names what a NATS user needs when it was refused.
func permissionHint(err error, subj string) string {
	if errors.Is(err, nats.ErrPermissionViolation) || errors.Is(err, nats.ErrTimeout) || errors.Is(err, context.DeadlineExceeded) ||
		errors.Is(err, nats.ErrNoResponders) || errors.Is(err, jetstream.ErrNoStreamResponse) {
		return fmt.Sprintf(" (the collector's NATS user must be allowed to publish to %s (dead.%s.> for every collector) and to read stream %s)",
			subj, DeadDestination, messages.StreamDead)
	}
	return ""
}
