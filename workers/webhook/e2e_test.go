package webhook_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/usagefleet/usagefleet/internal/broker/natstest"
	"github.com/usagefleet/usagefleet/internal/sandbox/fault"
	sbwebhook "github.com/usagefleet/usagefleet/internal/sandbox/webhook"
	"github.com/usagefleet/usagefleet/internal/usagegen"
	"github.com/usagefleet/usagefleet/messages"
	"github.com/usagefleet/usagefleet/producer"
	"github.com/usagefleet/usagefleet/workers"
	"github.com/usagefleet/usagefleet/workers/webhook"
)

const bodyLimit = 256 << 10

type fixture struct {
	t    *testing.T
	ns   *natstest.Server
	sb   *sbwebhook.Server
	srv  *httptest.Server
	prod *producer.Producer
}

func newFixture(t *testing.T, wrap func(http.Handler) http.Handler) *fixture {
	ns := natstest.Start(t)
	sb := sbwebhook.New(sbwebhook.Config{MaxBodyBytes: bodyLimit, Token: "s3cret"})
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

func (f *fixture) dest() *webhook.Destination {
	d, err := webhook.New("hook", webhook.Settings{URL: f.srv.URL + "/ingest", MaxBodyBytes: bodyLimit, Token: configSecret("s3cret")}, "test")
	if err != nil {
		f.t.Fatal(err)
	}
	return d
}

// startPool runs a pool on its own connection until the returned stop is
// called (graceful) or the connection is closed (a crash).
func (f *fixture) startPool(opts workers.Options) (stop func(), nc *nats.Conn, pool *workers.Pool) {
	nc = f.ns.Connect(f.t)
	if opts.Feeds == nil {
		opts.Feeds = []string{"cloud"}
	}
	pool, err := workers.NewPool(nc, f.dest(), opts)
	if err != nil {
		f.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := pool.Run(ctx); err != nil && !nc.IsClosed() {
			f.t.Errorf("pool: %v", err)
		}
	}()
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); <-done }) }
	f.t.Cleanup(stop)
	return stop, nc, pool
}

func (f *fixture) publish(n int, seed uint64, batchRecords int) ([]*producer.Result, usagegen.Totals) {
	recs := usagegen.Generate(n, usagegen.Options{Seed: seed, Hours: 48})
	var results []*producer.Result
	for i := 0; i < n; i += batchRecords {
		end := min(i+batchRecords, n)
		res, err := f.prod.Publish(context.Background(), &messages.Batch{ID: fmt.Sprintf("b%d-%d", seed, i), Feed: "cloud", Source: "gen", Records: recs[i:end]})
		if err != nil {
			f.t.Fatal(err)
		}
		results = append(results, res)
	}
	return results, usagegen.Total(recs)
}

