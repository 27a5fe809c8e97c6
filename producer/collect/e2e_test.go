package collect_test

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	sbacronis "github.com/usagefleet/usagefleet/internal/sandbox/acronis"
	sbhere "github.com/usagefleet/usagefleet/internal/sandbox/here"
	"github.com/usagefleet/usagefleet/producer/collect"
	"github.com/usagefleet/usagefleet/producer/collect/acronis"
	"github.com/usagefleet/usagefleet/producer/collect/here"
)

// The default window of these tests: Lag 48h from 2024-08-20 12:00 and 3
// day periods.
var (
	winStart = day("2024-08-16")
	winEnd   = day("2024-08-19")
)

func acronisQuery(sb *sbacronis.Server) sbacronis.Query {
	return sbacronis.Query{TenantID: sb.RootTenantID(), Level: "all_customers", Kind: sbacronis.KindDaily,
		Start: winStart, End: winEnd.AddDate(0, 0, -1), ShowSKUs: true}
}

func hereQuery(start, end time.Time) sbhere.Query {
	return sbhere.Query{Realm: realm, SubAccounts: subAccounts, Start: start, End: end, DetailLevel: sbhere.DetailDay}
}

func run(t *testing.T, c *collect.Collector) *collect.Result {
	t.Helper()
	ctx, cancel := bg()
	defer cancel()
	res, err := c.Run(ctx)
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	return res
}

func TestAcronisCollectTwiceGivesTheSameTotals(t *testing.T) {
	e := newEnv(t)
	recv := e.startPool()
	sb, p := e.acronis(sbacronis.Config{Seed: 7}, nil)
	c := e.collector(p, "acronis-eu", collect.Options{})
	want, x := expectedAcronis(sb, acronisQuery(sb))
	if x.Records == 0 || want.Quantity.IsZero() {
		t.Fatalf("the emulator has no usage for the window: %+v", x)
	}

	res := run(t, c)
	if len(res.Batches) != 3 || res.Records != want.Records || len(res.Rejected) != 0 {
		t.Fatalf("run 1: %d batches, %d records, %d rejected; want 3 batches, %d records", len(res.Batches), res.Records, len(res.Rejected), want.Records)
	}
	if st := sb.Stats(); st.ReportsCreated() != 1 || st.Downloads != 1 {
		t.Fatalf("one report over the window was expected: %+v", st)
	}
	if st := sb.Stats(); st.ReportsKept() != 0 { // issue 17.11: deleted once published
		t.Fatalf("%d report(s) left in the tenant after the run", st.ReportsKept())
	}
	e.waitDelivered(res)
	e.waitTotals(want)
	uploads := recv.uploadCount()

	res2 := run(t, c)
	if res2.Generation <= res.Generation {
		t.Fatalf("generation %d after %d", res2.Generation, res.Generation)
	}
	e.waitDelivered(res2)
	if recv.uploadCount() <= uploads {
		t.Fatal("the second generation was never uploaded")
	}
	e.waitTotals(want) // replaced, not doubled
	t.Logf("%d records, quantity %s over %d days, twice", want.Records, want.Quantity, len(want.PerDay))
}

func TestHERECollectTwiceGivesTheSameTotals(t *testing.T) {
	e := newEnv(t)
	recv := e.startPool()
	sb, p := e.here(sbhere.Config{Seed: 11}, nil)
	c := e.collector(p, "here-partner", collect.Options{})
	want := expectedHERE(sb, hereQuery(winStart, winEnd))
	if want.Records == 0 || want.Quantity.IsZero() {
		t.Fatal("the emulator has no usage for the window")
	}
	res := run(t, c)
	if res.Records != want.Records || len(res.Rejected) != 0 || len(res.Batches) != 3 {
		t.Fatalf("run 1: %d batches %d records %d rejected; want %d records", len(res.Batches), res.Records, len(res.Rejected), want.Records)
	}
	e.waitDelivered(res)
	e.waitTotals(want)
	uploads := recv.uploadCount()
	res2 := run(t, c)
	e.waitDelivered(res2)
	if recv.uploadCount() <= uploads {
		t.Fatal("the second generation was never uploaded")
	}
	e.waitTotals(want)
	if st := sb.Stats(); st.ReportsCreated() != 2 || st.TokensIssued != 1 {
		t.Fatalf("want two reports on one reused token: %+v", st)
	}
}

