package cloudzero

import (
	"encoding/json"
	"regexp"
	"testing"
	"time"

	"github.com/shopspring/decimal"
)

var (
	isoRE    = regexp.MustCompile(isoPattern)
	amountRE = regexp.MustCompile(amountPattern)
)

func TestParseISO(t *testing.T) {
	tests := []struct {
		in   string
		want string // RFC 3339 in UTC; "" = rejected
	}{
		{"2024-08-16T13:00:00Z", "2024-08-16T13:00:00Z"},
		{"2024-08-16T13:00:00", "2024-08-16T13:00:00Z"},
		{"2024-08-16T14:27:46+00:00", "2024-08-16T14:27:46Z"},
		{"2024-08-16T14:27:46+02:00", "2024-08-16T12:27:46Z"},
		{"2024-08-16T23:30:00-01:00", "2024-08-17T00:30:00Z"},
		{"2024-08-16T13:00:00.5Z", "2024-08-16T13:00:00.5Z"},
		{"2024-08-16T13:00:00.123456789", "2024-08-16T13:00:00.123456789Z"},
		{"2024-02-29T00:00:00Z", "2024-02-29T00:00:00Z"},
		{"2023-02-29T00:00:00Z", ""},
		{"2024-13-01T00:00:00Z", ""},
		{"2024-08-16T24:00:00Z", ""},
		{"2024-08-16T13:00:00.Z", ""},
		{"2024-08-16T13:00:00+0200", ""},
		{"2024-08-16T13:00Z", ""},
		{"2024-08-16 13:00:00Z", ""},
		{"2024-08-16t13:00:00Z", ""},
		{"2024-08-16T13:00:00z", ""},
		{"2024-08-16", ""},
		{"２０２４-08-16T13:00:00Z", ""},
		{" 2024-08-16T13:00:00Z", ""},
		{"2024-08-16T13:00:00Z ", ""},
		{"", ""},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, ok := parseISO(tt.in)
			if !ok && tt.want != "" || ok && got.Format(time.RFC3339Nano) != tt.want {
				t.Fatalf("parseISO(%q) = %v, %v; want %q", tt.in, got, ok, tt.want)
			}
			if ok && !isoRE.MatchString(tt.in) {
				t.Fatalf("accepted %q, which the schema pattern rejects", tt.in)
			}
		})
	}
}

func TestParseMonth(t *testing.T) {
	tests := []struct{ in, want string }{
		{"2024-08", "2024-08"},
		{"2024-08-16T14:27:46+00:00", "2024-08"},
		{"2024-08-01T00:00:00Z", "2024-08"},
		{"2024-08-01T00:30:00+01:00", "2024-07"}, // UTC decides
		{"2024-8", ""},
		{"2024-13", ""},
		{"2024/08", ""},
		{"202408", ""},
		{"2024-08-01", ""},
	}
	for _, tt := range tests {
		got, ok := parseMonth(tt.in)
		if !ok && tt.want != "" || ok && got.Format("2006-01") != tt.want {
			t.Errorf("parseMonth(%q) = %v, %v; want %q", tt.in, got, ok, tt.want)
		}
	}
}

func TestIsAmount(t *testing.T) {
	tests := []struct {
		in            string
		withMinus, no bool
	}{
		{"12", true, true},
		{"0", true, true},
		{"12.50", true, true},
		{"007", true, true},
		{"0.0000000001", true, true},
		{"-12", true, false},
		{"-0.5", true, false},
		{"+12", false, false},
		{".5", false, false},
		{"5.", false, false},
		{"1e3", false, false},
		{"1E3", false, false},
		{"1,5", false, false},
		{"--1", false, false},
		{"-", false, false},
		{"", false, false},
		{" 1", false, false},
		{"NaN", false, false},
		{"Infinity", false, false},
		{"1.2.3", false, false},
		{"١٢", false, false},
	}
	for _, tt := range tests {
		if got := isAmount(tt.in, true); got != tt.withMinus {
			t.Errorf("isAmount(%q, negative) = %v", tt.in, got)
		}
		if got := isAmount(tt.in, false); got != tt.no {
			t.Errorf("isAmount(%q, no sign) = %v", tt.in, got)
		}
	}
}

