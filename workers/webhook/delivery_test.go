package webhook_test

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/usagefleet/usagefleet/internal/broker/natstest"
	sbwebhook "github.com/usagefleet/usagefleet/internal/sandbox/webhook"
	"github.com/usagefleet/usagefleet/internal/usagegen"
	"github.com/usagefleet/usagefleet/messages"
	"github.com/usagefleet/usagefleet/producer"
	"github.com/usagefleet/usagefleet/workers"
	"github.com/usagefleet/usagefleet/workers/webhook"
)

// fixtureWith builds a fixture around a receiver with its own config.
func fixtureWith(t *testing.T, cfg sbwebhook.Config, wrap func(http.Handler) http.Handler) *fixture {
	ns := natstest.Start(t)
	sb := sbwebhook.New(cfg)
	h := sb.Handler()
	if wrap != nil {
		h = wrap(h)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	prod, err := producer.New(ns.Connect(t), producer.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{t: t, ns: ns, sb: sb, srv: srv, prod: prod}
}

// slow delays every request by d before the receiver sees it, counting the
// requests in progress.
func slow(d time.Duration, inFlight *atomic.Int32) func(http.Handler) http.Handler {
	return func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			inFlight.Add(1)
			defer inFlight.Add(-1)
			time.Sleep(d)
			h.ServeHTTP(w, r)
		})
	}
}

