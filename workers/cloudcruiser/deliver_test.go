package cloudcruiser

import (
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	sandbox "github.com/usagefleet/usagefleet/internal/sandbox/cloudcruiser"
	"github.com/usagefleet/usagefleet/internal/sandbox/fault"
	"github.com/usagefleet/usagefleet/messages"
	"github.com/usagefleet/usagefleet/workers"
	"github.com/usagefleet/usagefleet/workers/workerstest"
)

// newFakeJob is the shared fake workers.Job (workerstest.Job) over recs,
// sending with a plain client: it tests the upload mechanics without NATS.
// The pool's own behaviour is tested end to end in e2e_test.go.
func newFakeJob(d *Destination, units []workers.Unit, recs []messages.UsageRecord) *workerstest.Job {
	j := workerstest.New(units, recs)
	j.Encode = d.EncodeRow
	j.Seq = 1
	j.NoKeys = true
	j.Client = &http.Client{}
	j.Logs = nil
	return j
}

type sbEnv struct {
	srv *sandbox.Server
	ts  *httptest.Server
}

func newSandbox(t *testing.T, cfg sandbox.Config, wrap func(http.Handler) http.Handler) *sbEnv {
	t.Helper()
	if cfg.Token == "" {
		cfg.Token = testToken
	}
	s := sandbox.New(cfg)
	h := s.Handler()
	if wrap != nil {
		h = wrap(h)
	}
	ts := httptest.NewServer(h)
	t.Cleanup(ts.Close)
	return &sbEnv{srv: s, ts: ts}
}

func (e *sbEnv) dest(t *testing.T, s Settings) *Destination {
	s.BaseURL = e.ts.URL
	if s.HTTPTimeout == 0 {
		s.HTTPTimeout = 5_000_000_000
	}
	return testDest(t, s)
}

// hourRecords makes n valid records spread over [start, start+span).
func hourRecords(n int, start time.Time, span time.Duration) []messages.UsageRecord {
	out := make([]messages.UsageRecord, n)
	for i := range out {
		at := start.Add(span * time.Duration(i) / time.Duration(n))
		out[i] = messages.UsageRecord{
			ChargePeriodStart: at, ChargePeriodEnd: at.Add(time.Minute),
			BillingAccountId: "acct-1", SubAccountId: fmt.Sprintf("sub-%d", i%7), ProviderName: "Example Cloud", ServiceName: "Compute",
			SkuId: fmt.Sprintf("SKU-%d", i%5), SkuMeter: "Hours", ConsumedQuantity: messages.MustDecimal(fmt.Sprintf("%d.%03d", i%100, i%1000)),
			ConsumedUnit: "Hours", BilledCost: messages.MustDecimal(fmt.Sprintf("0.%09d", i*7919%1_000_000_000)), BillingCurrency: "USD",
			Tags: map[string]string{"team": fmt.Sprint("t", i%3)},
		}
	}
	return out
}

func sums(recs []messages.UsageRecord) (n int, qty, cost decimal.Decimal) {
	var q, c messages.Sum
	for i := range recs {
		q.Add(recs[i].ConsumedQuantity)
		c.Add(recs[i].BilledCost)
	}
	return len(recs), q.Big(), c.Big()
}

func checkDate(t *testing.T, e *sbEnv, date string, recs []messages.UsageRecord) {
	t.Helper()
	got, ok := e.srv.Dates()[date]
	n, q, c := sums(recs)
	if !ok || got.Records != n || !got.Quantity.Equal(q) || !got.Cost.Equal(c) {
		t.Fatalf("date %s holds %+v (stored %v); want %d records qty %s cost %s", date, got, ok, n, q, c)
	}
}

