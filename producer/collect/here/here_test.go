package here

import (
	"testing"
	"time"

	"github.com/usagefleet/usagefleet/producer/collect"
)

// Issue 17.13: the collector clamps a running period to now rounded up to
// the hour; HERE must never be asked about the future.
func TestReportEndNeverInTheFuture(t *testing.T) {
	at := func(s string) time.Time {
		v, err := time.Parse(DateLayout, s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	day := collect.Range{Start: at("2024-08-20T00:00:00"), End: at("2024-08-21T00:00:00")}
	for _, c := range []struct {
		name string
		r    collect.Range
		now  string
		want string
	}{
		{"past range as it is", day, "2024-08-22T10:30:00", "2024-08-21T00:00:00"},
		{"range ending now", day, "2024-08-21T00:00:00", "2024-08-21T00:00:00"},
		{"rounded up by the collector, down here", collect.Range{Start: day.Start, End: at("2024-08-20T11:00:00")}, "2024-08-20T10:30:15", "2024-08-20T10:00:00"},
		{"whole day asked at 10:59", day, "2024-08-20T10:59:59", "2024-08-20T10:00:00"},
		{"only the current hour: to the second", collect.Range{Start: day.Start, End: at("2024-08-20T01:00:00")}, "2024-08-20T00:20:05", "2024-08-20T00:20:05"},
	} {
		t.Run(c.name, func(t *testing.T) {
			now := at(c.now).Add(400 * time.Millisecond)
			got := reportEnd(c.r, now)
			if !got.Equal(at(c.want)) {
				t.Fatalf("reportEnd = %s, want %s", got.Format(DateLayout), c.want)
			}
			if got.After(now) {
				t.Fatalf("asks about the future: %s > now %s", got, now)
			}
		})
	}
}
