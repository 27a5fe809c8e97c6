package messages

import (
	"errors"
	"math"
	"strings"
	"testing"
	"time"

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