func (f *fixture) waitFor(timeout time.Duration, what string, cond func() bool) {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			f.t.Fatalf("timed out waiting for %s; sandbox stats %+v", what, f.sb.Stats())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestWebhookDeliversEveryRecordExactly(t *testing.T) {
	f := newFixture(t, nil)
	f.startPool(workers.Options{})
	const n = 100_000
	results, want := f.publish(n, 1, 5000)
	// Every batch is delivered, as its acks say.
	for _, res := range results {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		sums, err := f.prod.Wait(ctx, res, []string{"hook"}, nil)
		cancel()
		if err != nil {
			t.Fatalf("wait %s: %v", res.BatchID, err)
		}
		if s := sums["hook"]; s.Delivered != len(res.Parts) || s.Records != res.Records || !s.Cost.Equal(res.Cost) {
			t.Fatalf("batch %s: summary %+v, published %d records cost %s", res.BatchID, s, res.Records, res.Cost)
		}
	}
	st := f.sb.Stats()
	if st.UniqueRecords != n || !st.UniqueCost.Equal(want.Cost.Big()) {
		t.Fatalf("received %d unique records cost %s; published %d cost %s", st.UniqueRecords, st.UniqueCost, n, want.Cost)
	}
	if st.MaxBodyBytes > bodyLimit {
		t.Fatalf("a body of %d bytes exceeded the %d limit", st.MaxBodyBytes, bodyLimit)
	}
	if st.DuplicateRequests != 0 || st.Records != n {
		t.Fatalf("no fault was injected, yet %d duplicate requests / %d records", st.DuplicateRequests, st.Records)
	}
}

func TestWebhookWorkerKilledMidwayLosesNothing(t *testing.T) {
	f := newFixture(t, nil)
	opts := workers.Options{AckWait: 2 * time.Second}
	stopA, ncA, _ := f.startPool(opts)
	f.startPool(opts)
	const n = 40_000
	_, want := f.publish(n, 2, 2000)
	f.waitFor(time.Minute, "some records", func() bool { return f.sb.Stats().Records > n/10 })
	ncA.Close() // a crash: no drain, no nak; the server redelivers after AckWait
	stopA()     // and the process is gone
	f.waitFor(2*time.Minute, "every record", func() bool { return f.sb.Stats().UniqueRecords >= n })
	st := f.sb.Stats()
	if st.UniqueRecords != n || !st.UniqueCost.Equal(want.Cost.Big()) {
		t.Fatalf("unique %d cost %s; want %d cost %s", st.UniqueRecords, st.UniqueCost, n, want.Cost)
	}
	// Append semantics allow repeats, and only as whole requests the
	// receiver can recognise by their idempotency key.
	if st.KeyReuse != 0 {
		t.Fatalf("%d idempotency keys were reused for another body", st.KeyReuse)
	}
	t.Logf("after the crash: %d records received, %d unique, %d duplicate requests", st.Records, st.UniqueRecords, st.DuplicateRequests)
}

func TestUndecodableMessageIsDeadLetteredAndConsumerMovesOn(t *testing.T) {
	f := newFixture(t, nil)
	f.startPool(workers.Options{})
	nc := f.ns.Connect(t)
	js, _ := jetstream.New(nc)
	ctx := context.Background()
	hour := time.Date(2024, 8, 1, 3, 0, 0, 0, time.UTC)
	bad := messages.PartMeta{BatchID: "garbage", Part: 1, Feed: "cloud", Source: "gen", Kind: messages.KindAppend, Hour: hour, Records: 1}
	if _, err := js.PublishMsg(ctx, &nats.Msg{Subject: messages.UsageSubject("cloud", hour), Header: bad.Header(), Data: []byte{0x91, 0xc1}}); err != nil {
		t.Fatal(err)
	}
	newer := bad.Header()
	newer.Set(messages.HdrSchema, "9")
	newer.Set(messages.HdrBatch, "from-the-future")
	newer.Set(messages.HdrMsgID, "from-the-future/1")
	if _, err := js.PublishMsg(ctx, &nats.Msg{Subject: messages.UsageSubject("cloud", hour), Header: newer, Data: []byte{0x90}}); err != nil {
		t.Fatal(err)
	}
	results, _ := f.publish(100, 3, 100)
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if _, err := f.prod.Wait(wctx, results[0], []string{"hook"}, nil); err != nil {
		t.Fatalf("the consumer did not move on: %v", err)
	}
	dead, err := js.Stream(ctx, messages.StreamDead)
	if err != nil {
		t.Fatal(err)
	}
	reasons := map[string]string{}
	f.waitFor(30*time.Second, "a dead letter", func() bool {
		info, _ := dead.Info(ctx)
		return info != nil && info.State.Msgs >= 1
	})
	time.Sleep(time.Second) // a dead letter for the newer part would be there by now
	if info, _ := dead.Info(ctx); info.State.Msgs != 1 {
		t.Fatalf("%d dead letters, want 1: a part of a newer schema is not bad data, it waits for an upgraded worker", info.State.Msgs)
	}
	for seq := uint64(1); seq <= 1; seq++ {
		raw, err := dead.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		var dl messages.DeadLetter
		if err := json.Unmarshal(raw.Data, &dl); err != nil {
			t.Fatal(err)
		}
		reasons[dl.BatchID] = dl.Reason
		if len(dl.PayloadExcerpt) == 0 || dl.PayloadSize < len(dl.PayloadExcerpt) || dl.StreamSeq == 0 || dl.Subject != messages.UsageSubject("cloud", hour) {
			t.Errorf("dead letter %d keeps no original: %+v", seq, dl)
		}
	}
	if r := reasons["garbage"]; r == "" {
		t.Errorf("no dead letter for the undecodable payload: %v", reasons)
	}
	// The newer part is still in the stream, unacked, offered again later.
	cons, err := js.Consumer(ctx, messages.StreamUsage, workers.ConsumerName("hook"))
	if err != nil {
		t.Fatal(err)
	}
	if ci, err := cons.Info(ctx); err != nil || ci.NumAckPending+int(ci.NumPending) < 1 {
		t.Fatalf("the part of a newer schema was acked or lost: %+v, %v", ci, err)
	}
	if st := f.sb.Stats(); st.UniqueRecords != 100 {
		t.Fatalf("received %d records, want 100", st.UniqueRecords)
	}
}

func TestFaultStormDelaysButLosesNothing(t *testing.T) {
	var mu sync.Mutex
	var times []time.Time
	var codes []int
	rec := func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			cw := &codeWriter{ResponseWriter: w, code: 200}
			began := time.Now() // when the request reached the receiver
			defer func() {
				mu.Lock()
				times = append(times, began)
				codes = append(codes, cw.code)
				mu.Unlock()
			}()
			h.ServeHTTP(cw, r)
		})
	}
	f := newFixture(t, rec)
	f.sb.Faults().Set(
		fault.Rule{Kind: fault.Status, Code: 429, RetryAfter: "2", Count: 1},
		fault.Rule{Kind: fault.Status, Code: 500, Rate: 0.25},
		fault.Rule{Kind: fault.ApplyThenStatus, Code: 502, Rate: 0.1},
		fault.Rule{Kind: fault.Timeout, Delay: 3 * time.Second, Rate: 0.03},
		fault.Rule{Kind: fault.Reset, Rate: 0.03},
	)
	f.startPool(workers.Options{HTTPTimeout: time.Second, Retry: workers.RetryPolicy{Initial: 50 * time.Millisecond, Max: 500 * time.Millisecond}})
	const n = 5_000
	_, want := f.publish(n, 4, 500)
	f.waitFor(3*time.Minute, "every record through the storm", func() bool { return f.sb.Stats().UniqueRecords >= n })
	st := f.sb.Stats()
	if st.UniqueRecords != n || !st.UniqueCost.Equal(want.Cost.Big()) {
		t.Fatalf("unique %d cost %s; want %d cost %s", st.UniqueRecords, st.UniqueCost, n, want.Cost)
	}
	if st.KeyReuse != 0 {
		t.Fatalf("%d keys reused for another body", st.KeyReuse)
	}
	inj := f.sb.Faults().Injected()
	if inj[fault.Status] < 2 || inj[fault.ApplyThenStatus] == 0 {
		t.Fatalf("storm too weak to mean anything: %v", inj)
	}
	// Retry-After: 2 on the 429 held every uploader for 2 seconds. The
	// receiver cannot see when the pool read the 429, so no time bound
	// fits a loaded machine (a request sent before it may land late);
	// what it can count: in the 1.9 s after the 429 at most the requests
	// already sent (one per uploader) and those sent before the 429 was
	// read may begin, a few, where an uploader that ignored the
	// Retry-After (50 ms retries, hundreds of parts queued) sends dozens.
	mu.Lock()
	defer mu.Unlock()
	saw429 := false
	const uploaders = 4 // workers.Options.Workers' default
	for i, c := range codes {
		if c != 429 {
			continue
		}
		saw429 = true
		var inside []time.Duration
		for k := range times {
			if gap := times[k].Sub(times[i]); k != i && gap >= 0 && gap < 1900*time.Millisecond {
				inside = append(inside, gap)
			}
		}
		if len(inside) > 2*uploaders {
			t.Fatalf("%d requests began within the 429's Retry-After of 2s (at %v after it); at most %d were in flight", len(inside), inside, 2*uploaders)
		}
	}
	if !saw429 {
		t.Fatal("no request was answered 429: the Retry-After check proved nothing")
	}
	t.Logf("faults injected: %v; duplicates %d", inj, st.DuplicateRequests)
}

type codeWriter struct {
	http.ResponseWriter
	code int
}

func (c *codeWriter) WriteHeader(code int) { c.code = code; c.ResponseWriter.WriteHeader(code) }
