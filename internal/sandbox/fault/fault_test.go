package fault

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestParseSpec(t *testing.T) {
	tests := []struct {
		spec     string
		want     []Rule
		wantErr  string
		knownBug string // the case fails today for this reason; skipped until fault.go is fixed
	}{
		{spec: "", want: nil},
		{spec: "500", want: []Rule{{Kind: Status, Code: 500}}},
		{spec: "500@0.1", want: []Rule{{Kind: Status, Code: 500, Rate: 0.1}}},
		{spec: "429:retry=2x3", want: []Rule{{Kind: Status, Code: 429, RetryAfter: "2", Count: 3}}},
		{spec: "apply-500@0.2", want: []Rule{{Kind: ApplyThenStatus, Code: 500, Rate: 0.2}}},
		{spec: "apply-503:retry=1@0.5x2", want: []Rule{{Kind: ApplyThenStatus, Code: 503, RetryAfter: "1", Rate: 0.5, Count: 2}}},
		{spec: "apply-reset", want: []Rule{{Kind: ApplyThenReset}}},
		{spec: "timeout:delay=5s@0.05", want: []Rule{{Kind: Timeout, Delay: 5 * time.Second, Rate: 0.05}}},
		{spec: "reset:method=post:path=/v2/", want: []Rule{{Kind: Reset, Method: "POST", Path: "/v2/"}}},
		{spec: " 500@0.1 , 429:retry=2x3 ,", want: []Rule{{Kind: Status, Code: 500, Rate: 0.1}, {Kind: Status, Code: 429, RetryAfter: "2", Count: 3}}},
		{spec: "500:path=/v2/x", want: []Rule{{Kind: Status, Code: 500, Path: "/v2/x"}}},
		{spec: "500:path=/ingest/x1", want: []Rule{{Kind: Status, Code: 500, Path: "/ingest/x1"}}},
		{spec: "500@0.5x2:path=/ingest/x1", want: []Rule{{Kind: Status, Code: 500, Path: "/ingest/x1", Rate: 0.5, Count: 2}}},
		{spec: "200", wantErr: "want a 4xx/5xx status"},
		{spec: "600", wantErr: "want a 4xx/5xx status"},
		{spec: "apply-200", wantErr: "want a 4xx/5xx status"},
		{spec: "boom", wantErr: "want a 4xx/5xx status"},
		{spec: "500@0", wantErr: "rate must be in (0,1]"},
		{spec: "500@1.5", wantErr: "rate must be in (0,1]"},
		{spec: "500@x", wantErr: "rate must be in (0,1]"},
		{spec: "timeout:delay=soon", wantErr: "delay"},
		{spec: "500:retry", wantErr: "is not key=value"},
		{spec: "500:color=red", wantErr: `unknown option "color"`},
	}
	for _, tt := range tests {
		t.Run(tt.spec, func(t *testing.T) {
			if tt.knownBug != "" {
				t.Skip("known bug in fault.go: " + tt.knownBug)
			}
			got, err := ParseSpec(tt.spec)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseSpec(%q) error = %v, want one containing %q", tt.spec, err, tt.wantErr)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("ParseSpec(%q) = %+v, %v\nwant %+v", tt.spec, got, err, tt.want)
			}
		})
	}
}

func request(method, path string) *http.Request {
	return httptest.NewRequest(method, path, nil)
}

func TestPick(t *testing.T) {
	tests := []struct {
		name  string
		rules []Rule
		reqs  []*http.Request
		want  []Kind
	}{
		{"no rules", nil, []*http.Request{request("POST", "/")}, []Kind{None}},
		{"count limits firing", []Rule{{Kind: Status, Code: 500, Count: 2}},
			[]*http.Request{request("POST", "/"), request("POST", "/"), request("POST", "/")}, []Kind{Status, Status, None}},
		{"method filter is case-insensitive", []Rule{{Kind: Reset, Method: "post"}},
			[]*http.Request{request("GET", "/"), request("POST", "/")}, []Kind{None, Reset}},
		{"path is a prefix", []Rule{{Kind: Reset, Path: "/v2/connections"}},
			[]*http.Request{request("POST", "/v2/connections/x/billing_drops"), request("POST", "/_sandbox/stats")}, []Kind{Reset, None}},
		{"first matching rule wins, spent rules fall through", []Rule{{Kind: Status, Code: 429, Count: 1}, {Kind: ApplyThenStatus, Code: 500}},
			[]*http.Request{request("POST", "/"), request("POST", "/")}, []Kind{Status, ApplyThenStatus}},
		{"rate 1 always fires", []Rule{{Kind: Timeout, Rate: 1}},
			[]*http.Request{request("POST", "/"), request("POST", "/")}, []Kind{Timeout, Timeout}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inj := New(1)
			inj.Set(tt.rules...)
			for i, r := range tt.reqs {
				if got := inj.Pick(r).Kind; got != tt.want[i] {
					t.Fatalf("request %d: %q, want %q", i, got, tt.want[i])
				}
			}
			counts := map[Kind]int{}
			for _, k := range tt.want {
				if k != None {
					counts[k]++
				}
			}
			if got := inj.Injected(); !reflect.DeepEqual(got, counts) {
				t.Fatalf("Injected() = %v, want %v", got, counts)
			}
		})
	}
}

