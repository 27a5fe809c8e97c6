package gateway

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/usagefleet/usagefleet/messages"
	"github.com/usagefleet/usagefleet/producer"
)

// TestGatewayKilledMidBatchRetryStoresOnce: a gateway stored some parts of
// a batch and died before answering. The caller's retry with the same
// Idempotency-Key, through another replica, stores the rest and nothing
// twice: the batch id comes from the key, the parts are numbered the same.
func TestGatewayKilledMidBatchRetryStoresOnce(t *testing.T) {
	e := start(t, nil)
	// 6 hours: 6 parts.
	var b strings.Builder
	for h := 0; h < 6; h++ {
		for i := 0; i < 5; i++ {
			fmt.Fprintf(&b, `{"ChargePeriodStart":"2026-03-01T%02d:%02d:00Z","SkuId":"s%d","BilledCost":"0.1","BillingCurrency":"USD"}`+"\n", h, i, i)
		}
	}
	body := []byte(b.String())
	const key = "killed-order-7"
	// What the first gateway stored: the first 3 parts of the batch it
	// built from the same body and key.
	var errs problems
	recs, _ := decodeNDJSON(body, 1000, &errs)
	batch := &messages.Batch{ID: keyBatchID(testSource, key), Source: testSource, Feed: testFeed, Records: recs}
	parts, err := producer.Split(batch, 1<<20)
	if err != nil || len(parts) != 6 {
		t.Fatalf("split: %d parts, %v", len(parts), err)
	}
	js, _ := jetstream.New(e.nc)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, p := range parts[:3] {
		m := &nats.Msg{Subject: messages.UsageSubject(testFeed, p.Meta.Hour), Header: p.Meta.Header(), Data: p.Payload}
		if _, err := js.PublishMsg(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	// The retry reaches another replica.
	other, err := New(ctx, e.gw.cfg, e.srv.Connect(t), e.gw.log)
	if err != nil {
		t.Fatal(err)
	}
	e2 := *e
	e2.gw = other
	srv := httpServer(t, other)
	e2.url = srv
	r := e2.do("POST", "/v1/usage", body, auth("Content-Type", "application/x-ndjson", "Idempotency-Key", key))
	if r.code != 200 {
		t.Fatalf("retry: %d %s", r.code, r.body)
	}
	var a usageAnswer
	r.json(t, &a)
	if len(a.Parts) != 6 || a.Records != 30 {
		t.Fatalf("answer %+v", a)
	}
	stored := e.stored()
	if len(stored) != 6 || recordCount(stored) != 30 || !decEq(totalCost(stored), "3") {
		t.Fatalf("stream holds %d parts, %d records costing %s; want 6, 30, 3", len(stored), recordCount(stored), totalCost(stored))
	}
}
