package cloudcruiser

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestUsageTimeFormats(t *testing.T) {
	e := newEnv(t, Config{AllowOffDateStart: true})
	cases := []struct {
		value string
		query string
		want  string // RFC 3339 instant; "" = rejected
	}{
		{"2024-03-01 10:20", "", "2024-03-01T10:20:00Z"},
		{"2024-03-01 10:20:30", "", "2024-03-01T10:20:30Z"},
		{"2024-03-01T10:20:30", "", "2024-03-01T10:20:30Z"},
		{"2024-03-01T10:20:30Z", "", "2024-03-01T10:20:30Z"},
		{"2024-03-01T10:20:30+03", "", "2024-03-01T07:20:30Z"},
		{"2024-03-01T10:20:30-03", "", "2024-03-01T13:20:30Z"},
		{"2024-03-01T10:20:30+05:30", "", "2024-03-01T04:50:30Z"},
		{"2024-03-01T10:20:30-07:01:30", "", ""}, // seconds: documented for zoneOffset only
		// Without an offset the request's zoneOffset applies.
		{"2024-03-01 10:20", "?zoneOffset=-7", "2024-03-01T17:20:00Z"},
		{"2024-03-01T10:20:30", "?zoneOffset=%2B05:30", "2024-03-01T04:50:30Z"},
		// An explicit offset wins over zoneOffset.
		{"2024-03-01T10:20:30Z", "?zoneOffset=-7", "2024-03-01T10:20:30Z"},

		{"2024-03-01T10:20", "", ""},
		{"2024-03-01 10:20Z", "", ""},
		{"2024-03-01 10:20:30+03", "", ""},
		{"2024-03-01T10:20:30.5", "", ""},
		{"2024-03-01T10:20:30+3", "", ""},
		{"2024-03-01T10:20:30+0300", "", ""},
		{"2024-03-01T10:20:30+19", "", ""},
		{"2024-03-01T10:20:30z", "", ""},
		{"2024-3-01 10:20", "", ""},
		{"2024/03/01 10:20", "", ""},
		{"2024-03-01 24:00", "", ""},
		{"2024-03-01 10:60", "", ""},
		{"2024-02-30 10:00", "", ""},
		{"2024-13-01 10:00", "", ""},
		{"01-03-2024 10:00", "", ""},
		{"2024-03-01", "", ""},
		{"", "", ""},
	}
	for _, c := range cases {
		t.Run(c.value+c.query, func(t *testing.T) {
			r := e.upload("2024-03-01"+c.query, validRec(c.value, "a", "m", "1").with("Usage End", "2024-03-05 00:00"))
			if c.want == "" {
				expectErr(t, r, 400, "record index 0", `field "Usage Start"`)
				return
			}
			expectOK(t, r, 1)
			got := e.srv.Records("2024-03-01")[0].UsageStart.Format(time.RFC3339)
			if got != c.want {
				t.Fatalf("stored %s, want %s", got, c.want)
			}
		})
	}
}

