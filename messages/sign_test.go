package messages

import (
	"errors"
	"math"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
)

func TestSignedPartsBindTheSource(t *testing.T) {
	teamA, _ := nkeys.CreateUser()
	teamB, _ := nkeys.CreateUser()
	pubA, _ := teamA.PublicKey()
	pubB, _ := teamB.PublicKey()
	keys := SourceKeys{"team-a": {pubA}, "team-b": {pubB}}
	if err := keys.Validate("sources"); err != nil {
		t.Fatal(err)
	}
	hour := time.Date(2026, 1, 1, 5, 0, 0, 0, time.UTC)
	period := Period{Start: hour, End: hour.Add(time.Hour)}
	meta := PartMeta{Schema: 2, BatchID: "snap", Part: 1, Feed: "f", Source: "team-a", Kind: KindSnapshot, Hour: hour, Period: period, Generation: 5, Records: 1}
	subject := UsageSubject("f", hour)
	payload := []byte{0x91, 0x01}
	signed := func(kp nkeys.KeyPair, m PartMeta) map[string][]string {
		h := m.Header()
		if err := SignPart(subject, h, payload, kp); err != nil {
			t.Fatal(err)
		}
		return h
	}
	h := signed(teamA, meta)
	if err := keys.VerifyPart(subject, h); err != nil {
		t.Fatalf("team-a's own part: %v", err)
	}
	if err := VerifyPayload(h, payload); err != nil {
		t.Fatal(err)
	}
	if err := VerifyPayload(h, []byte{0x90}); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("a changed payload: %v", err)
	}
	// team-b claims team-a's source with its own key: refused.
	if err := keys.VerifyPart(subject, signed(teamB, meta)); !errors.Is(err, ErrBadSignature) || !strings.Contains(err.Error(), "not one of its keys") {
		t.Fatalf("team-b signing as team-a: %v", err)
	}
	// Any header changed after signing: refused.
	for _, hdr := range []string{HdrSource, HdrGeneration, HdrSchema, HdrPeriod, HdrKind, HdrRecords, HdrMsgID, HdrPayloadSum} {
		c := signed(teamA, meta)
		c[hdr] = []string{c[hdr][0] + "0"}
		if hdr == HdrSource {
			c[hdr] = []string{"team-b"}
		}
		if err := keys.VerifyPart(subject, c); err == nil {
			t.Errorf("%s changed after signing: accepted", hdr)
		}
	}
	if err := keys.VerifyPart(UsageSubject("f", hour.Add(time.Hour)), h); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("moved to another subject: %v", err)
	}
	if err := keys.VerifyPart(subject, meta.Header()); !errors.Is(err, ErrUnsigned) {
		t.Fatalf("unsigned: %v", err)
	}
	other := meta
	other.Source = "team-c"
	if err := keys.VerifyPart(subject, signed(teamA, other)); err == nil || !strings.Contains(err.Error(), `source "team-c" has no signing key`) {
		t.Fatalf("unknown source: %v", err)
	}
	seed, _ := teamA.Seed()
	if err := (SourceKeys{"team-a": {string(seed)}}).Validate("sources"); err == nil {
		t.Fatal("a seed accepted as a public key")
	}
}

func TestCheckGeneration(t *testing.T) {
	now := time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		gen int64
		ok  bool
	}{
		{1, true}, {3, true}, {now.UnixNano(), true}, {now.Add(MaxGenerationLead).UnixNano(), true},
		{0, false}, {-1, false}, {now.Add(MaxGenerationLead).UnixNano() + 1, false}, {math.MaxInt64, false},
	} {
		if err := CheckGeneration(tc.gen, now); (err == nil) != tc.ok {
			t.Errorf("generation %d: err = %v, want ok=%v", tc.gen, err, tc.ok)
		}
	}
}