func TestPickRateIsSeededAndRoughlyRight(t *testing.T) {
	run := func(seed int64) []bool {
		inj := New(seed)
		inj.Set(Rule{Kind: Status, Code: 503, Rate: 0.25})
		out := make([]bool, 4000)
		for i := range out {
			out[i] = inj.Pick(request("POST", "/")).Kind == Status
		}
		return out
	}
	a, b := run(42), run(42)
	if !reflect.DeepEqual(a, b) {
		t.Fatal("the same seed gave different choices")
	}
	fired := 0
	for _, f := range a {
		if f {
			fired++
		}
	}
	if fired < 850 || fired > 1150 { // 1000 expected; ±5 sigma is about ±137
		t.Fatalf("rate 0.25 fired %d of 4000", fired)
	}
	if reflect.DeepEqual(a, run(43)) {
		t.Fatal("different seeds gave identical choices")
	}
}

func TestSetResetsCounts(t *testing.T) {
	inj := New(1)
	inj.Set(Rule{Kind: Reset, Count: 1})
	inj.Pick(request("POST", "/"))
	inj.Set(Rule{Kind: Reset, Count: 1})
	if inj.Pick(request("POST", "/")).Kind != Reset {
		t.Fatal("Set did not reset the fired count")
	}
	inj.Clear()
	if inj.Pick(request("POST", "/")).Kind != None {
		t.Fatal("Clear left a rule")
	}
	var nilInj *Injector
	if nilInj.Pick(request("POST", "/")).Kind != None {
		t.Fatal("a nil injector injected something")
	}
}

func jsonError(_ int, msg string) []byte {
	b, _ := json.Marshal(map[string]string{"message": msg})
	return b
}

// serve runs a handler that applies f the way an emulator does and reports
// whether it applied the request.
func serve(t *testing.T, f Rule) (url string, applied func() int) {
	t.Helper()
	var mu sync.Mutex
	n := 0
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if Before(w, r, f, jsonError) {
			return
		}
		mu.Lock()
		n++
		mu.Unlock()
		if After(w, f, jsonError) {
			return
		}
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(ts.Close)
	return ts.URL, func() int { mu.Lock(); defer mu.Unlock(); return n }
}

func TestBeforeAfter(t *testing.T) {
	tests := []struct {
		name        string
		rule        Rule
		wantCode    int // -1: the connection was dropped
		wantApplied int
		wantRetry   string
		wantMessage string
		minDuration time.Duration
	}{
		{"none", Rule{}, 200, 1, "", "", 0},
		{"status", Rule{Kind: Status, Code: 503, RetryAfter: "7"}, 503, 0, "7", "injected fault: 503 Service Unavailable", 0},
		{"status default code", Rule{Kind: Status}, 500, 0, "", "injected fault: 500 Internal Server Error", 0},
		{"status custom message", Rule{Kind: Status, Code: 401, Message: "token expired"}, 401, 0, "", "token expired", 0},
		{"apply then status", Rule{Kind: ApplyThenStatus, Code: 502}, 502, 1, "", "injected fault: 502 Bad Gateway", 0},
		{"apply then reset", Rule{Kind: ApplyThenReset}, -1, 1, "", "", 0},
		{"reset", Rule{Kind: Reset}, -1, 0, "", "", 0},
		{"timeout", Rule{Kind: Timeout, Delay: 150 * time.Millisecond}, -1, 0, "", "", 150 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			url, applied := serve(t, tt.rule)
			start := time.Now()
			resp, err := http.Post(url, "application/json", strings.NewReader("{}"))
			took := time.Since(start)
			code := -1
			var body []byte
			if err == nil {
				code = resp.StatusCode
				body, _ = io.ReadAll(resp.Body)
				resp.Body.Close()
			}
			if code != tt.wantCode {
				t.Fatalf("got %d (%v), want %d", code, err, tt.wantCode)
			}
			if n := applied(); n != tt.wantApplied {
				t.Fatalf("applied %d times, want %d", n, tt.wantApplied)
			}
			if took < tt.minDuration {
				t.Fatalf("answered after %v, want at least %v", took, tt.minDuration)
			}
			if code > 0 && tt.wantMessage != "" {
				var m map[string]string
				if json.Unmarshal(body, &m) != nil || m["message"] != tt.wantMessage {
					t.Fatalf("body %s, want message %q", body, tt.wantMessage)
				}
				if resp.Header.Get("Retry-After") != tt.wantRetry || resp.Header.Get("Content-Type") != "application/json" {
					t.Fatalf("headers %v", resp.Header)
				}
			}
		})
	}
}

