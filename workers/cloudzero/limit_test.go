package cloudzero

import (
	"testing"
	"time"

	sandbox "github.com/usagefleet/usagefleet/internal/sandbox/cloudzero"
	"github.com/usagefleet/usagefleet/messages"
)

// A month of more than 5 MB of CBF at the real limits: the destination's
// default max_body_bytes (5,000,000) against the emulator's default, which
// answers 413 above 5,000,000 bytes. The month goes as several
// replace_hourly requests, none refused as too large, none over the limit,
// no hour in two requests, and every hour exact.
func TestMonthOver5MBAtTheDefaultLimit(t *testing.T) {
	s, url := emulator(t, sandbox.Config{})
	d := newDest(t, url, ModeReplaceHourly, 0) // 0: the default limit
	if d.maxBody != 5_000_000 {
		t.Fatalf("default max_body_bytes %d", d.maxBody)
	}
	var recs []messages.UsageRecord
	var hours []time.Time
	for h := 0; h < 48; h++ {
		hour := hourAt(10, 0).Add(time.Duration(h) * time.Hour)
		hours = append(hours, hour)
		recs = append(recs, hourRecords(hour, 250+h, 300, "2")...)
	}
	j := newFakeJob(hourUnits(hours...), recs)
	mustDeliver(t, d, j)

	checkTotals(t, s, expectTotals(recs))
	total := 0
	seen := map[string]int{}
	for i, sb := range j.Sent {
		total += len(sb.Body)
		if sb.Label != "replace_hourly" {
			t.Fatalf("request %d is %s", i, sb.Label)
		}
		if len(sb.Body) > 5_000_000 {
			t.Fatalf("request %d: %d bytes, over 5,000,000", i, len(sb.Body))
		}
		_, rows := requestRows(t, sb.Body)
		for _, r := range rows {
			h := rowHour(t, r)
			if prev, ok := seen[h]; ok && prev != i {
				t.Fatalf("hour %s in requests %d and %d", h, prev, i)
			}
			seen[h] = i
		}
	}
	if total <= 5_000_000 || len(j.Sent) < 2 {
		t.Fatalf("%d bytes in %d requests: the month is not over the limit", total, len(j.Sent))
	}
	for _, op := range ops(s) {
		if op != "replace_hourly:200" {
			t.Fatalf("requests %v: want only replace_hourly answered 200", ops(s))
		}
	}
	if max := s.MaxBodySeen(); max > 5_000_000 {
		t.Fatalf("the emulator saw a %d-byte body", max)
	}
	t.Logf("%d bytes of month in %d requests, largest %d", total, len(j.Sent), s.MaxBodySeen())
}
