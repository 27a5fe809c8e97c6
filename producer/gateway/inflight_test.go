package gateway

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/usagefleet/usagefleet/internal/broker"
	"github.com/usagefleet/usagefleet/internal/config"
)

// stopJetStream stops the embedded server; the returned func starts it
// again on the same port and store, and waits for the gateway's connection.
func stopJetStream(t *testing.T, e *env) (restart func()) {
	t.Helper()
	port := e.srv.Server.Addr().String()
	e.srv.Close()
	return func() {
		t.Helper()
		var portN int
		fmt.Sscanf(port[strings.LastIndex(port, ":")+1:], "%d", &portN)
		emb, err := broker.StartEmbedded(e.srv.Dir, portN)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(emb.Close)
		e.srv.Embedded = emb
		waitConnected(t, e.nc)
	}
}

// TestJetStreamGoesDownMidBatch: the server goes away while a batch's body
// is still arriving. The answer is no 2xx, and the retry with the same
// Idempotency-Key once the server is back stores the batch once.
func TestJetStreamGoesDownMidBatch(t *testing.T) {
	e := start(t, func(c *Config) { c.Limits.RequestTimeout = config.Duration(3 * time.Second) })
	body := ndjson(5, "2")
	pr, pw := io.Pipe()
	req, _ := http.NewRequest("POST", e.url+"/v1/usage", pr)
	for k, v := range auth("Content-Type", "application/x-ndjson", "Idempotency-Key", "mid-batch") {
		req.Header.Set(k, v)
	}
	got := make(chan reply, 1)
	go func() {
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			got <- reply{code: -1, body: []byte(err.Error())}
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		got <- reply{code: resp.StatusCode, h: resp.Header, body: b}
	}()
	half := len(body) / 2
	if _, err := pw.Write(body[:half]); err != nil { // the request is in flight
		t.Fatal(err)
	}
	restart := stopJetStream(t, e)
	pw.Write(body[half:])
	pw.Close()
	r := <-got
	if r.code >= 200 && r.code < 300 || r.code == -1 {
		t.Fatalf("JetStream went down mid-request: %d %s", r.code, r.body)
	}
	if r.h.Get("Retry-After") == "" {
		t.Errorf("%d without Retry-After: %s", r.code, r.body)
	}
	restart()
	h := auth("Content-Type", "application/x-ndjson", "Idempotency-Key", "mid-batch")
	for i := 0; i < 2; i++ {
		if r := e.do("POST", "/v1/usage", body, h); r.code != 200 {
			t.Fatalf("retry %d: %d %s", i, r.code, r.body)
		}
	}
	parts := e.stored()
	if n, c := recordCount(parts), totalCost(parts); n != 5 || !decEq(c, "10") {
		t.Fatalf("stream holds %d records costing %s, want 5 costing 10", n, c)
	}
}

// TestJetStreamGoesDownWhileEventLingers: the server goes away while an
// event waits in its linger group. The answer is no 2xx; the retry of the
// same event once the server is back is stored (not answered duplicate:
// nothing was stored) and stored once.
func TestJetStreamGoesDownWhileEventLingers(t *testing.T) {
	e := start(t, func(c *Config) { c.Limits.RequestTimeout = config.Duration(4 * time.Second) })
	e.gw.linger = time.Hour // the group closes when the test says
	e.gw.pipeline = 0
	ev := []byte(ce("mid-linger", "/s", usageData))
	h := auth("Content-Type", "application/cloudevents+json")
	got := make(chan reply, 1)
	go func() { got <- e.do("POST", "/v1/events", ev, h) }()
	deadline := time.Now().Add(10 * time.Second)
	var l *lingerer
	for {
		l = e.gw.lingererFor(lingerKey{testSource, testFeed})
		l.mu.Lock()
		n := len(l.group)
		l.mu.Unlock()
		if n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the event never reached its group")
		}
		time.Sleep(time.Millisecond)
	}
	restart := stopJetStream(t, e)
	l.flush()
	r := <-got
	if r.code >= 200 && r.code < 300 {
		t.Fatalf("JetStream went down while the event lingered: %d %s", r.code, r.body)
	}
	if r.h.Get("Retry-After") == "" {
		t.Errorf("%d without Retry-After: %s", r.code, r.body)
	}
	restart()
	e.gw.linger, e.gw.pipeline = time.Millisecond, 1
	for i, want := range []string{"stored", "duplicate"} {
		r := e.do("POST", "/v1/events", ev, h)
		var res EventResult
		r.json(t, &res)
		if r.code != 200 || res.Status != want {
			t.Fatalf("retry %d: %d %s, want %s", i, r.code, r.body, want)
		}
	}
	if n := recordCount(e.stored()); n != 1 {
		t.Fatalf("%d records stored, want 1", n)
	}
}