// killWhileGenerating cancels a run once the report was requested, then
// runs a new collector on the same checkpoint bucket.
func killWhileGenerating(t *testing.T, e *env, c1, c2 *collect.Collector, created func() int) (*collect.Result, uint64) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		for created() == 0 && ctx.Err() == nil {
			time.Sleep(5 * time.Millisecond)
		}
		time.Sleep(50 * time.Millisecond) // polling now
		cancel()
	}()
	res, err := c1.Run(ctx)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("the first run should have been killed while the report generated: %v", err)
	}
	if len(res.Batches) != 0 {
		t.Fatalf("the killed run published %d batches", len(res.Batches))
	}
	before := e.usageMsgs()
	return run(t, c2), before
}

func TestAcronisKilledWhileGeneratingReusesTheReport(t *testing.T) {
	e := newEnv(t)
	e.startPool()
	sb, p := e.acronis(sbacronis.Config{Seed: 3, GenerationDelay: 700 * time.Millisecond}, nil)
	res, before := killWhileGenerating(t, e, e.collector(p, "acr", collect.Options{}), e.collector(p, "acr", collect.Options{}),
		func() int { return sb.Stats().ReportsCreated() })
	if st := sb.Stats(); st.ReportsCreated() != 1 || st.Downloads != 1 {
		t.Fatalf("the restarted collector should reuse the report: %+v", st)
	}
	if !res.Resumed || len(res.Reports) != 1 || !res.Reports[0].Reused {
		t.Fatalf("not resumed: %+v", res)
	}
	want, _ := expectedAcronis(sb, acronisQuery(sb))
	e.waitDelivered(res)
	e.waitTotals(want)
	checkStoredOnce(t, e, res, before)
}

func TestHEREKilledWhileGeneratingReusesTheReport(t *testing.T) {
	e := newEnv(t)
	e.startPool()
	sb, p := e.here(sbhere.Config{Seed: 5, GenerationDelay: 700 * time.Millisecond}, nil)
	res, before := killWhileGenerating(t, e, e.collector(p, "here", collect.Options{}), e.collector(p, "here", collect.Options{}),
		func() int { return sb.Stats().ReportsCreated() })
	if st := sb.Stats(); st.ReportsCreated() != 1 || st.Downloads != 1 {
		t.Fatalf("the restarted collector should reuse the report: %+v", st)
	}
	if !res.Resumed || !res.Reports[0].Reused {
		t.Fatalf("not resumed: %+v", res)
	}
	e.waitDelivered(res)
	e.waitTotals(expectedHERE(sb, hereQuery(winStart, winEnd)))
	checkStoredOnce(t, e, res, before)
}

// checkStoredOnce: the run stored each of its parts and markers once.
func checkStoredOnce(t *testing.T, e *env, res *collect.Result, before uint64) {
	t.Helper()
	var stored uint64
	for _, b := range res.Batches {
		if b.Duplicate {
			t.Fatalf("batch %s reported as a duplicate", b.ID)
		}
		stored += uint64(b.Parts + b.Result.Markers)
	}
	if after := e.usageMsgs(); after-before != stored {
		t.Fatalf("USAGE grew by %d messages, the run published %d", after-before, stored)
	}
}

