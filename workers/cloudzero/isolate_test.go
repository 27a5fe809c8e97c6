package cloudzero

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	sandbox "github.com/usagefleet/usagefleet/internal/sandbox/cloudzero"
	"github.com/usagefleet/usagefleet/internal/sandbox/fault"
	"github.com/usagefleet/usagefleet/messages"
	"github.com/usagefleet/usagefleet/workers"
)

// badRow marks recs[i] as a row the sandbox refuses (Config.RefuseResourceIDs).
func badRow(recs []messages.UsageRecord, i int, id string) {
	recs[i].ResourceId = id
}

// checkRejectedAlone checks that exactly the records at indexes were
// rejected, each alone with the API's message, and no unit was.
func checkRejectedAlone(t *testing.T, j *fakeJob, indexes ...int) {
	t.Helper()
	if len(j.UnitRejects) != 0 {
		t.Fatalf("units rejected whole: %v", j.UnitRejects)
	}
	var got []int
	for _, r := range j.Rejects {
		got = append(got, r.Ref.Index)
		if !strings.Contains(r.Reason, "refused") || !strings.Contains(r.Reason, "(400)") {
			t.Errorf("reason %q does not carry the API's refusal", r.Reason)
		}
	}
	slices.Sort(got)
	if !slices.Equal(got, indexes) {
		t.Fatalf("rejected records %v, want %v", got, indexes)
	}
}

// without returns recs without the records at indexes.
func without(recs []messages.UsageRecord, indexes ...int) []messages.UsageRecord {
	var out []messages.UsageRecord
	for i, r := range recs {
		if !slices.Contains(indexes, i) {
			out = append(out, r)
		}
	}
	return out
}

// One refused row in a request packing three hours dead-letters that
// record only: the three hours are delivered exactly without it, whether
// the API's message names the row (data[i]) or not (bisection). The old
// behaviour refused all three units and left placeholders.
func TestOneRefusedRowRejectsOnlyItsRecord(t *testing.T) {
	for _, tc := range []struct {
		name    string
		noIndex bool
	}{{"row index", false}, {"no row index", true}} {
		t.Run(tc.name, func(t *testing.T) {
			s, url := emulator(t, sandbox.Config{RefuseResourceIDs: []string{"bad-row"}, NoRowIndex: tc.noIndex})
			d := newDest(t, url, ModeReplaceHourly, 0) // the three hours fit one request
			h10, h11, h12 := hourAt(16, 10), hourAt(16, 11), hourAt(16, 12)
			// An earlier upload of hour 11, which the delivery must replace.
			mustDeliver(t, d, newFakeJob(hourUnits(h11), hourRecords(h11, 3, 10, "40")))
			before := len(s.Requests(testConn))

			recs := slices.Concat(hourRecords(h10, 40, 50, "1"), hourRecords(h11, 40, 50, "2"), hourRecords(h12, 40, 50, "3"))
			const bad = 40 + 27 // in hour 11
			badRow(recs, bad, "bad-row")
			j := newFakeJob(hourUnits(h10, h11, h12), recs)
			if err := deliver(t, d, j); err != nil {
				t.Fatalf("Deliver: %v", err)
			}
			checkRejectedAlone(t, j, bad)
			if tc.noIndex && strings.Contains(j.Rejects[0].Reason, "data[") {
				t.Fatalf("reason %q: the sandbox was to leave the index out", j.Rejects[0].Reason)
			}
			checkTotals(t, s, expectTotals(without(recs, bad)))
			checkDone(t, j)
			if _, reuse := s.Violations(); reuse != 0 {
				t.Fatalf("%d idempotency keys reused for another body", reuse)
			}
			reqs := s.Requests(testConn)[before:]
			if !tc.noIndex && len(reqs) != 2 {
				t.Fatalf("requests %v, want the refused one and its resend", ops(s)[before:])
			}
			for _, r := range reqs {
				if !tc.noIndex && r.Status == 200 && r.Operation != opReplaceHourly {
					t.Fatalf("requests %v: every hour goes whole, with replace_hourly", ops(s)[before:])
				}
			}
			t.Logf("requests: %v", ops(s)[before:])
		})
	}
}

