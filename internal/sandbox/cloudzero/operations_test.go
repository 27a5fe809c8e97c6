package cloudzero

import (
	"encoding/json"
	"net/http"
	"reflect"
	"testing"
)

func TestOperations(t *testing.T) {
	e := newEmulator(t, Config{})
	steps := []struct {
		name string
		body string
		want totals // "day hour" → "rows cost"
	}{
		{"replace_drop creates the month",
			cbf("replace_drop", "2024-08", "10 0.1", "10 0.2", "11 5", "12 7"),
			totals{"16 10": "2 0.3", "16 11": "1 5", "16 12": "1 7"}},
		{"replace_hourly replaces only the hours present",
			cbf("replace_hourly", "2024-08", "11 1.25", "11 -0.25", "13 9"),
			totals{"16 10": "2 0.3", "16 11": "2 1", "16 12": "1 7", "16 13": "1 9"}},
		{"sum appends to existing and new hours",
			cbf("sum", "2024-08", "10 0.0000000001", "14 3"),
			totals{"16 10": "3 0.3000000001", "16 11": "2 1", "16 12": "1 7", "16 13": "1 9", "16 14": "1 3"}},
		{"minutes inside the hour fold into it",
			`{"operation":"sum","data":[{"time/usage_start":"2024-08-16T14:59:59.999Z","cost/cost":"1"}]}`,
			totals{"16 10": "3 0.3000000001", "16 11": "2 1", "16 12": "1 7", "16 13": "1 9", "16 14": "2 4"}},
		{"another month is separate",
			`{"month":"2024-09-01T00:00:00Z","operation":"replace_drop","data":[{"time/usage_start":"2024-09-02T00:00:00Z","cost/cost":"100"}]}`,
			totals{"16 10": "3 0.3000000001", "16 11": "2 1", "16 12": "1 7", "16 13": "1 9", "16 14": "2 4", "2 0": "1 100"}},
		{"replace_drop replaces the whole month only",
			cbf("", "2024-08", "15 2 17"),
			totals{"17 15": "1 2", "2 0": "1 100"}},
		{"replace_drop with no rows empties the month",
			cbf("replace_drop", "2024-08"),
			totals{"2 0": "1 100"}},
	}
	for _, st := range steps {
		t.Log(st.name)
		if r := e.post(t, st.body, nil); r.code != http.StatusOK {
			t.Fatalf("%s: %d %s", st.name, r.code, r.raw)
		}
		e.checkHours(t, conn1, st.want)
	}
	e.checkHours(t, conn2, totals{})
}

func TestOperationsKeepOtherMonths(t *testing.T) {
	e := newEmulator(t, Config{})
	e.mustPost(t, cbf("", "", "10 1", "11 2"))
	e.mustPost(t, `{"data":[{"time/usage_start":"2024-09-01T05:00:00Z","cost/cost":"3"}]}`)
	e.mustPost(t, cbf("replace_drop", "", "12 4"))
	got := e.Hours(conn1)
	if len(got) != 2 || got[hourAt(16, 12)].Rows != 1 || got[hourAt(1, 5).AddDate(0, 1, 0)].Rows != 1 {
		t.Fatalf("hours = %v", got)
	}
}

