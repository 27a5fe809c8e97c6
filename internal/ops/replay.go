package ops

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/usagefleet/usagefleet/messages"
)

// Replay meanings. What "send it again" means depends on who refused it:
//
//   - ActionRebuild, a replace destination: the refused records are still in
//     USAGE, so the unit is rebuilt from the stream and uploaded whole (with
//     the fixed configuration, the fixed destination). The unit is made
//     dirty by a nudge: an empty snapshot closing marker (Usage-Kind
//     snapshot-end, 0 parts) of source ReplaySource on the unit's subject.
//     Every replace pool marks the unit of any message it receives dirty;
//     an empty generation of a source that publishes nothing else adds no
//     record to any rebuild; append pools ack markers without delivering
//     them. Replaying twice, or replaying a unit delivered whole since,
//     uploads the same unit again, which a replace makes a no-op at the
//     destination. (Other replace destinations of the feed re-upload the
//     unit too: harmless, for the same reason.)
//   - ActionRedeliver, an append destination: the refused records are
//     published again as a new append part (Nats-Msg-Id derived from the
//     dead letter: replay-<destination>-<dead seq>/1) on the dead letter's
//     feed, addressed to that destination alone (header Usage-Destination:
//     every other destination of the feed acks it unsent and leaves it out
//     of its rebuilds and reconciliations), read from USAGE at the dead
//     letter's stream sequence (the dead letter's own copy only when the
//     part has aged out). A second replay is refused by the replay record
//     in bucket BucketReplays and, within USAGE's duplicate window, by
//     JetStream's de-duplication.
//   - ActionRecollect, a collector's rejected report row: the row belongs to
//     a snapshot of a report period, so it is "parsed again" by collecting
//     the period again (a new generation replaces the old one at every
//     destination); this binary links no collector, so the plan names the
//     usage-producer command to run.
const (
	ActionRebuild   = "rebuild-unit"
	ActionRedeliver = "redeliver"
	ActionRecollect = "recollect"
)

// ReplaySource is the source of replay nudges. It must publish nothing
// else. Where sources are bound it is also the name under sources: of the
// operators' public replay keys (messages.CheckReplay says what they may
// sign).
const ReplaySource = messages.ReplaySource

// ErrReplayUnsigned: sources are bound and the replay cannot be signed.
var ErrReplayUnsigned = errors.New("sources are bound: replays must be signed: add uf-replay keys and pass --signing-key-file")

// ReplaySigning says whether replays can be published where the workers
// will admit them: with sources bound, each replay is signed by
// SigningKey, which must be one of the replay keys listed under
// sources.uf-replay. Checked before anything is planned or published.
func (env *Env) ReplaySigning() error {
	if len(env.Sources) == 0 {
		return nil
	}
	keys := env.Sources[ReplaySource]
	switch {
	case len(keys) == 0 && env.SigningKey == nil:
		return fmt.Errorf("%w (the config's sources: lists no %s key, and no signing key was given)", ErrReplayUnsigned, ReplaySource)
	case len(keys) == 0:
		return fmt.Errorf("%w (the config's sources: lists no %s key: add the signing key's public key there, and in every worker's config)", ErrReplayUnsigned, ReplaySource)
	case env.SigningKey == nil:
		return fmt.Errorf("%w (no signing key was given)", ErrReplayUnsigned)
	}
	pub, err := env.SigningKey.PublicKey()
	if err != nil {
		return fmt.Errorf("signing key: %w", err)
	}
	if !slices.Contains(keys, pub) {
		return fmt.Errorf("the signing key's public key %s is not listed under sources.%s in this config: the workers would refuse its replays", pub, ReplaySource)
	}
	return nil
}

// sign signs a replay when a signing key is set (ReplaySigning has
// checked it is needed and right).
func (env *Env) sign(m *nats.Msg) error {
	if env.SigningKey == nil {
		return nil
	}
	return messages.SignPart(m.Subject, m.Header, m.Data, env.SigningKey)
}

// BucketReplays remembers, per destination and dead letter, the replays
// done (key <destination>.<dead seq>).
const BucketReplays = "uf_replays"

// ReplayPlan says what a replay of one dead letter does (or did).
type ReplayPlan struct {
	DeadSeq     uint64    `json:"dead_seq"`
	Destination string    `json:"destination"`
	Action      string    `json:"action,omitempty"`
	Subject     string    `json:"subject,omitempty"`
	MsgID       string    `json:"msg_id,omitempty"`
	Records     int       `json:"records,omitempty"`
	Command     string    `json:"command,omitempty"`   // ActionRecollect: what to run
	Done        bool      `json:"done"`                // published (false in a dry run)
	Seq         uint64    `json:"usage_seq,omitempty"` // where USAGE stored it
	Duplicate   bool      `json:"duplicate,omitempty"`
	Replayed    time.Time `json:"replayed_before,omitzero"` // an earlier replay of this dead letter
	Refused     string    `json:"refused,omitempty"`        // why this tool cannot replay it
	Detail      string    `json:"detail"`
}

