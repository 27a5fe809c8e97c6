package cloudzero

// Who may send a part (issue 12 item 3), end to end: the real pool on an
// embedded nats-server delivering to the CloudZero emulator. A forged or
// unsigned part, an implausible snapshot generation and a newer-schema part
// held past its bound are dead-lettered, and the hours hold exactly what
// the legitimate parts say.

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	sandbox "github.com/usagefleet/usagefleet/internal/sandbox/cloudzero"
	"github.com/usagefleet/usagefleet/internal/usagegen"
	"github.com/usagefleet/usagefleet/messages"
	"github.com/usagefleet/usagefleet/producer"
	"github.com/usagefleet/usagefleet/workers/conformance"
)

var sourcesStart = time.Date(2024, 8, 1, 0, 0, 0, 0, time.UTC)

func sourcesEnv(t *testing.T) *conformance.Env {
	s := sandbox.New(sandbox.Config{Connections: map[string]string{testConn: testKey}})
	ts := httptest.NewServer(s.Handler())
	t.Cleanup(ts.Close)
	return conformance.NewEnv(t, conformance.Harness{Start: func(t *testing.T) conformance.Sandbox { return &confSandbox{s: s, url: ts.URL} }})
}

// userKey makes a source's signing key and returns it with its public key.
func userKey(t *testing.T) (nkeys.KeyPair, string) {
	t.Helper()
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	pub, err := kp.PublicKey()
	if err != nil {
		t.Fatal(err)
	}
	return kp, pub
}

