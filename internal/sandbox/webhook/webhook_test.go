package webhook

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/shopspring/decimal"

	"github.com/usagefleet/usagefleet/internal/sandbox/fault"
)

func start(t *testing.T, cfg Config) (*Server, string) {
	t.Helper()
	s := New(cfg)
	ts := httptest.NewServer(s.Handler())
	t.Cleanup(ts.Close)
	return s, ts.URL
}

type reply struct {
	code int
	body string
	hdr  http.Header
}

func post(t *testing.T, url, body string, hdr map[string]string) reply {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for k, v := range hdr {
		if v == "" {
			req.Header.Del(k)
		} else {
			req.Header.Set(k, v)
		}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return reply{code: -1, body: err.Error()}
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return reply{resp.StatusCode, string(b), resp.Header}
}

func TestIngestValidation(t *testing.T) {
	const token = "s3cret-token"
	big := `[{"x":"` + strings.Repeat("a", 100) + `"}]`
	tests := []struct {
		name     string
		body     string
		hdr      map[string]string
		wantCode int
		wantMsg  string // substring of the answer
	}{
		{"ok", `[{"BilledCost":"1.5"},{"BilledCost":"2"}]`, nil, 200, `{"received":2}`},
		{"empty array", `[]`, nil, 200, `{"received":0}`},
		{"missing and empty cost", `[{"a":"b"},{"BilledCost":""},{"BilledCost":null}]`, nil, 200, `{"received":3}`},
		{"no token", `[]`, map[string]string{"Authorization": ""}, 401, `"error"`},
		{"raw token without Bearer", `[]`, map[string]string{"Authorization": token}, 401, `"error"`},
		{"wrong token", `[]`, map[string]string{"Authorization": "Bearer nope"}, 401, `"error"`},
		{"text content type", `[]`, map[string]string{"Content-Type": "text/plain"}, 415, "application/json"},
		{"json with charset", `[]`, map[string]string{"Content-Type": "application/json; charset=utf-8"}, 200, `{"received":0}`},
		{"too large", big, nil, 413, "larger than"},
		{"object not array", `{"a":"b"}`, nil, 400, "JSON array"},
		{"null body", `null`, nil, 400, "JSON array"},
		{"truncated", `[{"a":"b"}`, nil, 400, "JSON array"},
		{"element not object", `[{"a":"b"}, 3]`, nil, 400, "element 1"},
		{"cost is a number", `[{"BilledCost":"1"},{"BilledCost":1.5}]`, nil, 400, `element 1: \"BilledCost\"`},
		{"cost not decimal", `[{"BilledCost":"abc"}]`, nil, 400, `element 0`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, url := start(t, Config{Token: token, MaxBodyBytes: 64})
			hdr := map[string]string{"Authorization": "Bearer " + token}
			for k, v := range tt.hdr {
				hdr[k] = v
			}
			got := post(t, url+"/ingest", tt.body, hdr)
			if got.code != tt.wantCode || !strings.Contains(got.body, tt.wantMsg) {
				t.Fatalf("got %d %s, want %d containing %s", got.code, got.body, tt.wantCode, tt.wantMsg)
			}
			if strings.Contains(got.body, token) {
				t.Fatalf("answer echoes the token: %s", got.body)
			}
			st := s.Stats()
			if tt.wantCode != 200 {
				if st.Requests != 0 || st.Records != 0 || st.Rejected != 1 {
					t.Fatalf("rejected request changed state: %+v", st)
				}
				if !json.Valid([]byte(got.body)) {
					t.Fatalf("error body is not JSON: %s", got.body)
				}
			} else if st.Requests != 1 || st.Rejected != 0 {
				t.Fatalf("accepted request not counted: %+v", st)
			}
		})
	}
}

func TestMaxBodyBoundary(t *testing.T) {
	body := `[{"BilledCost":"1"}]` // 20 bytes
	tests := []struct {
		limit    int64
		wantCode int
		wantSeen int64
	}{
		{int64(len(body)), 200, int64(len(body))},
		{int64(len(body)) - 1, 413, int64(len(body))},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.limit), func(t *testing.T) {
			s, url := start(t, Config{MaxBodyBytes: tt.limit})
			if got := post(t, url+"/ingest", body, nil); got.code != tt.wantCode {
				t.Fatalf("got %d %s, want %d", got.code, got.body, tt.wantCode)
			}
			if got := s.Stats().MaxBodyBytes; got != tt.wantSeen {
				t.Fatalf("MaxBodyBytes seen = %d, want %d", got, tt.wantSeen)
			}
		})
	}
}

