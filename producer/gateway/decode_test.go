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
