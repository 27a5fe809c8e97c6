package cloudzero

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/shopspring/decimal"
)

const (
	conn1, key1 = "1234abcd-1234-abcd-1234-abcd1234efgh", "AbCd1234EfGh5678AbCd1234EfGh5678AbCd12"
	conn2, key2 = "conn-two", "key-two-0000000000000000000000000000"
)

type emulator struct {
	*Server
	url string
}

func newEmulator(t *testing.T, cfg Config) *emulator {
	t.Helper()
	if cfg.Connections == nil {
		cfg.Connections = map[string]string{conn1: key1, conn2: key2}
	}
	s := New(cfg)
	ts := httptest.NewServer(s.Handler())
	t.Cleanup(ts.Close)
	return &emulator{s, ts.URL}
}

func dropsURL(conn string) string {
	return "/v2/connections/billing/anycost/" + conn + "/billing_drops"
}

type reply struct {
	code int
	raw  string
	hdr  http.Header
	err  error // transport error: the connection was dropped
}

// json decodes the answer; it fails the test for a body that is not JSON.
func (r reply) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(r.raw), &m); err != nil {
		t.Fatalf("answer %d is not a JSON object: %q", r.code, r.raw)
	}
	return m
}

// errorMessage returns the message of a 400 {"error":{"message","type"}} body.
func (r reply) errorMessage(t *testing.T) string {
	t.Helper()
	e, ok := r.json(t)["error"].(map[string]any)
	if !ok || e["type"] == nil {
		t.Fatalf("400 body has no error.message/type: %s", r.raw)
	}
	msg, _ := e["message"].(string)
	return msg
}

type req struct {
	method, path, auth, body string
	hdr                      map[string]string
}

func (e *emulator) do(t *testing.T, q req) reply {
	t.Helper()
	if q.method == "" {
		q.method = http.MethodPost
	}
	r, err := http.NewRequest(q.method, e.url+q.path, strings.NewReader(q.body))
	if err != nil {
		t.Fatal(err)
	}
	if q.auth != "" {
		r.Header.Set("Authorization", q.auth)
	}
	if q.method == http.MethodPost || q.method == http.MethodPut {
		r.Header.Set("Content-Type", "application/json")
	}
	for k, v := range q.hdr {
		if v == "" {
			r.Header.Del(k)
		} else {
			r.Header.Set(k, v)
		}
	}
	client := &http.Client{Timeout: 10 * time.Second}
	resp, err := client.Do(r)
	if err != nil {
		return reply{code: -1, err: err}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return reply{code: -1, err: err}
	}
	return reply{code: resp.StatusCode, raw: string(b), hdr: resp.Header}
}

// post sends a billing drop to conn1 with its key.
func (e *emulator) post(t *testing.T, body string, hdr map[string]string) reply {
	t.Helper()
	return e.do(t, req{path: dropsURL(conn1), auth: key1, body: body, hdr: hdr})
}

// mustPost sends a billing drop to conn1 and fails the test unless it is 200.
func (e *emulator) mustPost(t *testing.T, body string) {
	t.Helper()
	if r := e.post(t, body, nil); r.code != http.StatusOK {
		t.Fatalf("POST: %d %s %v", r.code, r.raw, r.err)
	}
}

// cbf builds a billing drop body. rows are "hour cost" pairs in August 2024,
// e.g. "13 12.5" is a row starting 2024-08-16T13:00:00Z costing 12.5; a third
// field, if present, is the day of the month.
func cbf(op, month string, rows ...string) string {
	var data []map[string]string
	for i, r := range rows {
		f := strings.Fields(r)
		day := "16"
		if len(f) > 2 {
			day = f[2]
		}
		data = append(data, map[string]string{
			"time/usage_start": fmt.Sprintf("2024-08-%sT%s:%02d:00Z", day, f[0], i%60),
			"cost/cost":        f[1],
			"lineitem/type":    "Usage",
			"resource/id":      fmt.Sprintf("instance-%04d", i),
			"resource/service": "Compute",
		})
	}
	body := map[string]any{"data": data}
	if op != "" {
		body["operation"] = op
	}
	if month != "" {
		body["month"] = month
	}
	if data == nil {
		body["data"] = []any{}
	}
	b, _ := json.Marshal(body)
	return string(b)
}

func hourAt(day, hour int) time.Time { return time.Date(2024, 8, day, hour, 0, 0, 0, time.UTC) }

// totals is the expected content of a connection: "day hour" → "rows cost".
type totals map[string]string

func (e *emulator) checkHours(t *testing.T, conn string, want totals) {
	t.Helper()
	got := e.Hours(conn)
	gotT := totals{}
	for h, v := range got {
		gotT[fmt.Sprintf("%d %d", h.Day(), h.Hour())] = fmt.Sprintf("%d %s", v.Rows, v.Cost.String())
	}
	if len(gotT) != len(want) {
		t.Fatalf("hours = %v, want %v", gotT, want)
	}
	for k, w := range want {
		wf := strings.Fields(w)
		gf := strings.Fields(gotT[k])
		if len(gf) != 2 || gf[0] != wf[0] || !decimal.RequireFromString(gf[1]).Equal(decimal.RequireFromString(wf[1])) {
			t.Fatalf("hour %s = %q, want %q (all: %v)", k, gotT[k], w, gotT)
		}
	}
}
