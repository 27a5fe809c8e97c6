package cloudzero

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand"
	"net/http"
	"strings"
	"testing"
	"time"
)

// workload returns a seeded sequence of valid billing drops over August
// 2024: every operation, hours that overlap, negative and long-fraction costs.
func workload(seed int64, n int) []string {
	rng := rand.New(rand.NewSource(seed))
	ops := []string{OpReplaceDrop, OpReplaceHourly, OpSum, OpSum, OpReplaceHourly, ""}
	var bodies []string
	for range n {
		op := ops[rng.Intn(len(ops))]
		rows := make([]map[string]string, 1+rng.Intn(30))
		for i := range rows {
			start := time.Date(2024, 8, 1+rng.Intn(3), rng.Intn(24), rng.Intn(60), rng.Intn(60), 0, time.UTC)
			cost := fmt.Sprint(rng.Intn(1000))
			if rng.Intn(2) == 0 { // a fraction of 1 to 12 digits
				digits := 1 + rng.Intn(12)
				cost += fmt.Sprintf(".%0*d", digits, rng.Int63n(int64(math.Pow10(digits))))
			}
			if rng.Intn(5) == 0 {
				cost = "-" + cost
			}
			rows[i] = map[string]string{
				"time/usage_start": start.Format(time.RFC3339),
				"cost/cost":        cost,
				"resource/id":      fmt.Sprintf("i-%d", rng.Intn(50)),
				"resource/tag:env": "prod",
				"usage/amount":     "1",
			}
		}
		body := map[string]any{"month": "2024-08", "data": rows}
		if op != "" {
			body["operation"] = op
		}
		b, _ := json.Marshal(body)
		bodies = append(bodies, string(b))
	}
	return bodies
}

func TestCountingMatchesStrict(t *testing.T) {
	for _, seed := range []int64{1, 2, 3} {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			strict := newEmulator(t, Config{})
			counting := newEmulator(t, Config{Counting: true})
			for i, body := range workload(seed, 40) {
				a, b := strict.post(t, body, nil), counting.post(t, body, nil)
				if a.code != 200 || b.code != 200 {
					t.Fatalf("drop %d: strict %d %s, counting %d %s", i, a.code, a.raw, b.code, b.raw)
				}
				var ra, rb dropAnswer
				_ = json.Unmarshal([]byte(a.raw), &ra)
				_ = json.Unmarshal([]byte(b.raw), &rb)
				if ra.Connection.Month != rb.Connection.Month || ra.Connection.RowCount != rb.Connection.RowCount {
					t.Fatalf("drop %d: strict %s, counting %s", i, a.raw, b.raw)
				}
			}
			hs, hc := strict.Hours(conn1), counting.Hours(conn1)
			if len(hs) == 0 || len(hs) != len(hc) {
				t.Fatalf("strict has %d hours, counting %d", len(hs), len(hc))
			}
			for h, s := range hs {
				c := hc[h]
				if s.Rows != c.Rows || !s.Cost.Equal(c.Cost) || s.Bytes != c.Bytes {
					t.Fatalf("hour %v: strict %+v, counting %+v", h, s, c)
				}
				if s.Rows != len(strict.Rows(conn1, h)) {
					t.Fatalf("hour %v: %d rows counted, %d kept", h, s.Rows, len(strict.Rows(conn1, h)))
				}
			}
			if rows := counting.Rows(conn1, time.Date(2024, 8, 1, 0, 0, 0, 0, time.UTC)); rows != nil {
				t.Fatalf("counting mode kept rows: %v", rows)
			}
		})
	}
}