// Requests follow the documented shape, with the body streamed (chunked)
// unless content_length is set.
func TestUploadRequestShape(t *testing.T) {
	for _, cl := range []bool{false, true} {
		t.Run(fmt.Sprint("content_length=", cl), func(t *testing.T) {
			var mu sync.Mutex
			var seen []*http.Request
			e := newSandbox(t, sandbox.Config{}, func(h http.Handler) http.Handler {
				return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					mu.Lock()
					seen = append(seen, r.Clone(context.Background()))
					mu.Unlock()
					h.ServeHTTP(w, r)
				})
			})
			d := e.dest(t, Settings{ZoneOffset: "+05:30", ContentLength: cl})
			recs := hourRecords(3000, time.Date(2024, 8, 15, 18, 30, 0, 0, time.UTC), 24*time.Hour)
			u := d.DateUnit(recs[0].ChargePeriodStart)
			j := newFakeJob(d, []workers.Unit{u}, recs)
			if err := d.Deliver(context.Background(), j); err != nil {
				t.Fatal(err)
			}
			checkDate(t, e, "2024-08-16", recs)
			if !j.IsDone(u.Key) || len(j.Rejects) != 0 {
				t.Fatalf("done %v rejects %v", j.DoneKeys, j.Rejects)
			}
			if len(seen) != 1 {
				t.Fatalf("%d requests", len(seen))
			}
			r := seen[0]
			mt, params, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
			if r.Method != http.MethodPut || r.URL.Path != "/api/upload/v1/schema/usage/daily/2024-08-16" ||
				r.URL.RawQuery != "zoneOffset=%2B05:30" || r.Header.Get("Authorization") != "Bearer "+testToken ||
				mt != "multipart/form-data" || params["boundary"] == "" || r.Header.Get("Idempotency-Key") != "" {
				t.Fatalf("request %s %s?%s headers %v", r.Method, r.URL.Path, r.URL.RawQuery, r.Header)
			}
			streamed := r.ContentLength == -1 && len(r.TransferEncoding) == 1 && r.TransferEncoding[0] == "chunked"
			if streamed == cl || (cl && r.ContentLength < 3000*300) {
				t.Fatalf("content_length %v: ContentLength %d TransferEncoding %v", cl, r.ContentLength, r.TransferEncoding)
			}
			if want := 1 + map[bool]int{true: 1}[cl]; j.Streams != want {
				t.Fatalf("the date was rebuilt %d times, want %d", j.Streams, want)
			}
		})
	}
}

// A record without what a required field needs is rejected alone; a date
// whose records are all rejected, or that has none, is uploaded empty and
// overwrites the date.
func TestUploadRejectsAloneAndEmptiesDates(t *testing.T) {
	e := newSandbox(t, sandbox.Config{}, nil)
	d := e.dest(t, Settings{ZoneOffset: "-07:00"})
	day1 := time.Date(2024, 8, 16, 7, 0, 0, 0, time.UTC)
	recs := hourRecords(100, day1, 24*time.Hour)
	bad := map[int]bool{3: true, 50: true, 99: true}
	for i := range bad { // bills nothing: no quantity, no cost
		recs[i].ConsumedQuantity, recs[i].PricingQuantity, recs[i].BilledCost = messages.Decimal{}, messages.Decimal{}, messages.Decimal{}
	}
	recs[4].ProviderName, recs[5].SkuId = "", "" // metadata only: repaired and delivered
	u1, u2 := d.DateUnit(day1), d.DateUnit(day1.Add(24*time.Hour))
	// Date 2 held data from before; now its only record bills nothing.
	if err := d.Deliver(context.Background(), newFakeJob(d, []workers.Unit{u2}, hourRecords(5, u2.Start, time.Hour))); err != nil {
		t.Fatal(err)
	}
	lone := hourRecords(1, u2.Start.Add(time.Hour), time.Hour)
	lone[0].ConsumedQuantity, lone[0].PricingQuantity, lone[0].BilledCost = messages.Decimal{}, messages.Decimal{}, messages.Decimal{}
	j := newFakeJob(d, []workers.Unit{u1, u2}, append(recs, lone...))
	if err := d.Deliver(context.Background(), j); err != nil {
		t.Fatal(err)
	}
	var good []messages.UsageRecord
	for i := range recs {
		if !bad[i] {
			good = append(good, recs[i])
		}
	}
	checkDate(t, e, "2024-08-16", good)
	checkDate(t, e, "2024-08-17", nil)
	if len(j.Reasons()) != 4 || !strings.Contains(j.Reason(3), "nothing to bill") || !strings.Contains(j.Reason(100), "no Quantity") {
		t.Fatalf("rejects %v", j.Reasons())
	}
	if !j.IsDone(u1.Key) || !j.IsDone(u2.Key) || len(j.UnitRejects) != 0 {
		t.Fatalf("done %v refused %v", j.DoneKeys, j.UnitRejects)
	}
}

