package ops

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/usagefleet/usagefleet/internal/usagegen"
	"github.com/usagefleet/usagefleet/messages"
	"github.com/usagefleet/usagefleet/producer"
)

// signedRig is a rig whose workers bind sources: team-a's key, and an
// operator's replay key under uf-replay.
func signedRig(t *testing.T) (*rig, nkeys.KeyPair, nkeys.KeyPair, *producer.Producer) {
	t.Helper()
	teamA, _ := nkeys.CreateUser()
	op, _ := nkeys.CreateUser()
	pubA, _ := teamA.PublicKey()
	pubOp, _ := op.PublicKey()
	r := newRig(t, fmt.Sprintf("sources: {team-a: [%s], uf-replay: [%s]}\n", pubA, pubOp))
	r.env.Sources = messages.SourceKeys{"team-a": {pubA}, ReplaySource: {pubOp}}
	prod, err := producer.New(r.env.NC, producer.Options{SigningKey: teamA})
	if err != nil {
		t.Fatal(err)
	}
	return r, teamA, op, prod
}

func publishAs(t *testing.T, prod *producer.Producer, feed, id string, recs []messages.UsageRecord) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := prod.Publish(ctx, &messages.Batch{ID: id, Feed: feed, Source: "team-a", Records: recs}); err != nil {
		t.Fatal(err)
	}
}

// Sources bound: a webhook's refused part, replayed with the replay key,
// arrives once; again, nothing changes. Without the key the replay is
// refused up front.
func TestReplaySignedAppendArrivesOnce(t *testing.T) {
	r, _, op, prod := signedRig(t)
	ctx := context.Background()
	faults(t, r.hook.Faults(), "400x1")
	recs := records(7, 1, 1, time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC))
	want := usagegen.Total(recs)
	publishAs(t, prod, "hooks", "b-append", recs)
	waitFor(t, "the refused part's ack", func() bool { return r.acks("team-a", "hook") == 1 })
	dead := r.dead("hook")
	if len(dead) != 1 || len(dead[0].Letter.Records) != 7 {
		t.Fatalf("dead letters = %+v, want one with the 7 records", dead)
	}

	if err := r.env.ReplaySigning(); !errors.Is(err, ErrReplayUnsigned) {
		t.Fatalf("no signing key: %v, want %v", err, ErrReplayUnsigned)
	}
	other, _ := nkeys.CreateUser()
	r.env.SigningKey = other
	if err := r.env.ReplaySigning(); err == nil || !strings.Contains(err.Error(), "not listed under sources.uf-replay") {
		t.Fatalf("a key not listed: %v", err)
	}
	r.env.SigningKey = op
	if err := r.env.ReplaySigning(); err != nil {
		t.Fatal(err)
	}
	p, err := r.env.Replay(ctx, &dead[0], false)
	if err != nil || !p.Done || p.Refused != "" {
		t.Fatalf("replay = %+v, %v", p, err)
	}
	waitFor(t, "the replayed part's ack", func() bool { return r.acks("team-a", "hook") == 2 })
	st := r.hook.Stats()
	if st.Records != 7 || !st.Cost.Equal(want.Cost.Big()) {
		t.Fatalf("receiver: %d records cost %s, want 7 cost %s", st.Records, st.Cost, want.Cost)
	}
	if n := len(r.dead("hook")); n != 1 {
		t.Fatalf("%d dead letters after the replay, want 1: %+v", n, r.dead("hook"))
	}
	seq := r.usageLastSeq()
	if p, err = r.env.Replay(ctx, &dead[0], false); err != nil || p.Done {
		t.Fatalf("second replay = %+v, %v", p, err)
	}
	if r.usageLastSeq() != seq || r.hook.Stats().Records != 7 {
		t.Fatal("the second replay changed something")
	}
}

