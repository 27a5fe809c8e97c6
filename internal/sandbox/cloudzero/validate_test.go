package cloudzero

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
)

// jrow renders one CBF row object from "column": "value" pairs given raw, so
// a test can put a number or null where a string belongs.
func jrow(pairs ...string) string {
	var b strings.Builder
	b.WriteString("{")
	for i := 0; i < len(pairs); i += 2 {
		if i > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, "%q:%s", pairs[i], pairs[i+1])
	}
	b.WriteString("}")
	return b.String()
}

const okRow = `{"time/usage_start":"2024-08-16T13:00:00Z","cost/cost":"1"}`

func TestBadBodies(t *testing.T) {
	start := `"2024-08-16T13:00:00Z"`
	tests := []struct {
		name string
		body string
		want string // the error message starts with this
	}{
		{"number instead of string", `{"data":[` + okRow + `,` + jrow("time/usage_start", start, "cost/cost", `12`) + `]}`,
			`data[1]["cost/cost"]: got a JSON number`},
		{"null value", `{"data":[` + jrow("time/usage_start", start, "cost/cost", `"1"`, "resource/id", `null`) + `]}`,
			`data[0]["resource/id"]: got a JSON null`},
		{"bool value", `{"data":[` + jrow("time/usage_start", start, "cost/cost", `"1"`, "usage/units", `true`) + `]}`,
			`data[0]["usage/units"]: got a JSON boolean`},
		{"nested object", `{"data":[` + jrow("time/usage_start", start, "cost/cost", `"1"`, "k8s/labels", `{"a":"b"}`) + `]}`,
			`data[0]["k8s/labels"]: got a JSON object`},
		{"exponent", `{"data":[` + okRow + `,` + okRow + `,` + jrow("time/usage_start", start, "cost/cost", `"1e3"`) + `]}`,
			`data[2]["cost/cost"]: "1e3" is not a decimal string`},
		{"leading plus", `{"data":[` + jrow("time/usage_start", start, "cost/cost", `"+1"`) + `]}`,
			`data[0]["cost/cost"]: "+1" is not a decimal string`},
		{"bare fraction", `{"data":[` + jrow("time/usage_start", start, "cost/cost", `".5"`) + `]}`,
			`data[0]["cost/cost"]: ".5" is not a decimal string`},
		{"trailing dot", `{"data":[` + jrow("time/usage_start", start, "cost/cost", `"5."`) + `]}`,
			`data[0]["cost/cost"]: "5." is not a decimal string`},
		{"blank cost", `{"data":[` + jrow("time/usage_start", start, "cost/cost", `""`) + `]}`,
			`data[0]["cost/cost"]: "" is not a decimal string`},
		{"bad usage/amount", `{"data":[` + jrow("time/usage_start", start, "cost/cost", `"1"`, "usage/amount", `"1,5"`) + `]}`,
			`data[0]["usage/amount"]: "1,5" is not a decimal string`},
		{"bad discounted cost", `{"data":[` + jrow("time/usage_start", start, "cost/cost", `"1"`, "cost/discounted_cost", `"NaN"`) + `]}`,
			`data[0]["cost/discounted_cost"]: "NaN" is not a decimal string`},
		{"missing cost", `{"data":[` + okRow + `,` + jrow("time/usage_start", start) + `]}`,
			`data[1]["cost/cost"]: required column is missing`},
		{"missing usage_start", `{"data":[` + jrow("cost/cost", `"1"`) + `]}`,
			`data[0]["time/usage_start"]: required column is missing`},
		{"usage_start not ISO", `{"data":[` + jrow("time/usage_start", `"2024-08-16 13:00:00"`, "cost/cost", `"1"`) + `]}`,
			`data[0]["time/usage_start"]: "2024-08-16 13:00:00" is not an ISO 8601 datetime`},
		{"usage_start impossible date", `{"data":[` + jrow("time/usage_start", `"2024-02-30T00:00:00Z"`, "cost/cost", `"1"`) + `]}`,
			`data[0]["time/usage_start"]: "2024-02-30T00:00:00Z" is not an ISO 8601 datetime`},
		{"usage_end not ISO", `{"data":[` + jrow("time/usage_start", start, "cost/cost", `"1"`, "time/usage_end", `"tomorrow"`) + `]}`,
			`data[0]["time/usage_end"]: "tomorrow" is not an ISO 8601 datetime`},
		{"bad tag key", `{"data":[` + jrow("time/usage_start", start, "cost/cost", `"1"`, "resource/id", `"i-1"`, "resource/tag:cost center", `"x"`) + `]}`,
			`data[0]["resource/tag:cost center"]: tag key "cost center" may hold only`},
		{"empty tag key", `{"data":[` + jrow("time/usage_start", start, "cost/cost", `"1"`, "resource/id", `"i-1"`, "resource/tag:", `"x"`) + `]}`,
			`data[0]["resource/tag:"]: tag key "" may hold only`},
		{"tag without resource/id", `{"data":[` + okRow + `,` + jrow("time/usage_start", start, "cost/cost", `"1"`, "resource/tag:team", `"x"`) + `]}`,
			`data[1]["resource/id"]: required when the row has a resource/tag column`},
		{"tag with blank resource/id", `{"data":[` + jrow("time/usage_start", start, "cost/cost", `"1"`, "resource/id", `""`, "resource/tag:team", `"x"`) + `]}`,
			`data[0]["resource/id"]: required when the row has a resource/tag column`},
		{"unknown column", `{"data":[` + jrow("time/usage_start", start, "cost/cost", `"1"`, "cost/list_cost", `"1"`) + `]}`,
			`data[0]["cost/list_cost"]: unknown column`},
		{"FOCUS name instead of CBF", `{"data":[` + jrow("time/usage_start", start, "cost/cost", `"1"`, "BilledCost", `"1"`) + `]}`,
			`data[0]["BilledCost"]: unknown column`},
		{"bad lineitem/type", `{"data":[` + jrow("time/usage_start", start, "cost/cost", `"1"`, "lineitem/type", `"usage"`) + `]}`,
			`data[0]["lineitem/type"]: "usage" is not one of Usage, Tax`},
		{"duplicate column", `{"data":[{"time/usage_start":"2024-08-16T13:00:00Z","cost/cost":"1","cost/cost":"2"}]}`,
			`data[0]["cost/cost"]: column appears twice`},
		{"row not an object", `{"data":[` + okRow + `,"x"]}`, `data[1]: is not a JSON object`},
		{"two months without month", `{"data":[` + okRow + `,` + jrow("time/usage_start", `"2024-09-01T00:00:00Z"`, "cost/cost", `"1"`) + `]}`,
			`data[1]["time/usage_start"]: "2024-09-01T00:00:00Z" is in 2024-09 but data[0] is in 2024-08`},
		{"row outside the month", `{"month":"2024-08","data":[` + okRow + `,` + jrow("time/usage_start", `"2024-07-31T23:59:59Z"`, "cost/cost", `"1"`) + `]}`,
			`data[1]["time/usage_start"]: "2024-07-31T23:59:59Z" is not in month 2024-08`},
		{"offset moves a row out of the month", `{"month":"2024-08","data":[` + jrow("time/usage_start", `"2024-08-01T01:00:00+02:00"`, "cost/cost", `"1"`) + `]}`,
			`data[0]["time/usage_start"]: "2024-08-01T01:00:00+02:00" is not in month 2024-08`},
		{"unknown top-level field", `{"month":"2024-08","records":[],"data":[]}`, `unknown top-level field "records"`},
		{"bad operation", `{"operation":"replace","data":[` + okRow + `]}`, `operation: "replace" is not one of`},
		{"operation not a string", `{"operation":null,"data":[` + okRow + `]}`, `operation: null is not one of`},
		{"bad month", `{"month":"08/2024","data":[` + okRow + `]}`, `month: "08/2024" is neither YYYY-MM nor`},
		{"month not a string", `{"month":202408,"data":[` + okRow + `]}`, `month: 202408 is not a string`},
		{"no data", `{"month":"2024-08"}`, `data: required`},
		{"data not an array", `{"data":{"a":"b"}}`, `data: must be an array`},
		{"data null", `{"data":null}`, `data: must be an array`},
		{"empty data without month", `{"data":[]}`, `month: required when data is empty`},
		{"array body", `[` + okRow + `]`, `request body must be a JSON object`},
		{"not JSON", `{"data":[`, `request body is not valid JSON`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEmulator(t, Config{})
			e.mustPost(t, cbf("", "2024-08", "10 5", "11 7"))
			before := e.Hours(conn1)

			r := e.post(t, tt.body, nil)
			if r.code != http.StatusBadRequest {
				t.Fatalf("got %d %s, want 400", r.code, r.raw)
			}
			if msg := r.errorMessage(t); !strings.HasPrefix(msg, tt.want) {
				t.Fatalf("message %q\nwant prefix %q", msg, tt.want)
			}
			after := e.Hours(conn1)
			if len(after) != len(before) {
				t.Fatalf("a 400 changed the data: %v → %v", before, after)
			}
			for h, v := range before {
				if after[h].Rows != v.Rows || !after[h].Cost.Equal(v.Cost) {
					t.Fatalf("a 400 changed hour %v: %v → %v", h, v, after[h])
				}
			}
			log := e.Requests(conn1)
			if last := log[len(log)-1]; last.Applied || last.Status != 400 {
				t.Fatalf("log entry = %+v", last)
			}
			// validate_billing_drop refuses the same body the same way.
			v := e.do(t, req{path: "/v2/connections/billing/anycost/validate_billing_drop", auth: key1, body: tt.body})
			if v.code != 400 || v.errorMessage(t) != r.errorMessage(t) {
				t.Fatalf("validate: %d %s, want the same 400 as POST", v.code, v.raw)
			}
		})
	}
}

