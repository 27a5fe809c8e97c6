package gateway

import (
	"strconv"
	"testing"

	"github.com/usagefleet/usagefleet/messages"
)

// TestEveryColumnDecodesAsSetJSONField: the decoder's fast path (a core
// column set through its field offset) gives the record SetJSONField gives,
// column by column.
func TestEveryColumnDecodesAsSetJSONField(t *testing.T) {
	fast := 0
	for _, c := range messages.Columns() {
		var val string
		switch messages.ColumnOf(c) {
		case messages.ColString:
			val = `"v-` + c + `"`
		case messages.ColDecimal:
			val = `"12.3400000000000000000001"`
		case messages.ColTime:
			val = `"2026-03-01T10:15:00Z"`
		case messages.ColTags:
			val = `{"team":"a","env":"b"}`
		default:
			continue
		}
		if columns[c].fast {
			fast++
		}
		body := `{"` + c + `":` + val + `}`
		var d recordDecoder
		var got messages.UsageRecord
		var errs problems
		d.record([]byte(body), body, &got, at("records", 0), &errs)
		var want messages.UsageRecord
		if err := want.SetJSONField(c, []byte(val)); err != nil {
			t.Fatalf("%s: %v", c, err)
		}
		if g, w := string(got.AppendJSON(nil)), string(want.AppendJSON(nil)); g != w {
			t.Errorf("%s: decoded %s, SetJSONField %s", c, g, w)
		}
	}
	if fast == 0 {
		t.Fatal("no column takes the field-offset path")
	}
	t.Log(strconv.Itoa(fast) + " columns set by field offset")
}

// TestUnknownMembersAsTheProducer: a member neither FOCUS nor x_ is kept as
// the producer keeps it (x_<repaired name>, with a warning), one whose
// name cannot be repaired is refused by both; the fuzz target
// FuzzDecodeNDJSON compares the two decoders on any body.
func TestUnknownMembersAsTheProducer(t *testing.T) {
	const rec = `"ChargePeriodStart":"2026-03-01T10:00:00Z","BilledCost":"1.5","BillingCurrency":"USD"`
	for _, tc := range []struct {
		body string
		ext  string // the extension kept ("" none)
		warn bool
	}{
		{`{` + rec + `,"Cost Center":"42"}`, "x_Cost_Center", true},
		{`{` + rec + `,"costcenter":"7"}`, "x_costcenter", true},
		{`{` + rec + `,"billedcost":"7"}`, "x_billedcost", true},
		{`{` + rec + `,"x_Team":"a"}`, "x_Team", false},
		{`{` + rec + `}`, "", false},
	} {
		t.Run(tc.body, func(t *testing.T) {
			compareNDJSON(t, []byte(tc.body))
			var errs problems
			recs, _ := decodeNDJSON([]byte(tc.body), 10, &errs)
			if len(errs.list) > 0 {
				t.Fatalf("refused: %v", errs.list)
			}
			if tc.ext != "" {
				if _, ok := recs[0].Ext[tc.ext[2:]]; !ok {
					t.Errorf("extensions %v: want %s", recs[0].Ext, tc.ext)
				}
			}
			if (len(errs.warns) > 0) != tc.warn {
				t.Errorf("warnings %v, want some: %v", errs.warns, tc.warn)
			}
		})
	}
}