// A crash after publishing but before the checkpoint said so: the restart
// reuses the report and the generation, so every batch is a duplicate.
func TestRepublishAfterCrashIsDeduplicated(t *testing.T) {
	e := newEnv(t)
	sb, p := e.here(sbhere.Config{Seed: 9}, nil)
	c := e.collector(p, "here", collect.Options{})
	res := run(t, c)
	stored := e.usageMsgs()
	// Put back the checkpoint as it was once the report was requested.
	ctx, cancel := bg()
	defer cancel()
	hist, err := e.kv.History(ctx, "here")
	if err != nil {
		t.Fatal(err)
	}
	var inflight []byte
	for _, h := range hist {
		if v := string(h.Value()); strings.Contains(v, `"report_id"`) && !strings.Contains(v, `"published"`) {
			inflight = h.Value()
		}
	}
	if inflight == nil {
		t.Fatal("no checkpoint revision with the report in flight")
	}
	if _, err := e.kv.Put(ctx, "here", inflight); err != nil {
		t.Fatal(err)
	}
	res2 := run(t, c)
	if !res2.Resumed || res2.Generation != res.Generation || !res2.Reports[0].Reused {
		t.Fatalf("want the checkpointed run resumed with its generation %d and report: %+v", res.Generation, res2)
	}
	for i, b := range res2.Batches {
		if !b.Duplicate || b.ID != res.Batches[i].ID {
			t.Fatalf("batch %s: duplicate=%t (first run %s)", b.ID, b.Duplicate, res.Batches[i].ID)
		}
	}
	if n := e.usageMsgs(); n != stored {
		t.Fatalf("USAGE grew from %d to %d messages", stored, n)
	}
	if st := sb.Stats(); st.ReportsCreated() != 1 {
		t.Fatalf("reports created: %d", st.ReportsCreated())
	}
}

func TestTokenExpiryInTheMiddleIsRefreshed(t *testing.T) {
	t.Run("acronis", func(t *testing.T) {
		e := newEnv(t)
		sb, p := e.acronis(sbacronis.Config{Seed: 1, GenerationDelay: 300 * time.Millisecond}, nil)
		c := e.collector(p, "acr", collect.Options{})
		go func() {
			for sb.Stats().ReportsCreated() == 0 {
				time.Sleep(5 * time.Millisecond)
			}
			sb.ExpireTokens()
		}()
		res := run(t, c)
		want, _ := expectedAcronis(sb, acronisQuery(sb))
		st := sb.Stats()
		if res.Records != want.Records || p.Tokens() != 2 || st.TokensIssued != 2 || st.AuthFailures == 0 {
			t.Fatalf("records %d/%d, tokens %d, stats %+v", res.Records, want.Records, p.Tokens(), st)
		}
	})
	t.Run("here", func(t *testing.T) {
		e := newEnv(t)
		sb, p := e.here(sbhere.Config{Seed: 1, GenerationDelay: 300 * time.Millisecond}, nil)
		c := e.collector(p, "here", collect.Options{})
		go func() {
			for sb.Stats().ReportsCreated() == 0 {
				time.Sleep(5 * time.Millisecond)
			}
			sb.ExpireTokens()
		}()
		res := run(t, c)
		want := expectedHERE(sb, hereQuery(winStart, winEnd))
		st := sb.Stats()
		if res.Records != want.Records || p.Tokens() != 2 || st.TokensIssued != 2 || st.AuthFailures == 0 || st.SignatureFailures != 0 {
			t.Fatalf("records %d/%d, tokens %d, stats %+v", res.Records, want.Records, p.Tokens(), st)
		}
	})
}