func TestTimeoutEndsWhenTheClientLeaves(t *testing.T) {
	// Without a body: net/http notices a client going away only once the
	// request body has been read, and Before runs before anyone reads it.
	url, applied := serve(t, Rule{Kind: Timeout, Delay: time.Minute})
	client := &http.Client{Timeout: 100 * time.Millisecond}
	start := time.Now()
	if _, err := client.Get(url); err == nil {
		t.Fatal("a timeout fault answered")
	}
	if time.Since(start) > 5*time.Second {
		t.Fatal("client timeout did not end the request")
	}
	if applied() != 0 {
		t.Fatal("a timeout applied the request")
	}
}

func TestAdminHandler(t *testing.T) {
	inj := New(1)
	ts := httptest.NewServer(inj.AdminHandler())
	t.Cleanup(ts.Close)
	do := func(method, body string) (int, string) {
		req, _ := http.NewRequest(method, ts.URL, strings.NewReader(body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	steps := []struct {
		method, body string
		wantCode     int
		wantRules    int // rules active afterwards
	}{
		{http.MethodPut, `[{"kind":"status","code":503,"retry_after":"2","count":1},{"kind":"reset","rate":0.5}]`, 204, 2},
		{http.MethodPost, `[{"kind":"timeout","delay":1000000000}]`, 204, 1},
		{http.MethodPut, `[{"kind":"status","colour":"red"}]`, 400, 1}, // unknown field: rules unchanged
		{http.MethodPut, `not json`, 400, 1},
		{http.MethodPatch, ``, 405, 1},
		{http.MethodDelete, ``, 204, 0},
	}
	for i, st := range steps {
		code, body := do(st.method, st.body)
		if code != st.wantCode {
			t.Fatalf("step %d: %s → %d %s, want %d", i, st.method, code, body, st.wantCode)
		}
		_, state := do(http.MethodGet, "")
		var got struct {
			Rules []Rule `json:"rules"`
		}
		if err := json.Unmarshal([]byte(state), &got); err != nil {
			t.Fatalf("step %d: GET %s: %v", i, state, err)
		}
		if len(got.Rules) != st.wantRules {
			t.Fatalf("step %d: %d rules active, want %d: %s", i, len(got.Rules), st.wantRules, state)
		}
	}
	inj.Set(Rule{Kind: Status, Code: 500})
	inj.Pick(request("POST", "/"))
	_, state := do(http.MethodGet, "")
	if !strings.Contains(state, `"injected":{"status":1}`) || !strings.Contains(state, `"fired":[1]`) {
		t.Fatalf("GET does not show counts: %s", state)
	}
}

func TestAdminGetWhilePicking(t *testing.T) {
	if !raceKnownFixed {
		t.Skip("known race in fault.go: AdminHandler's GET encodes i.fired after unlocking, while Pick increments it")
	}
	inj := New(1)
	inj.Set(Rule{Kind: Status, Code: 500})
	ts := httptest.NewServer(inj.AdminHandler())
	t.Cleanup(ts.Close)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for range 200 {
			inj.Pick(request("POST", "/"))
		}
	}()
	for range 20 {
		resp, err := http.Get(ts.URL)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	wg.Wait()
}

// raceKnownFixed turns on TestAdminGetWhilePicking once fault.go copies
// fired under its lock; run it with -race.
const raceKnownFixed = true