func TestCountingStillEnforces(t *testing.T) {
	ok := cbf("sum", "", "10 1")
	tests := []struct {
		name string
		q    req
		want int
	}{
		{"Bearer refused", req{path: dropsURL(conn1), auth: "Bearer " + key1, body: ok}, 403},
		{"two months", req{path: dropsURL(conn1), auth: key1,
			body: `{"data":[{"time/usage_start":"2024-08-31T23:00:00Z","cost/cost":"1"},{"time/usage_start":"2024-09-01T00:00:00Z","cost/cost":"1"}]}`}, 400},
		{"number cost", req{path: dropsURL(conn1), auth: key1, body: `{"data":[{"time/usage_start":"2024-08-31T23:00:00Z","cost/cost":1}]}`}, 400},
		{"exponent cost", req{path: dropsURL(conn1), auth: key1, body: `{"data":[{"time/usage_start":"2024-08-31T23:00:00Z","cost/cost":"1e3"}]}`}, 400},
		{"missing cost", req{path: dropsURL(conn1), auth: key1, body: `{"data":[{"time/usage_start":"2024-08-31T23:00:00Z"}]}`}, 400},
		{"unknown top-level", req{path: dropsURL(conn1), auth: key1, body: `{"rows":[],"data":[]}`}, 400},
		{"unknown column is not checked", req{path: dropsURL(conn1), auth: key1,
			body: `{"data":[{"time/usage_start":"2024-08-31T23:00:00Z","cost/cost":"1","whatever":"x"}]}`}, 200},
		{"GET month has no rows to give", req{method: http.MethodGet, path: dropsURL(conn1) + "/2024-08", auth: key1}, 501},
		{"validate stays strict", req{path: "/v2/connections/billing/anycost/validate_billing_drop", auth: key1,
			body: `{"data":[{"time/usage_start":"2024-08-31T23:00:00Z","cost/cost":"1","whatever":"x"}]}`}, 400},
	}
	e := newEmulator(t, Config{Counting: true, MaxBodyBytes: 1000})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if r := e.do(t, tt.q); r.code != tt.want {
				t.Fatalf("got %d %s, want %d", r.code, r.raw, tt.want)
			}
		})
	}
	if r := e.post(t, ok[:len(ok)-1]+strings.Repeat(" ", 1000)+"}", nil); r.code != 413 {
		t.Fatalf("oversized body: %d", r.code)
	}
}

// BenchmarkPost measures one 5 MB-class billing drop through the handler, in
// both modes; Counting exists so this stays cheap next to the fleet.
func BenchmarkPost(b *testing.B) {
	rows := make([]map[string]string, 20000)
	for i := range rows {
		rows[i] = map[string]string{
			"time/usage_start": time.Date(2024, 8, 1+i%28, i%24, 0, 0, 0, time.UTC).Format(time.RFC3339),
			"cost/cost":        fmt.Sprintf("%d.%06d", i, i),
			"resource/id":      fmt.Sprintf("instance-%06d", i),
			"resource/service": "Compute", "lineitem/type": "Usage", "usage/amount": "1.5", "usage/units": "hours",
			"resource/tag:team": "billing",
		}
	}
	body, _ := json.Marshal(map[string]any{"month": "2024-08", "operation": "replace_drop", "data": rows})
	for _, counting := range []bool{false, true} {
		b.Run(fmt.Sprintf("counting=%v", counting), func(b *testing.B) {
			s := New(Config{Connections: map[string]string{conn1: key1}, Counting: counting})
			h := s.Handler()
			b.SetBytes(int64(len(body)))
			for b.Loop() {
				r, _ := http.NewRequest(http.MethodPost, dropsURL(conn1), strings.NewReader(string(body)))
				r.Header.Set("Authorization", key1)
				r.Header.Set("Content-Type", "application/json")
				w := &discard{header: http.Header{}}
				h.ServeHTTP(w, r)
				if w.code != 200 {
					b.Fatalf("status %d", w.code)
				}
			}
		})
	}
}

type discard struct {
	header http.Header
	code   int
}

func (d *discard) Header() http.Header { return d.header }
func (d *discard) WriteHeader(c int)   { d.code = c }
func (d *discard) Write(p []byte) (int, error) {
	if d.code == 0 {
		d.code = 200
	}
	return len(p), nil
}

func TestFastCountMatchesStrict(t *testing.T) {
	for _, seed := range []int64{1, 2, 3} {
		strict := newEmulator(t, Config{})
		fast := newEmulator(t, Config{FastCount: true})
		for i, body := range workload(seed, 40) {
			a, b := strict.post(t, body, nil), fast.post(t, body, nil)
			if a.code != 200 || b.code != 200 {
				t.Fatalf("seed %d drop %d: strict %d %s, fast %d %s", seed, i, a.code, a.raw, b.code, b.raw)
			}
		}
		hs, hf := strict.Hours(conn1), fast.Hours(conn1)
		if len(hs) == 0 || len(hs) != len(hf) {
			t.Fatalf("strict has %d hours, fast %d", len(hs), len(hf))
		}
		for h, s := range hs {
			if f := hf[h]; s.Rows != f.Rows || !s.Cost.Equal(f.Cost) {
				t.Fatalf("hour %v: strict %+v, fast %+v", h, s, f)
			}
		}
	}
	e := newEmulator(t, Config{FastCount: true})
	for _, bad := range []string{
		`{"data":[{"time/usage_start":"2024-08-31T23:00:00Z"}]}`,
		`{"data":[{"time/usage_start":"2024-08-31T23:00:00Z","cost/cost":"1e3"}]}`,
		`{"data":[{"time/usage_start":"2024-08-31T23:00:00Z","cost/cost":"1"},{"time/usage_start":"2024-09-01T00:00:00Z","cost/cost":"1"}]}`,
		`{"operation":"append","data":[]}`,
	} {
		if r := e.post(t, bad, nil); r.code != 400 {
			t.Errorf("%s: %d %s", bad, r.code, r.raw)
		}
	}
}

