package usagegen

import (
	"bytes"
	"testing"

	"github.com/usagefleet/usagefleet/messages"
	"github.com/usagefleet/usagefleet/producer/input"
)

// The generated file is a clean FOCUS export: every row reads without a
// problem or a warning, the costs add up to the totals it reports, and its
// rows are about 750 bytes.
func TestWriteFocusCSV(t *testing.T) {
	var buf bytes.Buffer
	tot, err := WriteFocusCSV(&buf, 3000, Options{Seed: 7})
	if err != nil {
		t.Fatal(err)
	}
	if int64(buf.Len()) != tot.Bytes {
		t.Fatalf("wrote %d bytes, reports %d", buf.Len(), tot.Bytes)
	}
	if per := tot.Bytes / 3000; per < 650 || per > 850 {
		t.Errorf("%d bytes a row, want about 750", per)
	}
	got := map[string]*messages.Sum{}
	rows := 0
	hours := map[int64]bool{}
	res, err := input.ReadWith("gen.csv", bytes.NewReader(buf.Bytes()), input.Options{Format: input.CSV, Strict: true}, func(r input.Row) error {
		rows++
		hours[r.Record.ChargePeriodStart.Unix()] = true
		s := got[r.Record.BillingCurrency]
		if s == nil {
			s = &messages.Sum{}
			got[r.Record.BillingCurrency] = s
		}
		s.Add(r.Record.BilledCost)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Errors) > 0 || len(res.Warnings) > 0 {
		t.Fatalf("errors %v, warnings %v", res.Errors, res.Warnings)
	}
	if rows != 3000 {
		t.Fatalf("read %d rows, want 3000", rows)
	}
	if len(hours) != 720 {
		t.Errorf("rows over %d hours, want the 720 of September", len(hours))
	}
	for cur, s := range tot.Cost {
		if got[cur] == nil || got[cur].Decimal().String() != s.Decimal().String() {
			t.Errorf("%s: read %v, generated %s", cur, got[cur], s.Decimal())
		}
	}
	var again bytes.Buffer
	WriteFocusCSV(&again, 3000, Options{Seed: 7})
	if !bytes.Equal(again.Bytes(), buf.Bytes()) {
		t.Error("the same options wrote another file")
	}
}