func TestGoodBodies(t *testing.T) {
	start := `"2024-08-16T13:00:00Z"`
	full := jrow(
		"lineitem/id", `"li-1"`, "lineitem/type", `"Discount"`, "lineitem/description", `"d"`, "lineitem/cloud_provider", `"Acme"`,
		"time/usage_start", `"2024-08-16T13:30:00.123456+00:00"`, "time/usage_end", `"2024-08-16T14:00:00"`,
		"resource/id", `"vm/i-1"`, "resource/service", `"Compute"`, "resource/account", `"acct"`, "resource/region", `"no-region"`,
		"resource/usage_family", `"f"`, "action/operation", `"o"`, "action/usage_type", `"u"`, "action/region", `"r"`, "action/account", `"a"`,
		"usage/amount", `"3.000"`, "usage/units", `"hours"`,
		"cost/cost", `"-12.50"`, "cost/discounted_cost", `""`, "cost/amortized_cost", `"0"`, "cost/discounted_amortized_cost", `"007"`,
		"cost/on_demand_cost", `"1.0000000001"`, "bill/invoice_id", `"inv"`,
		"k8s/cluster", `"c"`, "k8s/namespace", `"n"`, "k8s/deployment", `"d"`, "k8s/labels", `"a=b"`,
		"resource/tag:Team_Name.v2/x:y=z+w-q@r", `"t"`, "resource/tag:équipe", `"é"`,
	)
	tests := []struct {
		name, body string
		wantMonth  string
		wantRows   int
	}{
		{"every column", `{"month":"2024-08","operation":"sum","data":[` + full + `]}`, "2024-08-01T00:00:00Z", 1},
		{"month as docs datetime", `{"month":"2024-08-16T14:27:46+00:00","data":[` + jrow("time/usage_start", start, "cost/cost", `"12"`) + `]}`, "2024-08-01T00:00:00Z", 1},
		{"month as first row start", `{"month":"2024-08-16T13:00:00Z","data":[` + jrow("time/usage_start", start, "cost/cost", `"12"`) + `]}`, "2024-08-01T00:00:00Z", 1},
		{"no month, no operation", `{"data":[` + jrow("time/usage_start", start, "cost/cost", `"12"`) + `]}`, "2024-08-01T00:00:00Z", 1},
		{"escaped strings", `{"data":[{"time\/usage_start":"2024-08-16T13:00:00Z","cost/cost":"1","lineitem/description":"a \"quoted\" \u00e9"}]}`, "2024-08-01T00:00:00Z", 1},
		{"whitespace everywhere", "{ \"data\" : [ { \"time/usage_start\" : \"2024-08-16T13:00:00Z\" ,\n\t\"cost/cost\" : \"1\" } ] }", "2024-08-01T00:00:00Z", 1},
		{"offset moves a row into the month", `{"month":"2024-08","data":[` + jrow("time/usage_start", `"2024-09-01T01:00:00+02:00"`, "cost/cost", `"1"`) + `]}`, "2024-08-01T00:00:00Z", 1},
		{"empty data with month", `{"month":"2024-08","data":[]}`, "2024-08-01T00:00:00Z", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEmulator(t, Config{})
			r := e.post(t, tt.body, nil)
			if r.code != 200 {
				t.Fatalf("got %d %s", r.code, r.raw)
			}
			c, _ := r.json(t)["connection"].(map[string]any)
			id, _ := c["drop_id"].(string)
			if c["month"] != tt.wantMonth || c["row_count"] != float64(tt.wantRows) || len(id) != 36 {
				t.Fatalf("answer %s, want month %s, row_count %d and a uuid", r.raw, tt.wantMonth, tt.wantRows)
			}
		})
	}
}