// Rows written unusually still count as the strict mode counts them: a
// brace or a key's text inside a string value, escapes, spaces, keys in
// another order, a fractional or offset time.
func TestFastCountOddRows(t *testing.T) {
	body := `{"month":"2024-08","operation":"replace_hourly","data":[` +
		`{"time/usage_start":"2024-08-01T01:00:00Z","cost/cost":"1.5","lineitem/description":"a } brace"},` +
		`{"cost/cost":"2","time/usage_start":"2024-08-01T01:30:00Z","lineitem/description":"say \"cost/cost\":\"9\" {}"},` +
		`{ "time/usage_start" : "2024-08-01T02:00:00.123Z" , "cost/cost" : "-0.25" },` +
		`{"time/usage_start":"2024-08-01T03:10:00+01:00","cost/cost":"0.0000000001","resource/id":"r}","resource/tag:a":"}"},` +
		`{"lineitem/description":"{\"time/usage_start\":\"2024-08-09T00:00:00Z\"}","time/usage_start":"2024-08-01T04:00:00","cost/cost":"3"}` +
		`]}`
	strict := newEmulator(t, Config{})
	fast := newEmulator(t, Config{FastCount: true})
	a, b := strict.post(t, body, nil), fast.post(t, body, nil)
	if a.code != 200 || b.code != 200 {
		t.Fatalf("strict %d %s, fast %d %s", a.code, a.raw, b.code, b.raw)
	}
	hs, hf := strict.Hours(conn1), fast.Hours(conn1)
	if len(hs) != 3 || len(hs) != len(hf) { // 01h (two rows), 02h (two, one given at +01:00), 04h
		t.Fatalf("strict has %d hours, fast %d", len(hs), len(hf))
	}
	for h, s := range hs {
		if f := hf[h]; s.Rows != f.Rows || !s.Cost.Equal(f.Cost) {
			t.Fatalf("hour %v: strict %+v, fast %+v", h, s, f)
		}
	}
	for _, bad := range []string{
		`{"data":[{"time/usage_start":"2024-08-31T23:00:00Z","cost/cost":"1"`,
		`{"data":[{"time/usage_start":"2024-02-30T23:00:00Z","cost/cost":"1"}]}`,
		`{"data":[{"time/usage_start":"2024-08-31T24:00:00Z","cost/cost":"1"}]}`,
		`{"data":[{"time/usage_start":"2024-08-31T23:00:00Z","cost/cost":1}]}`,
		`{"data":[{"time/usage_start":"2024-08-31T23:00:00Z","cost/cost":"1"},{"cost/cost":"1"}]}`,
		// After a good row of the same hour, a bad minute, second or fraction.
		`{"data":[{"time/usage_start":"2024-08-31T23:00:00Z","cost/cost":"1"},{"time/usage_start":"2024-08-31T23:61:00Z","cost/cost":"1"}]}`,
		`{"data":[{"time/usage_start":"2024-08-31T23:00:00Z","cost/cost":"1"},{"time/usage_start":"2024-08-31T23:10:6xZ","cost/cost":"1"}]}`,
		`{"data":[{"time/usage_start":"2024-08-31T23:00:00Z","cost/cost":"1"},{"time/usage_start":"2024-08-31T23:10:00.Z","cost/cost":"1"}]}`,
		`{"data":[{"time/usage_start":"2024-08-31T23:00:00Z","cost/cost":"1"},{"time/usage_start":"2024-08-31T23:10:00.1aZ","cost/cost":"1"}]}`,
	} {
		if r := fast.post(t, bad, nil); r.code != 400 {
			t.Errorf("%s: %d %s", bad, r.code, r.raw)
		}
	}
}