// 400 refuses one date: it is emptied and rejected with the API's message,
// and the other dates of the job are delivered.
func TestUploadRefusedDate(t *testing.T) {
	e := newSandbox(t, sandbox.Config{}, nil)
	d := e.dest(t, Settings{})
	start := time.Date(2024, 8, 16, 0, 0, 0, 0, time.UTC)
	recs := hourRecords(300, start, 72*time.Hour)
	units := []workers.Unit{d.DateUnit(start), d.DateUnit(start.Add(24 * time.Hour)), d.DateUnit(start.Add(48 * time.Hour))}
	if err := d.Deliver(context.Background(), newFakeJob(d, units, recs)); err != nil {
		t.Fatal(err)
	}
	checkDate(t, e, "2024-08-17", recs[100:200])
	// The API now refuses the upload of 08-17 once; the emptying upload goes through.
	e.srv.Faults().Set(fault.Rule{Kind: fault.Status, Code: 400, Path: sandbox.UploadPath + "2024-08-17", Count: 1, Message: "record index 7: bad"})
	j := newFakeJob(d, units, recs)
	if err := d.Deliver(context.Background(), j); err != nil {
		t.Fatal(err)
	}
	checkDate(t, e, "2024-08-16", recs[:100])
	checkDate(t, e, "2024-08-17", nil)
	checkDate(t, e, "2024-08-18", recs[200:])
	if r := j.UnitRejects["d2024-08-17"]; len(j.UnitRejects) != 1 || !strings.Contains(r, "2024-08-17") || !strings.Contains(r, "400") || !strings.Contains(r, "record index 7: bad") {
		t.Fatalf("refused %v", j.UnitRejects)
	}
	if !j.IsDone("d2024-08-16") || !j.IsDone("d2024-08-18") || j.IsDone("d2024-08-17") {
		t.Fatalf("done %v", j.DoneKeys)
	}
	// Refused, and the emptying upload refused too: still rejected.
	e.srv.Faults().Set(fault.Rule{Kind: fault.Status, Code: 413, Path: sandbox.UploadPath + "2024-08-18"})
	j = newFakeJob(d, units, recs)
	if err := d.Deliver(context.Background(), j); err != nil {
		t.Fatal(err)
	}
	if len(j.UnitRejects) != 1 || !strings.Contains(j.UnitRejects["d2024-08-18"], "413") {
		t.Fatalf("refused %v", j.UnitRejects)
	}
	// Refused, and the emptying upload fails transiently: not rejected, the job fails.
	e.srv.Faults().Set(fault.Rule{Kind: fault.Status, Code: 400, Path: sandbox.UploadPath + "2024-08-16", Count: 1},
		fault.Rule{Kind: fault.Status, Code: 503, Path: sandbox.UploadPath + "2024-08-16", Count: 1})
	j = newFakeJob(d, units, recs)
	err := d.Deliver(context.Background(), j)
	var we *workers.Error
	if !errors.As(err, &we) || we.Class != workers.ClassTransient || len(j.UnitRejects) != 0 {
		t.Fatalf("err %v refused %v", err, j.UnitRejects)
	}
}