func TestValidTagKey(t *testing.T) {
	tests := []struct {
		in   string
		want bool
	}{
		{"team", true},
		{"Cost_Center.v2", true},
		{"a:b/c=d+e-f@g", true},
		{"équipe", true},
		{"k8s.io/app", true},
		{"", false},
		{"cost center", false},
		{"tab\tkey", false},
		{"new\nline", false},
		{"semi;colon", false},
		{"quote\"", false},
		{"comma,", false},
		{"star*", false},
	}
	for _, tt := range tests {
		if got := validTagKey(tt.in); got != tt.want {
			t.Errorf("validTagKey(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

// FuzzValues checks the hand-written matchers against the schema's patterns.
func FuzzValues(f *testing.F) {
	for _, s := range []string{"2024-08-16T13:00:00Z", "2024-08-16T13:00:00.5+02:00", "12.5", "-1", "1e3", ".5", "2024-08-16T13:00:00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if _, ok := parseISO(s); ok && !isoRE.MatchString(s) {
			t.Fatalf("parseISO accepts %q, the pattern does not", s)
		}
		// The reverse holds except for impossible dates and offsets
		// (February 30, +00:70), which time.Parse refuses.
		if isoRE.MatchString(s) {
			if _, ok := parseISO(s); !ok {
				_, err1 := time.Parse("2006-01-02T15:04:05Z07:00", s)
				_, err2 := time.Parse("2006-01-02T15:04:05", s)
				if err1 == nil || err2 == nil {
					t.Fatalf("pattern accepts %q, parseISO does not", s)
				}
			}
		}
		if got, want := isAmount(s, true), amountRE.MatchString(s); got != want {
			t.Fatalf("isAmount(%q) = %v, pattern says %v", s, got, want)
		}
		if isAmount(s, true) {
			if _, err := decimal.NewFromString(s); err != nil {
				t.Fatalf("amount %q does not parse as a decimal: %v", s, err)
			}
		}
	})
}

// FuzzParseDrop checks the in-place body walker against encoding/json: it
// must never panic, and whatever it accepts must decode to the same rows.
func FuzzParseDrop(f *testing.F) {
	f.Add([]byte(`{"month":"2024-08","operation":"sum","data":[{"time/usage_start":"2024-08-16T13:00:00Z","cost/cost":"1.5"}]}`))
	f.Add([]byte(`{"data":[{"time\/usage_start":"2024-08-16T13:00:00Z","cost/cost":"1","lineitem/description":"\u00e9 \"q\" [x] {y}"}]}`))
	f.Add([]byte(`{ "data" : [ { "time/usage_start" : "2024-08-16T13:00:00Z" , "cost/cost" : "-2" } , {"time/usage_start":"2024-08-16T14:00:00Z","cost/cost":"3"} ] , "x":[1,{"a":[]}] }`))
	f.Add([]byte(`{"data":[{"time/usage_start":"2024-08-16T13:00:00Z","cost/cost":1}]}`))
	f.Add([]byte(`[1,2]`))
	f.Fuzz(func(t *testing.T, body []byte) {
		for _, o := range []parseOptions{{strict: true, keepRows: true, negative: true}, {negative: true}} {
			d, bad := parseDrop(body, o)
			if bad != nil {
				continue
			}
			var want struct {
				Data []map[string]string `json:"data"`
			}
			if err := json.Unmarshal(body, &want); err != nil {
				t.Fatalf("accepted %q, encoding/json says %v", body, err)
			}
			if d.rows != len(want.Data) {
				t.Fatalf("%d rows, encoding/json finds %d in %q", d.rows, len(want.Data), body)
			}
			sum, got := decimal.Zero, decimal.Zero
			for _, r := range want.Data {
				sum = sum.Add(decimal.RequireFromString(r["cost/cost"]))
			}
			kept := 0
			for _, h := range d.hours {
				got = got.Add(h.cost)
				kept += len(h.rows)
			}
			if !sum.Equal(got) {
				t.Fatalf("cost %s, encoding/json rows sum to %s in %q", got, sum, body)
			}
			if o.keepRows && kept != d.rows {
				t.Fatalf("kept %d of %d rows", kept, d.rows)
			}
		}
	})
}