// A replay key signs only the two replay shapes; the optional signed
// headers leave old signatures valid and cannot be changed after signing.
func TestReplayKeySignsOnlyReplays(t *testing.T) {
	teamA, _ := nkeys.CreateUser()
	op, _ := nkeys.CreateUser()
	pubA, _ := teamA.PublicKey()
	pubOp, _ := op.PublicKey()
	keys := SourceKeys{"team-a": {pubA}, ReplaySource: {pubOp}}
	if err := keys.Validate("sources"); err != nil {
		t.Fatal(err)
	}
	if err := (SourceKeys{"team-a": {pubOp}, ReplaySource: {pubOp}}).Validate("sources"); err == nil || !strings.Contains(err.Error(), "also a replay key") {
		t.Fatalf("a source key that is a replay key: %v", err)
	}
	if err := (SourceKeys{ReplaySource: {pubOp}}).Validate("sources"); err == nil {
		t.Fatal("replay keys alone accepted")
	}
	hour := time.Date(2026, 1, 1, 5, 0, 0, 0, time.UTC)
	subject := UsageSubject("f", hour)
	recs := []UsageRecord{{ChargePeriodStart: hour, BilledCost: MustDecimal("1.25"), BillingCurrency: "USD"}, {ChargePeriodStart: hour, BilledCost: MustDecimal("2"), BillingCurrency: "USD"}}
	origData, err := EncodeRecords(nil, recs)
	if err != nil {
		t.Fatal(err)
	}
	orig := PartMeta{BatchID: "b", Part: 1, Feed: "f", Source: "team-a", Kind: KindAppend, Hour: hour, Records: 2}
	origH := orig.Header()
	if err := SignPart(subject, origH, origData, teamA); err != nil {
		t.Fatal(err)
	}
	// An old signature (no optional header) verifies as before.
	if err := keys.VerifyPart(subject, origH); err != nil {
		t.Fatalf("team-a's part: %v", err)
	}
	redeliver := func(idx []int, rs []UsageRecord, dest string) (nats.Header, []byte) {
		m := PartMeta{BatchID: "replay-hook-7", Part: 1, Feed: "f", Source: "team-a", Kind: KindAppend, Hour: hour, Records: len(rs)}
		h := m.Header()
		h.Set(HdrDestination, dest)
		h.Set(HdrReplayOf, "42")
		if idx != nil {
			h.Set(HdrReplayRecords, FormatReplayRecords(idx))
		}
		data, _ := EncodeRecords(nil, rs)
		if err := SignPart(subject, h, data, op); err != nil {
			t.Fatal(err)
		}
		return h, data
	}
	h, data := redeliver([]int{1}, recs[1:], "hook")
	signer, err := keys.Signer(subject, h)
	if err != nil || signer != ReplaySource {
		t.Fatalf("signer = %q, %v", signer, err)
	}
	meta, _ := ParseMeta(h)
	if err := CheckReplay(h, meta); err != nil {
		t.Fatal(err)
	}
	if err := keys.VerifyPart(subject, h); err == nil {
		t.Fatal("a replay key's signature taken as team-a's own")
	}
	if err := keys.VerifyReplayed(subject, h, data, subject, origH, origData); err != nil {
		t.Fatalf("a true redelivery: %v", err)
	}
	// Re-addressed after signing: the signature breaks.
	moved := nats.Header(http.Header(h).Clone())
	moved.Set(HdrDestination, "other")
	if _, err := keys.Signer(subject, moved); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("destination changed after signing: %v", err)
	}
	stripped := nats.Header(http.Header(h).Clone())
	stripped.Del(HdrReplayRecords)
	if _, err := keys.Signer(subject, stripped); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("replay records removed after signing: %v", err)
	}
	// Records of the operator's own making, or the wrong ones: refused.
	forged := []UsageRecord{{ChargePeriodStart: hour, BilledCost: MustDecimal("2000"), BillingCurrency: "USD"}}
	h2, d2 := redeliver([]int{1}, forged, "hook")
	if err := keys.VerifyReplayed(subject, h2, d2, subject, origH, origData); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("forged records: %v", err)
	}
	h3, d3 := redeliver([]int{0}, recs[1:], "hook")
	if err := keys.VerifyReplayed(subject, h3, d3, subject, origH, origData); err == nil {
		t.Fatal("records under the wrong index accepted")
	}
	// An original not signed by its source does not vouch for anything.
	if err := keys.VerifyReplayed(subject, h, data, subject, orig.Header(), origData); err == nil {
		t.Fatal("an unsigned original accepted")
	}
	// Shapes a replay key may not sign.
	for name, tc := range map[string]struct {
		meta PartMeta
		dest string
		of   bool
	}{
		"snapshot as team-a":       {PartMeta{BatchID: "x", Part: 1, Feed: "f", Source: "team-a", Kind: KindSnapshot, Hour: hour, Period: Period{hour, hour.Add(time.Hour)}, Generation: 9}, "", false},
		"empty marker as team-a":   {PartMeta{BatchID: "x", Feed: "f", Source: "team-a", Kind: KindSnapshotEnd, Hour: hour, Period: Period{hour, hour.Add(time.Hour)}, Generation: 9}, "", false},
		"nudge with parts":         {PartMeta{BatchID: "x", Feed: "f", Source: ReplaySource, Kind: KindSnapshotEnd, Hour: hour, Period: Period{hour, hour.Add(time.Hour)}, Generation: 9, Parts: 1}, "", false},
		"append without dest":      {PartMeta{BatchID: "x", Part: 1, Feed: "f", Source: "team-a", Kind: KindAppend, Hour: hour}, "", true},
		"append without replay-of": {PartMeta{BatchID: "x", Part: 1, Feed: "f", Source: "team-a", Kind: KindAppend, Hour: hour}, "hook", false},
		"append as uf-replay":      {PartMeta{BatchID: "x", Part: 1, Feed: "f", Source: ReplaySource, Kind: KindAppend, Hour: hour}, "hook", true},
	} {
		h := tc.meta.Header()
		if tc.dest != "" {
			h.Set(HdrDestination, tc.dest)
		}
		if tc.of {
			h.Set(HdrReplayOf, "42")
		}
		if err := CheckReplay(h, tc.meta); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	nudge := PartMeta{BatchID: "x", Feed: "f", Source: ReplaySource, Kind: KindSnapshotEnd, Hour: hour, Period: Period{hour, hour.Add(time.Hour)}, Generation: 9}
	if err := CheckReplay(nudge.Header(), nudge); err != nil {
		t.Fatalf("a nudge: %v", err)
	}
}