func TestAccountingDateBoundaries(t *testing.T) {
	e := newEnv(t, Config{})
	cases := []struct {
		query string
		start string
		ok    bool
	}{
		{"", "2024-03-01 00:00", true},
		{"", "2024-03-01 23:59:59", true},
		{"", "2024-03-02 00:00", false},
		{"", "2024-02-29 23:59", false},
		{"", "2024-03-01T23:59:59Z", true},
		{"", "2024-03-01T23:30:00-01", false}, // 2024-03-02T00:30:00Z

		{"?zoneOffset=-07:00", "2024-03-01 00:00", true},
		{"?zoneOffset=-07:00", "2024-03-01 23:59", true},
		{"?zoneOffset=-07:00", "2024-03-02 00:00", false},
		{"?zoneOffset=-07:00", "2024-02-29 23:59:59", false},
		{"?zoneOffset=-07:00", "2024-03-02T06:59:59Z", true},  // 23:59:59 local
		{"?zoneOffset=-07:00", "2024-03-02T07:00:00Z", false}, // 00:00 next day local
		{"?zoneOffset=-07:00", "2024-03-01T06:59:59Z", false}, // 23:59:59 the day before
		{"?zoneOffset=-7", "2024-03-01 23:59", true},
		{"?zoneOffset=-7", "2024-03-02 00:00", false},

		{"?zoneOffset=%2B05:30", "2024-03-01 00:00", true},
		{"?zoneOffset=%2B05:30", "2024-03-01 23:59", true},
		{"?zoneOffset=%2B05:30", "2024-03-02 00:00", false},
		{"?zoneOffset=%2B05:30", "2024-02-29T18:30:00Z", true},  // 00:00 local
		{"?zoneOffset=%2B05:30", "2024-02-29T18:29:59Z", false}, // 23:59:59 the day before

		{"?zoneOffset=-07:01:30", "2024-03-01 00:00", true},
		{"?zoneOffset=-07:01:30", "2024-03-01 23:59", true},
		{"?zoneOffset=-07:01:30", "2024-03-01 23:59:59", true},
		{"?zoneOffset=-07:01:30", "2024-03-02 00:00", false},
		{"?zoneOffset=-07:01:30", "2024-03-02T07:01:29Z", true},
		{"?zoneOffset=-07:01:30", "2024-03-02T07:01:30Z", false},
		{"?zoneOffset=-07:01:30", "2024-03-01T07:01:30Z", true},
		{"?zoneOffset=-07:01:30", "2024-03-01T07:01:29Z", false},
	}
	for _, c := range cases {
		t.Run(c.query+" "+c.start, func(t *testing.T) {
			r := e.upload("2024-03-01"+c.query, validRec(c.start, "a", "m", "1"))
			if c.ok {
				expectOK(t, r, 1)
				return
			}
			expectErr(t, r, 400, "record index 0", `field "Usage Start"`, fmt.Sprintf("%q", c.start), "accounting date 2024-03-01")
		})
	}
}

func TestZoneOffsetQuery(t *testing.T) {
	e := newEnv(t, Config{})
	cases := []struct {
		query string
		zone  string // normalised; "" = rejected
		msg   string
	}{
		{"", "+00:00", ""},
		{"?zoneOffset=-7", "-07:00", ""},
		{"?zoneOffset=%2B5", "+05:00", ""},
		{"?zoneOffset=-07", "-07:00", ""},
		{"?zoneOffset=-07:00", "-07:00", ""},
		{"?zoneOffset=%2B05:30", "+05:30", ""},
		{"?zoneOffset=-07:01:30", "-07:01:30", ""},
		{"?zoneOffset=%2B18", "+18:00", ""},
		{"?zoneOffset=-18:00", "-18:00", ""},
		{"?zoneOffset=-00:00", "+00:00", ""},

		{"?zoneOffset=+05:30", "", "%2B"},
		{"?zoneOffset=5", "", "must start with '+' or '-'"},
		{"?zoneOffset=Z", "", "must start with '+' or '-'"},
		{"?zoneOffset=", "", "empty"},
		{"?zoneOffset=-18:00:01", "", "at most"},
		{"?zoneOffset=-19", "", "at most"},
		{"?zoneOffset=-7:30", "", "hh:mm"},
		{"?zoneOffset=-07:60", "", "hh:mm"},
		{"?zoneOffset=-0700", "", "hh:mm"},
		{"?zoneOffset=-7&zoneOffset=-7", "", "2 times"},
		{"?zoneoffset=-7", "", `Unknown query parameter "zoneoffset"`},
		{"?=zoneOffset=-7", "", `Unknown query parameter ""`},
		{"/?=zoneOffset=-7", "", `?zoneOffset=-07:00`},
		{"?zoneOffset=-7&x=1", "", `Unknown query parameter "x"`},
		{"?zoneOffset=%zz", "", "Malformed query"},
	}
	for _, c := range cases {
		t.Run(c.query, func(t *testing.T) {
			r := e.upload("2024-03-01"+c.query, validRec("2024-03-01 12:00", "a", "m", "1"))
			if c.zone == "" {
				expectErr(t, r, 400, c.msg)
				return
			}
			expectOK(t, r, 1)
			if got := e.srv.Dates()["2024-03-01"].ZoneOffset; got != c.zone {
				t.Fatalf("zone %q, want %q", got, c.zone)
			}
		})
	}
}