type replayRecord struct {
	Time   time.Time `json:"time"`
	Action string    `json:"action"`
	MsgID  string    `json:"msg_id"`
}

// Replay plans, and unless dryRun performs, the replay of e.
func (env *Env) Replay(ctx context.Context, e *DeadEntry, dryRun bool) (*ReplayPlan, error) {
	dl := &e.Letter
	p := &ReplayPlan{DeadSeq: e.Seq, Destination: dl.Destination}
	if dl.Destination == "_collect" {
		return env.planRecollect(e, p), nil
	}
	d := env.Dest(dl.Destination)
	if d == nil {
		p.Refused = fmt.Sprintf("destination %q is not in this config", dl.Destination)
		return p, nil
	}
	kv, err := env.replays(ctx, dryRun)
	if err != nil {
		return nil, err
	}
	key := dl.Destination + "." + strconv.FormatUint(e.Seq, 10)
	if kv != nil {
		if ent, err := kv.Get(ctx, key); err == nil {
			var r replayRecord
			_ = json.Unmarshal(ent.Value(), &r)
			p.Replayed = r.Time
		} else if !errors.Is(err, jetstream.ErrKeyNotFound) {
			return nil, fmt.Errorf("bucket %s: %w", BucketReplays, err)
		}
	}
	var msg *nats.Msg
	if d.Replace() {
		msg, err = env.planRebuild(ctx, e, p)
	} else {
		msg, err = env.planRedeliver(ctx, d, e, p)
	}
	if err != nil || p.Refused != "" {
		return p, err
	}
	if !p.Replayed.IsZero() && p.Action == ActionRedeliver {
		p.Detail = fmt.Sprintf("already replayed at %s: its records were published again then; nothing to do", p.Replayed.Format(time.RFC3339))
		return p, nil
	}
	if dryRun {
		return p, nil
	}
	ack, err := env.JS.PublishMsg(ctx, msg)
	if err != nil {
		return p, fmt.Errorf("replay of dead letter %d: publish %s: %w", e.Seq, msg.Subject, err)
	}
	p.Done, p.Duplicate, p.Seq = true, ack.Duplicate, ack.Sequence
	b, _ := json.Marshal(replayRecord{Time: time.Now().UTC(), Action: p.Action, MsgID: p.MsgID})
	if _, err := kv.Put(ctx, key, b); err != nil {
		return p, fmt.Errorf("replay of dead letter %d published, but not recorded in %s: %w", e.Seq, BucketReplays, err)
	}
	return p, nil
}

// replays opens (or, when not a dry run, creates) the replay bucket.
func (env *Env) replays(ctx context.Context, dryRun bool) (jetstream.KeyValue, error) {
	kv, err := env.JS.KeyValue(ctx, BucketReplays)
	if err == nil {
		return kv, nil
	}
	if !errors.Is(err, jetstream.ErrBucketNotFound) {
		return nil, fmt.Errorf("bucket %s: %w", BucketReplays, err)
	}
	if dryRun {
		return nil, nil
	}
	kv, err = env.JS.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: BucketReplays, Description: "dead letters replayed, by destination and dead-letter sequence", History: 1})
	if err != nil {
		return nil, fmt.Errorf("bucket %s: %w", BucketReplays, err)
	}
	return kv, nil
}

// unitOf returns the feed and hour of the dead letter's part: from its
// subject, else from the stored part's headers.
func (env *Env) unitOf(ctx context.Context, e *DeadEntry) (string, time.Time, error) {
	if f, h, err := messages.ParseUsageSubject(e.Letter.Subject); err == nil {
		return f, h, nil
	}
	raw, err := env.usageMsg(ctx, e.Letter.StreamSeq)
	if err != nil {
		return "", time.Time{}, err
	}
	return messages.ParseUsageSubject(raw.Subject)
}

func (env *Env) usageMsg(ctx context.Context, seq uint64) (*jetstream.RawStreamMsg, error) {
	st, err := env.JS.Stream(ctx, messages.StreamUsage)
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", messages.StreamUsage, err)
	}
	raw, err := st.GetMsg(ctx, seq)
	if err != nil {
		return nil, fmt.Errorf("stream %s message %d: %w", messages.StreamUsage, seq, err)
	}
	return raw, nil
}

