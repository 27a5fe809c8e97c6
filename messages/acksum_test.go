package messages

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
	"unsafe"
)

// The ack's JSON, byte for byte: what other languages read.
func TestAckGoldenJSON(t *testing.T) {
	a := Ack{
		BatchID: "b1", Part: 2, Feed: "focus", Source: "acme", Destination: "cz", Status: AckRejected,
		Records: 3, Rejected: 2, Cost: MustDecimal("13.50"), Reason: "no cost",
		Time:     time.Date(2026, 12, 4, 18, 0, 0, 0, time.UTC),
		Costs:    map[string]Decimal{"USD": MustDecimal("12.50"), "EUR": MustDecimal("1.00")},
		Reasons:  map[string]int{"no cost": 1, "bad hour": 1},
		Warnings: 1,
	}
	const want = `{"batch_id":"b1","part":2,"feed":"focus","source":"acme","destination":"cz","status":"rejected","records":3,"rejected":2,"cost":"13.50","reason":"no cost","time":"2026-12-04T18:00:00Z","costs":{"EUR":"1.00","USD":"12.50"},"reasons":{"bad hour":1,"no cost":1},"warnings":1}`
	b, err := EncodeAck(a)
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != want {
		t.Fatalf("ack JSON\n got %s\nwant %s", b, want)
	}
	back, err := DecodeAck(b)
	if err != nil {
		t.Fatal(err)
	}
	if !back.Costs["USD"].Equal(a.Costs["USD"]) || !back.Costs["EUR"].Equal(a.Costs["EUR"]) || back.Reasons["bad hour"] != 1 || back.Warnings != 1 {
		t.Fatalf("decoded %+v", back)
	}
	// An ack of a worker that predates Costs decodes with none.
	old, err := DecodeAck([]byte(`{"batch_id":"b1","part":1,"status":"delivered","records":1,"cost":"1.5","time":"2026-12-04T18:00:00Z"}`))
	if err != nil || old.Costs != nil || old.Reasons != nil || !old.Cost.Equal(MustDecimal("1.5")) {
		t.Fatalf("old ack: %+v, %v", old, err)
	}
}

func TestReasonCountsBounds(t *testing.T) {
	for _, tc := range []struct {
		name     string
		distinct int
		each     int
		wantKeys int
		wantMore string
	}{
		{"48 reasons all named", 48, 2, 48, ""},
		{"exactly the bound", MaxReasons, 1, MaxReasons, ""},
		{"past the bound", MaxReasons + 44, 3, MaxReasons + 1, "(44 more reasons)"},
		{"one past", MaxReasons + 1, 1, MaxReasons + 1, "(1 more reason)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var c ReasonCounts
			total := 0
			for i := range tc.distinct {
				for range tc.each {
					c.Add(fmt.Sprintf("reason %03d", i), 1)
					total++
				}
			}
			m := c.Map()
			if len(m) != tc.wantKeys {
				t.Fatalf("%d keys, want %d", len(m), tc.wantKeys)
			}
			sum := 0
			for _, n := range m {
				sum += n
			}
			if sum != total {
				t.Fatalf("counts add up to %d, want %d", sum, total)
			}
			if tc.wantMore != "" && m[tc.wantMore] != (tc.distinct-MaxReasons)*tc.each {
				t.Fatalf("%q counts %d; map has %d keys", tc.wantMore, m[tc.wantMore], len(m))
			}
			if c.Len() != tc.distinct {
				t.Fatalf("Len %d, want %d", c.Len(), tc.distinct)
			}
			// Merging acks' maps keeps the sum and the number of reasons.
			var agg ReasonCounts
			agg.AddAll(m)
			agg.AddAll(m)
			if got := agg.Map(); sumOf(got) != 2*total {
				t.Fatalf("merged counts %d, want %d", sumOf(got), 2*total)
			}
		})
	}
}

func sumOf(m map[string]int) int {
	n := 0
	for _, c := range m {
		n += c
	}
	return n
}

// The largest ack the bounds allow stays far below a NATS max payload.
func TestReasonCountsBytes(t *testing.T) {
	var c ReasonCounts
	for i := range 10 * MaxReasons {
		c.Add(fmt.Sprintf("%04d %s", i, strings.Repeat("é", 2000)), 1)
	}
	for r := range c.Map() {
		if len(r) > MaxReasonBytes || !utf8.ValidString(r) {
			t.Fatalf("reason of %d bytes (valid UTF-8: %v)", len(r), utf8.ValidString(r))
		}
	}
	b, _ := json.Marshal(Ack{Reasons: c.Map(), Rejected: 10 * MaxReasons})
	if len(b) > 200<<10 {
		t.Fatalf("ack of %d bytes", len(b))
	}
	if got := c.Map()[MoreReasonsKey(9*MaxReasons)]; got != 9*MaxReasons {
		t.Fatalf("more reasons count %d", got)
	}
}

func TestCurrencySums(t *testing.T) {
	var a, b CurrencySums
	a.Add("USD", MustDecimal("0.10"))
	a.Add("USD", MustDecimal("0.20"))
	a.Add("EUR", MustDecimal("1.005"))
	a.Add("", MustDecimal("2"))
	a.Add("JPY", Decimal{}) // unset: nothing
	b.Add("USD", MustDecimal("0.20"))
	d := a.Minus(b).Decimals()
	if len(d) != 3 || !d["USD"].Equal(MustDecimal("0.1")) || !d["EUR"].Equal(MustDecimal("1.005")) || !d[""].Equal(MustDecimal("2")) {
		t.Fatalf("Minus: %v", d)
	}
	if !a.Total().Equal(MustDecimal("3.305")) {
		t.Fatalf("Total %s", a.Total())
	}
	if s := a.String(); s != "2 + 1.005 EUR + 0.30 USD" && s != "2 + 1.005 EUR + 0.3 USD" {
		t.Fatalf("String %q", s)
	}
}

// A sum must not keep the string it was given as its key: a decoded
// record's currency points into the whole payload, and a drain keeps one
// sum per part it read until the upload.
func TestCurrencySumsKeepNoCallerString(t *testing.T) {
	payload := []byte("....USD....XYZ....")
	for _, cur := range []string{
		unsafe.String(&payload[4], 3),  // an ISO code
		unsafe.String(&payload[11], 3), // not one: copied
	} {
		var c CurrencySums
		c.Add(cur, MustDecimal("1.5"))
		for k := range c.m {
			if k != cur {
				t.Fatalf("key %q, want %q", k, cur)
			}
			p := uintptr(unsafe.Pointer(unsafe.StringData(k)))
			lo := uintptr(unsafe.Pointer(&payload[0]))
			if p >= lo && p < lo+uintptr(len(payload)) {
				t.Errorf("the key %q points into the caller's payload", k)
			}
		}
	}
}
