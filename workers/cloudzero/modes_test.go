package cloudzero

import (
	"slices"
	"strings"
	"testing"
	"time"

	sandbox "github.com/usagefleet/usagefleet/internal/sandbox/cloudzero"
	"github.com/usagefleet/usagefleet/messages"
	"github.com/usagefleet/usagefleet/workers"
)

func TestReplaceDrop(t *testing.T) {
	s, url := emulator(t, sandbox.Config{})
	d := newDest(t, url, ModeReplaceDrop, 0)
	m := monthUnit(hourAt(16, 0))
	old := slices.Concat(hourRecords(hourAt(3, 1), 3, 10, "9"), hourRecords(hourAt(16, 2), 3, 10, "9"))
	mustDeliver(t, d, newFakeJob([]workers.Unit{m}, old))
	recs := slices.Concat(hourRecords(hourAt(16, 2), 5, 10, "1"), hourRecords(hourAt(20, 7), 5, 10, "2"))
	j := newFakeJob([]workers.Unit{m}, recs)
	j.Try = 1
	mustDeliver(t, d, j)
	if got := ops(s); !slices.Equal(got, []string{"replace_drop:200", "replace_drop:200"}) {
		t.Fatalf("requests = %v", got)
	}
	checkTotals(t, s, expectTotals(recs)) // day 3 is gone with the month
	if u := d.Units(hourAt(16, 5)); len(u) != 1 || u[0].Key != "m2024-08" || !u[0].End.Equal(time.Date(2024, 9, 1, 0, 0, 0, 0, time.UTC)) {
		t.Fatalf("Units = %+v", u)
	}
}

func TestReplaceDropOverLimit(t *testing.T) {
	const limit = 8_000
	s, url := emulator(t, sandbox.Config{})
	d := newDest(t, url, ModeReplaceDrop, limit)
	m := monthUnit(hourAt(16, 0))
	mustDeliver(t, d, newFakeJob([]workers.Unit{m}, hourRecords(hourAt(2, 2), 3, 10, "9")))
	var recs []messages.UsageRecord
	for day := 1; day <= 31; day += 3 {
		recs = append(recs, hourRecords(hourAt(day, day%24), 6, 120, "1")...)
	}
	j := newFakeJob([]workers.Unit{m}, recs)
	j.Try = 1
	mustDeliver(t, d, j)
	checkTotals(t, s, expectTotals(recs))
	got := ops(s)[1:]
	if len(got) < 3 || got[0] != "replace_drop:200" {
		t.Fatalf("requests = %v", got)
	}
	for _, op := range got[1:] {
		if op != "sum:200" {
			t.Fatalf("requests = %v, want replace_drop then sum", got)
		}
	}
	if max := s.MaxBodySeen(); max > limit {
		t.Fatalf("largest body %d > %d", max, limit)
	}
	t.Logf("requests: %v", ops(s))
}

func TestReplaceDropEmptyMonth(t *testing.T) {
	s, url := emulator(t, sandbox.Config{})
	d := newDest(t, url, ModeReplaceDrop, 0)
	m := monthUnit(hourAt(16, 0))
	mustDeliver(t, d, newFakeJob([]workers.Unit{m}, hourRecords(hourAt(2, 2), 3, 10, "9")))
	mustDeliver(t, d, newFakeJob([]workers.Unit{m}, nil))
	checkTotals(t, s, expectTotals(nil), m.Start)
}

func TestSumMode(t *testing.T) {
	s, url := emulator(t, sandbox.Config{})
	d := newDest(t, url, ModeSum, 3_000)
	if d.Semantics() != workers.Append {
		t.Fatal("sum mode must be Append")
	}
	h := hourAt(16, 8)
	part1, part2 := hourRecords(h, 20, 100, "1"), hourRecords(h, 3, 10, "2")
	j1 := newFakeJob(nil, part1)
	j1.Append = true
	mustDeliver(t, d, j1)
	// The same part again (a retry after a lost answer): CloudZero replays
	// the stored answers for the same keys and bodies.
	j1b := newFakeJob(nil, part1)
	j1b.Append, j1b.Try = true, 3
	mustDeliver(t, d, j1b)
	j2 := newFakeJob(nil, part2)
	j2.Append, j2.Seq = true, 43
	mustDeliver(t, d, j2)
	checkTotals(t, s, expectTotals(slices.Concat(part1, part2)))
	replayed := 0
	for _, r := range s.Requests(testConn) {
		switch {
		case r.Replayed:
			replayed++
		case r.Operation != "sum":
			t.Fatalf("request %+v is not sum", r)
		}
	}
	if replayed != len(j1.Sent) {
		t.Fatalf("%d requests replayed, want the %d of the repeated part", replayed, len(j1.Sent))
	}
	if _, reuse := s.Violations(); reuse != 0 {
		t.Fatalf("%d idempotency key reuses", reuse)
	}
}

func TestSumModeRefusedRecords(t *testing.T) {
	s, url := emulator(t, sandbox.Config{RejectNegative: true})
	d := newDest(t, url, ModeSum, 2_000)
	recs := hourRecords(hourAt(16, 8), 20, 60, "1")
	recs[15].BilledCost = messages.MustDecimal("-2")
	j := newFakeJob(nil, recs)
	j.Append = true
	if err := deliver(t, d, j); err != nil {
		t.Fatal(err)
	}
	if len(j.Rejects) == 0 || len(j.UnitRejects) != 0 {
		t.Fatalf("rejects %d, unit rejects %v", len(j.Rejects), j.UnitRejects)
	}
	rejected := map[int]bool{}
	for _, r := range j.Rejects {
		rejected[r.Ref.Index] = true
		if !strings.Contains(r.Reason, "negative") {
			t.Fatalf("reason %q", r.Reason)
		}
	}
	if len(rejected) != 1 || !rejected[15] {
		t.Fatalf("rejected %v, want the negative record 15 alone", rejected)
	}
	var kept []messages.UsageRecord
	for i, r := range recs {
		if !rejected[i] {
			kept = append(kept, r)
		}
	}
	checkTotals(t, s, expectTotals(kept))
}

// Units left dirty under another mode are replaced by the operation that
// fits their span: the month with replace_drop, then its hours.
func TestMixedUnitsAfterAModeChange(t *testing.T) {
	s, url := emulator(t, sandbox.Config{})
	d := newDest(t, url, ModeReplaceHourly, 3_000)
	m := monthUnit(hourAt(1, 0))
	mustDeliver(t, d, newFakeJob([]workers.Unit{m}, hourRecords(hourAt(9, 9), 4, 10, "7")))
	h1, h20 := hourAt(1, 0), hourAt(20, 5)
	recs := slices.Concat(hourRecords(h1, 12, 100, "1"), hourRecords(hourAt(10, 3), 12, 100, "2"), hourRecords(h20, 12, 100, "3"))
	j := newFakeJob([]workers.Unit{hourUnit(h20), hourUnit(h1), m}, recs)
	j.Try = 1
	mustDeliver(t, d, j)
	checkTotals(t, s, expectTotals(recs)) // day 9 is gone with the month
	got := ops(s)[1:]
	if got[0] != "replace_drop:200" || slices.Contains(got[1:], "replace_drop:200") {
		t.Fatalf("requests = %v, want the month first with replace_drop", got)
	}
	t.Logf("requests: %v", got)
	if s.MaxBodySeen() > 3_000 {
		t.Fatalf("body %d over the limit", s.MaxBodySeen())
	}
}
