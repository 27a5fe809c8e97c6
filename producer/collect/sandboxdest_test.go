package collect_test

import (
	"context"
	"errors"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"github.com/usagefleet/usagefleet/internal/config"
	sbacronis "github.com/usagefleet/usagefleet/internal/sandbox/acronis"
	sbcc "github.com/usagefleet/usagefleet/internal/sandbox/cloudcruiser"
	"github.com/usagefleet/usagefleet/internal/sandbox/fault"
	sbhere "github.com/usagefleet/usagefleet/internal/sandbox/here"
	"github.com/usagefleet/usagefleet/producer/collect"
	"github.com/usagefleet/usagefleet/producer/collect/here"
	"github.com/usagefleet/usagefleet/workers"
	"github.com/usagefleet/usagefleet/workers/cloudcruiser"
	"github.com/usagefleet/usagefleet/workers/conformance"
)

const ccToken = "collect-test-cloudcruiser-token"

// startCloudCruiser runs the Cloud Cruiser emulator and a worker pool with
// the real cloudcruiser destination (UTC accounting dates) in front of it.
func (e *env) startCloudCruiser() *sbcc.Server {
	e.t.Helper()
	sb := sbcc.New(sbcc.Config{Token: ccToken})
	srv := httptest.NewServer(sb.Handler())
	e.t.Cleanup(srv.Close)
	d, err := cloudcruiser.New("cc", cloudcruiser.Settings{BaseURL: srv.URL, Token: config.NewSecret(ccToken)})
	if err != nil {
		e.t.Fatal(err)
	}
	opts := conformance.FastOptions()
	opts.Feeds = []string{feed}
	opts.Logger = discard()
	pool, err := workers.NewPool(e.ns.Connect(e.t), d, opts)
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
	return sb
}

// waitAcked waits for every part of the runs' batches to be acked by the
// cloudcruiser destination, none rejected or dead-lettered.
func (e *env) waitAcked(rs ...*collect.Result) {
	e.t.Helper()
	for _, res := range rs {
		for _, b := range res.Batches {
			ctx, cancel := bg()
			sums, err := e.prod.Wait(ctx, b.Result, []string{"cc"}, nil)
			cancel()
			if err != nil {
				e.t.Fatalf("waiting for %s: %v", b.ID, err)
			}
			if s := sums["cc"]; s.Rejected+s.Dead > 0 {
				e.t.Fatalf("batch %s at Cloud Cruiser: %+v", b.ID, s)
			}
		}
	}
}

