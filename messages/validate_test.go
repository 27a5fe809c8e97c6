package messages

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestBatchValidateListsEveryProblem(t *testing.T) {
	good := sampleRecord()
	noStart := sampleRecord()
	noStart.ChargePeriodStart = time.Time{}
	noStart.ChargePeriodEnd = time.Time{}
	badCat := sampleRecord()
	badCat.ChargeCategory = "Refund"
	noCurrency := sampleRecord()
	noCurrency.BillingCurrency = ""
	badExt := sampleRecord()
	badExt.Ext = map[string]ExtValue{"9lives": ExtStr("x")}
	b := Batch{ID: "b 1", Feed: "cloud", Source: "svc.x", Records: []UsageRecord{good, noStart, badCat, noCurrency, badExt}}
	err := b.Validate()
	var ve ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("err = %v", err)
	}
	want := []string{
		"ID: required",
		`Source: "svc.x"`,
		"records[1].ChargePeriodStart: required",
		`records[2].ChargeCategory: "Refund" is not one of`,
		"records[3].BillingCurrency: required when a cost is set",
		"records[4].x_9lives:",
	}
	got := make([]string, len(ve))
	for i := range ve {
		got[i] = ve[i].Error()
	}
	for _, w := range want {
		found := false
		for _, g := range got {
			if strings.HasPrefix(g, w) {
				found = true
			}
		}
		if !found {
			t.Errorf("missing %q in %q", w, got)
		}
	}
	if len(ve) != len(want) {
		t.Errorf("%d problems, want %d: %q", len(ve), len(want), got)
	}
}

func TestSnapshotValidation(t *testing.T) {
	r := sampleRecord()
	start := time.Date(2024, 8, 16, 0, 0, 0, 0, time.UTC)
	b := Batch{ID: "s", Feed: "f", Source: "s", Snapshot: &Snapshot{Period: Period{Start: start, End: start.Add(13 * time.Hour)}, Generation: 1}, Records: []UsageRecord{r}}
	if err := b.Validate(); err == nil || !strings.Contains(err.Error(), "outside the snapshot period") {
		t.Fatalf("err = %v", err)
	}
	b.Snapshot.Period.End = start.Add(24 * time.Hour)
	if err := b.Validate(); err != nil {
		t.Fatal(err)
	}
	b.Records = nil // an empty snapshot is valid: it empties the period
	if err := b.Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestSubjects(t *testing.T) {
	h := time.Date(2024, 8, 16, 13, 0, 0, 0, time.UTC)
	s := UsageSubject("cloud", h)
	if s != "usage.cloud.2024.08.16.13" {
		t.Fatalf("subject %q", s)
	}
	feed, got, err := ParseUsageSubject(s)
	if err != nil || feed != "cloud" || !got.Equal(h) {
		t.Fatalf("parse = %q %v %v", feed, got, err)
	}
	for _, bad := range []string{"usage.cloud.2024.13.01.00", "usage.cloud.2024.02.30.00", "usage.cloud.x.01.01.00", "acks.a.b", "usage.cloud.2024.01.01"} {
		if _, _, err := ParseUsageSubject(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// The hand-written shape checks say what the regular expressions they
// replaced said.
func TestShapeChecks(t *testing.T) {
	for s, want := range map[string]bool{"USD": true, "EUR": true, "JPY": true, "ZWG": true, "HRK": true, "ZZZ": false, "ABC": false, "usd": false, "US": false, "USDX": false, "U$D": false, "": false} {
		if got := IsCurrency(s); got != want {
			t.Errorf("IsCurrency(%q) = %v", s, got)
		}
	}
	long := "A" + strings.Repeat("b", 63)
	for s, want := range map[string]bool{"Project": true, "a_1": true, "Z9": true, long: true, long + "c": false, "9lives": false, "_x": false, "": false, "a-b": false, "ä": false} {
		if got := validExtName(s); got != want {
			t.Errorf("validExtName(%q) = %v", s, got)
		}
	}
}

// longestString reads every string field the table names.
func TestLongestStringCoversEveryField(t *testing.T) {
	for i, f := range strFields {
		var r UsageRecord
		*strFieldOf(&r, i) = strings.Repeat("x", 7)
		if *f.get(&r) != "xxxxxxx" || longestString(&r) != 7 {
			t.Errorf("%s: longestString %d", f.name, longestString(&r))
		}
	}
}

func TestValidateFieldsChecksTheBatchNotItsRecords(t *testing.T) {
	start := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	good := UsageRecord{ChargePeriodStart: start, BilledCost: MustDecimal("1"), BillingCurrency: "USD"}
	b := &Batch{ID: "b", Feed: "f", Source: "s", Records: []UsageRecord{good}}
	if err := b.Validate(); err != nil {
		t.Fatal(err)
	}
	if err := b.ValidateFields(); err != nil {
		t.Fatalf("a valid batch: %v", err)
	}
	// Its own fields, and a snapshot's period, are still checked.
	b.Feed = "a.b"
	b.Snapshot = &Snapshot{Period: Period{Start: start.Add(time.Hour), End: start.Add(2 * time.Hour)}, Generation: 1}
	var ve ValidationError
	if err := b.ValidateFields(); !errors.As(err, &ve) || len(ve) != 2 || ve[0].Field != "Feed" || ve[1].Index != 0 || ve[1].Field != "ChargePeriodStart" {
		t.Fatalf("bad feed and a record outside the snapshot: %v", err)
	}
	// The records' own rules are the caller's.
	bad := good
	bad.BillingCurrency = ""
	b = &Batch{ID: "b", Feed: "f", Source: "s", Records: []UsageRecord{bad}}
	if b.Validate() == nil || b.ValidateFields() != nil {
		t.Fatalf("Validate %v, ValidateFields %v: want only Validate to check the record", b.Validate(), b.ValidateFields())
	}
}
