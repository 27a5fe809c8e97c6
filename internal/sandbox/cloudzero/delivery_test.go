package cloudzero

import (
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/usagefleet/usagefleet/internal/sandbox/fault"
)

func TestIdempotentReplay(t *testing.T) {
	e := newEmulator(t, Config{})
	bodyA := cbf("sum", "", "10 1.5")
	bodyB := cbf("sum", "", "10 2")
	bad := `{"data":[{"time/usage_start":"2024-08-16T10:00:00Z","cost/cost":"1e3"}]}`
	steps := []struct {
		name         string
		key, body    string
		want         int
		sameAs       int // index of the step whose answer must come back byte for byte; -1 none
		wantReplayed bool
		wantHour10   string // "rows cost" afterwards
	}{
		{"first", "k1", bodyA, 200, -1, false, "1 1.5"},
		{"retry replays, applies nothing", "k1", bodyA, 200, 0, true, "1 1.5"},
		{"another retry", "k1", bodyA, 200, 0, true, "1 1.5"},
		{"same key, other body: violation", "k1", bodyB, 400, -1, false, "1 1.5"},
		{"new key applies", "k2", bodyA, 200, -1, false, "2 3"},
		{"no key applies every time", "", bodyA, 200, -1, false, "3 4.5"},
		{"no key applies every time (2)", "", bodyA, 200, -1, false, "4 6"},
		{"an error is stored too", "k3", bad, 400, -1, false, "4 6"},
		{"and replayed", "k3", bad, 400, 7, true, "4 6"},
	}
	var answers []reply
	for i, st := range steps {
		r := e.post(t, st.body, map[string]string{IdempotencyHeader: st.key})
		answers = append(answers, r)
		if r.code != st.want {
			t.Fatalf("%s: %d %s, want %d", st.name, r.code, r.raw, st.want)
		}
		if st.sameAs >= 0 && r.raw != answers[st.sameAs].raw {
			t.Fatalf("%s: answer %s, want the stored %s", st.name, r.raw, answers[st.sameAs].raw)
		}
		log := e.Requests(conn1)
		if len(log) != i+1 || log[i].Replayed != st.wantReplayed || log[i].IdempotencyKey != st.key {
			t.Fatalf("%s: log = %+v", st.name, log[len(log)-1])
		}
		e.checkHours(t, conn1, totals{"16 10": st.wantHour10})
	}
	if c, k := e.Violations(); c != 0 || k != 1 {
		t.Fatalf("violations = %d concurrency, %d key reuse; want 0, 1", c, k)
	}
	// Keys are per connection.
	if r := e.do(t, req{path: dropsURL(conn2), auth: key2, body: bodyB, hdr: map[string]string{IdempotencyHeader: "k1"}}); r.code != 200 {
		t.Fatalf("k1 on another connection: %d %s", r.code, r.raw)
	}
}

