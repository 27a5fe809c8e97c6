package cloudzero

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	sandbox "github.com/usagefleet/usagefleet/internal/sandbox/cloudzero"
	"github.com/usagefleet/usagefleet/internal/sandbox/fault"
	"github.com/usagefleet/usagefleet/messages"
	"github.com/usagefleet/usagefleet/workers"
)

// deliver runs one Deliver with no deadline of its own: how long it takes
// on a loaded machine is not what these tests check (go test's -timeout
// catches a hang).
func deliver(t *testing.T, d *Destination, j *fakeJob) error {
	t.Helper()
	return d.Deliver(t.Context(), j)
}

func mustDeliver(t *testing.T, d *Destination, j *fakeJob) {
	t.Helper()
	if err := deliver(t, d, j); err != nil {
		t.Fatalf("Deliver: %v", err)
	}
	if len(j.Rejects) > 0 || len(j.UnitRejects) > 0 {
		t.Fatalf("unexpected rejections: %v %v", j.Rejects, j.UnitRejects)
	}
	checkDone(t, j)
}

// checkDone checks that every unit not refused was reported Done.
func checkDone(t *testing.T, j *fakeJob) {
	t.Helper()
	if j.Append {
		if len(j.DoneKeys) != 0 {
			t.Fatalf("Done called for an Append job: %v", j.DoneKeys)
		}
		return
	}
	for _, u := range j.UnitList {
		_, refused := j.UnitRejects[u.Key]
		if slices.Contains(j.DoneKeys, u.Key) == refused {
			t.Fatalf("unit %s: done %v, refused %v (done: %v)", u.Key, !refused, refused, j.DoneKeys)
		}
	}
}