// TestReceiverLimitBisectsAndRejectsAnOversizeRecord: the receiver's limit
// is below ours, so it answers 413; the body is split until it passes, and
// a record too large alone is rejected into DEAD with the reason while the
// rest of its part is delivered. The configured headers and the bearer
// token go with every request.
func TestReceiverLimitBisectsAndRejectsAnOversizeRecord(t *testing.T) {
	const receiverLimit = 4096
	var mu sync.Mutex
	var headers []http.Header
	f := fixtureWith(t, sbwebhook.Config{MaxBodyBytes: receiverLimit, Token: "s3cret"}, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			headers = append(headers, r.Header.Clone())
			mu.Unlock()
			h.ServeHTTP(w, r)
		})
	})
	dest, err := webhook.New("hook", webhook.Settings{URL: f.srv.URL + "/ingest", MaxBodyBytes: bodyLimit, Token: configSecret("s3cret"), Headers: map[string]string{"X-Tenant": "acme"}}, "test")
	if err != nil {
		t.Fatal(err)
	}
	pool, err := workers.NewPool(f.ns.Connect(t), dest, workers.Options{Feeds: []string{"cloud"}, LeaseTTL: natstest.LeaseTTL})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); pool.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	recs := usagegen.Generate(200, usagegen.Options{Seed: 21, Hours: 1})
	big := 117
	recs[big].ChargeDescription = strings.Repeat("d", messages.MaxStringLen)
	recs[big].ResourceName = strings.Repeat("r", messages.MaxStringLen)
	recs[big].Tags = map[string]string{"team": "billing", "env": "prod", "n": "7"}
	recs[big].TagTypes = map[string]messages.TagType{"n": messages.TagNumber}
	recs[big].Ext = map[string]messages.ExtValue{"Project": messages.ExtStr("p-9"), "Units": messages.ExtI(3)}
	var wantCost messages.Sum // every record but the oversize one
	for i := range recs {
		if i != big {
			wantCost.Add(recs[i].BilledCost)
		}
	}
	res, err := f.prod.Publish(context.Background(), &messages.Batch{ID: "bisect", Feed: "cloud", Source: "gen", Records: recs})
	if err != nil {
		t.Fatal(err)
	}
	wctx, wcancel := context.WithTimeout(context.Background(), time.Minute)
	defer wcancel()
	sums, err := f.prod.Wait(wctx, res, []string{"hook"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	s := sums["hook"]
	if s.Rejected != 1 || s.RejectedRecords != 1 || s.Records != len(recs)-1 || !s.Cost.Equal(wantCost.Decimal()) {
		t.Fatalf("summary %+v; want %d delivered costing %s and 1 rejected", s, len(recs)-1, wantCost.Decimal())
	}
	if len(s.Reasons) == 0 || !strings.Contains(s.Reasons[0], "413") {
		t.Errorf("reasons %v do not say the receiver refused the record as too large", s.Reasons)
	}
	st := f.sb.Stats()
	if st.UniqueRecords != len(recs)-1 || !st.UniqueCost.Equal(wantCost.Decimal().Big()) {
		t.Fatalf("receiver holds %d records costing %s; want %d costing %s", st.UniqueRecords, st.UniqueCost, len(recs)-1, wantCost.Decimal())
	}
	if st.Rejected == 0 {
		t.Fatal("the receiver refused no body: the 413 path was not exercised")
	}
	if st.KeyReuse != 0 {
		t.Fatalf("%d idempotency keys reused for another body", st.KeyReuse)
	}

	// The oversize record is in DEAD, whole, with its reason.
	js, _ := jetstream.New(f.ns.Connect(t))
	dead, err := js.Stream(context.Background(), messages.StreamDead)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := dead.GetLastMsgForSubject(context.Background(), messages.DeadSubject("hook", "gen"))
	if err != nil {
		t.Fatal(err)
	}
	var dl messages.DeadLetter
	if err := json.Unmarshal(raw.Data, &dl); err != nil {
		t.Fatal(err)
	}
	if len(dl.Records) != 1 || dl.Records[0].Index != big || dl.Records[0].Record.ChargeDescription != recs[big].ChargeDescription || !strings.Contains(dl.Records[0].Reason, "413") {
		t.Fatalf("dead letter %+v", dl)
	}
	// Whole: the pool wrote its row from the part without its maps, and
	// the dead letter still carries its tags (typed) and x_ columns.
	if got := dl.Records[0].Record; !maps.Equal(got.Tags, recs[big].Tags) || !maps.Equal(got.TagTypes, recs[big].TagTypes) || !maps.Equal(got.Ext, recs[big].Ext) {
		t.Fatalf("dead-lettered record has tags %v %v and x_ %v, want %v %v %v", got.Tags, got.TagTypes, got.Ext, recs[big].Tags, recs[big].TagTypes, recs[big].Ext)
	}

	mu.Lock()
	defer mu.Unlock()
	for _, h := range headers {
		if h.Get("X-Tenant") != "acme" || h.Get("Authorization") != "Bearer s3cret" || h.Get("Idempotency-Key") == "" || h.Get("Content-Type") != "application/json" {
			t.Fatalf("request headers %v lack the configured header, the token, the key or the type", h)
		}
	}
}

// TestSlowUploadsGetHeartbeatsNotRedeliveries: every upload takes longer
// than the consumer's AckWait; the pool's InProgress heartbeats keep the
// server from redelivering the parts to the other pool, so no part is sent
// twice.
func TestSlowUploadsGetHeartbeatsNotRedeliveries(t *testing.T) {
	var inFlight atomic.Int32
	f := fixtureWith(t, sbwebhook.Config{MaxBodyBytes: bodyLimit, Token: "s3cret"}, slow(2500*time.Millisecond, &inFlight))
	// MaxAckPending caps what the server hands out to what the workers
	// take at once, so no part waits unheartbeated in a client buffer.
	opts := workers.Options{AckWait: time.Second, Workers: 4, MaxAckPending: 4}
	f.startPool(opts)
	f.startPool(opts)
	const parts = 8
	recs := usagegen.Generate(parts*50, usagegen.Options{Seed: 22, Hours: 1})
	for i := 0; i < parts; i++ {
		if _, err := f.prod.Publish(context.Background(), &messages.Batch{ID: fmt.Sprintf("slow-%d", i), Feed: "cloud", Source: "gen", Records: recs[i*50 : (i+1)*50]}); err != nil {
			t.Fatal(err)
		}
	}
	f.waitFor(time.Minute, "every slow part", func() bool { return f.sb.Stats().UniqueRecords >= len(recs) })
	time.Sleep(1500 * time.Millisecond) // a redelivery would have landed by now
	st := f.sb.Stats()
	if st.DuplicateRequests != 0 || st.Records != len(recs) {
		t.Fatalf("%d duplicate requests, %d records for %d published: parts were redelivered while their upload ran", st.DuplicateRequests, st.Records, len(recs))
	}
}

// TestGracefulStopFinishesInFlightAndHandsBackTheRest: a pool stopped as
// SIGTERM stops it lets its in-flight uploads finish (and acks them), and
// hands back what it held at once, so another worker takes it long before
// AckWait.
func TestGracefulStopFinishesInFlightAndHandsBackTheRest(t *testing.T) {
	// With max_ack_pending 5, two uploads run, two wait in the queue
	// (drained by the stopping pool), and the fifth part the server hands
	// out waits for the queue. With the default (64) more parts also wait
	// in the client's pull buffer, which the pool only sees when it drains
	// its iterator at the stop: every one of them must be handed back, not
	// left to AckWait.
	for _, maxAckPending := range []int{5, 0} {
		t.Run(fmt.Sprintf("max_ack_pending=%d", maxAckPending), func(t *testing.T) { gracefulStop(t, maxAckPending) })
	}
}

func gracefulStop(t *testing.T, maxAckPending int) {
	var inFlight atomic.Int32
	f := fixtureWith(t, sbwebhook.Config{MaxBodyBytes: bodyLimit, Token: "s3cret"}, slow(1500*time.Millisecond, &inFlight))
	const ackWait = 30 * time.Second
	opts := workers.Options{AckWait: ackWait, Workers: 2, MaxAckPending: maxAckPending, DrainTimeout: 10 * time.Second}
	stopA, _, poolA := f.startPool(opts)
	const parts = 12
	recs := usagegen.Generate(parts*40, usagegen.Options{Seed: 23, Hours: 1})
	want := usagegen.Total(recs)
	for i := 0; i < parts; i++ {
		if _, err := f.prod.Publish(context.Background(), &messages.Batch{ID: fmt.Sprintf("drain-%d", i), Feed: "cloud", Source: "gen", Records: recs[i*40 : (i+1)*40]}); err != nil {
			t.Fatal(err)
		}
	}
	f.waitFor(30*time.Second, "uploads in flight", func() bool { return inFlight.Load() == 2 })
	time.Sleep(200 * time.Millisecond) // the server hands out the rest of MaxAckPending
	stopped := time.Now()
	stopA() // returns once in-flight jobs finished and the rest was handed back
	inFlightDone := f.sb.Stats().UniqueRecords
	if inFlightDone == 0 || poolA.Stats().Acked == 0 {
		t.Fatalf("the stopped pool finished no in-flight upload (receiver %d records, acked %d)", inFlightDone, poolA.Stats().Acked)
	}
	f.startPool(opts)
	f.waitFor(ackWait, "the handed-back parts at the second pool", func() bool { return f.sb.Stats().UniqueRecords >= len(recs) })
	if took := time.Since(stopped); took > ackWait/2 {
		t.Fatalf("the rest took %v after the stop: it waited out AckWait instead of being handed back", took)
	}
	st := f.sb.Stats()
	if st.UniqueRecords != len(recs) || !st.UniqueCost.Equal(want.Cost.Big()) || st.DuplicateRequests != 0 {
		t.Fatalf("receiver: %d unique records costing %s, %d duplicate requests; want %d costing %s, none repeated", st.UniqueRecords, st.UniqueCost, st.DuplicateRequests, len(recs), want.Cost)
	}
}
