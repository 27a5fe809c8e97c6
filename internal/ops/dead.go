package ops

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/usagefleet/usagefleet/messages"
)

// DeadFilter selects dead letters. Zero fields match everything.
type DeadFilter struct {
	Destination string // the destination token ("_collect" for collectors)
	Source      string // the source, or the collector name for "_collect"
	Batch       string
	Reason      string // a case-insensitive substring of the reason
	Since       time.Time
	Until       time.Time
	Limit       int // at most this many (default 1000); the newest are kept
}

// DeadEntry is one stored dead letter: its position in the DEAD stream
// (the handle replay and show use) and its content.
type DeadEntry struct {
	Seq    uint64              `json:"dead_seq"`
	Stored time.Time           `json:"stored"`
	Letter messages.DeadLetter `json:"letter"`
	Err    string              `json:"error,omitempty"` // the dead letter itself could not be read
}

func (f DeadFilter) subject() string {
	d, s := f.Destination, f.Source
	if d == "" {
		d = "*"
	}
	if s == "" {
		s = "*"
	}
	return "dead." + d + "." + s
}

func (f DeadFilter) match(e *DeadEntry) bool {
	dl := &e.Letter
	if f.Batch != "" && dl.BatchID != f.Batch {
		return false
	}
	if f.Reason != "" && !strings.Contains(strings.ToLower(dl.Reason+" "+e.Err), strings.ToLower(f.Reason)) {
		return false
	}
	t := e.Stored
	if !dl.Time.IsZero() {
		t = dl.Time
	}
	if !f.Since.IsZero() && t.Before(f.Since) {
		return false
	}
	if !f.Until.IsZero() && !t.Before(f.Until) {
		return false
	}
	return true
}

// ListDead reads the DEAD stream with f, oldest first. It stops at the
// stream's last message at the time of the call.
func ListDead(ctx context.Context, js jetstream.JetStream, f DeadFilter) ([]DeadEntry, error) {
	if f.Limit <= 0 {
		f.Limit = 1000
	}
	st, err := js.Stream(ctx, messages.StreamDead)
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", messages.StreamDead, err)
	}
	var out []DeadEntry
	err = scanStream(ctx, st, []string{f.subject()}, f.Since.Add(-time.Minute), func(m jetstream.Msg, md *jetstream.MsgMetadata) error {
		e := DeadEntry{Seq: md.Sequence.Stream, Stored: md.Timestamp.UTC()}
		if err := json.Unmarshal(m.Data(), &e.Letter); err != nil {
			e.Err = "not a dead letter: " + err.Error()
			e.Letter.Subject = m.Subject()
		}
		if f.match(&e) {
			out = append(out, e)
			if len(out) > f.Limit {
				out = out[1:]
			}
		}
		return nil
	})
	return out, err
}

// GetDead reads the dead letter stored at seq in the DEAD stream.
func GetDead(ctx context.Context, js jetstream.JetStream, seq uint64) (*DeadEntry, error) {
	st, err := js.Stream(ctx, messages.StreamDead)
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", messages.StreamDead, err)
	}
	raw, err := st.GetMsg(ctx, seq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, fmt.Errorf("dead letter %d: not in stream %s (aged out, or never stored)", seq, messages.StreamDead)
	}
	if err != nil {
		return nil, fmt.Errorf("dead letter %d: %w", seq, err)
	}
	e := &DeadEntry{Seq: seq, Stored: raw.Time.UTC()}
	if err := json.Unmarshal(raw.Data, &e.Letter); err != nil {
		return nil, fmt.Errorf("dead letter %d (%s): not a dead letter: %w", seq, raw.Subject, err)
	}
	return e, nil
}

// scanStream calls fn for every message on subjects stored at or after
// since (zero: all), up to the stream's last sequence when it starts.
func scanStream(ctx context.Context, st jetstream.Stream, subjects []string, since time.Time, fn func(jetstream.Msg, *jetstream.MsgMetadata) error) error {
	info, err := st.Info(ctx, jetstream.WithSubjectFilter(subjects[0]))
	if err != nil {
		return err
	}
	last := info.State.LastSeq
	if info.State.Msgs == 0 || last == 0 {
		return nil
	}
	if len(subjects) == 1 {
		n := uint64(0)
		for _, c := range info.State.Subjects {
			n += c
		}
		if n == 0 {
			return nil // nothing stored on the subject
		}
	}
	cfg := jetstream.OrderedConsumerConfig{FilterSubjects: subjects, MaxResetAttempts: 5, InactiveThreshold: 30 * time.Second}
	if !since.IsZero() && since.After(time.Unix(0, 0)) {
		cfg.DeliverPolicy = jetstream.DeliverByStartTimePolicy
		cfg.OptStartTime = &since
	}
	cons, err := st.OrderedConsumer(ctx, cfg)
	if err != nil {
		return err
	}
	// Deleted when the scan ends, not left to its inactivity threshold (a
	// status --watch would otherwise leave one behind every few seconds).
	defer func() {
		if ci := cons.CachedInfo(); ci != nil {
			dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			_ = st.DeleteConsumer(dctx, ci.Name)
			cancel()
		}
	}()
	noResponders := 0
	for {
		batch, err := cons.Fetch(256, jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			if refetch(ctx, err, &noResponders) {
				continue
			}
			return err
		}
		got := 0
		for m := range batch.Messages() {
			got++
			md, err := m.Metadata()
			if err != nil {
				return err
			}
			if md.Sequence.Stream > last {
				return nil
			}
			if err := fn(m, md); err != nil {
				return err
			}
			if md.NumPending == 0 || md.Sequence.Stream == last {
				return nil
			}
		}
		if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) && !errors.Is(err, context.DeadlineExceeded) {
			if refetch(ctx, err, &noResponders) {
				continue
			}
			return err
		}
		if got == 0 {
			return ctx.Err() // nothing more within the wait: done
		}
		noResponders = 0
	}
}

// scanNoResponders bounds the fetches in a row of a scan's ordered consumer
// that may find no responder before the scan fails.
const scanNoResponders = 10

// refetch says whether a scan's fetch that failed with err is to be tried
// again, after a pause: on a cluster the pull of a new ordered consumer
// can reach the client's server before the consumer's interest has
// ("no responders"; about 2 in 100 fetches under load, as a rebuild's in
// workers/rebuild.go). The ordered consumer's next fetch starts a new
// consumer after the last message delivered, so nothing is read twice.
func refetch(ctx context.Context, err error, n *int) bool {
	if !errors.Is(err, nats.ErrNoResponders) || *n >= scanNoResponders {
		return false
	}
	*n++
	t := time.NewTimer(time.Duration(*n) * 25 * time.Millisecond)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
