package workerstest

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/usagefleet/usagefleet/messages"
	"github.com/usagefleet/usagefleet/workers"
)

func hour(h int) workers.Unit {
	s := time.Date(2024, 8, 1, h, 0, 0, 0, time.UTC)
	return workers.Unit{Key: s.Format("h2006-01-02T15"), Start: s, End: s.Add(time.Hour)}
}

// Records passes a unit's records in the order of Recs (not time order),
// each with its index; an Append job passes them all; FailAt cuts a unit.
func TestRecords(t *testing.T) {
	at := func(h, m int) messages.UsageRecord {
		return messages.UsageRecord{ChargePeriodStart: time.Date(2024, 8, 1, h, m, 0, 0, time.UTC)}
	}
	recs := []messages.UsageRecord{at(1, 30), at(0, 10), at(1, 5), at(2, 0), at(0, 59), at(1, 59)}
	for _, tc := range []struct {
		name   string
		unit   workers.Unit
		append bool
		failAt int
		want   []int
		fails  bool
	}{
		{name: "hour 0", unit: hour(0), want: []int{1, 4}},
		{name: "hour 1 in slice order", unit: hour(1), want: []int{0, 2, 5}},
		{name: "hour 2 starts at its hour", unit: hour(2), want: []int{3}},
		{name: "no records", unit: hour(5)},
		{name: "append", append: true, want: []int{0, 1, 2, 3, 4, 5}},
		{name: "rebuild fails", unit: hour(1), failAt: 2, want: []int{0, 2}, fails: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			j := New([]workers.Unit{tc.unit}, recs)
			j.Append, j.FailAt = tc.append, tc.failAt
			for range 2 { // the second time from the unit's cached indexes
				var got []int
				err := j.Records(context.Background(), tc.unit, func(ref workers.RecordRef, r *messages.UsageRecord) error {
					if r != &recs[ref.Index] {
						t.Fatalf("record %d is not Recs[%d]", ref.Index, ref.Index)
					}
					got = append(got, ref.Index)
					return nil
				})
				if (err != nil) != tc.fails || !slices.Equal(got, tc.want) {
					t.Fatalf("got %v err %v, want %v (fails %v)", got, err, tc.want, tc.fails)
				}
			}
		})
	}
}

// Every Reject is kept; Reasons keeps a record's first reason, as the pool
// dead-letters it; a unit Done twice panics.
func TestRejectsAndDone(t *testing.T) {
	recs := []messages.UsageRecord{{ChargePeriodStart: hour(0).Start}, {ChargePeriodStart: hour(1).Start}}
	j := New([]workers.Unit{hour(0), hour(1)}, recs)
	j.Reject(workers.RecordRef{Seq: 1, Index: 1}, &recs[1], "first")
	j.Reject(workers.RecordRef{Seq: 1, Index: 1}, &recs[1], "again")
	if len(j.Rejects) != 2 || j.Reason(1) != "first" || j.Reason(0) != "" || len(j.Reasons()) != 1 {
		t.Fatalf("rejects %v reasons %v", j.Rejects, j.Reasons())
	}
	if !slices.Equal(j.Events, []string{"reject " + hour(1).Key, "reject " + hour(1).Key}) {
		t.Fatalf("events %v", j.Events)
	}
	j.Done(hour(0))
	if !j.IsDone(hour(0).Key) || j.IsDone(hour(1).Key) {
		t.Fatalf("done %v", j.DoneKeys)
	}
	defer func() {
		if recover() == nil {
			t.Fatal("Done twice did not panic")
		}
	}()
	j.Done(hour(0))
}