func TestRejectNegative(t *testing.T) {
	body := cbf("sum", "", "10 -3.5")
	tests := []struct {
		cfg  Config
		want int
	}{
		{Config{}, 200},
		{Config{RejectNegative: true}, 400},
		{Config{RejectNegative: true, Counting: true}, 400},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("reject=%v,counting=%v", tt.cfg.RejectNegative, tt.cfg.Counting), func(t *testing.T) {
			e := newEmulator(t, tt.cfg)
			r := e.post(t, body, nil)
			if r.code != tt.want {
				t.Fatalf("got %d %s, want %d", r.code, r.raw, tt.want)
			}
			if r.code == 400 && !strings.Contains(r.errorMessage(t), `data[0]["cost/cost"]: "-3.5"`) {
				t.Fatalf("message: %s", r.raw)
			}
		})
	}
}

func TestBodyLimits(t *testing.T) {
	base := cbf("sum", "2024-08", "10 1")
	pad := func(n int) string { return base[:len(base)-1] + strings.Repeat(" ", n-len(base)) + "}" }
	const limit = 400
	tests := []struct {
		name     string
		body     string
		hdr      map[string]string
		want     int
		wantMsg  string
		wantSeen int64
	}{
		{"exactly the limit", pad(limit), nil, 200, "", limit},
		{"one byte over", pad(limit + 1), nil, 413, "Request Entity Too Large", limit + 1},
		{"far over", pad(limit * 10), nil, 413, "Request Entity Too Large", limit + 1},
		{"gzip", base, map[string]string{"Content-Encoding": "gzip"}, 415, "", 0},
		{"identity encoding", base, map[string]string{"Content-Encoding": "identity"}, 200, "", int64(len(base))},
		{"text/plain", base, map[string]string{"Content-Type": "text/plain"}, 415, "", 0},
		{"no content type", base, map[string]string{"Content-Type": ""}, 415, "", 0},
		{"json with charset", base, map[string]string{"Content-Type": "application/json; charset=utf-8"}, 200, "", int64(len(base))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEmulator(t, Config{MaxBodyBytes: limit})
			r := e.post(t, tt.body, tt.hdr)
			if r.code != tt.want {
				t.Fatalf("got %d %s, want %d", r.code, r.raw, tt.want)
			}
			if tt.wantMsg != "" && r.json(t)["message"] != tt.wantMsg {
				t.Fatalf("body %s, want message %q", r.raw, tt.wantMsg)
			}
			if got := e.MaxBodySeen(); got != tt.wantSeen {
				t.Fatalf("MaxBodySeen = %d, want %d", got, tt.wantSeen)
			}
			rows := e.Hours(conn1)[hourAt(16, 10)].Rows
			if (tt.want == 200) != (rows == 1) {
				t.Fatalf("%d rows stored after %d", rows, r.code)
			}
		})
	}
}