// Within one hour sent in several requests, bisection keeps the order of
// operations: the first request of the hour that succeeds replaces it, the
// rest add with sum, and the refused rows alone are rejected.
func TestRefusedRowsWithinAnHour(t *testing.T) {
	for _, tc := range []struct {
		name    string
		noIndex bool
		bad     []int
	}{
		{"first row, no index", true, []int{0}},
		{"in a sum part, no index", true, []int{25}},
		{"two rows, no index", true, []int{3, 26}},
		{"two rows, row index", false, []int{3, 26}},
		{"every row of the first request", false, []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var ids []string
			h := hourAt(16, 5)
			recs := hourRecords(h, 30, 150, "1")
			for k, i := range tc.bad {
				id := "bad-" + string(rune('a'+k))
				ids = append(ids, id)
				badRow(recs, i, id)
			}
			s, url := emulator(t, sandbox.Config{RefuseResourceIDs: ids, NoRowIndex: tc.noIndex})
			d := newDest(t, url, ModeReplaceHourly, 3_000) // several requests for the hour
			mustDeliver(t, d, newFakeJob(hourUnits(h), hourRecords(h, 3, 10, "40")))
			before := len(s.Requests(testConn))
			j := newFakeJob(hourUnits(h), recs)
			if err := deliver(t, d, j); err != nil {
				t.Fatalf("Deliver: %v", err)
			}
			checkRejectedAlone(t, j, tc.bad...)
			checkTotals(t, s, expectTotals(without(recs, tc.bad...)))
			checkDone(t, j)
			var applied []string
			for _, r := range s.Requests(testConn)[before:] {
				if r.Applied {
					applied = append(applied, r.Operation)
				}
			}
			if len(applied) < 2 || applied[0] != opReplaceHourly || slices.Contains(applied[1:], opReplaceHourly) {
				t.Fatalf("applied %v, want replace_hourly then sum only", applied)
			}
			if _, reuse := s.Violations(); reuse != 0 {
				t.Fatalf("%d idempotency keys reused for another body", reuse)
			}
		})
	}
}

// A 409 is retried (transient, with backoff), not a refusal of the units.
func TestConflictIsRetried(t *testing.T) {
	s, url := emulator(t, sandbox.Config{})
	s.Faults().Set(fault.Rule{Kind: fault.Status, Code: 409, Count: 1, RetryAfter: "2"})
	d := newDest(t, url, ModeReplaceHourly, 0)
	h := hourAt(16, 9)
	recs := hourRecords(h, 5, 10, "1")
	j := newFakeJob(hourUnits(h), recs)
	we := classOf(t, deliver(t, d, j))
	if we.Class != workers.ClassTransient || we.Status != 409 || we.RetryAfter != 2*time.Second {
		t.Fatalf("409 classified as %v (status %d, retry after %s), want transient after 2s", we.Class, we.Status, we.RetryAfter)
	}
	if len(j.Rejects) != 0 || len(j.UnitRejects) != 0 {
		t.Fatalf("a 409 rejected data: %v %v", j.Rejects, j.UnitRejects)
	}
	j = newFakeJob(hourUnits(h), recs)
	j.Try = 1
	mustDeliver(t, d, j)
	checkTotals(t, s, expectTotals(recs))
}

// A 422 is narrowed down like a 400: one naming no row is bisected, and
// the halves that pass are delivered; nothing is rejected when no single
// row is refused.
func TestUnprocessableIsIsolated(t *testing.T) {
	s, url := emulator(t, sandbox.Config{})
	s.Faults().Set(fault.Rule{Kind: fault.Status, Code: 422, Count: 1, Message: "unprocessable"})
	d := newDest(t, url, ModeReplaceHourly, 0)
	h1, h2 := hourAt(16, 1), hourAt(16, 2)
	recs := slices.Concat(hourRecords(h1, 5, 10, "1"), hourRecords(h2, 5, 10, "2"))
	j := newFakeJob(hourUnits(h1, h2), recs)
	mustDeliver(t, d, j)
	checkTotals(t, s, expectTotals(recs))
	if got := ops(s); !slices.Equal(got, []string{":422", "replace_hourly:200", "replace_hourly:200"}) {
		t.Fatalf("requests %v, want the refused one, then each hour alone", got)
	}
}