func TestURLDate(t *testing.T) {
	e := newEnv(t, Config{})
	cases := []struct {
		path string
		code int
	}{
		{"2024-03-01", 200},
		{"2024-03-01/", 200},
		{"2024-02-29", 200},
		{"2023-02-29", 400},
		{"2024-3-01", 400},
		{"20240301", 400},
		{"2024-03-01T00:00", 400},
		{"2024-03-01//", 404},
		{"2024-03-01/x", 404},
		{"", 404},
	}
	for _, c := range cases {
		t.Run(c.path, func(t *testing.T) {
			date := strings.TrimSuffix(c.path, "/")
			if len(date) != 10 {
				date = "2024-03-01"
			}
			r := e.upload(c.path, validRec(date+" 12:00", "a", "m", "1"))
			if c.code == 200 {
				expectOK(t, r, 1)
				return
			}
			expectErr(t, r, c.code)
		})
	}
	t.Run("method", func(t *testing.T) {
		for _, m := range []string{http.MethodGet, http.MethodPost, http.MethodDelete} {
			req, _ := http.NewRequest(m, e.ts.URL+UploadPath+"2024-03-01", nil)
			req.Header.Set("Authorization", "Bearer "+testToken)
			r := e.do(req)
			expectErr(t, r, 405)
			if r.header.Get("Allow") != "PUT" {
				t.Errorf("Allow %q", r.header.Get("Allow"))
			}
		}
	})
}

func TestUploadReplacesDate(t *testing.T) {
	e := newEnv(t, Config{})
	d := "2024-03-01"
	first := []rec{
		validRec(d+" 01:00", "a1", "m1", "0.1").with("Cost", json.Number("0.1")),
		validRec(d+" 02:00", "a1", "m2", "0.2").with("Cost", "0.2"),
		validRec(d+" 03:00", "a2", "m1", "0.3"), // no Cost
	}
	expectOK(t, e.upload(d, first...), 3)
	expectOK(t, e.upload("2024-03-02", validRec("2024-03-02 05:00", "z", "z", "100")), 1)
	checkTotal(t, e.srv.Dates()[d], 3, "0.6", "0.3", 1)

	second := []rec{
		validRec(d+" 04:00", "b1", "m9", "1e-7").with("Cost", "12345678901234567890.123456789"),
		validRec(d+" 05:00", "b2", "m9", "2.00000000000000000001").with("Cost", json.Number("-0.000000001")),
	}
	expectOK(t, e.upload(d+"?zoneOffset=-00:00", second...), 2)
	checkTotal(t, e.srv.Dates()[d], 2, "2.00000010000000000001", "12345678901234567890.123456788", 2)
	checkTotal(t, e.srv.Dates()["2024-03-02"], 1, "100", "0", 1)

	want := []Record{
		{UsageStart: time.Date(2024, 3, 1, 4, 0, 0, 0, time.UTC), AccountID: "b1", MeterID: "m9", Quantity: "0.0000001", Cost: "12345678901234567890.123456789"},
		{UsageStart: time.Date(2024, 3, 1, 5, 0, 0, 0, time.UTC), AccountID: "b2", MeterID: "m9", Quantity: "2.00000000000000000001", Cost: "-0.000000001"},
	}
	got := e.srv.Records(d)
	if len(got) != len(want) {
		t.Fatalf("records %+v, want %+v", got, want)
	}
	for i := range want {
		if !got[i].UsageStart.Equal(want[i].UsageStart) || got[i].AccountID != want[i].AccountID ||
			got[i].MeterID != want[i].MeterID || got[i].Quantity != want[i].Quantity || got[i].Cost != want[i].Cost {
			t.Errorf("record %d: %+v, want %+v", i, got[i], want[i])
		}
	}

	// An empty array is a valid upload that empties the date.
	expectOK(t, e.upload(d), 0)
	checkTotal(t, e.srv.Dates()[d], 0, "0", "0", 3)
	if n := len(e.srv.Records(d)); n != 0 {
		t.Fatalf("%d records after an empty upload", n)
	}
}