// Issue 17.5: an HTTP 200 whose body says "success": false with a 4xx
// status is the API refusing the file. It was retried forever; the date is
// now refused like a 400, its records dead-lettered with the message.
func TestUploadRefusedIn200Body(t *testing.T) {
	e := newSandbox(t, sandbox.Config{ErrorsWith200: true}, nil)
	d := e.dest(t, Settings{})
	start := time.Date(2024, 8, 16, 0, 0, 0, 0, time.UTC)
	recs := hourRecords(100, start, 24*time.Hour)
	unit := d.DateUnit(start)
	e.srv.Faults().Set(fault.Rule{Kind: fault.Status, Code: 400, Path: sandbox.UploadPath + "2024-08-16", Count: 1, Message: "record index 7: Quantity is not a decimal"})
	j := newFakeJob(d, []workers.Unit{unit}, recs)
	if err := d.Deliver(context.Background(), j); err != nil {
		t.Fatalf("Deliver: %v (a refusal in the body must dead-letter the date, not be retried)", err)
	}
	if r := j.UnitRejects[unit.Key]; !strings.Contains(r, "record index 7: Quantity is not a decimal") || !strings.Contains(r, "400") {
		t.Fatalf("refused %v", j.UnitRejects)
	}
	checkDate(t, e, "2024-08-16", nil) // emptied: nothing of a refused date stays
	// The body's 401 in a 200 still pauses; a 429 there is retried.
	for _, c := range []struct {
		code  int
		class workers.Class
	}{{401, workers.ClassAuth}, {429, workers.ClassTransient}, {500, workers.ClassTransient}} {
		e.srv.Faults().Set(fault.Rule{Kind: fault.Status, Code: c.code, Path: sandbox.UploadPath + "2024-08-16", Count: 1})
		j := newFakeJob(d, []workers.Unit{unit}, recs)
		err := d.Deliver(context.Background(), j)
		var we *workers.Error
		if !errors.As(err, &we) || we.Class != c.class || len(j.UnitRejects) != 0 {
			t.Fatalf("body status %d: err %v refused %v, want class %v", c.code, err, j.UnitRejects, c.class)
		}
	}
}

func TestUploadAnswers(t *testing.T) {
	start := time.Date(2024, 8, 16, 0, 0, 0, 0, time.UTC)
	recs := hourRecords(2000, start, 24*time.Hour)
	for name, c := range map[string]struct {
		setup func(e *sbEnv)
		class workers.Class
		says  string
	}{
		"401":               {func(e *sbEnv) { e.srv.SetToken("another") }, workers.ClassAuth, "authentication failed"},
		"200 success false": {func(e *sbEnv) { e.srv.SetFailWith200(true) }, workers.ClassTransient, "without success"},
		"429":               {func(e *sbEnv) { e.srv.Faults().Set(fault.Rule{Kind: fault.Status, Code: 429, RetryAfter: "7"}) }, workers.ClassTransient, "Too Many Requests"},
		"apply then 500":    {func(e *sbEnv) { e.srv.Faults().Set(fault.Rule{Kind: fault.ApplyThenStatus, Code: 500}) }, workers.ClassTransient, "500"},
		"reset":             {func(e *sbEnv) { e.srv.Faults().Set(fault.Rule{Kind: fault.Reset}) }, workers.ClassTransient, "daily/2024-08-16"},
		"404":               {func(e *sbEnv) { e.srv.Faults().Set(fault.Rule{Kind: fault.Status, Code: 404}) }, workers.ClassAuth, "check base_url"},
		"411":               {func(e *sbEnv) { e.srv.Faults().Set(fault.Rule{Kind: fault.Status, Code: 411}) }, workers.ClassAuth, "content_length: true"},
	} {
		t.Run(name, func(t *testing.T) {
			e := newSandbox(t, sandbox.Config{}, nil)
			c.setup(e)
			d := e.dest(t, Settings{})
			j := newFakeJob(d, []workers.Unit{d.DateUnit(start)}, recs)
			err := d.Deliver(context.Background(), j)
			var we *workers.Error
			if !errors.As(err, &we) || we.Class != c.class || !strings.Contains(err.Error(), c.says) {
				t.Fatalf("err %v, want class %v saying %q", err, c.class, c.says)
			}
			if name == "429" && we.RetryAfter != 7*time.Second {
				t.Fatalf("Retry-After %s", we.RetryAfter)
			}
			if strings.Contains(err.Error(), testToken) {
				t.Fatalf("the error shows the token: %v", err)
			}
			if len(j.DoneKeys) != 0 || len(j.UnitRejects) != 0 {
				t.Fatalf("done %v refused %v", j.DoneKeys, j.UnitRejects)
			}
		})
	}
}