func TestMalformedRowsAreRejectedWithTheirLine(t *testing.T) {
	t.Run("acronis", func(t *testing.T) {
		e := newEnv(t)
		recvd := e.startPool()
		_ = recvd
		sb, p := e.acronis(sbacronis.Config{Seed: 2, MalformedRows: 3}, nil)
		res := run(t, e.collector(p, "acr", collect.Options{}))
		want, x := expectedAcronis(sb, acronisQuery(sb))
		if len(x.Malformed) != 3 {
			t.Fatalf("emulator: %d malformed rows", len(x.Malformed))
		}
		if len(res.Rejected) != len(x.Malformed) {
			t.Fatalf("rejected %v; want %v", res.Rejected, x.Malformed)
		}
		for i, m := range x.Malformed {
			r := res.Rejected[i]
			col, _, _ := strings.Cut(m.Reason, " ")
			if r.Line != m.Line || r.Column != col || r.Report != res.Reports[0].ID {
				t.Errorf("rejected %+v; the emulator broke line %d: %s", r, m.Line, m.Reason)
			}
		}
		if res.Records != want.Records {
			t.Fatalf("published %d records; want %d", res.Records, want.Records)
		}
		e.waitDelivered(res)
		e.waitTotals(want)
		t.Logf("rejected: %v", res.Rejected)
	})
	t.Run("here", func(t *testing.T) {
		e := newEnv(t)
		sb, p := e.here(sbhere.Config{Seed: 2, MalformedRows: 4}, nil)
		res := run(t, e.collector(p, "here", collect.Options{}))
		x := sb.ExpectedQuery(hereQuery(winStart, winEnd))
		if len(res.Rejected) != 4 || len(x.Malformed) != 4 {
			t.Fatalf("rejected %v; want %v", res.Rejected, x.Malformed)
		}
		for i, m := range x.Malformed {
			r := res.Rejected[i]
			col, _, _ := strings.Cut(m.Reason, " ")
			if r.Line != m.Line || r.Column != col {
				t.Errorf("rejected %+v; the emulator broke line %d: %s", r, m.Line, m.Reason)
			}
		}
		if res.Records != x.Records {
			t.Fatalf("published %d records; want %d", res.Records, x.Records)
		}
		t.Logf("rejected: %v", res.Rejected)
	})
}

func TestHEREPeriodOver95DaysIsSplit(t *testing.T) {
	e := newEnv(t)
	e.startPool()
	sb, p := e.here(sbhere.Config{Seed: 4}, nil)
	c := e.collector(p, "here", collect.Options{Schedule: collect.Schedule{Period: collect.Day, Periods: 120, Lag: 48 * time.Hour}})
	res := run(t, c)
	st := sb.Stats()
	if st.ReportsCreated() != 2 {
		t.Fatalf("want the 120 days in two reports, got %d", st.ReportsCreated())
	}
	for _, r := range st.Reports {
		if d := r.Query.End.Sub(r.Query.Start); d > 95*24*time.Hour {
			t.Fatalf("report %s covers %s", r.ID, d)
		}
	}
	start := winEnd.AddDate(0, 0, -120)
	want := expectedHERE(sb, hereQuery(start, winEnd))
	if len(res.Batches) != 120 || res.Records != want.Records {
		t.Fatalf("%d batches %d records; want 120 batches %d records", len(res.Batches), res.Records, want.Records)
	}
	e.waitDelivered(res)
	e.waitTotals(want)
}

func TestHERERecordCapSplitsTheRange(t *testing.T) {
	e := newEnv(t)
	e.startPool()
	const capRecords = 40
	sb, p := e.here(sbhere.Config{Seed: 6, MaxRecords: capRecords}, func(s *here.Settings) { s.MaxRecords = capRecords })
	res := run(t, e.collector(p, "here", collect.Options{}))
	st := sb.Stats()
	var used []sbhere.Query
	truncated := 0
	for _, r := range st.Reports {
		if r.Truncated || r.Records >= capRecords {
			truncated++
			continue
		}
		used = append(used, r.Query)
	}
	if truncated == 0 || len(used) < 2 {
		t.Fatalf("no split happened: %+v", st.Reports)
	}
	want := expectedHERE(sb, used...)
	whole := expectedHERE(sb, hereQuery(winStart, winEnd))
	if !want.Quantity.Equal(whole.Quantity) {
		t.Fatalf("the sub-ranges hold %s, the window %s", want.Quantity, whole.Quantity)
	}
	if res.Records != want.Records {
		t.Fatalf("published %d records; the %d sub-reports hold %d", res.Records, len(used), want.Records)
	}
	e.waitDelivered(res)
	e.waitTotals(want)
	t.Logf("%d reports (%d over the cap), %d records", st.ReportsCreated(), truncated, res.Records)
}

