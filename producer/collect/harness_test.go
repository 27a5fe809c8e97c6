package collect_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/shopspring/decimal"

	"github.com/usagefleet/usagefleet/internal/broker/natstest"
	"github.com/usagefleet/usagefleet/internal/config"
	sbacronis "github.com/usagefleet/usagefleet/internal/sandbox/acronis"
	sbhere "github.com/usagefleet/usagefleet/internal/sandbox/here"
	"github.com/usagefleet/usagefleet/messages"
	"github.com/usagefleet/usagefleet/producer"
	"github.com/usagefleet/usagefleet/producer/collect"
	"github.com/usagefleet/usagefleet/producer/collect/acronis"
	"github.com/usagefleet/usagefleet/producer/collect/here"
	"github.com/usagefleet/usagefleet/workers"
	"github.com/usagefleet/usagefleet/workers/conformance"
)

const feed = "usage"

// base is the emulators' and collectors' "now" when a test starts; the
// clock then runs at real speed (report generation delays need it).
var base = time.Date(2024, 8, 20, 12, 0, 0, 0, time.UTC)

type clock struct {
	base, start time.Time
}

func newClock() *clock              { return &clock{base: base, start: time.Now()} }
func (c *clock) Now() time.Time     { return c.base.Add(time.Since(c.start)) }
func day(s string) time.Time        { t, _ := time.Parse(time.DateOnly, s); return t }
func discard() *slog.Logger         { return slog.New(slog.NewTextHandler(io.Discard, nil)) }
func bg() (context.Context, func()) { return context.WithTimeout(context.Background(), 60*time.Second) }

// env is a fleet around the collectors: embedded NATS with the fleet's
// streams, a producer, the checkpoint bucket and a clock.
type env struct {
	t     *testing.T
	ns    *natstest.Server
	prod  *producer.Producer
	js    jetstream.JetStream
	kv    jetstream.KeyValue
	clock *clock
	recv  *receiver
}