func (env *Env) planRebuild(ctx context.Context, e *DeadEntry, p *ReplayPlan) (*nats.Msg, error) {
	feed, hour, err := env.unitOf(ctx, e)
	if err != nil {
		p.Refused = "cannot tell the unit: " + err.Error()
		return nil, nil
	}
	p.Action = ActionRebuild
	meta := messages.PartMeta{
		BatchID: fmt.Sprintf("replay-%s-%d", e.Letter.Destination, e.Seq), Feed: feed, Source: ReplaySource,
		Kind: messages.KindSnapshotEnd, Hour: hour, Period: messages.Period{Start: hour, End: hour.Add(time.Hour)},
		Generation: time.Now().UnixNano(), Parts: 0,
	}
	h := meta.Header()
	p.Subject, p.MsgID = messages.UsageSubject(feed, hour), h.Get(messages.HdrMsgID)
	// A new id per replay: a rebuild is idempotent, and a replay done
	// before the cause was fixed must not hide the one after.
	p.MsgID += "/" + strconv.FormatInt(meta.Generation, 36)
	h.Set(messages.HdrMsgID, p.MsgID)
	p.Detail = fmt.Sprintf("rebuild the unit of %s at %s from the stream and upload it whole (a replace: the same content again changes nothing)", hour.Format(time.RFC3339), e.Letter.Destination)
	m := &nats.Msg{Subject: p.Subject, Header: h}
	if err := env.sign(m); err != nil {
		return nil, fmt.Errorf("dead letter %d: %w", e.Seq, err)
	}
	return m, nil
}

func (env *Env) planRedeliver(ctx context.Context, d *Dest, e *DeadEntry, p *ReplayPlan) (*nats.Msg, error) {
	dl := &e.Letter
	feed, hour, err := env.unitOf(ctx, e)
	if err != nil {
		p.Refused = "cannot tell the part: " + err.Error()
		return nil, nil
	}
	if strings.HasPrefix(dl.Reason, reasonSourceBinding) {
		// Its source never vouched for it: sending it again would launder
		// it. Its source publishes it again, signed.
		p.Refused = "it was refused for its source binding: a replay cannot vouch for data its source did not sign (the source publishes it again, signed)"
		return nil, nil
	}
	recs, orig, err := env.deadRecords(ctx, e)
	if err != nil {
		p.Refused = err.Error()
		return nil, nil
	}
	if orig == nil && len(env.Sources) > 0 {
		p.Refused = fmt.Sprintf("the part is no longer in %s (past its max age): where sources are bound a replay is checked against its signed original, so it cannot be replayed", messages.StreamUsage)
		return nil, nil
	}
	p.Action = ActionRedeliver
	meta := messages.PartMeta{BatchID: fmt.Sprintf("replay-%s-%d", d.Name, e.Seq), Part: 1, Feed: feed, Source: orToken(dl.Source, ReplaySource), Kind: messages.KindAppend, Hour: hour, Records: len(recs)}
	data, err := messages.EncodeRecords(nil, recs)
	if err != nil {
		return nil, fmt.Errorf("dead letter %d: encoding its records: %w", e.Seq, err)
	}
	h := meta.Header()
	// For this destination alone: the others of the feed had the records.
	h.Set(messages.HdrDestination, d.Name)
	if orig != nil {
		// Which stored records these are: where sources are bound the
		// workers check them against the original, signed by its source.
		h.Set(messages.HdrReplayOf, strconv.FormatUint(dl.StreamSeq, 10))
		if orig.idx != nil {
			h.Set(messages.HdrReplayRecords, messages.FormatReplayRecords(orig.idx))
		}
	}
	p.Subject, p.MsgID, p.Records = messages.UsageSubject(feed, hour), meta.MsgID(), len(recs)
	p.Detail = fmt.Sprintf("publish the %d refused record(s) again as part %s on %s, addressed to %s alone: it delivers them once", len(recs), p.MsgID, p.Subject, d.Name)
	m := &nats.Msg{Subject: p.Subject, Header: h, Data: data}
	if err := env.sign(m); err != nil {
		return nil, fmt.Errorf("dead letter %d: %w", e.Seq, err)
	}
	return m, nil
}

// reasonSourceBinding begins the reason of a part the workers refused for
// its source binding (workers/sources.go).
const reasonSourceBinding = "source binding: "

// replayedPart says where a redelivery's records were read in USAGE: the
// indexes of the refused records in the stored part (nil: all of it).
type replayedPart struct{ idx []int }