// requestRows splits a sent body into its raw rows, byte for byte.
func requestRows(t *testing.T, body []byte) (month string, rows []json.RawMessage) {
	t.Helper()
	var env struct {
		Month string            `json:"month"`
		Data  []json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(body, &env); err != nil {
		t.Fatalf("body: %v", err)
	}
	return env.Month, env.Data
}

func rowHour(t *testing.T, raw json.RawMessage) string {
	t.Helper()
	var r map[string]string
	if err := json.Unmarshal(raw, &r); err != nil {
		t.Fatal(err)
	}
	return r["time/usage_start"]
}

func TestSmallMonthOneRequest(t *testing.T) {
	s, url := emulator(t, sandbox.Config{})
	d := newDest(t, url, ModeReplaceHourly, 0)
	var recs []messages.UsageRecord
	var hours []time.Time
	for h := 0; h < 24; h++ {
		hours = append(hours, hourAt(16, h))
		recs = append(recs, hourRecords(hourAt(16, h), 20, 50, "1")...)
	}
	j := newFakeJob(hourUnits(hours...), recs)
	mustDeliver(t, d, j)
	if got := ops(s); !slices.Equal(got, []string{"replace_hourly:200"}) {
		t.Fatalf("requests = %v, want one replace_hourly", got)
	}
	checkTotals(t, s, expectTotals(recs))
	month, rows := requestRows(t, j.Sent[0].Body)
	if month != "2024-08-01T00:00:00Z" || len(rows) != len(recs) {
		t.Fatalf("month %q with %d rows", month, len(rows))
	}
}

func TestUnitsAcrossMonths(t *testing.T) {
	s, url := emulator(t, sandbox.Config{})
	d := newDest(t, url, ModeReplaceHourly, 0)
	a := time.Date(2024, 7, 31, 23, 0, 0, 0, time.UTC)
	b := time.Date(2024, 8, 1, 0, 0, 0, 0, time.UTC)
	recs := append(hourRecords(a, 3, 10, "1"), hourRecords(b, 4, 10, "2")...)
	// Units out of order: Deliver sorts them.
	mustDeliver(t, d, newFakeJob(hourUnits(b, a), recs))
	if got := ops(s); !slices.Equal(got, []string{"replace_hourly:200", "replace_hourly:200"}) {
		t.Fatalf("requests = %v, want one per month", got)
	}
	checkTotals(t, s, expectTotals(recs))
}

func TestMonthSplitsOnHourBoundaries(t *testing.T) {
	const limit = 20_000
	s, url := emulator(t, sandbox.Config{})
	d := newDest(t, url, ModeReplaceHourly, limit)
	var old, recs []messages.UsageRecord
	var hours []time.Time
	for h := 0; h < 30; h++ {
		hour := hourAt(10, 0).Add(time.Duration(h) * time.Hour)
		hours = append(hours, hour)
		old = append(old, hourRecords(hour, 2, 10, "99")...)
		recs = append(recs, hourRecords(hour, 10+h%7, 120+h*3, "1")...)
	}
	mustDeliver(t, d, newFakeJob(hourUnits(hours...), old))
	s.Reset()
	mustDeliver(t, d, newFakeJob(hourUnits(hours...), old)) // state before the new rebuild
	j := newFakeJob(hourUnits(hours...), recs)
	j.Try = 1
	mustDeliver(t, d, j)

	checkTotals(t, s, expectTotals(recs))
	if max := s.MaxBodySeen(); max > limit {
		t.Fatalf("largest body %d > limit %d", max, limit)
	}
	if len(j.Sent) < 3 {
		t.Fatalf("%d requests; want the month split", len(j.Sent))
	}
	// Whole hours: no hour in two requests, every request replace_hourly,
	// and each request as full as whole hours allow.
	seen := map[string]int{}
	type req struct {
		size      int
		firstHour int // bytes the next request's first hour would add
	}
	var reqs []req
	for i, sb := range j.Sent {
		if sb.Label != "replace_hourly" {
			t.Fatalf("request %d is %s", i, sb.Label)
		}
		if len(sb.Body) > limit {
			t.Fatalf("request %d: %d bytes", i, len(sb.Body))
		}
		_, rows := requestRows(t, sb.Body)
		first := rowHour(t, rows[0])
		add := 0
		for _, r := range rows {
			h := rowHour(t, r)
			if prev, ok := seen[h]; ok && prev != i {
				t.Fatalf("hour %s in requests %d and %d", h, prev, i)
			}
			seen[h] = i
			if h == first {
				add += len(r) + 1 // the row and its comma
			}
		}
		reqs = append(reqs, req{len(sb.Body), add})
	}
	for i := 0; i+1 < len(reqs); i++ {
		if reqs[i].size+reqs[i+1].firstHour <= limit {
			t.Errorf("request %d (%d bytes) had room for the next hour (%d bytes)", i, reqs[i].size, reqs[i+1].firstHour)
		}
	}
}

func TestHourOverLimitReplaceThenSum(t *testing.T) {
	const limit = 10_000
	s, url := emulator(t, sandbox.Config{})
	d := newDest(t, url, ModeReplaceHourly, limit)
	h10, h11, h12 := hourAt(16, 10), hourAt(16, 11), hourAt(16, 12)
	// Old data in 11 that the new upload must replace, not add to.
	mustDeliver(t, d, newFakeJob(hourUnits(h11), hourRecords(h11, 5, 10, "77")))

	var recs []messages.UsageRecord
	recs = append(recs, hourRecords(h10, 5, 100, "1")...)
	recs = append(recs, hourRecords(h11, 150, 150, "3")...) // ~3.5 bodies
	recs = append(recs, hourRecords(h12, 5, 100, "2")...)
	j := newFakeJob(hourUnits(h10, h11, h12), recs)
	j.Try = 1
	mustDeliver(t, d, j)

	checkTotals(t, s, expectTotals(recs))
	if max := s.MaxBodySeen(); max > limit {
		t.Fatalf("largest body %d > limit %d", max, limit)
	}
	got := ops(s)[1:]
	if len(got) < 5 || got[0] != "replace_hourly:200" || got[1] != "replace_hourly:200" || got[len(got)-1] != "replace_hourly:200" {
		t.Fatalf("requests = %v, want replace_hourly (10), replace_hourly (11, first part), sum..., replace_hourly (12)", got)
	}
	for _, op := range got[2 : len(got)-1] {
		if op != "sum:200" {
			t.Fatalf("requests = %v: the rest of hour 11 must go with sum", got)
		}
	}
	// Hour 11's parts are each as full as the limit allows.
	for i, sb := range j.Sent[1 : len(j.Sent)-2] {
		if len(sb.Body) < limit-600 {
			t.Errorf("part %d of hour 11 is %d bytes: not packed", i, len(sb.Body))
		}
	}
	t.Logf("requests: %v", ops(s))
}

func TestBisectOn413(t *testing.T) {
	s, url := emulator(t, sandbox.Config{MaxBodyBytes: 6_000})
	d := newDest(t, url, ModeReplaceHourly, 40_000)
	var recs []messages.UsageRecord
	var hours []time.Time
	for h := 0; h < 6; h++ {
		hours = append(hours, hourAt(16, h))
		recs = append(recs, hourRecords(hourAt(16, h), 6, 200, "1")...) // ~2 KB an hour
	}
	big := hourRecords(hourAt(16, 7), 14, 400, "5") // ~7 KB: one hour over the API's limit
	recs = append(recs, big...)
	hours = append(hours, hourAt(16, 7))
	huge := hourRecords(hourAt(16, 2), 1, 7_000, "9")[0] // one row over the API's limit alone
	recs = append(recs, huge)

	j := newFakeJob(hourUnits(hours...), recs)
	if err := deliver(t, d, j); err != nil {
		t.Fatalf("Deliver: %v", err)
	}
	if len(j.Rejects) != 1 || j.Rejects[0].Ref.Index != len(recs)-1 || !strings.Contains(j.Rejects[0].Reason, "too large") {
		t.Fatalf("rejects = %+v, want the huge row alone", j.Rejects)
	}
	if len(j.UnitRejects) != 0 {
		t.Fatalf("unit rejects = %v", j.UnitRejects)
	}
	checkTotals(t, s, expectTotals(recs[:len(recs)-1]))
	checkDone(t, j)
	// The unit of the refused row is settled only after the row is rejected.
	h2 := hourUnit(hourAt(16, 2)).Key
	if ri, di := slices.Index(j.Events, "reject "+h2), slices.Index(j.Events, "done "+h2); ri < 0 || di < ri {
		t.Fatalf("events %v: %s done before its refused row was rejected", j.Events, h2)
	}
	var n413 int
	for _, op := range ops(s) {
		if strings.HasSuffix(op, ":413") {
			n413++
		}
	}
	if n413 == 0 {
		t.Fatalf("no 413 seen: %v", ops(s))
	}
	t.Logf("requests: %v", ops(s))
}

func TestBisectSingleHourKeepsReplaceFirst(t *testing.T) {
	s, url := emulator(t, sandbox.Config{MaxBodyBytes: 3_000})
	d := newDest(t, url, ModeReplaceHourly, 20_000)
	h := hourAt(16, 9)
	mustDeliver(t, d, newFakeJob(hourUnits(h), hourRecords(h, 3, 10, "50")))
	recs := hourRecords(h, 40, 150, "2")
	j := newFakeJob(hourUnits(h), recs)
	j.Try = 1
	mustDeliver(t, d, j)
	checkTotals(t, s, expectTotals(recs))
	var applied []string
	for _, r := range s.Requests(testConn)[1:] {
		if r.Status == http.StatusOK {
			applied = append(applied, r.Operation)
		}
	}
	if len(applied) < 2 || applied[0] != "replace_hourly" || slices.Contains(applied[1:], "replace_hourly") {
		t.Fatalf("applied = %v, want replace_hourly then sum only", applied)
	}
	t.Logf("requests: %v", ops(s))
}

// A refusing 4xx that is not about a row (here a 415) refuses the units of
// its request whole: their records are rejected with the API's message and
// the units cleared, so CloudZero holds neither their previous upload nor
// part of the new one. The other units are delivered.
func TestRefusedRequestRejectsItsUnitsOnly(t *testing.T) {
	s, url := emulator(t, sandbox.Config{})
	d := newDest(t, url, ModeReplaceHourly, 4_000) // one hour per request
	h10, h11, h12 := hourAt(16, 10), hourAt(16, 11), hourAt(16, 12)
	mustDeliver(t, d, newFakeJob(hourUnits(h10), hourRecords(h10, 3, 10, "40")))

	recs := slices.Concat(hourRecords(h10, 8, 200, "1"), hourRecords(h11, 8, 200, "2"), hourRecords(h12, 8, 200, "3"))
	s.Faults().Set(fault.Rule{Kind: fault.Status, Code: http.StatusUnsupportedMediaType, Count: 1, Message: "unsupported"})
	j := newFakeJob(hourUnits(h10, h11, h12), recs)
	j.Try = 1
	if err := deliver(t, d, j); err != nil {
		t.Fatalf("Deliver: %v", err)
	}
	reason, ok := j.UnitRejects[hourUnit(h10).Key]
	if len(j.UnitRejects) != 1 || !ok || !strings.Contains(reason, "unsupported") || !strings.Contains(reason, "415") {
		t.Fatalf("unit rejects = %v, want %s with the API's message", j.UnitRejects, hourUnit(h10).Key)
	}
	checkTotals(t, s, expectTotals(recs[8:]), h10)
	checkDone(t, j)
	rows := s.Rows(testConn, h10)
	if len(rows) != 1 || rows[0]["lineitem/id"] != PlaceholderLineItemID {
		t.Fatalf("hour 10 holds %v, want the placeholder", rows)
	}
	if !strings.Contains(j.Logs.Text(), "refused") {
		t.Fatalf("no warning logged:\n%s", j.Logs.Text())
	}
}

// A row refused in a sum part of an hour is rejected alone; the parts sent
// before the refusal stay and the rest of the hour is delivered.
func TestRefused400PartWayThroughAnHour(t *testing.T) {
	s, url := emulator(t, sandbox.Config{RejectNegative: true})
	d := newDest(t, url, ModeReplaceHourly, 3_000)
	h := hourAt(16, 5)
	recs := hourRecords(h, 30, 150, "1")
	recs[25].BilledCost = messages.MustDecimal("-3") // in a sum part
	j := newFakeJob(hourUnits(h), recs)
	if err := deliver(t, d, j); err != nil {
		t.Fatalf("Deliver: %v", err)
	}
	if len(j.UnitRejects) != 0 || len(j.Rejects) != 1 || j.Rejects[0].Ref.Index != 25 || !strings.Contains(j.Rejects[0].Reason, "negative") {
		t.Fatalf("unit rejects %v, rejects %v: want record 25 alone", j.UnitRejects, j.Rejects)
	}
	checkTotals(t, s, expectTotals(slices.Concat(recs[:25], recs[26:])))
	checkDone(t, j)
	t.Logf("requests: %v", ops(s))
}

func TestForbiddenIsAuth(t *testing.T) {
	_, url := emulator(t, sandbox.Config{Connections: map[string]string{testConn: "another-key"}})
	d := newDest(t, url, ModeReplaceHourly, 0)
	h := hourAt(16, 1)
	j := newFakeJob(hourUnits(h), hourRecords(h, 3, 10, "1"))
	err := deliver(t, d, j)
	we := classOf(t, err)
	if we.Class != workers.ClassAuth || we.Status != http.StatusForbidden {
		t.Fatalf("err = %v, want ClassAuth 403", err)
	}
	if strings.Contains(err.Error(), testKey) || strings.Contains(j.Logs.Text(), testKey) {
		t.Fatal("the key leaked into the error or the log")
	}
	if len(j.Rejects)+len(j.UnitRejects) != 0 {
		t.Fatal("an auth failure must not reject data")
	}
}

func TestUnknownConnectionPauses(t *testing.T) {
	_, url := emulator(t, sandbox.Config{Connections: map[string]string{"other": testKey}})
	d := newDest(t, url, ModeReplaceHourly, 0)
	h := hourAt(16, 1)
	err := deliver(t, d, newFakeJob(hourUnits(h), hourRecords(h, 1, 10, "1")))
	if we := classOf(t, err); we.Class != workers.ClassAuth || we.Status != http.StatusNotFound {
		t.Fatalf("err = %v, want ClassAuth 404", err)
	}
}

func TestTransientFailures(t *testing.T) {
	tests := []struct {
		name  string
		rule  fault.Rule
		after time.Duration
	}{
		{"429 Retry-After", fault.Rule{Kind: fault.Status, Code: 429, RetryAfter: "7"}, 7 * time.Second},
		{"503", fault.Rule{Kind: fault.Status, Code: 503}, 0},
		{"500 after applying", fault.Rule{Kind: fault.ApplyThenStatus, Code: 500}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, url := emulator(t, sandbox.Config{})
			s.Faults().Set(tt.rule)
			d := newDest(t, url, ModeReplaceHourly, 0)
			h := hourAt(16, 1)
			j := newFakeJob(hourUnits(h), hourRecords(h, 3, 10, "1"))
			err := deliver(t, d, j)
			we := classOf(t, err)
			if we.Class != workers.ClassTransient || we.Status != tt.rule.Code || we.RetryAfter != tt.after {
				t.Fatalf("err = %+v, want ClassTransient %d RetryAfter %s", we, tt.rule.Code, tt.after)
			}
			if len(j.Rejects)+len(j.UnitRejects) != 0 {
				t.Fatal("a transient failure must not reject data")
			}
		})
	}
}

