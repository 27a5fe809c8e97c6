package gateway

import (
	"context"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/usagefleet/usagefleet/internal/config"
	sbwebhook "github.com/usagefleet/usagefleet/internal/sandbox/webhook"
	"github.com/usagefleet/usagefleet/workers"
	"github.com/usagefleet/usagefleet/workers/conformance"
	"github.com/usagefleet/usagefleet/workers/webhook"
)

// TestThroughAWorkerPoolToTheSandbox: records published through the
// gateway (a batch and single events) reach the webhook sandbox through a
// real worker pool with their exact cost, and GET /v1/batches/{id}?wait
// tells what the destination did.
func TestThroughAWorkerPoolToTheSandbox(t *testing.T) {
	e := start(t, nil)
	const token = "gateway-test-webhook-token"
	sb := sbwebhook.New(sbwebhook.Config{Token: token})
	srv := httptest.NewServer(sb.Handler())
	t.Cleanup(srv.Close)
	d, err := webhook.New("hook", webhook.Settings{URL: srv.URL + sbwebhook.DefaultPath, Token: config.NewSecret(token)}, "destinations[0]")
	if err != nil {
		t.Fatal(err)
	}
	opts := conformance.FastOptions()
	opts.Feeds = []string{testFeed}
	opts.Logger = e.gw.log
	pool, err := workers.NewPool(e.srv.Connect(t), d, opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = pool.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	// The pool creates its consumer as it starts: until then the feed has
	// no destination, and a status settles at once with none.
	deadline := time.Now().Add(20 * time.Second)
	for {
		ds, err := e.gw.prod.Destinations(ctx, testFeed)
		if err == nil && len(ds) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the pool's destination never appeared: %v %v", ds, err)
		}
		time.Sleep(10 * time.Millisecond)
	}

	r := e.do("POST", "/v1/usage", ndjson(25, "0.0004"), auth("Content-Type", "application/x-ndjson", "Idempotency-Key", "pool-1"))
	if r.code != 200 {
		t.Fatalf("%d %s", r.code, r.body)
	}
	var a usageAnswer
	r.json(t, &a)
	r = e.do("POST", "/v1/events", []byte(ce("pool-ev", "/svc", usageData)), auth("Content-Type", "application/cloudevents+json"))
	var ev EventResult
	r.json(t, &ev)
	if r.code != 200 || ev.Status != "stored" {
		t.Fatalf("event: %d %s", r.code, r.body)
	}
	for _, c := range []struct {
		id, cost string
		records  int
	}{{a.BatchID, "0.01", 25}, {ev.BatchID, "0.25", 1}} {
		st := e.do("GET", "/v1/batches/"+c.id+"?wait=30s", nil, auth())
		var s BatchStatus
		st.json(t, &s)
		if st.code != 200 || !s.Settled || len(s.Destinations) != 1 {
			t.Fatalf("status of %s: %d %s", c.id, st.code, st.body)
		}
		h := s.Destinations[0]
		if h.Name != "hook" || h.Delivered != s.Parts || h.Rejected+h.Dead != 0 || h.Records != c.records || !h.Cost["USD"].Equal(mustDec(c.cost)) {
			t.Errorf("batch %s at the hook: %+v; want %d records costing %s USD", c.id, h, c.records, c.cost)
		}
	}
	stats := sb.Stats()
	if stats.UniqueRecords != 26 || stats.UniqueCost.String() != "0.26" {
		t.Errorf("the sandbox holds %d records costing %s; want 26 costing 0.26", stats.UniqueRecords, stats.UniqueCost)
	}
}