// A planted refusal (Config.RefuseResourceIDs) answers 400 naming the
// row's index in data, as any invalid row does, and stores nothing; with
// Config.NoRowIndex the message names no index (the real format is not
// documented), for clients that isolate the row by bisecting.
func TestRefusedRowNamedByIndex(t *testing.T) {
	body := `{"operation":"replace_hourly","data":[` +
		`{"time/usage_start":"2024-08-16T13:00:00Z","cost/cost":"1","resource/id":"ok-1"},` +
		`{"time/usage_start":"2024-08-16T13:00:00Z","cost/cost":"2","resource/id":"bad-1"}]}`
	for _, noIdx := range []bool{false, true} {
		e := newEmulator(t, Config{RefuseResourceIDs: []string{"bad-1"}, NoRowIndex: noIdx})
		r := e.do(t, req{path: dropsURL(conn1), auth: key1, body: body})
		if r.code != 400 {
			t.Fatalf("status %d %s", r.code, r.raw)
		}
		msg := r.errorMessage(t)
		named := strings.HasPrefix(msg, `data[1]["resource/id"]`)
		if named == noIdx || !strings.Contains(msg, "bad-1") {
			t.Fatalf("NoRowIndex %v: message %s", noIdx, msg)
		}
		if len(e.Hours(conn1)) != 0 {
			t.Fatal("a 400 stored rows")
		}
	}
}