func TestDuplicatesAndExactCost(t *testing.T) {
	s, url := start(t, Config{CostField: "amount"})
	steps := []struct {
		key, body string
	}{
		{"k1", `[{"amount":"0.1"},{"amount":"0.2"}]`},
		{"k1", `[{"amount":"0.1"},{"amount":"0.2"}]`},   // retry: duplicate
		{"k1", `[{"amount":"5"}]`},                      // key reused for another body
		{"", `[{"amount":"0.0000000001"}]`},             // no key: always unique
		{"", `[{"amount":"0.0000000001"}]`},             // no key: always unique
		{"k2", `[{"amount":"-0.3"},{"other":"x"}, {}]`}, // negative, missing
	}
	for i, st := range steps {
		if got := post(t, url+"/ingest", st.body, map[string]string{"Idempotency-Key": st.key}); got.code != 200 {
			t.Fatalf("step %d: %d %s", i, got.code, got.body)
		}
	}
	got := s.Stats()
	want := Stats{
		Requests: 6, Records: 10, DuplicateRequests: 2, KeyReuse: 1, UniqueRecords: 7,
		Cost:       decimal.RequireFromString("5.3000000002"),
		UniqueCost: decimal.RequireFromString("0.0000000002"),
	}
	if got.Requests != want.Requests || got.Records != want.Records || got.DuplicateRequests != want.DuplicateRequests ||
		got.KeyReuse != want.KeyReuse || got.UniqueRecords != want.UniqueRecords ||
		!got.Cost.Equal(want.Cost) || !got.UniqueCost.Equal(want.UniqueCost) {
		t.Fatalf("stats = %+v\nwant    %+v", got, want)
	}
	if n := len(s.Records()); n != 10 {
		t.Fatalf("Records() has %d, want 10", n)
	}
	uniq := s.UniqueRecords()
	if len(uniq) != 7 || string(uniq[0]) != `{"amount":"0.1"}` || string(uniq[6]) != `{}` {
		t.Fatalf("UniqueRecords() = %s", uniq)
	}

	// The same numbers over HTTP, decimals as strings.
	resp, err := http.Get(url + "/_sandbox/stats")
	if err != nil {
		t.Fatal(err)
	}
	var wire map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&wire); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if wire["cost"] != "5.3000000002" || wire["unique_cost"] != "0.0000000002" || wire["duplicate_requests"] != 2.0 {
		t.Fatalf("GET /_sandbox/stats = %v", wire)
	}

	if got := post(t, url+"/_sandbox/reset", "", nil); got.code != http.StatusNoContent {
		t.Fatalf("reset: %d %s", got.code, got.body)
	}
	if st := s.Stats(); st.Requests != 0 || st.Records != 0 || !st.Cost.IsZero() || len(s.Records()) != 0 {
		t.Fatalf("after reset: %+v", st)
	}
	// After a reset a key is new again.
	post(t, url+"/ingest", `[{}]`, map[string]string{"Idempotency-Key": "k1"})
	if st := s.Stats(); st.DuplicateRequests != 0 || st.UniqueRecords != 1 {
		t.Fatalf("after reset, k1 counted as duplicate: %+v", st)
	}
}

func TestFaults(t *testing.T) {
	tests := []struct {
		name        string
		rule        fault.Rule
		wantCode    int // -1: connection dropped
		wantApplied int
	}{
		{"status 503 does not apply", fault.Rule{Kind: fault.Status, Code: 503, RetryAfter: "2"}, 503, 0},
		{"apply then 500 applies", fault.Rule{Kind: fault.ApplyThenStatus, Code: 500}, 500, 1},
		{"reset does not apply", fault.Rule{Kind: fault.Reset}, -1, 0},
		{"apply then reset applies", fault.Rule{Kind: fault.ApplyThenReset}, -1, 1},
		{"other path untouched", fault.Rule{Kind: fault.Status, Code: 500, Path: "/elsewhere"}, 200, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, url := start(t, Config{Seed: 1})
			s.Faults().Set(tt.rule)
			got := post(t, url+"/ingest", `[{"BilledCost":"1"}]`, nil)
			if got.code != tt.wantCode {
				t.Fatalf("got %d %s, want %d", got.code, got.body, tt.wantCode)
			}
			if tt.rule.RetryAfter != "" && got.hdr.Get("Retry-After") != tt.rule.RetryAfter {
				t.Fatalf("Retry-After = %q", got.hdr.Get("Retry-After"))
			}
			if got.code >= 400 && !strings.Contains(got.body, `"error"`) {
				t.Fatalf("fault body %s has no error field", got.body)
			}
			if n := s.Stats().Requests; n != tt.wantApplied {
				t.Fatalf("applied %d requests, want %d", n, tt.wantApplied)
			}
		})
	}
}

func TestFaultAdminOverHTTP(t *testing.T) {
	s, url := start(t, Config{})
	req, _ := http.NewRequest(http.MethodPut, url+"/_sandbox/faults", strings.NewReader(`[{"kind":"status","code":429,"count":1}]`))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("PUT faults: %d", resp.StatusCode)
	}
	if got := post(t, url+"/ingest", `[]`, nil); got.code != 429 {
		t.Fatalf("first POST: %d, want the injected 429", got.code)
	}
	if got := post(t, url+"/ingest", `[]`, nil); got.code != 200 {
		t.Fatalf("second POST: %d, want 200 (count 1)", got.code)
	}
	if n := s.Faults().Injected()[fault.Status]; n != 1 {
		t.Fatalf("injected %d", n)
	}
}

func TestConcurrentIngest(t *testing.T) {
	s, url := start(t, Config{})
	const workers, each = 8, 25
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				key := fmt.Sprintf("w%d-%d", w, i%20) // the last 5 of each worker repeat a key
				post(t, url+"/ingest", `[{"BilledCost":"0.01"}]`, map[string]string{"Idempotency-Key": key})
				_ = s.Stats()
			}
		}()
	}
	wg.Wait()
	st := s.Stats()
	if st.Requests != workers*each || st.DuplicateRequests != workers*5 ||
		!st.Cost.Equal(decimal.RequireFromString("2")) || !st.UniqueCost.Equal(decimal.RequireFromString("1.6")) {
		t.Fatalf("stats = %+v", st)
	}
}

func TestMethodNotAllowed(t *testing.T) {
	_, url := start(t, Config{Path: "/hook"})
	resp, err := http.Get(url + "/hook")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("GET /hook: %d", resp.StatusCode)
	}
	if got := post(t, url+"/hook", `[]`, nil); got.code != 200 {
		t.Fatalf("POST custom path: %d %s", got.code, got.body)
	}
}