// Past maxIsolated rows refused in one job, a refusal refuses the units of
// its request whole, as before isolation, and clears them: a body refused
// row after row costs at most maxIsolated+1 refused requests.
func TestIsolationIsCapped(t *testing.T) {
	h1, h2 := hourAt(16, 1), hourAt(16, 2)
	recs := slices.Concat(hourRecords(h1, 10, 10, "1"), hourRecords(h2, 50, 10, "2"))
	var ids []string
	for k := 0; k < maxIsolated+5; k++ {
		id := fmt.Sprintf("bad-%02d", k)
		ids = append(ids, id)
		badRow(recs, 10+k, id)
	}
	s, url := emulator(t, sandbox.Config{RefuseResourceIDs: ids})
	d := newDest(t, url, ModeReplaceHourly, 0)
	j := newFakeJob(hourUnits(h1, h2), recs)
	if err := deliver(t, d, j); err != nil {
		t.Fatalf("Deliver: %v", err)
	}
	if len(j.UnitRejects) != 2 || len(j.Rejects) != 0 {
		t.Fatalf("unit rejects %v, record rejects %d: want both units of the request whole", j.UnitRejects, len(j.Rejects))
	}
	checkTotals(t, s, expectTotals(nil), h1, h2)
	checkDone(t, j)
	refused := 0
	for _, r := range s.Requests(testConn) {
		if r.Status == 400 {
			refused++
		}
	}
	if refused != maxIsolated+1 {
		t.Fatalf("%d refused requests, want %d: %v", refused, maxIsolated+1, ops(s))
	}
}

func TestRowIndex(t *testing.T) {
	for _, tc := range []struct {
		msg  string
		want int
		ok   bool
	}{
		{`data[0]["resource/id"]: refused`, 0, true},
		{`data[1234]: not an object`, 1234, true},
		{`invalid row: refused`, 0, false},
		{`the data[3] row`, 0, false},
		{`data[]: x`, 0, false},
		{`data[99999999999999999999999]: x`, 0, false},
	} {
		got, ok := rowIndex(tc.msg)
		if got != tc.want || ok != tc.ok {
			t.Errorf("rowIndex(%q) = %d, %v; want %d, %v", tc.msg, got, ok, tc.want, tc.ok)
		}
	}
}

// A row refused alone leaves the digest (so the idempotency key) of the
// bodies that follow: it equals that of a body never holding the row, and
// differs from that of the body before the row was left out.
func TestDigestLeavesOutRefusedRows(t *testing.T) {
	p := &packer{monthText: "2024-08-01T00:00:00Z", buf: make([]byte, headRoom), segs: []segment{{unit: hourUnit(hourAt(1, 0))}}}
	for i, row := range []string{"{a}", "{bb}", "{ccc}", "{d}"} {
		p.buf = append(p.buf, ',')
		p.buf = append(p.buf, row...)
		p.rows = append(p.rows, rowMeta{end: len(p.buf), ref: workers.RecordRef{Seq: 5, Index: i}})
	}
	whole := string(p.digest(opReplaceHourly, 0, 4))
	p.rows[1].skip = true
	left := string(p.digest(opReplaceHourly, 0, 4))
	body := p.liveBody(opReplaceHourly, 0, 4)
	defer body.done()
	if got := string(body.buf); got != `{"month":"2024-08-01T00:00:00Z","operation":"replace_hourly","data":[{a},{ccc},{d}]}` {
		t.Fatalf("body %s", got)
	}
	q := &packer{monthText: p.monthText, buf: make([]byte, headRoom), segs: p.segs}
	for _, i := range []int{0, 2, 3} {
		q.buf = append(q.buf, ',')
		q.buf = append(q.buf, []string{"{a}", "{bb}", "{ccc}", "{d}"}[i]...)
		q.rows = append(q.rows, rowMeta{end: len(q.buf), ref: workers.RecordRef{Seq: 5, Index: i}})
	}
	if left == whole || left != string(q.digest(opReplaceHourly, 0, 3)) {
		t.Fatal("the digest does not follow the rows the body carries")
	}
}

