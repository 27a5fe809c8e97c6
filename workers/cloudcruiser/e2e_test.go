package cloudcruiser

import (
	"context"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	sandbox "github.com/usagefleet/usagefleet/internal/sandbox/cloudcruiser"
	"github.com/usagefleet/usagefleet/internal/sandbox/fault"
	"github.com/usagefleet/usagefleet/internal/usagegen"
	"github.com/usagefleet/usagefleet/messages"
	"github.com/usagefleet/usagefleet/workers"
	"github.com/usagefleet/usagefleet/workers/conformance"
)

// One publish, four destinations in four zone offsets, each with its own
// emulator: every emulator holds, per date, exactly the records whose
// local date (computed here from the offset) is that date.
func TestZoneOffsetsPutRecordsOnTheirDates(t *testing.T) {
	zones := []struct {
		name, zone string
		secs       int
	}{{"utc", "", 0}, {"pdt", "-07:00", -7 * 3600}, {"ist", "+05:30", 5*3600 + 1800}, {"odd", "-07:01:30", -(7*3600 + 90)}}
	var sbs []*ccSandbox
	e := conformance.NewEnv(t, conformance.Harness{Start: func(t *testing.T) conformance.Sandbox { return startCC(t, "", 0, sandbox.Config{}, nil) }})
	for _, z := range zones {
		sb := startCC(t, z.zone, z.secs, sandbox.Config{}, nil)
		sbs = append(sbs, sb)
		nc := e.NS.Connect(t)
		opts := conformance.FastOptions()
		opts.Feeds = []string{e.Feed}
		p, err := workers.NewPool(nc, sb.Destination(t, z.name), opts)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); _ = p.Run(ctx) }()
		t.Cleanup(func() { cancel(); <-done })
	}
	recs := usagegen.Generate(3000, usagegen.Options{Seed: 7, Start: t0, Hours: 60})
	e.Publish("zones", recs, 500)
	for i, z := range zones {
		want := expect(sbs[i], recs)
		waitTotals(t, sbs[i], want, time.Minute)
		for date, dt := range sbs[i].srv.Dates() {
			if dt.ZoneOffset != FormatZoneOffset(z.secs) {
				t.Errorf("%s: date %s was uploaded with zoneOffset %q", z.name, date, dt.ZoneOffset)
			}
		}
		t.Logf("%s: %d dates", z.name, len(want))
	}
	if len(expect(sbs[1], recs)) != 4 || len(expect(sbs[0], recs)) != 3 {
		t.Fatal("the records do not straddle the dates this test is about")
	}
}

// Replace per date, and late records: a date that was uploaded is sent
// again whole when records for it arrive later, and holds everything
// published for it.
func TestLateRecordsResendDateWhole(t *testing.T) {
	e := conformance.NewEnv(t, harness("-07:00", -7*3600))
	sb := e.SB.(*ccSandbox)
	e.StartPool("cc", conformance.FastOptions())
	e.Publish("first", usagegen.Generate(2500, usagegen.Options{Seed: 21, Start: t0, Hours: 40}), 250)
	e.WaitExact(time.Minute)
	before := sb.srv.Dates()
	late := usagegen.Generate(300, usagegen.Options{Seed: 22, Start: t0.Add(10 * time.Hour), Hours: 4}) // 2024-08-30 03:00-07:00 local
	e.Publish("late", late, 100)
	e.WaitExact(time.Minute)
	after := sb.srv.Dates()
	for date, dt := range after {
		changed := dt.Uploads > before[date].Uploads
		if changed != (date == "2024-08-30") {
			t.Errorf("date %s: uploads %d → %d", date, before[date].Uploads, dt.Uploads)
		}
	}
	if after["2024-08-30"].Records != before["2024-08-30"].Records+len(late) {
		t.Fatalf("2024-08-30: %d records, then %d after %d late ones", before["2024-08-30"].Records, after["2024-08-30"].Records, len(late))
	}
}