func TestHTTPTimeoutIsTransient(t *testing.T) {
	s, url := emulator(t, sandbox.Config{})
	// The emulator holds the request for Delay (it cannot see the client
	// leave while the body is unread): keep it short.
	s.Faults().Set(fault.Rule{Kind: fault.Timeout, Delay: time.Second})
	d, err := New("cz", Settings{BaseURL: url, ConnectionID: testConn, APIKey: newSecret(), HTTPTimeout: durationOf(150 * time.Millisecond)})
	if err != nil {
		t.Fatal(err)
	}
	h := hourAt(16, 1)
	start := time.Now()
	err = deliver(t, d, newFakeJob(hourUnits(h), hourRecords(h, 3, 10, "1")))
	if we := classOf(t, err); we.Class != workers.ClassTransient || !strings.Contains(err.Error(), "http_timeout") {
		t.Fatalf("err = %v, want a transient http_timeout", err)
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Fatalf("took %s", took)
	}
}

func TestEmptyHourPlaceholderClearsIt(t *testing.T) {
	s, url := emulator(t, sandbox.Config{})
	d := newDest(t, url, ModeReplaceHourly, 0)
	h1, h2, h3 := hourAt(16, 1), hourAt(16, 2), hourAt(16, 3)
	mustDeliver(t, d, newFakeJob(hourUnits(h1, h2, h3), slices.Concat(
		hourRecords(h1, 4, 10, "1"), hourRecords(h2, 4, 10, "2"), hourRecords(h3, 4, 10, "3"))))

	// A snapshot emptied hour 1; every record of hour 2 lacks a cost.
	bad := hourRecords(h2, 3, 10, "2")
	for i := range bad {
		bad[i].BilledCost = messages.Decimal{}
	}
	keep := hourRecords(h3, 2, 10, "4")
	j := newFakeJob(hourUnits(h1, h2, h3), slices.Concat(bad, keep))
	j.Try = 1
	if err := deliver(t, d, j); err != nil {
		t.Fatal(err)
	}
	if len(j.Rejects) != 3 {
		t.Fatalf("rejects = %v, want the three cost-less records", j.Rejects)
	}
	for _, r := range j.Rejects {
		if !strings.Contains(r.Reason, "cost/cost") {
			t.Fatalf("reason %q does not name the column", r.Reason)
		}
	}
	checkTotals(t, s, expectTotals(keep), h1, h2)
	checkDone(t, j)
	for _, h := range []time.Time{h1, h2} {
		rows := s.Rows(testConn, h)
		if len(rows) != 1 || rows[0]["lineitem/id"] != PlaceholderLineItemID || rows[0]["cost/cost"] != "0" {
			t.Fatalf("hour %s holds %v", h, rows)
		}
	}
	if got := ops(s)[1:]; !slices.Equal(got, []string{"replace_hourly:200"}) {
		t.Fatalf("requests = %v: placeholders should pack with the other hours", got)
	}
}