// signer is a producer that signs with kp (none when kp is nil).
func signer(t *testing.T, e *conformance.Env, kp nkeys.KeyPair) *producer.Producer {
	t.Helper()
	p, err := producer.New(e.NS.Connect(t), producer.Options{SigningKey: kp})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func publish(t *testing.T, p *producer.Producer, b *messages.Batch) {
	t.Helper()
	if _, err := p.Publish(context.Background(), b); err != nil {
		t.Fatalf("publish %s: %v", b.ID, err)
	}
}

// totalsOf is what the emulator must hold for recs, unit by unit.
func totalsOf(recs []messages.UsageRecord) map[string]conformance.Totals {
	type acc struct {
		n         int
		cost, qty messages.Sum
	}
	sums := map[string]*acc{}
	for i := range recs {
		k := hourUnit(recs[i].ChargePeriodStart).Key
		if sums[k] == nil {
			sums[k] = &acc{}
		}
		sums[k].n++
		sums[k].cost.Add(recs[i].BilledCost)
		sums[k].qty.Add(recs[i].ConsumedQuantity)
	}
	out := map[string]conformance.Totals{}
	for k, a := range sums {
		out[k] = conformance.Totals{Records: a.n, Cost: a.cost.Decimal(), Quantity: a.qty.Decimal()}
	}
	return out
}

// waitHolds waits until the emulator holds exactly recs.
func waitHolds(t *testing.T, e *conformance.Env, recs []messages.UsageRecord, timeout time.Duration) {
	t.Helper()
	want := totalsOf(recs)
	deadline := time.Now().Add(timeout)
	for {
		diff := conformance.Diff(want, e.SB.Totals(t))
		if diff == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s the emulator does not hold exactly the legitimate parts:\n%s", timeout, diff)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// deadLetters waits until the dead-letter stream holds a letter for each
// batch in batches, and returns every letter it holds by batch.
func deadLetters(t *testing.T, e *conformance.Env, batches []string, timeout time.Duration) map[string][]messages.DeadLetter {
	t.Helper()
	js, err := jetstream.New(e.NS.Connect(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	st, err := js.Stream(ctx, messages.StreamDead)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(timeout)
	for {
		got := map[string][]messages.DeadLetter{}
		info, err := st.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for seq := info.State.FirstSeq; info.State.Msgs > 0 && seq <= info.State.LastSeq; seq++ {
			raw, err := st.GetMsg(ctx, seq)
			if err != nil {
				continue
			}
			var dl messages.DeadLetter
			if err := json.Unmarshal(raw.Data, &dl); err != nil {
				t.Fatalf("dead letter %d: %v", seq, err)
			}
			got[dl.BatchID] = append(got[dl.BatchID], dl)
		}
		missing := ""
		for _, b := range batches {
			if len(got[b]) == 0 {
				missing += " " + b
			}
		}
		if missing == "" {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s no dead letter for batch%s (dead letters: %v)", timeout, missing, got)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func checkReason(t *testing.T, dls []messages.DeadLetter, prefix string) {
	t.Helper()
	for _, dl := range dls {
		if !strings.HasPrefix(dl.Reason, prefix) {
			t.Errorf("dead letter of %s part %d: reason %q, want it to start with %q", dl.BatchID, dl.Part, dl.Reason, prefix)
		}
	}
}

// (a) team-b, with its own valid key, publishes an empty snapshot with a
// newer generation claiming team-a's source and period: it must not empty
// team-a's hours.
func TestForgedSourceIsDeadLettered(t *testing.T) {
	e := sourcesEnv(t)
	kpA, pubA := userKey(t)
	kpB, pubB := userKey(t)
	period := messages.Period{Start: sourcesStart, End: sourcesStart.Add(2 * time.Hour)}
	recs := usagegen.Generate(200, usagegen.Options{Seed: 11, Start: sourcesStart, Hours: 2})
	gen := time.Now().UnixNano()
	publish(t, signer(t, e, kpA), &messages.Batch{ID: "a-1", Feed: e.Feed, Source: "team-a", Snapshot: &messages.Snapshot{Period: period, Generation: gen}, Records: recs})
	publish(t, signer(t, e, kpB), &messages.Batch{ID: "forged", Feed: e.Feed, Source: "team-a", Snapshot: &messages.Snapshot{Period: period, Generation: gen + 1}})

	opts := conformance.FastOptions()
	opts.SourceKeys = messages.SourceKeys{"team-a": {pubA}, "team-b": {pubB}}
	e.StartPool("a", opts)
	waitHolds(t, e, recs, 20*time.Second)
	dls := deadLetters(t, e, []string{"forged"}, 20*time.Second)
	checkReason(t, dls["forged"], "source binding: ")
	if len(dls["a-1"]) != 0 {
		t.Fatalf("team-a's own snapshot was dead-lettered: %v", dls["a-1"])
	}
	if want := 2; len(dls["forged"]) < want { // one marker per hour of the period
		t.Fatalf("%d dead letters for the forged snapshot's markers, want %d", len(dls["forged"]), want)
	}
}

// (b) An unsigned part claiming a bound source is dead-lettered; with no
// keys configured, the same part is delivered as before.
func TestUnsignedPart(t *testing.T) {
	for _, bound := range []bool{true, false} {
		t.Run(fmt.Sprintf("keys=%v", bound), func(t *testing.T) {
			e := sourcesEnv(t)
			kpA, pubA := userKey(t)
			signed := usagegen.Generate(120, usagegen.Options{Seed: 21, Start: sourcesStart, Hours: 3})
			unsigned := usagegen.Generate(80, usagegen.Options{Seed: 22, Start: sourcesStart, Hours: 3})
			publish(t, signer(t, e, kpA), &messages.Batch{ID: "signed", Feed: e.Feed, Source: "team-a", Records: signed})
			publish(t, signer(t, e, nil), &messages.Batch{ID: "unsigned", Feed: e.Feed, Source: "team-a", Records: unsigned})

			opts := conformance.FastOptions()
			if bound {
				opts.SourceKeys = messages.SourceKeys{"team-a": {pubA}}
			}
			e.StartPool("a", opts)
			if !bound {
				waitHolds(t, e, append(append([]messages.UsageRecord(nil), signed...), unsigned...), 20*time.Second)
				if n := deadCount(t, e); n != 0 {
					t.Fatalf("%d dead letters with no keys configured", n)
				}
				return
			}
			waitHolds(t, e, signed, 20*time.Second)
			dls := deadLetters(t, e, []string{"unsigned"}, 20*time.Second)
			checkReason(t, dls["unsigned"], "source binding: ")
			if len(dls["signed"]) != 0 {
				t.Fatalf("signed parts dead-lettered: %v", dls["signed"])
			}
		})
	}
}

func deadCount(t *testing.T, e *conformance.Env) uint64 {
	t.Helper()
	js, err := jetstream.New(e.NS.Connect(t))
	if err != nil {
		t.Fatal(err)
	}
	st, err := js.Stream(context.Background(), messages.StreamDead)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

// publishRaw stores a part with headers h (the producer refuses what these
// tests need to send).
func publishRaw(t *testing.T, e *conformance.Env, h nats.Header, data []byte) {
	t.Helper()
	js, err := jetstream.New(e.NS.Connect(t))
	if err != nil {
		t.Fatal(err)
	}
	hour, _ := time.Parse(time.RFC3339, h.Get(messages.HdrHour))
	if _, err := js.PublishMsg(context.Background(), &nats.Msg{Subject: messages.UsageSubject(e.Feed, hour), Header: h, Data: data}); err != nil {
		t.Fatal(err)
	}
}

// (c) An empty snapshot of generation 2^63-1 for team-a's period, with no
// keys configured: the generation is refused whatever the binding, so it
// neither empties the hour now nor freezes the period later.
func TestImplausibleGenerationIsDeadLettered(t *testing.T) {
	e := sourcesEnv(t)
	period := messages.Period{Start: sourcesStart, End: sourcesStart.Add(time.Hour)}
	recs := usagegen.Generate(100, usagegen.Options{Seed: 31, Start: sourcesStart, Hours: 1})
	publish(t, e.Prod, &messages.Batch{ID: "a-1", Feed: e.Feed, Source: "team-a", Snapshot: &messages.Snapshot{Period: period, Generation: time.Now().UnixNano()}, Records: recs})
	marker := messages.PartMeta{BatchID: "forever", Feed: e.Feed, Source: "team-a", Kind: messages.KindSnapshotEnd, Hour: sourcesStart, Period: period, Generation: math.MaxInt64, Parts: 0}.Header()
	if marker.Get(messages.HdrHour) == "" {
		t.Fatal("a marker's header has no hour")
	}
	publishRaw(t, e, marker, nil)

	e.StartPool("a", conformance.FastOptions())
	waitHolds(t, e, recs, 20*time.Second)
	dls := deadLetters(t, e, []string{"forever"}, 20*time.Second)
	checkReason(t, dls["forever"], "implausible generation: ")
}

// (d) A part of a newer schema holds its hour only for NewerSchemaMaxHold
// after it was stored: then it is dead-lettered and the hour is delivered.
func TestNewerSchemaPartHeldTooLongIsDeadLettered(t *testing.T) {
	e := sourcesEnv(t)
	newer := messages.PartMeta{BatchID: "from-the-future", Part: 1, Feed: e.Feed, Source: "svc", Kind: messages.KindAppend, Hour: sourcesStart.Add(time.Hour), Records: 1}.Header()
	newer.Set(messages.HdrSchema, "99")
	publishRaw(t, e, newer, []byte{0x90})
	recs := usagegen.Generate(150, usagegen.Options{Seed: 41, Start: sourcesStart, Hours: 3})
	publish(t, e.Prod, &messages.Batch{ID: "now", Feed: e.Feed, Source: "svc", Records: recs})

	opts := conformance.FastOptions()
	opts.NewerSchemaMaxHold = time.Millisecond // the part is older than that when the pool reads it
	e.StartPool("a", opts)
	waitHolds(t, e, recs, 20*time.Second)
	dls := deadLetters(t, e, []string{"from-the-future"}, 20*time.Second)
	checkReason(t, dls["from-the-future"], "newer schema held too long: ")
}

// A part whose headers team-a signed but whose payload was changed after
// signing is dead-lettered where the payload is read (the rebuild): the
// headers alone verify, so only the signed payload sum catches it.
func TestChangedPayloadIsDeadLettered(t *testing.T) {
	e := sourcesEnv(t)
	kpA, pubA := userKey(t)
	recs := usagegen.Generate(60, usagegen.Options{Seed: 51, Start: sourcesStart, Hours: 1})
	publish(t, signer(t, e, kpA), &messages.Batch{ID: "a-1", Feed: e.Feed, Source: "team-a", Records: recs})

	signed, err := producer.Split(&messages.Batch{ID: "changed", Feed: e.Feed, Source: "team-a", Records: usagegen.Generate(10, usagegen.Options{Seed: 52, Start: sourcesStart, Hours: 1})}, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	other, err := producer.Split(&messages.Batch{ID: "changed", Feed: e.Feed, Source: "team-a", Records: usagegen.Generate(10, usagegen.Options{Seed: 53, Start: sourcesStart, Hours: 1})}, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if len(signed) != 1 || len(other) != 1 {
		t.Fatalf("%d and %d parts, want one each", len(signed), len(other))
	}
	h := signed[0].Meta.Header()
	if err := messages.SignPart(messages.UsageSubject(e.Feed, sourcesStart), h, signed[0].Payload, kpA); err != nil {
		t.Fatal(err)
	}
	publishRaw(t, e, h, other[0].Payload) // same count, same hour, other records

	opts := conformance.FastOptions()
	opts.SourceKeys = messages.SourceKeys{"team-a": {pubA}}
	e.StartPool("a", opts)
	waitHolds(t, e, recs, 20*time.Second)
	dls := deadLetters(t, e, []string{"changed"}, 20*time.Second)
	checkReason(t, dls["changed"], "source binding: ")
}

// (e) With sources bound, a part of a newer schema holds its hour only when
// its source signed it. An unsigned one and one signed by another source's
// key are dead-lettered at once, with the binding's reason, and their
// hours are delivered without them; before, each held its hour for
// NewerSchemaMaxHold (24h by default), so any publisher could freeze any
// unit. A newer part team-a signed still holds its own hour.
func TestForgedNewerSchemaPartDoesNotHold(t *testing.T) {
	e := sourcesEnv(t)
	kpA, pubA := userKey(t)
	kpB, pubB := userKey(t)
	newerPart := func(batch string, hour time.Time, kp nkeys.KeyPair, stored []byte) {
		t.Helper()
		h := messages.PartMeta{BatchID: batch, Part: 1, Feed: e.Feed, Source: "team-a", Kind: messages.KindAppend, Hour: hour, Records: 1}.Header()
		h.Set(messages.HdrSchema, "99")
		payload := []byte{0x90}
		if kp != nil {
			if err := messages.SignPart(messages.UsageSubject(e.Feed, hour), h, payload, kp); err != nil {
				t.Fatal(err)
			}
		}
		if stored == nil {
			stored = payload
		}
		publishRaw(t, e, h, stored)
	}
	newerPart("signed-newer", sourcesStart.Add(2*time.Hour), kpA, nil) // first: marked before the forged ones
	newerPart("unsigned-newer", sourcesStart, nil, nil)
	newerPart("forged-newer", sourcesStart.Add(time.Hour), kpB, nil)
	// Headers team-a signed, other bytes: the mark (headers only) lets it
	// hold; the rebuild, which reads the payload, must not.
	newerPart("changed-newer", sourcesStart, kpA, []byte{0x91})
	recs := usagegen.Generate(150, usagegen.Options{Seed: 61, Start: sourcesStart, Hours: 2})
	publish(t, signer(t, e, kpA), &messages.Batch{ID: "a-1", Feed: e.Feed, Source: "team-a", Records: recs})

	opts := conformance.FastOptions()
	opts.SourceKeys = messages.SourceKeys{"team-a": {pubA}, "team-b": {pubB}}
	if opts.NewerSchemaMaxHold != 0 {
		t.Fatal("the test needs the default hold (24h): the forged parts must not be let go by age")
	}
	e.StartPool("a", opts)
	waitHolds(t, e, recs, 20*time.Second) // hours 0 and 1, without the forged parts; hour 2 held
	dls := deadLetters(t, e, []string{"unsigned-newer", "forged-newer", "changed-newer"}, 20*time.Second)
	checkReason(t, dls["unsigned-newer"], "source binding: ")
	checkReason(t, dls["forged-newer"], "source binding: ")
	checkReason(t, dls["changed-newer"], "source binding: ")
	if len(dls["signed-newer"]) != 0 {
		t.Fatalf("the newer part team-a signed was dead-lettered, not held: %v", dls["signed-newer"])
	}
	if len(dls["a-1"]) != 0 {
		t.Fatalf("team-a's parts were dead-lettered: %v", dls["a-1"])
	}
}