// The ambiguous failure: 20% of uploads are stored and then answered 500.
// Every date is uploaded again until one is answered success: the totals
// are still exact.
func TestAmbiguousApplyThen500(t *testing.T) {
	e := conformance.NewEnv(t, harness("+05:30", 5*3600+1800))
	sb := e.SB.(*ccSandbox)
	sb.srv.Faults().Set(fault.Rule{Kind: fault.ApplyThenStatus, Code: 500, Rate: 0.2})
	e.StartPool("cc", conformance.FastOptions())
	// Waves of data, so every date is uploaded many times.
	for w := range 10 {
		e.Publish(fmt.Sprint("amb", w), usagegen.Generate(400, usagegen.Options{Seed: 41 + uint64(w), Start: t0, Hours: 96}), 100)
		time.Sleep(250 * time.Millisecond)
	}
	e.WaitExact(time.Minute)
	if n := sb.srv.Faults().Injected()[fault.ApplyThenStatus]; n < 3 {
		t.Fatalf("%d ambiguous faults fired: too few for the check to mean anything", n)
	}
	t.Logf("faults injected: %v", sb.srv.Faults().Injected())
}

// 401 pauses the destination loudly with its data kept (nothing
// dead-lettered, nothing stored); it resumes once the token is valid again.
func TestUnauthorizedPausesAndResumes(t *testing.T) {
	e := conformance.NewEnv(t, harness("", 0))
	sb := e.SB.(*ccSandbox)
	sb.SetAuth(false)
	p := e.StartPool("cc", conformance.FastOptions())
	e.Publish("auth", usagegen.Generate(1000, usagegen.Options{Seed: 51, Start: t0, Hours: 30}), 250)
	deadline := time.Now().Add(30 * time.Second)
	for {
		if paused, reason := p.Paused(); paused {
			if !strings.Contains(reason, "401") || strings.Contains(reason, testToken) {
				t.Fatalf("pause reason %q", reason)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the pool did not pause on a refused token")
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(time.Second) // a few probes while paused
	if len(sb.srv.Dates()) != 0 || p.Stats().DeadLetters != 0 || p.Stats().Acked != 0 {
		t.Fatalf("while paused: dates %v, stats %+v", sb.srv.Dates(), p.Stats())
	}
	sb.srv.SetToken(testToken)
	e.WaitExact(time.Minute)
	if paused, _ := p.Paused(); paused {
		t.Fatal("still paused after the token came back")
	}
}

// Records that lack metadata are repaired and delivered, each counted as
// a warning in its part's ack; only records that bill nothing (no
// quantity, no cost) are rejected alone: the rest of their dates arrive,
// they are in the DEAD stream with the reason, and their parts' acks say
// rejected. A date whose records are all rejected is still uploaded, empty.
func TestIncompleteRecordsRepairedOrRejectedAlone(t *testing.T) {
	e := conformance.NewEnv(t, harness("-07:00", -7*3600))
	sb := e.SB.(*ccSandbox)
	p := e.StartPool("cc", conformance.FastOptions())
	recs := usagegen.Generate(1200, usagegen.Options{Seed: 3, Start: t0, Hours: 48})
	bad := map[int]bool{}
	repaired := map[int]bool{}
	for i := 0; i < len(recs); i++ {
		switch {
		case i%37 == 0: // metadata only
			recs[i].ProviderName, recs[i].ServiceName = "", ""
			repaired[i] = true
		case i%41 == 0: // a tax-like row: no SKU, no quantity, a cost
			recs[i].SkuId, recs[i].SkuPriceId, recs[i].ChargeCategory = "", "", "Tax"
			recs[i].ConsumedQuantity, recs[i].PricingQuantity = messages.Decimal{}, messages.Decimal{}
			repaired[i] = true
		case i%43 == 0: // bills nothing
			recs[i].ConsumedQuantity, recs[i].PricingQuantity, recs[i].BilledCost = messages.Decimal{}, messages.Decimal{}, messages.Decimal{}
			bad[i] = true
		}
	}
	// A date with nothing deliverable: no record bills anything.
	lonely := usagegen.Generate(20, usagegen.Options{Seed: 4, Start: time.Date(2024, 9, 10, 12, 0, 0, 0, time.UTC), Hours: 3})
	for i := range lonely {
		lonely[i].ConsumedQuantity, lonely[i].PricingQuantity, lonely[i].BilledCost = messages.Decimal{}, messages.Decimal{}, messages.Decimal{}
		bad[len(recs)+i] = true
	}
	all := append(recs, lonely...)
	results := e.Publish("rej", all, 100)

	var good []messages.UsageRecord
	for i := range all {
		if !bad[i] {
			good = append(good, all[i])
		}
	}
	waitTotals(t, sb, expect(sb, good), time.Minute)
	sums := waitAcks(t, e, results, "cc")
	rejected, delivered, warned := 0, 0, 0
	for i, s := range sums {
		want, wantWarn := 0, 0
		for k := i * 100; k < min((i+1)*100, len(all)); k++ {
			if bad[k] {
				want++
			}
			if repaired[k] {
				wantWarn++
			}
		}
		if s.RejectedRecords != want || (want > 0 && s.Rejected == 0) {
			t.Errorf("batch %d: acks say %d records rejected (%d parts), want %d", i, s.RejectedRecords, s.Rejected, want)
		}
		if s.Warnings != wantWarn {
			t.Errorf("batch %d: acks say %d warnings, want %d (records repaired)", i, s.Warnings, wantWarn)
		}
		if want > 0 && !strings.Contains(strings.Join(s.Reasons, " "), "nothing to bill") {
			t.Errorf("batch %d: reasons %v", i, s.Reasons)
		}
		rejected += s.RejectedRecords
		delivered += s.Records
		warned += s.Warnings
	}
	if rejected != len(bad) || delivered != len(good) || warned != len(repaired) {
		t.Fatalf("acks: %d delivered %d rejected %d warnings; want %d, %d and %d", delivered, rejected, warned, len(good), len(bad), len(repaired))
	}
	// The dead letters hold exactly the rejected records, each with its reason.
	nc := e.NS.Connect(t)
	deadRecs := 0
	for _, dl := range deadLetters(t, nc, "cc") {
		for _, rr := range dl.Records {
			deadRecs++
			if !strings.Contains(rr.Reason, "nothing to bill") || rr.Record.BilledCost.IsSet() || rr.Record.ConsumedQuantity.IsSet() {
				t.Errorf("dead letter %+v", rr)
			}
		}
	}
	if deadRecs != len(bad) {
		t.Fatalf("%d records dead-lettered, want %d", deadRecs, len(bad))
	}
	// The all-rejected date was uploaded, as an empty file.
	if dt, ok := sb.srv.Dates()["2024-09-10"]; !ok || dt.Records != 0 || dt.Uploads < 1 {
		t.Fatalf("the all-rejected date: %+v (stored %v)", dt, ok)
	}
	if paused, _ := p.Paused(); paused {
		t.Fatal("paused")
	}
}

// 400 dead-letters that date only: the other dates arrive; a date that was
// delivered before is emptied at the API when a later upload of it is
// refused, so its records are either at the API or dead-lettered, never both.
func TestRefusedDateDeadLetteredAlone(t *testing.T) {
	e := conformance.NewEnv(t, harness("", 0))
	sb := e.SB.(*ccSandbox)
	sb.srv.Faults().Set(fault.Rule{Kind: fault.Status, Code: 400, Path: sandbox.UploadPath + "2024-08-31", Message: "record index 3: the API does not like it"})
	p := e.StartPool("cc", conformance.FastOptions())
	recs := usagegen.Generate(1500, usagegen.Options{Seed: 5, Start: t0, Hours: 72})
	results := e.Publish("first", recs, 250)
	want := expect(sb, recs)
	refused := want["d2024-08-31"]
	delete(want, "d2024-08-31")
	waitTotals(t, sb, want, time.Minute)
	sums := waitAcks(t, e, results, "cc")
	rejected := 0
	for _, s := range sums {
		rejected += s.RejectedRecords
		if s.RejectedRecords > 0 && !strings.Contains(strings.Join(s.Reasons, " "), "the API does not like it") {
			t.Errorf("reasons %v", s.Reasons)
		}
	}
	nc := e.NS.Connect(t)
	dead := 0
	for _, dl := range deadLetters(t, nc, "cc") {
		dead += len(dl.Records)
	}
	if rejected != refused.Records || dead != refused.Records || refused.Records == 0 {
		t.Fatalf("date 2024-08-31 had %d records: %d rejected in acks, %d dead-lettered", refused.Records, rejected, dead)
	}
	if _, stored := sb.srv.Dates()["2024-08-31"]; stored {
		t.Fatal("the refused date is stored")
	}
	if paused, _ := p.Paused(); paused {
		t.Fatal("a refused date paused the destination")
	}

	// 2024-08-30 was delivered. Its next upload is refused once: the date
	// is emptied and all its records, old and late, are dead-lettered.
	sb.srv.Faults().Set(fault.Rule{Kind: fault.Status, Code: 400, Path: sandbox.UploadPath + "2024-08-30", Count: 1})
	late := usagegen.Generate(50, usagegen.Options{Seed: 6, Start: t0, Hours: 24})
	e.Publish("late", late, 50)
	before := dead
	deadline := time.Now().Add(time.Minute)
	for {
		dead = 0
		for _, dl := range deadLetters(t, nc, "cc") {
			dead += len(dl.Records)
		}
		if dead-before == want["d2024-08-30"].Records+len(late) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d more records dead-lettered, want %d", dead-before, want["d2024-08-30"].Records+len(late))
		}
		time.Sleep(50 * time.Millisecond)
	}
	if dt := sb.srv.Dates()["2024-08-30"]; dt.Records != 0 {
		t.Fatalf("the refused date still holds %d records", dt.Records)
	}
	if dt := sb.srv.Dates()["2024-09-01"]; dt.Records != want["d2024-09-01"].Records {
		t.Fatalf("another date changed: %+v", dt)
	}
}

// HTTP 200 with "success": false stores nothing and is retried until the
// API succeeds.
func TestSuccessFalseIsRetried(t *testing.T) {
	e := conformance.NewEnv(t, harness("-07:00", -7*3600))
	sb := e.SB.(*ccSandbox)
	sb.srv.SetFailWith200(true)
	p := e.StartPool("cc", conformance.FastOptions())
	e.Publish("sf", usagegen.Generate(800, usagegen.Options{Seed: 8, Start: t0, Hours: 30}), 200)
	deadline := time.Now().Add(30 * time.Second)
	for {
		n := 0
		for _, u := range sb.srv.Uploads() {
			if u.Status == 200 && !u.Success && !u.Applied {
				n++
			}
		}
		if n >= 4 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("only %d failed-with-200 uploads", n)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if st := p.Stats(); st.JobFailures == 0 || st.Acked != 0 || st.DeadLetters != 0 {
		t.Fatalf("a 200 without success was taken as delivered: %+v", st)
	}
	if paused, _ := p.Paused(); paused {
		t.Fatal("paused")
	}
	sb.srv.SetFailWith200(false)
	e.WaitExact(time.Minute)
}

// A newer snapshot generation that has nothing on a date empties it: the
// date is uploaded as an empty file.
func TestSnapshotEmptiesDate(t *testing.T) {
	e := conformance.NewEnv(t, harness("", 0))
	sb := e.SB.(*ccSandbox)
	e.StartPool("cc", conformance.FastOptions())
	period := messages.Period{Start: t0, End: t0.Add(48 * time.Hour)}
	e.PublishSnapshot("report", period, 1, usagegen.Generate(400, usagegen.Options{Seed: 9, Start: t0, Hours: 48}))
	e.WaitExact(time.Minute)
	if dt := sb.srv.Dates()["2024-08-31"]; dt.Records == 0 {
		t.Fatal("the first generation did not reach 2024-08-31")
	}
	e.PublishSnapshot("report", period, 2, usagegen.Generate(100, usagegen.Options{Seed: 10, Start: t0, Hours: 24}))
	e.WaitExact(time.Minute)
	if dt := sb.srv.Dates()["2024-08-31"]; dt.Records != 0 || dt.Uploads < 2 {
		t.Fatalf("2024-08-31 after the second generation: %+v", dt)
	}
}

// A worker killed mid-upload: with part of a file sent, its NATS
// connection closes, its connection to the API drops, its Run is
// cancelled. A new worker takes its dates over (the dead worker's leases
// expire: the test shortens their TTL to 3s); the emulator ends up holding
// exactly what was published.
func TestWorkerKilledMidUpload(t *testing.T) {
	e := conformance.NewEnv(t, harness("-07:00", -7*3600))
	sb := e.SB.(*ccSandbox)
	shortLeases(t, e.NS.Connect(t), 3*time.Second)

	// Worker A reaches the API through a proxy that reads slowly and can
	// cut every connection at once.
	target, _ := url.Parse(sb.ts.URL)
	proxy := httputil.NewSingleHostReverseProxy(target)
	proxy.ErrorLog = log.New(io.Discard, "", 0)
	// The first upload past 64 KiB stalls there until the kill, so it is
	// certainly under way when the connections are cut, however slow the
	// machine.
	var midway atomic.Bool
	inFlight := make(chan struct{}, 1)
	killed := make(chan struct{})
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Body = &slowBody{r: r.Body, onProgress: func(n int64) {
			if n > 64<<10 && midway.CompareAndSwap(false, true) {
				inFlight <- struct{}{}
				<-killed
			}
		}}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(front.Close)

	opts := conformance.FastOptions()
	opts.LeaseTTL = 3 * time.Second
	opts.Feeds = []string{e.Feed}
	ncA := e.NS.Connect(t)
	destA := testDest(t, Settings{BaseURL: front.URL, ZoneOffset: "-07:00", HTTPTimeout: 5_000_000_000})
	destA.name = "cc"
	pa, err := workers.NewPool(ncA, destA, opts)
	if err != nil {
		t.Fatal(err)
	}
	ctxA, cancelA := context.WithCancel(context.Background())
	doneA := make(chan struct{})
	go func() { defer close(doneA); _ = pa.Run(ctxA) }()

	recs := usagegen.Generate(9000, usagegen.Options{Seed: 11, Start: t0, Hours: 72})
	e.Publish("kill", recs, 500)
	select {
	case <-inFlight:
	case <-time.After(30 * time.Second):
		t.Fatal("worker A never got an upload under way")
	}
	ncA.Close()
	front.CloseClientConnections()
	close(killed)
	front.Close()
	cancelA()
	select {
	case <-doneA:
	case <-time.After(30 * time.Second):
		t.Fatal("worker A's Run did not return")
	}
	// The sandbox logs an upload when its handler returns, which is after
	// it notices the cut connection: on a loaded machine that can be after
	// worker A's Run has returned. So wait for the log, not for A.
	cut, applied := 0, 0
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		cut, applied = 0, 0
		for _, u := range sb.srv.Uploads() {
			if u.Applied {
				applied++
			} else {
				cut++
			}
		}
		if cut > 0 || time.Now().After(deadline) {
			break
		}
	}
	if cut == 0 {
		t.Fatal("no upload was cut short: the kill proved nothing")
	}
	t.Logf("worker A killed: %d uploads cut short, %d applied; A's stats %+v", cut, applied, pa.Stats())

	b := e.StartPool("cc", opts)
	e.WaitExact(time.Minute)
	if b.Stats().Jobs == 0 {
		t.Fatal("worker B did nothing")
	}
}