func TestRowTooLargeForOurLimitRejectedAlone(t *testing.T) {
	s, url := emulator(t, sandbox.Config{})
	d := newDest(t, url, ModeReplaceHourly, 2_000)
	h := hourAt(16, 4)
	recs := hourRecords(h, 3, 10, "1")
	recs[1].ChargeDescription = strings.Repeat("x", 2_000)
	j := newFakeJob(hourUnits(h), recs)
	if err := deliver(t, d, j); err != nil {
		t.Fatal(err)
	}
	if len(j.Rejects) != 1 || j.Rejects[0].Ref.Index != 1 || !strings.Contains(j.Rejects[0].Reason, "max_body_bytes") {
		t.Fatalf("rejects = %+v", j.Rejects)
	}
	checkTotals(t, s, expectTotals([]messages.UsageRecord{recs[0], recs[2]}))
	checkDone(t, j)
}

func TestRetriedJobUsesNewKeys(t *testing.T) {
	s, url := emulator(t, sandbox.Config{})
	s.Faults().Set(fault.Rule{Kind: fault.ApplyThenStatus, Code: 502, Count: 2})
	d := newDest(t, url, ModeReplaceHourly, 5_000)
	h := hourAt(16, 3)
	recs := hourRecords(h, 60, 100, "1") // several parts: replace_hourly, sum...
	for attempt := 0; ; attempt++ {
		j := newFakeJob(hourUnits(h), recs)
		j.Try = attempt
		err := deliver(t, d, j)
		if err == nil {
			break
		}
		if we := classOf(t, err); we.Class != workers.ClassTransient || attempt > 3 {
			t.Fatalf("attempt %d: %v", attempt, err)
		}
	}
	checkTotals(t, s, expectTotals(recs))
	if conc, reuse := s.Violations(); conc != 0 || reuse != 0 {
		t.Fatalf("violations: concurrency %d, key reuse %d", conc, reuse)
	}
}