func TestAcronisNotReady(t *testing.T) {
	e := newEnv(t)
	sb, p := e.acronis(sbacronis.Config{Seed: 8}, nil)
	sb.SetNotReadyUntil(e.clock.Now().Add(time.Hour))
	ctx, cancel := bg()
	defer cancel()
	// Scheduled: the run ends at once with ErrNotReady.
	_, err := e.collector(p, "acr", collect.Options{}).Run(ctx)
	if !errors.Is(err, collect.ErrNotReady) || !strings.Contains(err.Error(), sbacronis.MsgShouldBeReady) {
		t.Fatalf("err = %v", err)
	}
	// --once: it keeps asking for NotReadyWait.
	sb.SetNotReadyUntil(e.clock.Now().Add(300 * time.Millisecond))
	res, err := e.collector(p, "acr", collect.Options{NotReadyWait: 10 * time.Second}).Run(ctx)
	if err != nil || res.Records == 0 {
		t.Fatalf("res %+v err %v", res, err)
	}
}

func TestReportFailureNamesTheReport(t *testing.T) {
	e := newEnv(t)
	sb, p := e.acronis(sbacronis.Config{Seed: 8}, nil)
	sb.FailNextReports(1)
	ctx, cancel := bg()
	defer cancel()
	_, err := e.collector(p, "acr", collect.Options{}).Run(ctx)
	ids := sb.Stats().ReportIDs()
	if !errors.Is(err, collect.ErrReportFailed) || len(ids) != 1 || !strings.Contains(err.Error(), ids[0]) {
		t.Fatalf("err = %v (reports %v)", err, ids)
	}
	// The next run asks for a new report.
	if res := run(t, e.collector(p, "acr", collect.Options{})); res.Records == 0 || slices.Contains(sb.Stats().ReportIDs()[1:], ids[0]) {
		t.Fatalf("rerun: %+v", res)
	}
}

func TestAcronisOtherClientErrorIsFatalWithTheAPIMessage(t *testing.T) {
	e := newEnv(t)
	_, p := e.acronis(sbacronis.Config{Seed: 8}, func(s *acronis.Settings) { s.TenantID = "00000000-0000-4000-8000-000000000000" })
	ctx, cancel := bg()
	defer cancel()
	_, err := e.collector(p, "acr", collect.Options{}).Run(ctx)
	if err == nil || !strings.Contains(err.Error(), "403") || !strings.Contains(err.Error(), "not authorized to access tenant") {
		t.Fatalf("err = %v", err)
	}
}

var _ = decimal.Zero

// A checkpointed report that failed meanwhile is requested again, under a
// new generation.
func TestCheckpointedReportThatFailedIsRequestedAgain(t *testing.T) {
	e := newEnv(t)
	e.startPool()
	sb, p := e.here(sbhere.Config{Seed: 17, GenerationDelay: 500 * time.Millisecond}, nil)
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		for sb.Stats().ReportsCreated() == 0 {
			time.Sleep(5 * time.Millisecond)
		}
		cancel()
	}()
	if _, err := e.collector(p, "here", collect.Options{}).Run(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("first run: %v", err)
	}
	first := sb.Stats().ReportIDs()[0]
	sb.FailReport(first)
	cctx, ccancel := bg()
	defer ccancel()
	e1, err := e.kv.Get(cctx, "here")
	if err != nil {
		t.Fatal(err)
	}
	res := run(t, e.collector(p, "here", collect.Options{}))
	if st := sb.Stats(); st.ReportsCreated() != 2 || !res.Resumed || res.Reports[0].Reused || res.Reports[0].ID == first {
		t.Fatalf("reports %v, result %+v", st.ReportIDs(), res)
	}
	if strings.Contains(string(e1.Value()), `"generation":`+itoa64(res.Generation)) {
		t.Fatalf("the new report was published under the checkpointed generation %d", res.Generation)
	}
	e.waitDelivered(res)
	e.waitTotals(expectedHERE(sb, hereQuery(winStart, winEnd)))
}

