package messages

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestRecordJSONRoundTrip(t *testing.T) {
	r := sampleRecord()
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	if !json.Valid(b) {
		t.Fatalf("invalid JSON: %s", b)
	}
	for _, want := range []string{`"BilledCost":"12.345678901234567890123"`, `"x_Cores":8`, `"x_Rate":"0.000125"`, `"Tags":{"env":"prod","team":"billing"}`, `"ChargePeriodStart":"2024-08-16T13:00:00Z"`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("JSON lacks %s: %s", want, b)
		}
	}
	var back UsageRecord
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	// x_Rate comes back as a string column: JSON cannot tell a decimal string
	// from a string (documented).
	r.Ext["Rate"] = ExtStr("0.000125")
	if !recordsEqual(&r, &back) {
		t.Fatalf("round trip:\n got %+v\nwant %+v", back, r)
	}
}

func TestRecordJSONNumbersAreExact(t *testing.T) {
	var r UsageRecord
	err := json.Unmarshal([]byte(`{"ChargePeriodStart":"2024-08-16T13:00:00Z","BilledCost":0.1000000000000000055511151231257827,"x_Weight":2.5}`), &r)
	if err != nil {
		t.Fatal(err)
	}
	if r.BilledCost.String() != "0.1000000000000000055511151231257827" {
		t.Fatalf("BilledCost = %s: a JSON number must not pass through float64", r.BilledCost)
	}
	if r.Ext["Weight"].Kind != ExtDecimal || r.Ext["Weight"].Dec.String() != "2.5" {
		t.Fatalf("x_Weight = %+v", r.Ext["Weight"])
	}
}

func TestRecordJSONErrors(t *testing.T) {
	tests := []struct{ in, want string }{
		{`{"BilledCosts":"1"}`, "BilledCosts: unknown column"},
		{`{"BilledCost":"1e"}`, "BilledCost:"},
		{`{"ChargePeriodStart":"last tuesday"}`, "ChargePeriodStart:"},
		{`{"ServiceName":3}`, "ServiceName: want a string"},
		{`{"Tags":{"a":{"b":1}}}`, "Tags: key \"a\": a value is a string, number, boolean or null"},
		{`{"Tags":{"a":"1","a":"2"}}`, "appears twice"},
		{"{\"ServiceName\":\"caf\xe9\"}", "ServiceName: invalid UTF-8"},
	}
	for _, tt := range tests {
		var r UsageRecord
		err := json.Unmarshal([]byte(tt.in), &r)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: err %v, want %q", tt.in, err, tt.want)
		}
	}
}

func TestAppendJSONStringEscapes(t *testing.T) {
	for _, s := range []string{"plain", "quote\"back\\slash", "ctl\x01\n\t", "<html>&", "bad\xffutf8", "line\u2028sep", "日本"} {
		got := AppendJSONString(nil, s)
		var back string
		if err := json.Unmarshal(got, &back); err != nil {
			t.Fatalf("%q -> %s: %v", s, got, err)
		}
		want, _ := json.Marshal(s)
		var wantBack string
		_ = json.Unmarshal(want, &wantBack)
		if back != wantBack {
			t.Errorf("%q: got %q want %q", s, back, wantBack)
		}
	}
}

// AppendJSONString writes exactly what encoding/json writes for a string.
func FuzzAppendJSONStringMatchesEncodingJSON(f *testing.F) {
	for _, s := range []string{"plain", "quote\"back\\slash", "ctl\x01\n\t\r\x7f", "<html>&", "bad\xffutf8", "line\u2028sep\u2029", "日本", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		want, _ := json.Marshal(s)
		if got := AppendJSONString(nil, s); string(got) != string(want) {
			t.Fatalf("%q: got %s, encoding/json %s", s, got, want)
		}
	})
}

// plain8 agrees with the byte table for every byte value in every
// position of a plain word.
func TestPlain8AgreesWithTheTable(t *testing.T) {
	for pos := 0; pos < 8; pos++ {
		for c := 0; c < 256; c++ {
			b := []byte("abcdefgh")
			b[pos] = byte(c)
			var x uint64
			for i := 7; i >= 0; i-- {
				x = x<<8 | uint64(b[i])
			}
			if got, want := plain8(x), jsonPlain[c]; got != want {
				t.Fatalf("byte %#x at %d: plain8 %v, table %v", c, pos, got, want)
			}
		}
	}
}

// Null is null in every column type, however an export writes it; provider
// columns holding JSON objects or booleans are kept as their JSON text.
func TestJSONNullsAndProviderObjects(t *testing.T) {
	var r UsageRecord
	in := `{"ChargePeriodStart":"2024-05-01T10:00:00Z","ResourceId":"NULL","BilledCost":"null","Tags":"NULL","ChargeClass":null,"BillingPeriodEnd":"","x_A":"NULL","x_CostCategories":{"team": "a"},"x_Flag":true}`
	if err := json.Unmarshal([]byte(in), &r); err != nil {
		t.Fatal(err)
	}
	if r.ResourceId != "" || r.BilledCost.IsSet() || r.Tags != nil || r.Detail != nil || r.Ext["A"].Kind != 0 {
		t.Fatalf("null kept: %+v", r)
	}
	if r.Ext["CostCategories"].Str != `{"team":"a"}` || r.Ext["Flag"].Str != "true" {
		t.Fatalf("x_ objects: %+v", r.Ext)
	}
}