// In sum mode (an Append job) a refused row is rejected alone too, found
// by bisection when the message names no row.
func TestSumModeRefusedRowWithoutIndex(t *testing.T) {
	s, url := emulator(t, sandbox.Config{RefuseResourceIDs: []string{"bad-row"}, NoRowIndex: true})
	d := newDest(t, url, ModeSum, 2_000)
	recs := hourRecords(hourAt(16, 8), 20, 60, "1")
	badRow(recs, 13, "bad-row")
	j := newFakeJob(nil, recs)
	j.Append = true
	if err := deliver(t, d, j); err != nil {
		t.Fatal(err)
	}
	checkRejectedAlone(t, j, 13)
	checkTotals(t, s, expectTotals(without(recs, 13)))
	checkDone(t, j)
}

// An hour all of whose records are refused alone holds its placeholder
// afterwards, not its previous upload, and is reported Done once the
// records are rejected.
func TestEveryRowOfAnHourRefused(t *testing.T) {
	h1, h2 := hourAt(16, 1), hourAt(16, 2)
	bad := hourRecords(h2, 3, 10, "2")
	for i := range bad {
		badRow(bad, i, fmt.Sprintf("bad-%d", i))
	}
	s, url := emulator(t, sandbox.Config{RefuseResourceIDs: []string{"bad-0", "bad-1", "bad-2"}, NoRowIndex: true})
	d := newDest(t, url, ModeReplaceHourly, 0)
	mustDeliver(t, d, newFakeJob(hourUnits(h2), hourRecords(h2, 4, 10, "40")))
	recs := slices.Concat(hourRecords(h1, 5, 10, "1"), bad)
	j := newFakeJob(hourUnits(h1, h2), recs)
	if err := deliver(t, d, j); err != nil {
		t.Fatalf("Deliver: %v", err)
	}
	checkRejectedAlone(t, j, 5, 6, 7)
	checkTotals(t, s, expectTotals(recs[:5]), h2)
	checkDone(t, j)
	if rows := s.Rows(testConn, h2); len(rows) != 1 || rows[0]["lineitem/id"] != PlaceholderLineItemID {
		t.Fatalf("hour 2 holds %v, want the placeholder", rows)
	}
}

// A 400 whose type refuses the request as a whole (the month's row limit)
// is not bisected: the request's hours are refused whole, as before,
// rather than delivered in part and then refused row by row.
func TestMonthLimitIsNotBisected(t *testing.T) {
	s, url := emulator(t, sandbox.Config{MaxRowsPerMonth: 10})
	d := newDest(t, url, ModeReplaceHourly, 0)
	h1, h2, h3 := hourAt(16, 1), hourAt(16, 2), hourAt(16, 3)
	recs := slices.Concat(hourRecords(h1, 5, 10, "1"), hourRecords(h2, 5, 10, "2"), hourRecords(h3, 5, 10, "3"))
	j := newFakeJob(hourUnits(h1, h2, h3), recs)
	if err := deliver(t, d, j); err != nil {
		t.Fatalf("Deliver: %v", err)
	}
	if len(j.UnitRejects) != 3 || len(j.Rejects) != 0 {
		t.Fatalf("unit rejects %v, record rejects %v: want the three hours whole", j.UnitRejects, j.Rejects)
	}
	for _, reason := range j.UnitRejects {
		if !strings.Contains(reason, "limited to 10 rows") {
			t.Fatalf("reason %q lacks the API's message", reason)
		}
	}
	if got := ops(s); !slices.Equal(got, []string{"replace_hourly:400", "replace_hourly:200"}) {
		t.Fatalf("requests %v, want the refused one and the clearing placeholders", got)
	}
	checkTotals(t, s, expectTotals(nil), h1, h2, h3)
	checkDone(t, j)
}