func TestFaultsAndIdempotency(t *testing.T) {
	body := cbf("sum", "", "10 1")
	tests := []struct {
		name       string
		rule       fault.Rule
		key        string
		first      int // status of the first attempt; -1 = connection dropped
		retry      int // status of the retry with the same key and body
		rows       int // rows stored after both attempts
		retryReply bool
	}{
		{"apply-then-500 applies, the retry replays the 500", fault.Rule{Kind: fault.ApplyThenStatus, Code: 500, Count: 1}, "k", 500, 500, 1, true},
		{"apply-then-500 without a key: the retry applies twice", fault.Rule{Kind: fault.ApplyThenStatus, Code: 500, Count: 1}, "", 500, 200, 2, false},
		{"apply-then-reset applies, the retry hears success", fault.Rule{Kind: fault.ApplyThenReset, Count: 1}, "k", -1, 200, 1, true},
		{"503 before applying: the retry applies once", fault.Rule{Kind: fault.Status, Code: 503, RetryAfter: "3", Count: 1}, "k", 503, 200, 1, false},
		{"reset before applying stores nothing", fault.Rule{Kind: fault.Reset, Count: 1}, "k", -1, 200, 1, false},
		{"timeout stores nothing", fault.Rule{Kind: fault.Timeout, Delay: 50 * time.Millisecond, Count: 1}, "k", -1, 200, 1, false},
		{"a 429 fault carries Retry-After", fault.Rule{Kind: fault.Status, Code: 429, RetryAfter: "2", Count: 1}, "k", 429, 200, 1, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEmulator(t, Config{Seed: 7})
			e.Faults().Set(tt.rule)
			hdr := map[string]string{IdempotencyHeader: tt.key}
			first := e.post(t, body, hdr)
			if first.code != tt.first {
				t.Fatalf("first: %d %s %v, want %d", first.code, first.raw, first.err, tt.first)
			}
			if first.code > 0 {
				if msg, _ := first.json(t)["message"].(string); msg == "" && first.code != 200 {
					t.Fatalf("fault answer without message: %s", first.raw)
				}
				if tt.rule.RetryAfter != "" && first.hdr.Get("Retry-After") != tt.rule.RetryAfter {
					t.Fatalf("Retry-After = %q", first.hdr.Get("Retry-After"))
				}
			}
			retry := e.post(t, body, hdr)
			if retry.code != tt.retry {
				t.Fatalf("retry: %d %s, want %d", retry.code, retry.raw, tt.retry)
			}
			if tt.retryReply && first.code > 0 && retry.raw != first.raw {
				t.Fatalf("retry answer %s, want the stored %s", retry.raw, first.raw)
			}
			if got := e.Hours(conn1)[hourAt(16, 10)].Rows; got != tt.rows {
				t.Fatalf("%d rows stored, want %d", got, tt.rows)
			}
			log := e.Requests(conn1)
			if len(log) != 2 || log[0].Fault != tt.rule.Kind || log[1].Replayed != tt.retryReply {
				t.Fatalf("log = %+v", log)
			}
			if tt.first == -1 && log[0].Status != 0 {
				t.Fatalf("dropped connection logged with status %d", log[0].Status)
			}
		})
	}
}

func TestConcurrencyViolation(t *testing.T) {
	e := newEmulator(t, Config{ProcessingDelay: 500 * time.Millisecond})
	body := cbf("sum", "", "10 1")
	results := make([]reply, 3)
	var wg sync.WaitGroup
	send := func(i int, conn, key string) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = e.do(t, req{path: dropsURL(conn), auth: key, body: body})
		}()
	}
	send(0, conn1, key1)
	// Wait until request 0 is in flight, so the overlap does not depend on
	// scheduling.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
		e.mu.Lock()
		n := e.conns[conn1].inFlight
		e.mu.Unlock()
		if n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("request 0 never went in flight")
		}
	}
	send(1, conn1, key1) // overlaps request 0
	send(2, conn2, key2) // another stream: allowed
	wg.Wait()

	if results[0].code != 200 || results[2].code != 200 {
		t.Fatalf("non-overlapping requests: %d %s / %d %s", results[0].code, results[0].raw, results[2].code, results[2].raw)
	}
	if r := results[1]; r.code != http.StatusTooManyRequests || r.hdr.Get("Retry-After") != "1" ||
		r.json(t)["message"] != "concurrent requests are not supported for the same stream" {
		t.Fatalf("overlapping request: %d %v %s", r.code, r.hdr, r.raw)
	}
	if c, _ := e.Violations(); c != 1 {
		t.Fatalf("concurrency violations = %d, want 1", c)
	}
	if got := e.Hours(conn1)[hourAt(16, 10)].Rows; got != 1 {
		t.Fatalf("%d rows stored, want 1: the 429 must apply nothing", got)
	}
	// Once the first is done, the stream takes requests again.
	e.mustPost(t, body)
	if c, _ := e.Violations(); c != 1 {
		t.Fatalf("a serial request counted as a violation")
	}
}