func newEnv(t *testing.T) *env {
	t.Helper()
	ns := natstest.Start(t)
	nc := ns.Connect(t)
	prod, err := producer.New(nc, producer.Options{Logger: discard()})
	if err != nil {
		t.Fatal(err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := bg()
	defer cancel()
	kv, err := js.KeyValue(ctx, messages.BucketCheckpoints)
	if err != nil {
		t.Fatal(err)
	}
	return &env{t: t, ns: ns, prod: prod, js: js, kv: kv, clock: newClock()}
}

// startPool runs the real worker pool with a replace destination that
// posts each unit (a UTC day) to an in-test receiver replacing per unit.
func (e *env) startPool() *receiver {
	e.recv = &receiver{units: map[string][]got{}}
	srv := httptest.NewServer(e.recv)
	e.t.Cleanup(srv.Close)
	nc := e.ns.Connect(e.t)
	opts := conformance.FastOptions()
	opts.Feeds = []string{feed}
	opts.Logger = discard()
	pool, err := workers.NewPool(nc, &dayDest{url: srv.URL}, opts)
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = pool.Run(ctx)
	}()
	e.t.Cleanup(func() { cancel(); <-done })
	return e.recv
}

func (e *env) collector(p collect.Platform, name string, o collect.Options) *collect.Collector {
	e.t.Helper()
	o.Name, o.Feed = name, feed
	if o.Schedule.Period == "" {
		o.Schedule = collect.Schedule{Period: collect.Day, Periods: 3, Lag: 48 * time.Hour}
	}
	if o.Poll.Interval == 0 {
		o.Poll = collect.Poll{Interval: 20 * time.Millisecond, MaxInterval: 100 * time.Millisecond, Timeout: 20 * time.Second}
	}
	o.Retry = collect.Retry{Initial: 10 * time.Millisecond, Max: 50 * time.Millisecond, For: 5 * time.Second}
	if o.Now == nil {
		o.Now = e.clock.Now
	}
	o.Log = discard()
	if o.DeadLetters == nil {
		o.DeadLetters = e.js
	}
	c, err := collect.New(p, e.prod, e.kv, o)
	if err != nil {
		e.t.Fatal(err)
	}
	return c
}

func (e *env) platformEnv() collect.Env {
	return collect.Env{HTTP: &http.Client{Timeout: 10 * time.Second}, Now: e.clock.Now, Log: discard(),
		Retry: collect.Retry{Initial: 10 * time.Millisecond, Max: 50 * time.Millisecond, For: 5 * time.Second}}
}

// acronis starts the Acronis emulator and a platform for its root tenant.
func (e *env) acronis(cfg sbacronis.Config, edit func(*acronis.Settings)) (*sbacronis.Server, *acronis.Platform) {
	e.t.Helper()
	cfg.Now = e.clock.Now
	sb := sbacronis.New(cfg)
	srv := httptest.NewServer(sb.Handler())
	e.t.Cleanup(srv.Close)
	s := acronis.Settings{BaseURL: srv.URL, ClientID: "sandbox-client", ClientSecret: config.NewSecret("sandbox-secret"), TenantID: sb.RootTenantID(),
		Kind: acronis.KindDaily} // the tests use the sandbox's inferred date column; the default is usage_summary
	if edit != nil {
		edit(&s)
	}
	if err := s.Validate("test"); err != nil {
		e.t.Fatal(err)
	}
	p, err := acronis.New(s, e.platformEnv())
	if err != nil {
		e.t.Fatal(err)
	}
	return sb, p
}

const realm = "org1000000001"

var subAccounts = []string{"org1000000101", "org1000000102"}

// here starts the HERE emulator and a platform for realm's sub-accounts.
func (e *env) here(cfg sbhere.Config, edit func(*here.Settings)) (*sbhere.Server, *here.Platform) {
	e.t.Helper()
	cfg.Now = e.clock.Now
	sb := sbhere.New(cfg)
	srv := httptest.NewServer(sb.Handler())
	e.t.Cleanup(srv.Close)
	s := here.Settings{BaseURL: srv.URL + "/v2", TokenURL: srv.URL + "/oauth2/token",
		Credentials: config.NewSecret("here.access.key.id=sandbox-access-key-id\nhere.access.key.secret=sandbox-access-key-secret\n"),
		Realm:       realm, SubAccounts: subAccounts}
	if edit != nil {
		edit(&s)
	}
	if err := s.Validate("test"); err != nil {
		e.t.Fatal(err)
	}
	p, err := here.New(s, e.platformEnv())
	if err != nil {
		e.t.Fatal(err)
	}
	return sb, p
}

// usageMsgs counts the messages stored in USAGE.
func (e *env) usageMsgs() uint64 {
	ctx, cancel := bg()
	defer cancel()
	st, err := e.js.Stream(ctx, messages.StreamUsage)
	if err != nil {
		e.t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		e.t.Fatal(err)
	}
	return info.State.Msgs
}

// waitDelivered waits for every part of the run's batches to have an
// outcome at the test destination.
func (e *env) waitDelivered(res *collect.Result) {
	e.t.Helper()
	for _, b := range res.Batches {
		ctx, cancel := bg()
		sums, err := e.prod.Wait(ctx, b.Result, []string{"sink"}, nil)
		cancel()
		if err != nil {
			e.t.Fatalf("waiting for %s: %v", b.ID, err)
		}
		if s := sums["sink"]; s.Rejected+s.Dead > 0 {
			e.t.Fatalf("batch %s: %+v", b.ID, s)
		}
	}
}

// totals is what a run published or a receiver holds.
type totals struct {
	Records  int
	Quantity decimal.Decimal
	PerDay   map[string]decimal.Decimal
}

func (a totals) equal(b totals) bool {
	if a.Records != b.Records || !a.Quantity.Equal(b.Quantity) || len(a.PerDay) != len(b.PerDay) {
		return false
	}
	for k, v := range a.PerDay {
		if w, ok := b.PerDay[k]; !ok || !v.Equal(w) {
			return false
		}
	}
	return true
}

// waitTotals polls the receiver until it holds want.
func (e *env) waitTotals(want totals) {
	e.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		got := e.recv.totals()
		if got.equal(want) {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("destination holds %d records, quantity %s; want %d, %s\nper day got  %v\nper day want %v",
				got.Records, got.Quantity, want.Records, want.Quantity, got.PerDay, want.PerDay)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// ---- the in-test replace destination ----

type got struct {
	Start time.Time `json:"start"`
	Sub   string    `json:"sub"`
	Sku   string    `json:"sku"`
	Qty   string    `json:"qty"`
	Unit  string    `json:"unit"`
}

// receiver replaces a unit's records with each POST /units/{key}.
type receiver struct {
	mu      sync.Mutex
	units   map[string][]got
	uploads int
}

func (r *receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	var body struct {
		Records []got `json:"records"`
	}
	if err := json.NewDecoder(req.Body).Decode(&body); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	key := req.URL.Path[len("/units/"):]
	r.mu.Lock()
	r.units[key] = body.Records
	r.uploads++
	r.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

func (r *receiver) totals() totals {
	r.mu.Lock()
	defer r.mu.Unlock()
	t := totals{PerDay: map[string]decimal.Decimal{}}
	for _, recs := range r.units {
		for _, g := range recs {
			q, err := decimal.NewFromString(g.Qty)
			if err != nil {
				panic(err)
			}
			t.Records++
			t.Quantity = t.Quantity.Add(q)
			k := g.Start.UTC().Format(time.DateOnly)
			t.PerDay[k] = t.PerDay[k].Add(q)
		}
	}
	return t
}

func (r *receiver) uploadCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.uploads
}

// dayDest is a Replace destination whose unit is a UTC day.
type dayDest struct{ url string }

func (d *dayDest) Name() string                   { return "sink" }
func (d *dayDest) Semantics() workers.Semantics   { return workers.Replace }
func (d *dayDest) LeaseKey(u workers.Unit) string { return u.Key }
func (d *dayDest) Units(hour time.Time) []workers.Unit {
	s := hour.UTC().Truncate(24 * time.Hour)
	return []workers.Unit{{Key: "d" + s.Format(time.DateOnly), Start: s, End: s.Add(24 * time.Hour)}}
}

func (d *dayDest) Deliver(ctx context.Context, job workers.Job) error {
	for _, u := range job.Units() {
		recs := []got{}
		err := job.Records(ctx, u, func(_ workers.RecordRef, r *messages.UsageRecord) error {
			recs = append(recs, got{Start: r.ChargePeriodStart, Sub: r.SubAccountId, Sku: r.SkuId, Qty: r.ConsumedQuantity.String(), Unit: r.ConsumedUnit})
			return nil
		})
		if err != nil {
			return err
		}
		b, _ := json.Marshal(map[string]any{"records": recs})
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.url+"/units/"+u.Key, bytes.NewReader(b))
		if err != nil {
			return err
		}
		resp, err := job.Do(ctx, req)
		if err != nil {
			return workers.Transient(err)
		}
		resp.Body.Close()
		if err := workers.Classify(resp.StatusCode, resp.Header, ""); err != nil {
			return err
		}
		job.Done(u)
	}
	return nil
}

// expectedAcronis is the emulator's Expected as totals.
func expectedAcronis(sb *sbacronis.Server, q sbacronis.Query) (totals, sbacronis.Totals) {
	x := sb.Expected(q)
	t := totals{Records: x.Records, Quantity: x.Quantity, PerDay: map[string]decimal.Decimal{}}
	for k, v := range x.PerDay {
		t.PerDay[k] = v.Quantity
	}
	return t, x
}

// expectedHERE sums the emulator's ExpectedQuery over queries.
func expectedHERE(sb *sbhere.Server, qs ...sbhere.Query) totals {
	t := totals{PerDay: map[string]decimal.Decimal{}}
	for _, q := range qs {
		x := sb.ExpectedQuery(q)
		t.Records += x.Records
		t.Quantity = t.Quantity.Add(x.Quantity)
		for k, v := range x.PerDay {
			t.PerDay[k] = t.PerDay[k].Add(v.Quantity)
		}
	}
	return t
}
