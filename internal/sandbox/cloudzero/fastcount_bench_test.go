package cloudzero

import (
	"testing"
	"time"

	"github.com/usagefleet/usagefleet/internal/usagegen"
	czrow "github.com/usagefleet/usagefleet/workers/cloudzero"
)

// BenchmarkFastCount reads a ~5 MB body of the rows the fleet writes for
// generated FOCUS records: what the counting endpoint costs per row.
func BenchmarkFastCount(b *testing.B) {
	recs := usagegen.Generate(8000, usagegen.Options{Seed: 1, Start: time.Date(2024, 7, 1, 0, 0, 0, 0, time.UTC), Hours: 3})
	body := []byte(`{"month":"2024-07-01T00:00:00Z","operation":"replace_hourly","data":[`)
	for i := range recs {
		if i > 0 {
			body = append(body, ',')
		}
		var err error
		if body, err = czrow.AppendRow(body, &recs[i]); err != nil {
			b.Fatal(err)
		}
	}
	body = append(body, ']', '}')
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		d, bad := fastCount(body)
		if bad != nil || d.rows != len(recs) {
			b.Fatalf("%v, %d rows", bad, d.rows)
		}
	}
	b.ReportMetric(float64(b.N*len(recs))/b.Elapsed().Seconds(), "rows/s")
}
