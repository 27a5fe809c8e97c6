package cloudzero

import (
	"encoding/json"
	"net/http"
	"testing"
	"time"
)

func TestAdminEndpoints(t *testing.T) {
	e := newEmulator(t, Config{MaxBodyBytes: 10_000})
	e.mustPost(t, cbf("replace_drop", "2024-08", "11 0.1", "10 0.2", "11 0.2"))
	e.post(t, cbf("sum", "", "10 1"), map[string]string{IdempotencyHeader: "k"})
	e.post(t, cbf("sum", "", "10 2"), map[string]string{IdempotencyHeader: "k"}) // key reuse

	r := e.do(t, req{method: http.MethodGet, path: "/_sandbox/hours?connection=" + conn1})
	var hours []HourJSON
	if r.code != 200 || json.Unmarshal([]byte(r.raw), &hours) != nil {
		t.Fatalf("hours: %d %s", r.code, r.raw)
	}
	if len(hours) != 2 || !hours[0].Hour.Equal(hourAt(16, 10)) || hours[0].Rows != 2 || hours[0].Cost != "1.2" ||
		hours[1].Rows != 2 || hours[1].Cost != "0.3" {
		t.Fatalf("hours = %+v", hours)
	}
	if r := e.do(t, req{method: http.MethodGet, path: "/_sandbox/hours?connection=nope"}); r.code != 404 {
		t.Fatalf("hours of an unknown connection: %d", r.code)
	}

	// Faults over HTTP, then stats.
	r = e.do(t, req{method: http.MethodPut, path: "/_sandbox/faults", body: `[{"kind":"status","code":502,"count":1}]`})
	if r.code != http.StatusNoContent {
		t.Fatalf("PUT faults: %d %s", r.code, r.raw)
	}
	if r := e.post(t, cbf("sum", "", "10 1"), nil); r.code != 502 || r.json(t)["message"] == nil {
		t.Fatalf("injected fault: %d %s", r.code, r.raw)
	}
	r = e.do(t, req{method: http.MethodGet, path: "/_sandbox/stats"})
	var st StatsJSON
	if r.code != 200 || json.Unmarshal([]byte(r.raw), &st) != nil {
		t.Fatalf("stats: %d %s", r.code, r.raw)
	}
	if st.Requests != 4 || st.KeyReuseViolations != 1 || st.ConcurrencyViolations != 0 ||
		st.MaxBodySeen == 0 || st.FaultsInjected["status"] != 1 {
		t.Fatalf("stats = %+v", st)
	}

	if r := e.do(t, req{method: http.MethodPost, path: "/_sandbox/reset"}); r.code != http.StatusNoContent {
		t.Fatalf("reset: %d", r.code)
	}
	if len(e.Hours(conn1)) != 0 || len(e.Requests(conn1)) != 0 || e.MaxBodySeen() != 0 {
		t.Fatal("reset left data behind")
	}
	if c, k := e.Violations(); c != 0 || k != 0 {
		t.Fatal("reset left violations behind")
	}
	// The idempotency store is gone too: the key is new again.
	if r := e.post(t, cbf("sum", "", "10 2"), map[string]string{IdempotencyHeader: "k"}); r.code != 200 {
		t.Fatalf("after reset: %d %s", r.code, r.raw)
	}
	// Keys survive a reset.
	if r := e.post(t, cbf("sum", "", "10 2"), nil); r.code != 200 {
		t.Fatalf("key after reset: %d", r.code)
	}
}

func TestRequestLog(t *testing.T) {
	e := newEmulator(t, Config{})
	body := cbf("replace_hourly", "2024-08-16T00:00:00Z", "10 1", "11 1")
	before := time.Now().Add(-time.Second)
	e.post(t, body, map[string]string{IdempotencyHeader: "key-1"})
	e.do(t, req{path: dropsURL(conn1), auth: "Bearer " + key1, body: body})
	log := e.Requests(conn1)
	if len(log) != 2 {
		t.Fatalf("log = %+v", log)
	}
	first := log[0]
	if first.Time.Before(before) || first.Operation != OpReplaceHourly || first.Month != "2024-08" || first.Rows != 2 ||
		first.Bytes != int64(len(body)) || first.IdempotencyKey != "key-1" || first.Status != 200 || !first.Applied || first.Replayed {
		t.Fatalf("first = %+v", first)
	}
	if second := log[1]; second.Status != 403 || second.Applied || second.Operation != "" {
		t.Fatalf("second = %+v", second)
	}
	if e.Requests("nope") != nil {
		t.Fatal("log for an unknown connection")
	}
}
