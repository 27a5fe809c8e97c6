package workers

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/usagefleet/usagefleet/messages"
)

// Who may send a part, and for how long one may hold its unit (issue 12
// item 3). A header is a claim: with Options.SourceKeys set, a part counts
// only if a key of the source its Usage-Source names signed it (see
// messages.SignPart). Whatever the keys, a snapshot generation must be
// plausible (messages.CheckGeneration): 2^63-1 would win every later
// generation of its period and freeze it. A part of a newer schema holds
// its unit for an upgraded worker, but at most Options.NewerSchemaMaxHold
// after it was stored; then it is dead-lettered and the unit flows again.
// With keys set, its signature is checked first: an unsigned or forged
// newer-schema part is dead-lettered at once, so only a source can hold
// its own units.
//
// admit runs where a part's headers are read: mark (headers only), the
// rebuild's scan and an append part's decoding (admitStored, which checks
// the payload's sum too). What
// it refuses is dead-lettered with a reason that says why (refusal), not
// "undecodable".

// Reasons of a refused part, the prefix of its dead letter's reason.
const (
	reasonSource     = "source binding: "
	reasonGeneration = "implausible generation: "
	reasonHeld       = "newer schema held too long: "
)

// refusal is a part refused for who sent it or what it claims, not for
// bytes this worker cannot read.
type refusal struct{ reason string }

func (r *refusal) Error() string { return r.reason }

// deadReason is the reason of a dead letter for a part that failed with
// why: a refusal says so itself; anything else could not be decoded.
func deadReason(why string) string {
	for _, p := range []string{reasonSource, reasonGeneration, reasonHeld} {
		if strings.HasPrefix(why, p) {
			return why
		}
	}
	return "undecodable: " + why
}

// admit checks a part stored at stored on subject, whose headers h parsed
// to meta with parseErr (the subject check included). It returns parseErr
// unless the part is a newer schema's held past the max, or, when the
// headers read, the refusal of a bad source binding or generation.
func (p *Pool) admit(subject string, h nats.Header, meta messages.PartMeta, stored time.Time, parseErr error) error {
	_, err := p.admitSigned(subject, h, meta, stored, parseErr)
	return err
}

// admitSigned is admit, and says whether an operator's replay key signed
// the part (messages.CheckReplay says what it may be).
func (p *Pool) admitSigned(subject string, h nats.Header, meta messages.PartMeta, stored time.Time, parseErr error) (replay bool, err error) {
	if parseErr != nil {
		if !errors.Is(parseErr, messages.ErrNewerSchema) {
			return false, parseErr
		}
		// A part this worker cannot read holds its unit; with sources
		// bound, only if its source signed it (the signature covers the
		// subject and the headers whatever the schema): else any
		// publisher could freeze any unit for NewerSchemaMaxHold with a
		// forged Usage-Schema, part after part.
		if len(p.opts.SourceKeys) > 0 {
			if err := p.opts.SourceKeys.VerifyPart(subject, h); err != nil {
				return false, &refusal{fmt.Sprintf("%s%v (a part of a newer schema, %v, holds its unit only when a key of its source signed it)", reasonSource, err, parseErr)}
			}
		}
		if !stored.IsZero() {
			if age := time.Since(stored); age > p.opts.NewerSchemaMaxHold {
				return false, &refusal{fmt.Sprintf("%s%v; stored %s ago, more than the %s a part may wait for an upgraded worker", reasonHeld, parseErr, age.Round(time.Second), p.opts.NewerSchemaMaxHold)}
			}
		}
		return false, parseErr
	}
	if len(p.opts.SourceKeys) > 0 {
		signer, err := p.opts.SourceKeys.Signer(subject, h)
		if err != nil {
			return false, &refusal{reasonSource + err.Error()}
		}
		if replay = signer == messages.ReplaySource; replay {
			if err := messages.CheckReplay(h, meta); err != nil {
				return true, &refusal{reasonSource + err.Error()}
			}
			// A redelivery sends records again to the append destination
			// that refused them; a replace destination's unit is rebuilt
			// from the stream (a nudge), never added to by an operator.
			if meta.Kind == messages.KindAppend && p.sem == Replace && messages.ForDestination(h, p.dest.Name()) {
				return true, &refusal{reasonSource + "signed by a replay key: a redelivery is for an append destination; " + p.dest.Name() + " replaces its units (replay rebuilds them)"}
			}
		}
	}
	if meta.Kind == messages.KindSnapshot || meta.Kind == messages.KindSnapshotEnd {
		if stored.IsZero() { // no metadata: judge by now, which is later
			stored = time.Now()
		}
		if err := messages.CheckGeneration(meta.Generation, stored); err != nil {
			return replay, &refusal{reasonGeneration + err.Error()}
		}
	}
	return replay, nil
}

// admitStored parses and admits a stored part read whole by a rebuild:
// with keys set, its payload must match the signed sum too, and a
// redelivery signed by a replay key must be its original's records
// (replayedOriginal).
func (p *Pool) admitStored(subject string, h nats.Header, data []byte, stored time.Time) (messages.PartMeta, error) {
	meta, err := messages.ParseMeta(h)
	replay, err := p.admitSigned(subject, h, meta, stored, err)
	if errors.Is(err, messages.ErrNewerSchema) && len(p.opts.SourceKeys) > 0 {
		// Signed headers, held for an upgraded worker: the payload must
		// be the one signed too, or a copy with other bytes would hold.
		if perr := messages.VerifyPayload(h, data); perr != nil {
			return meta, &refusal{reasonSource + perr.Error()}
		}
	}
	if err != nil {
		return meta, err
	}
	if len(p.opts.SourceKeys) > 0 {
		if err := messages.VerifyPayload(h, data); err != nil {
			return meta, &refusal{reasonSource + err.Error()}
		}
		if replay && meta.Kind == messages.KindAppend {
			if err := p.replayedOriginal(subject, h, data); err != nil {
				return meta, &refusal{reasonSource + err.Error()}
			}
		}
	}
	return meta, nil
}

// replayedOriginal checks a redelivery against the part it replays, read
// from USAGE (messages.SourceKeys.VerifyReplayed). A part aged out of the
// stream cannot be checked, so its replay is refused (usage-worker dead
// replay refuses it up front). The read has the JetStream API's own
// timeout; a failed read refuses the replay into DEAD, from where it can
// be replayed again: never silently dropped.
func (p *Pool) replayedOriginal(subject string, h nats.Header, data []byte) error {
	seq, _, err := messages.ReplayOf(h)
	if err != nil {
		return err
	}
	if p.usage == nil {
		return fmt.Errorf("replay of stream message %d: stream %s is not open here", seq, messages.StreamUsage)
	}
	raw, err := p.usage.GetMsg(context.Background(), seq)
	if err != nil {
		return fmt.Errorf("replay of stream message %d: reading it: %v", seq, err)
	}
	return p.opts.SourceKeys.VerifyReplayed(subject, h, data, raw.Subject, raw.Header, raw.Data)
}

// storedAt is when JetStream stored msg (zero if its metadata cannot be
// read).
func storedAt(msg jetstream.Msg) time.Time {
	if md, err := msg.Metadata(); err == nil {
		return md.Timestamp
	}
	return time.Time{}
}