func itoa64(i int64) string { return strconv.FormatInt(i, 10) }

func TestLoopRunsOnScheduleAndRunOnceRunsAll(t *testing.T) {
	e := newEnv(t)
	_, ap := e.acronis(sbacronis.Config{Seed: 18}, nil)
	_, hp := e.here(sbhere.Config{Seed: 18}, nil)
	sched := collect.Schedule{Interval: 150 * time.Millisecond, Period: collect.Day, Periods: 2, Lag: 48 * time.Hour}
	a := e.collector(ap, "acr", collect.Options{Schedule: sched})
	h := e.collector(hp, "here", collect.Options{Schedule: sched})
	outs := collect.RunOnce(context.Background(), []*collect.Collector{a, h})
	if len(outs) != 2 || outs[0].Err != nil || outs[1].Err != nil || outs[0].Collector != "acr" || outs[1].Result.Records == 0 {
		t.Fatalf("%+v", outs)
	}
	// The loop runs until each collector has run three times on its
	// schedule (not for a fixed time: on a loaded machine 700 ms held only
	// two runs); the deadline is a hang guard.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	gens := map[string][]int64{}
	collect.RunLoop(ctx, []*collect.Collector{a, h}, func(o collect.Outcome) {
		if o.Err != nil {
			t.Errorf("%s: %v", o.Collector, o.Err)
			return
		}
		gens[o.Collector] = append(gens[o.Collector], o.Result.Generation)
		if len(gens["acr"]) >= 3 && len(gens["here"]) >= 3 {
			cancel()
		}
	})
	for _, name := range []string{"acr", "here"} {
		g := gens[name]
		if len(g) < 3 || !slices.IsSorted(g) || g[0] <= outs[0].Result.Generation && name == "acr" {
			t.Fatalf("%s ran with generations %v", name, g)
		}
	}
}

// Restarted an hour later, a resumed run still takes over the report it
// asked for today's running period (asked up to the hour it was asked),
// rather than asking again.
func TestResumedRunReusesAReportAskedEarlierInTheDay(t *testing.T) {
	e := newEnv(t)
	sb, p := e.here(sbhere.Config{Seed: 19, GenerationDelay: 400 * time.Millisecond}, nil)
	today := collect.Schedule{Period: collect.Day, Periods: 1}
	later := func() time.Time { return e.clock.Now().Add(time.Hour) }
	res, _ := killWhileGenerating(t, e, e.collector(p, "here", collect.Options{Schedule: today}),
		e.collector(p, "here", collect.Options{Schedule: today, Now: later}), func() int { return sb.Stats().ReportsCreated() })
	st := sb.Stats()
	if st.ReportsCreated() != 1 || st.Downloads != 1 {
		t.Fatalf("want the report reused: %+v", st.Reports)
	}
	q := st.Reports[0].Query
	// HERE is asked up to the hour it was asked in, rounded down (never
	// the future), as hh:59:59 (right whether endDate is inclusive or not).
	if !q.Start.Equal(day("2024-08-20")) || !q.End.Equal(base.Add(-time.Second)) {
		t.Fatalf("asked %s..%s", q.Start, q.End)
	}
	if want := sb.ExpectedQuery(q); !res.Resumed || !res.Reports[0].Reused || res.Records != want.Records || len(res.Batches) != 1 {
		t.Fatalf("result %+v; want %d records", res, want.Records)
	}
}
