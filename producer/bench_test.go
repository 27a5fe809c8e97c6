package producer_test

import (
	"testing"

	"github.com/usagefleet/usagefleet/internal/usagegen"
	"github.com/usagefleet/usagefleet/messages"
	"github.com/usagefleet/usagefleet/producer"
)

// BenchmarkSplit is the producer's hot path without the network: validate,
// split by hour and size, encode.
func BenchmarkSplit(b *testing.B) {
	recs := usagegen.Generate(1000, usagegen.Options{Seed: 1, Hours: 1})
	batch := &messages.Batch{ID: "b", Feed: "f", Source: "s", Records: recs}
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if err := batch.Validate(); err != nil {
			b.Fatal(err)
		}
		if _, err := producer.Split(batch, 1<<20); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*len(recs))/b.Elapsed().Seconds(), "records/s")
}