// ccHolds waits until the Cloud Cruiser emulator holds exactly want (per
// accounting date: records and quantity, no cost) and every date was
// uploaded more often than before says.
func ccHolds(t *testing.T, sb *sbcc.Server, want totals, before map[string]sbcc.DateTotal) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		dates := sb.Dates()
		ok := len(dates) == len(want.PerDay)
		n := 0
		for d, dt := range dates {
			n += dt.Records
			w, found := want.PerDay[d]
			if !found || !dt.Quantity.Equal(w) || !dt.Cost.IsZero() || dt.Uploads <= before[d].Uploads {
				ok = false
			}
		}
		if ok && n == want.Records {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("Cloud Cruiser holds %+v\nwant %d records, per day %v (more uploads than %+v)", dates, want.Records, want.PerDay, before)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Both collectors into the real Cloud Cruiser destination and its emulator:
// every collected record is accepted (the mapping gives Cloud Cruiser all
// it requires), the dates hold the emulators' exact totals, and collecting
// the same periods again replaces them instead of doubling them.
func TestCollectIntoTheCloudCruiserSandbox(t *testing.T) {
	e := newEnv(t)
	cc := e.startCloudCruiser()
	asb, ap := e.acronis(sbacronis.Config{Seed: 23}, nil)
	hsb, hp := e.here(sbhere.Config{Seed: 23}, nil)
	a := e.collector(ap, "acronis-eu", collect.Options{})
	h := e.collector(hp, "here-partner", collect.Options{})

	aw, _ := expectedAcronis(asb, acronisQuery(asb))
	hw := expectedHERE(hsb, hereQuery(winStart, winEnd))
	want := totals{Records: aw.Records + hw.Records, Quantity: aw.Quantity.Add(hw.Quantity), PerDay: map[string]decimal.Decimal{}}
	for _, m := range []map[string]decimal.Decimal{aw.PerDay, hw.PerDay} {
		for d, q := range m {
			want.PerDay[d] = want.PerDay[d].Add(q)
		}
	}
	if aw.Records == 0 || hw.Records == 0 || len(want.PerDay) != 3 {
		t.Fatalf("the emulators have no usage for the window: %+v %+v", aw, hw)
	}

	r1, r2 := run(t, a), run(t, h)
	if r1.Records != aw.Records || r2.Records != hw.Records || len(r1.Rejected)+len(r2.Rejected) != 0 {
		t.Fatalf("published %d + %d records (rejected %v %v); want %d + %d", r1.Records, r2.Records, r1.Rejected, r2.Rejected, aw.Records, hw.Records)
	}
	e.waitAcked(r1, r2)
	ccHolds(t, cc, want, nil)
	first := cc.Dates()

	r3, r4 := run(t, a), run(t, h)
	if r3.Generation <= r1.Generation || r4.Generation <= r2.Generation {
		t.Fatalf("generations did not grow: %d->%d, %d->%d", r1.Generation, r3.Generation, r2.Generation, r4.Generation)
	}
	e.waitAcked(r3, r4)
	ccHolds(t, cc, want, first) // uploaded again, replaced, not doubled
	t.Logf("%d records, quantity %s over %d dates, collected twice", want.Records, want.Quantity, len(want.PerDay))
}

// Acronis answers 400 "not ready and shouldn't be ready yet" from 1 to 6
// am for a period ending yesterday or later: a scheduled run ends with
// ErrNotReady; a single run asks again until 06:00 and then collects.
func TestAcronisNotReadyBefore6amIsRetried(t *testing.T) {
	e := newEnv(t)
	e.clock = &clock{base: time.Date(2024, 8, 20, 5, 59, 58, 500_000_000, time.UTC), start: time.Now()}
	sb, p := e.acronis(sbacronis.Config{Seed: 8}, nil)
	today := collect.Schedule{Period: collect.Day, Periods: 1}
	ctx, cancel := bg()
	defer cancel()
	_, err := e.collector(p, "acr", collect.Options{Schedule: today}).Run(ctx)
	if !errors.Is(err, collect.ErrNotReady) || !strings.Contains(err.Error(), sbacronis.MsgNotReadyYet) || !strings.Contains(err.Error(), "400") {
		t.Fatalf("scheduled run before 6 am: err = %v", err)
	}
	if n := sb.Stats().ReportsCreated(); n != 0 {
		t.Fatalf("%d reports created before 6 am", n)
	}
	res, err := e.collector(p, "acr", collect.Options{Schedule: today, NotReadyWait: 10 * time.Second}).Run(ctx)
	if err != nil {
		t.Fatalf("single run across 6 am: %v", err)
	}
	if e.clock.Now().Hour() != 6 {
		t.Fatalf("collected at %s", e.clock.Now())
	}
	q := sbacronis.Query{TenantID: sb.RootTenantID(), Level: "all_customers", Kind: sbacronis.KindDaily,
		Start: day("2024-08-20"), End: day("2024-08-20"), ShowSKUs: true}
	want, _ := expectedAcronis(sb, q)
	if res.Records != want.Records || want.Records == 0 || sb.Stats().ReportsCreated() != 1 {
		t.Fatalf("collected %d records in %d reports; want %d in 1", res.Records, sb.Stats().ReportsCreated(), want.Records)
	}
}

// A token is reused until less than min(15 minutes, a quarter of its
// lifetime) is left, then fetched again before it expires; Invalidate (a
// 401) drops it at once.
func TestTokenCacheReusesUntilNearExpiry(t *testing.T) {
	now := base
	n := 0
	tc := &collect.TokenCache{Now: func() time.Time { return now }, Fetch: func(context.Context) (string, time.Time, error) {
		n++
		return "tok" + string(rune('0'+n)), now.Add(2 * time.Hour), nil
	}}
	get := func() string {
		t.Helper()
		tok, err := tc.Token(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	if get() != "tok1" {
		t.Fatal("first token")
	}
	now = base.Add(104 * time.Minute) // 16 minutes left
	if get() != "tok1" || tc.Fetches() != 1 {
		t.Fatalf("not reused with 16 minutes left: %d fetches", tc.Fetches())
	}
	now = base.Add(106 * time.Minute) // 14 minutes left
	if get() != "tok2" || tc.Fetches() != 2 {
		t.Fatalf("not refreshed with 14 minutes left: %d fetches", tc.Fetches())
	}
	tc.Invalidate("tok1") // an old token's 401 does not drop the new one
	if get() != "tok2" {
		t.Fatal("a stale Invalidate dropped the current token")
	}
	tc.Invalidate("tok2")
	if get() != "tok3" || tc.Fetches() != 3 {
		t.Fatalf("not fetched again after a 401: %d fetches", tc.Fetches())
	}
	// A short-lived token: the margin is a quarter of its lifetime.
	tc2 := &collect.TokenCache{Now: func() time.Time { return now }, Fetch: func(context.Context) (string, time.Time, error) {
		return "short", now.Add(8 * time.Minute), nil
	}}
	start := now
	_, _ = tc2.Token(context.Background())
	now = start.Add(5*time.Minute + 59*time.Second)
	_, _ = tc2.Token(context.Background())
	if tc2.Fetches() != 1 {
		t.Fatalf("short token refreshed early: %d", tc2.Fetches())
	}
	now = start.Add(6*time.Minute + time.Second)
	_, _ = tc2.Token(context.Background())
	if tc2.Fetches() != 2 {
		t.Fatalf("short token not refreshed in its last quarter: %d", tc2.Fetches())
	}
}

// The HERE request carries an X-Correlation-ID (the emulator can insist on
// one), the configured groupBy and the sub-accounts body; the collected
// records hold the emulator's exact totals for that grouping.
func TestHERECorrelationIDAndGroupBy(t *testing.T) {
	e := newEnv(t)
	sb, p := e.here(sbhere.Config{Seed: 24, RequireCorrelationID: true}, func(s *here.Settings) { s.GroupBy = []string{"appId", "project"} })
	res := run(t, e.collector(p, "here", collect.Options{}))
	st := sb.Stats()
	if st.ReportsCreated() != 1 {
		t.Fatalf("%d reports", st.ReportsCreated())
	}
	q := st.Reports[0].Query
	if !slices.Equal(q.GroupBy, []string{"appId", "project"}) || !slices.Equal(q.SubAccounts, subAccounts) || q.DetailLevel != sbhere.DetailDay {
		t.Fatalf("asked %+v", q)
	}
	want := sb.ExpectedQuery(q)
	if res.Records != want.Records || want.Records == 0 || len(res.Rejected) != 0 {
		t.Fatalf("%d records (%d rejected); want %d", res.Records, len(res.Rejected), want.Records)
	}
}

// 500s, 429s with Retry-After, connection resets and answers lost after
// the emulator acted (a report created, a token issued) on every endpoint
// of both APIs: the collectors retry through them and the destination
// still ends up with the exact totals.
func TestCollectThroughAFaultStorm(t *testing.T) {
	storm := []fault.Rule{
		{Kind: fault.Status, Code: 500, Rate: 0.15},
		{Kind: fault.Status, Code: 429, RetryAfter: "0", Rate: 0.1},
		{Kind: fault.Reset, Rate: 0.1},
		{Kind: fault.ApplyThenStatus, Code: 503, Rate: 0.1},
	}
	t.Run("acronis", func(t *testing.T) {
		e := newEnv(t)
		e.startPool()
		sb, p := e.acronis(sbacronis.Config{Seed: 25, GenerationDelay: 100 * time.Millisecond}, nil)
		sb.Faults().Set(append([]fault.Rule{
			{Kind: fault.ApplyThenStatus, Code: 503, Count: 1, Method: "POST", Path: "/api/2/reports"},
			{Kind: fault.ApplyThenReset, Count: 1, Method: "GET", Path: "/api/2/reports/"},
		}, storm...)...)
		res := run(t, e.collector(p, "acr", collect.Options{}))
		want, _ := expectedAcronis(sb, acronisQuery(sb))
		if res.Records != want.Records || len(res.Batches) != 3 || sb.Stats().ReportsCreated() < 2 {
			t.Fatalf("%d records in %d batches, %d reports; want %d in 3, the first report's answer lost", res.Records, len(res.Batches), sb.Stats().ReportsCreated(), want.Records)
		}
		e.waitDelivered(res)
		e.waitTotals(want)
		t.Logf("faults injected: %v, reports created: %d", sb.Faults().Injected(), sb.Stats().ReportsCreated())
	})
	t.Run("here", func(t *testing.T) {
		e := newEnv(t)
		e.startPool()
		sb, p := e.here(sbhere.Config{Seed: 25, GenerationDelay: 100 * time.Millisecond}, nil)
		sb.Faults().Set(append([]fault.Rule{
			{Kind: fault.ApplyThenStatus, Code: 503, Count: 1, Method: "POST", Path: "/v2/usage/realms/"},
			{Kind: fault.ApplyThenReset, Count: 1, Method: "GET", Path: "/v2/usage/realms/"},
		}, storm...)...)
		res := run(t, e.collector(p, "here", collect.Options{}))
		want := expectedHERE(sb, hereQuery(winStart, winEnd))
		if res.Records != want.Records || len(res.Batches) != 3 || sb.Stats().ReportsCreated() < 2 {
			t.Fatalf("%d records in %d batches, %d reports; want %d in 3, the first report's answer lost", res.Records, len(res.Batches), sb.Stats().ReportsCreated(), want.Records)
		}
		e.waitDelivered(res)
		e.waitTotals(want)
		t.Logf("faults injected: %v, reports created: %d", sb.Faults().Injected(), sb.Stats().ReportsCreated())
	})
}