func TestMonthLimits(t *testing.T) {
	oneRow := cbf("sum", "", "10 1")
	rowBytes := int64(len(`{"cost/cost":"1","lineitem/type":"Usage","resource/id":"instance-0000","resource/service":"Compute","time/usage_start":"2024-08-16T10:00:00Z"}`))
	tests := []struct {
		name  string
		cfg   Config
		steps []string
		codes []int
		rows  int // stored in hour 10 at the end
	}{
		{"rows: sum up to the cap", Config{MaxRowsPerMonth: 2}, []string{oneRow, oneRow, oneRow}, []int{200, 200, 400}, 2},
		{"rows: replace_hourly of a full hour fits", Config{MaxRowsPerMonth: 2},
			[]string{cbf("sum", "", "10 1", "10 1"), cbf("replace_hourly", "", "10 1", "10 2")}, []int{200, 200}, 2},
		{"rows: replace_drop over the cap", Config{MaxRowsPerMonth: 2}, []string{oneRow, cbf("", "", "10 1", "10 1", "10 1")}, []int{200, 400}, 1},
		{"rows: negative means no cap", Config{MaxRowsPerMonth: -1}, []string{oneRow, oneRow, oneRow}, []int{200, 200, 200}, 3},
		{"bytes: at the cap", Config{MaxBytesPerMonth: 2 * rowBytes}, []string{oneRow, oneRow, oneRow}, []int{200, 200, 400}, 2},
		{"bytes: counting mode too", Config{MaxBytesPerMonth: 2 * rowBytes, Counting: true}, []string{oneRow, oneRow, oneRow}, []int{200, 200, 400}, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEmulator(t, tt.cfg)
			for i, body := range tt.steps {
				r := e.post(t, body, nil)
				if r.code != tt.codes[i] {
					t.Fatalf("step %d: %d %s, want %d", i, r.code, r.raw, tt.codes[i])
				}
				if r.code == 400 {
					if e, _ := r.json(t)["error"].(map[string]any); e["type"] != errTypeLimit {
						t.Fatalf("step %d: %s", i, r.raw)
					}
				}
			}
			if got := e.Hours(conn1)[hourAt(16, 10)].Rows; got != tt.rows {
				t.Fatalf("%d rows stored, want %d", got, tt.rows)
			}
		})
	}
}

func TestGetEndpoints(t *testing.T) {
	e := newEmulator(t, Config{})
	get := func(path string) reply {
		return e.do(t, req{method: http.MethodGet, path: dropsURL(conn1) + path, auth: key1})
	}

	if r := get(""); r.code != 200 || r.raw != `{"billing_drops":[]}` {
		t.Fatalf("empty list: %d %s", r.code, r.raw)
	}
	e.mustPost(t, cbf("replace_drop", "2024-08", "11 1", "10 2"))
	e.mustPost(t, cbf("sum", "2024-08", "10 3"))
	r := e.post(t, `{"data":[{"time/usage_start":"2024-07-01T00:00:00Z","cost/cost":"9"}]}`, nil)
	var created struct{ Connection dropInfo }
	if err := json.Unmarshal([]byte(r.raw), &created); err != nil {
		t.Fatal(err)
	}

	var list listAnswer
	if r := get(""); r.code != 200 || json.Unmarshal([]byte(r.raw), &list) != nil {
		t.Fatalf("list: %d %s", r.code, r.raw)
	}
	if len(list.BillingDrops) != 2 || list.BillingDrops[0] != created.Connection ||
		list.BillingDrops[1].Month != "2024-08-01T00:00:00Z" || list.BillingDrops[1].RowCount != 3 {
		t.Fatalf("list = %+v (July created as %+v)", list, created.Connection)
	}

	r = get("/2024-08")
	var month struct {
		BillingDrop []map[string]string `json:"billing_drop"`
	}
	if r.code != 200 || json.Unmarshal([]byte(r.raw), &month) != nil {
		t.Fatalf("GET month: %d %s", r.code, r.raw)
	}
	var costs []string
	for _, row := range month.BillingDrop {
		costs = append(costs, row["cost/cost"])
	}
	if !reflect.DeepEqual(costs, []string{"1", "2", "3"}) { // arrival order, not hour order
		t.Fatalf("rows out of stored order: %v", costs)
	}
	if got := e.Rows(conn1, hourAt(16, 10).Add(30*60e9)); len(got) != 2 || got[1]["cost/cost"] != "3" {
		t.Fatalf("Rows(10:30) = %v", got)
	}

	tests := []struct {
		path string
		want int
	}{
		{"/2024-06", 404},
		{"/2024-8", 400},
		{"/2024-08-01", 400},
		{"/2024-13", 400},
		{"/2024-08-01T00:00:00Z", 400},
	}
	for _, tt := range tests {
		r := get(tt.path)
		if r.code != tt.want {
			t.Errorf("GET %s: %d %s, want %d", tt.path, r.code, r.raw, tt.want)
		}
		m := r.json(t)
		if _, ok := m["message"]; tt.want == 404 && !ok {
			t.Errorf("GET %s: 404 without message: %s", tt.path, r.raw)
		}
		if _, ok := m["error"]; tt.want == 400 && !ok {
			t.Errorf("GET %s: 400 without error: %s", tt.path, r.raw)
		}
	}
}
