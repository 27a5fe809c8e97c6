package messages_test

import (
	"testing"

	"github.com/usagefleet/usagefleet/messages"
)

// BenchmarkDecodePartReader reads the bench part as a drain into CloudZero
// does: each record without its maps (PartReader.Next), its tags from the
// reader. Compare BenchmarkDecodePart/reusing.
func BenchmarkDecodePartReader(b *testing.B) {
	recs, payload := benchPart(b)
	b.ReportAllocs()
	b.SetBytes(int64(len(payload)))
	dst := make([]messages.UsageRecord, len(recs))
	var pr messages.PartReader
	tags := 0
	for i := 0; i < b.N; i++ {
		if !pr.Reset(payload, messages.SchemaVersion) {
			b.Fatal("Reset refused the part")
		}
		for k := range dst {
			if err := pr.Next(&dst[k]); err != nil {
				b.Fatal(err)
			}
			tags += len(pr.Tags())
		}
		if !pr.Done() {
			b.Fatal("not Done")
		}
	}
	b.ReportMetric(float64(b.N*len(recs))/b.Elapsed().Seconds(), "records/s")
	if tags == 0 {
		b.Fatal("no tags read")
	}
}