func TestMonthUsageAndWarning(t *testing.T) {
	s, url := emulator(t, sandbox.Config{})
	d, err := New("cz", Settings{BaseURL: url, ConnectionID: testConn, APIKey: newSecret(), MonthWarnFraction: 0.00001})
	if err != nil {
		t.Fatal(err)
	}
	h1, h2 := hourAt(16, 1), hourAt(16, 2)
	j := newFakeJob(hourUnits(h1, h2), slices.Concat(hourRecords(h1, 6, 10, "1"), hourRecords(h2, 7, 10, "1")))
	mustDeliver(t, d, j)
	rows, bytes := d.MonthUsage(h1)
	var wantBytes int64
	for _, t := range s.Hours(testConn) {
		wantBytes += t.Bytes
	}
	if rows != 13 || bytes != wantBytes {
		t.Fatalf("MonthUsage = %d rows %d bytes, want 13 rows %d bytes", rows, bytes, wantBytes)
	}
	if !strings.Contains(j.Logs.Text(), "nearing the AnyCost Stream limits") {
		t.Fatalf("no warning:\n%s", j.Logs.Text())
	}
	// Replacing an hour replaces its count.
	j2 := newFakeJob(hourUnits(h2), hourRecords(h2, 2, 10, "1"))
	mustDeliver(t, d, j2)
	if rows, _ := d.MonthUsage(h1); rows != 8 {
		t.Fatalf("rows after replacing hour 2 = %d, want 8", rows)
	}
}