// Sources bound: a CloudZero unit refused whole, replayed by a signed
// rebuild nudge, is held whole.
func TestReplaySignedNudgeRebuilds(t *testing.T) {
	r, _, op, prod := signedRig(t)
	ctx := context.Background()
	faults(t, r.cz.Faults(), "415x1")
	h0 := time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)
	recs := records(20, 1, 2, h0)
	want := usagegen.Total(recs)
	publishAs(t, prod, "cloud", "b-replace", recs)
	waitFor(t, "the refused part's ack", func() bool { return r.acks("team-a", "cz") == 1 })
	dead := r.dead("cz")
	if len(dead) == 0 {
		t.Fatal("no dead letter")
	}
	r.env.SigningKey = op
	p, err := r.env.Replay(ctx, &dead[0], false)
	if err != nil || !p.Done || p.Action != ActionRebuild {
		t.Fatalf("replay = %+v, %v", p, err)
	}
	r.waitCovered("cz", &dead[0], p.Seq)
	if got := r.cz.Hours(czConn)[h0]; got.Rows != want.Records || !got.Cost.Equal(want.Cost.Big()) {
		t.Fatalf("CloudZero holds %d rows cost %s, want %d cost %s", got.Rows, got.Cost, want.Records, want.Cost)
	}
	for _, d := range r.dead("cz")[1:] {
		if strings.HasPrefix(d.Letter.Reason, "source binding") {
			t.Fatalf("the nudge was refused: %s", d.Letter.Reason)
		}
	}
}

// A replay key cannot replace or forge team-a's data: a snapshot claiming
// team-a, and a redelivery whose records are not the original's, are
// refused into DEAD for their source binding; team-a's data is unchanged.
func TestReplayKeyCannotForge(t *testing.T) {
	r, _, op, prod := signedRig(t)
	ctx := context.Background()
	hour := time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)
	recs := records(5, 1, 3, hour)
	publishAs(t, prod, "hooks", "b-a", recs)
	waitFor(t, "team-a's part delivered", func() bool { return r.hook.Stats().Records == 5 })
	orig := r.usageLastSeq()

	subject := messages.UsageSubject("hooks", hour)
	forged := records(1, 1, 99, hour)
	data, _ := messages.EncodeRecords(nil, forged)
	pub := func(m messages.PartMeta, data []byte, hdr map[string]string) {
		h := m.Header()
		for k, v := range hdr {
			h.Set(k, v)
		}
		if err := messages.SignPart(subject, h, data, op); err != nil {
			t.Fatal(err)
		}
		if _, err := r.env.JS.PublishMsg(ctx, &nats.Msg{Subject: subject, Header: h, Data: data}); err != nil {
			t.Fatal(err)
		}
	}
	// A redelivery naming team-a's part, with records of its own.
	pub(messages.PartMeta{BatchID: "forge-1", Part: 1, Feed: "hooks", Source: "team-a", Kind: messages.KindAppend, Hour: hour, Records: 1},
		data, map[string]string{messages.HdrDestination: "hook", messages.HdrReplayOf: fmt.Sprint(orig)})
	// An append without a destination.
	pub(messages.PartMeta{BatchID: "forge-2", Part: 1, Feed: "hooks", Source: "team-a", Kind: messages.KindAppend, Hour: hour, Records: 1}, data, nil)
	// A snapshot claiming team-a.
	pub(messages.PartMeta{BatchID: "forge-3", Part: 1, Feed: "hooks", Source: "team-a", Kind: messages.KindSnapshot, Hour: hour, Period: messages.Period{Start: hour, End: hour.Add(time.Hour)}, Generation: time.Now().UnixNano(), Records: 1}, data, nil)
	waitFor(t, "three dead letters", func() bool { return len(r.dead("hook")) == 3 })
	for _, d := range r.dead("hook") {
		if !strings.HasPrefix(d.Letter.Reason, "source binding: ") || !strings.Contains(d.Letter.Reason, "replay") {
			t.Errorf("dead letter %d (%s): reason %q, want a source binding refusal naming the replay key", d.Seq, d.Letter.BatchID, d.Letter.Reason)
		}
	}
	if st := r.hook.Stats(); st.Records != 5 {
		t.Fatalf("the receiver holds %d records, want team-a's 5", st.Records)
	}
}