// A rebuild that fails halfway cuts the file short: nothing is stored and
// the job fails with the rebuild's error, not the API's answer to a
// truncated file.
func TestUploadRebuildFailsMidway(t *testing.T) {
	e := newSandbox(t, sandbox.Config{}, nil)
	d := e.dest(t, Settings{})
	start := time.Date(2024, 8, 16, 0, 0, 0, 0, time.UTC)
	j := newFakeJob(d, []workers.Unit{d.DateUnit(start)}, hourRecords(5000, start, 24*time.Hour))
	j.FailAt = 4000
	err := d.Deliver(context.Background(), j)
	if err == nil || !strings.Contains(err.Error(), "stream unavailable") {
		t.Fatalf("err %v", err)
	}
	if len(e.srv.Dates()) != 0 || len(j.DoneKeys) != 0 {
		t.Fatalf("stored %v, done %v", e.srv.Dates(), j.DoneKeys)
	}
}

// A server that stops reading stalls the upload: http_timeout abandons it.
func TestUploadStallTimesOut(t *testing.T) {
	release := make(chan struct{})
	e := newSandbox(t, sandbox.Config{}, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.CopyN(io.Discard, r.Body, 1000)
			<-release
		})
	})
	defer close(release)
	d := e.dest(t, Settings{HTTPTimeout: 300_000_000})
	start := time.Date(2024, 8, 16, 0, 0, 0, 0, time.UTC)
	j := newFakeJob(d, []workers.Unit{d.DateUnit(start)}, hourRecords(50_000, start, 24*time.Hour))
	began := time.Now()
	err := d.Deliver(context.Background(), j)
	var we *workers.Error
	if !errors.As(err, &we) || we.Class != workers.ClassTransient || !strings.Contains(err.Error(), "no progress") {
		t.Fatalf("err %v", err)
	}
	if took := time.Since(began); took > 5*time.Second {
		t.Fatalf("took %s to notice the stall", took)
	}
}

// An early answer (401 before the file is read) does not leave the writer
// blocked: Deliver returns, and its goroutine ends.
func TestUploadEarlyAnswerEndsWriter(t *testing.T) {
	e := newSandbox(t, sandbox.Config{Token: "other"}, nil)
	d := e.dest(t, Settings{})
	start := time.Date(2024, 8, 16, 0, 0, 0, 0, time.UTC)
	j := newFakeJob(d, []workers.Unit{d.DateUnit(start)}, hourRecords(100_000, start, 24*time.Hour))
	done := make(chan error, 1)
	go func() { done <- d.Deliver(context.Background(), j) }()
	select {
	case err := <-done:
		var we *workers.Error
		if !errors.As(err, &we) || we.Class != workers.ClassAuth {
			t.Fatalf("err %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Deliver did not return after an early 401")
	}
}

func TestUploadCancelled(t *testing.T) {
	e := newSandbox(t, sandbox.Config{ProcessingDelay: 2 * time.Second}, nil)
	d := e.dest(t, Settings{})
	start := time.Date(2024, 8, 16, 0, 0, 0, 0, time.UTC)
	j := newFakeJob(d, []workers.Unit{d.DateUnit(start)}, hourRecords(100, start, time.Hour))
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	began := time.Now()
	if err := d.Deliver(ctx, j); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err %v", err)
	}
	if took := time.Since(began); took > time.Second {
		t.Fatalf("Deliver took %s to see its context end", took)
	}
}