func TestLeaseKeyAndUnits(t *testing.T) {
	d := newDest(t, "http://127.0.0.1:1", ModeReplaceHourly, 0)
	u := d.Units(time.Date(2024, 8, 16, 13, 27, 0, 0, time.FixedZone("x", 3600)))
	if len(u) != 1 || u[0].Key != "h2024-08-16T12" || !u[0].Start.Equal(hourAt(16, 12)) || !u[0].End.Equal(hourAt(16, 13)) {
		t.Fatalf("Units = %+v", u)
	}
	if d.LeaseKey(u[0]) != connectionLease(testConn, false) || d.LeaseKey(workers.Unit{}) != connectionLease(testConn, false) {
		t.Fatal("lease key is not the connection's (one lease for every unit; see TestLeaseKeyIsTheConnection)")
	}
	if d.Semantics() != workers.Replace {
		t.Fatal("replace_hourly must be Replace")
	}
}

func TestDoneBeforeAFailure(t *testing.T) {
	s, url := emulator(t, sandbox.Config{})
	d := newDest(t, url, ModeReplaceHourly, 4_000)
	h1, h2, h3, h4 := hourAt(16, 1), hourAt(16, 2), hourAt(16, 3), hourAt(16, 4)
	recs := slices.Concat(hourRecords(h1, 8, 200, "1"), hourRecords(h2, 8, 200, "2"),
		hourRecords(h3, 30, 200, "3"), hourRecords(h4, 8, 200, "4")) // hour 3 takes several requests
	j := newFakeJob(hourUnits(h1, h2, h3, h4), recs)
	n := 0
	j.Send = func(req *http.Request) (*http.Response, error) {
		n++
		if n == 4 { // the second part of hour 3
			return &http.Response{StatusCode: 503, Header: http.Header{}, Body: http.NoBody, Request: req}, nil
		}
		return j.Client.Do(req)
	}
	err := deliver(t, d, j)
	if we := classOf(t, err); we.Class != workers.ClassTransient {
		t.Fatalf("err = %v", err)
	}
	if want := []string{hourUnit(h1).Key, hourUnit(h2).Key}; !slices.Equal(j.DoneKeys, want) {
		t.Fatalf("done = %v, want %v: hour 3 is half sent, hour 4 not sent", j.DoneKeys, want)
	}
	t.Logf("requests: %v", ops(s))
}

func TestUnitNeitherHourNorMonth(t *testing.T) {
	_, url := emulator(t, sandbox.Config{})
	d := newDest(t, url, ModeReplaceHourly, 0)
	day := workers.Unit{Key: "d2024-08-16", Start: hourAt(16, 0), End: hourAt(17, 0)}
	err := deliver(t, d, newFakeJob([]workers.Unit{day}, hourRecords(hourAt(16, 3), 2, 10, "1")))
	if err == nil || !strings.Contains(err.Error(), "neither a UTC hour nor a UTC month") {
		t.Fatalf("err = %v", err)
	}
}