// deadRecords are the refused records of e: read from USAGE at the dead
// letter's stream sequence (the records listed by index, in index order,
// or the whole part; orig says which), or, once the part has aged out,
// the dead letter's own copy (orig nil; not when a record was too large to
// be kept whole: it holds an excerpt).
func (env *Env) deadRecords(ctx context.Context, e *DeadEntry) ([]messages.UsageRecord, *replayedPart, error) {
	dl := &e.Letter
	raw, err := env.usageMsg(ctx, dl.StreamSeq)
	if err != nil {
		if len(dl.Records) == 0 {
			return nil, nil, fmt.Errorf("the part is no longer in the stream and the dead letter holds no records: %v", err)
		}
		recs := make([]messages.UsageRecord, len(dl.Records))
		for i := range dl.Records {
			if dl.Records[i].Truncated {
				return nil, nil, fmt.Errorf("the part is no longer in the stream and the dead letter keeps record %d only as an excerpt (it was too large to keep whole): %v", dl.Records[i].Index, err)
			}
			recs[i] = dl.Records[i].Record
		}
		return recs, nil, nil
	}
	part, err := messages.DecodePart(raw.Header, raw.Data)
	if err != nil {
		return nil, nil, fmt.Errorf("stream message %d still cannot be decoded by this version: %v", dl.StreamSeq, err)
	}
	if len(dl.Records) == 0 {
		return part.Records, &replayedPart{}, nil
	}
	idx := make([]int, 0, len(dl.Records))
	for _, r := range dl.Records {
		if r.Index < 0 || r.Index >= len(part.Records) {
			return nil, nil, fmt.Errorf("record index %d is not in stream message %d (%d records)", r.Index, dl.StreamSeq, len(part.Records))
		}
		idx = append(idx, r.Index)
	}
	slices.Sort(idx)
	idx = slices.Compact(idx) // a record listed twice is still sent once
	recs := make([]messages.UsageRecord, len(idx))
	for i, n := range idx {
		recs[i] = part.Records[n]
	}
	return recs, &replayedPart{idx: idx}, nil
}

func (env *Env) planRecollect(e *DeadEntry, p *ReplayPlan) *ReplayPlan {
	dl := &e.Letter
	rg := ""
	if v := dl.Header["Usage-Range"]; len(v) > 0 {
		rg = v[0]
	}
	p.Action = ActionRecollect
	p.Refused = "a collector's rejected row is parsed again by collecting its period again (a new generation replaces the old one everywhere); usage-worker links no collector"
	p.Command = fmt.Sprintf("usage-producer collect --config COLLECTORS.yaml --once   # collector %s, range %s", dl.Source, rg)
	p.Detail = "run the command once the parser or the report is fixed"
	return p
}

func orToken(s, def string) string {
	if messages.ValidToken(s) {
		return s
	}
	return def
}

// UnitCovered is the stream position the last successful upload of unit
// (a replace destination's unit key) covered, 0 if none: what the pools
// keep in bucket usagefleet_units. A replay nudge stored at or before it
// has been rebuilt and uploaded.
func (env *Env) UnitCovered(ctx context.Context, dest, unit string) (uint64, error) {
	kv, err := env.JS.KeyValue(ctx, messages.BucketUnits)
	if err != nil {
		return 0, fmt.Errorf("bucket %s: %w", messages.BucketUnits, err)
	}
	e, err := kv.Get(ctx, dest+"."+unit)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("bucket %s: %w", messages.BucketUnits, err)
	}
	n, err := strconv.ParseUint(string(e.Value()), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("bucket %s key %s: %q is not a stream position", messages.BucketUnits, dest+"."+unit, e.Value())
	}
	return n, nil
}

// ReplayAll replays entries in order. Dead letters of one replace unit
// share its rebuild: the first one's nudge rebuilds the unit, the others
// say so instead of nudging it again. Errors are per entry (the others go
// on); a nil plan goes with each error.
func (env *Env) ReplayAll(ctx context.Context, entries []DeadEntry, dryRun bool) ([]*ReplayPlan, []error) {
	plans := make([]*ReplayPlan, len(entries))
	errs := make([]error, len(entries))
	rebuilt := map[string]uint64{} // destination and unit -> the dead letter whose replay rebuilds it
	for i := range entries {
		e := &entries[i]
		if key, ok := env.replaceUnit(ctx, e); ok {
			if by, dup := rebuilt[key]; dup {
				plans[i] = &ReplayPlan{DeadSeq: e.Seq, Destination: e.Letter.Destination, Action: ActionRebuild, Done: !dryRun,
					Detail: fmt.Sprintf("the unit is rebuilt by the replay of dead letter %d", by)}
				continue
			}
			rebuilt[key] = e.Seq
		}
		plans[i], errs[i] = env.Replay(ctx, e, dryRun)
	}
	return plans, errs
}

// replaceUnit names the replace unit a dead letter belongs to.
func (env *Env) replaceUnit(ctx context.Context, e *DeadEntry) (string, bool) {
	d := env.Dest(e.Letter.Destination)
	if d == nil || !d.Replace() {
		return "", false
	}
	_, h, err := env.unitOf(ctx, e)
	if err != nil {
		return "", false
	}
	us := d.Dest.Units(h)
	if len(us) == 0 {
		return "", false
	}
	return d.Name + "." + us[0].Key, true
}
