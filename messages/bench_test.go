package messages_test

import (
	"testing"
	"time"

	"github.com/usagefleet/usagefleet/internal/usagegen"
	"github.com/usagefleet/usagefleet/messages"
)

// A part as the bench command publishes it: 1,000 generated FOCUS records
// of one hour (two tags each, extension columns on a quarter).
func benchPart(b *testing.B) ([]messages.UsageRecord, []byte) {
	recs := usagegen.Generate(1000, usagegen.Options{Seed: 1, Start: time.Date(2024, 7, 1, 0, 0, 0, 0, time.UTC), Hours: 1})
	payload, err := messages.EncodeRecords(nil, recs)
	if err != nil {
		b.Fatal(err)
	}
	return recs, payload
}

func BenchmarkDecodePart(b *testing.B) {
	recs, payload := benchPart(b)
	for _, bc := range []struct {
		name string
		fn   func([]messages.UsageRecord, []byte, int) ([]messages.UsageRecord, error)
	}{{"new-maps", messages.DecodeRecordsAs}, {"reusing", messages.DecodeRecordsReusing}} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(payload)))
			var dst []messages.UsageRecord
			for i := 0; i < b.N; i++ {
				var err error
				if dst, err = bc.fn(dst[:0], payload, messages.SchemaVersion); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*len(recs))/b.Elapsed().Seconds(), "records/s")
			b.ReportMetric(float64(len(payload))/float64(len(recs)), "B/record")
		})
	}
	// Parts one after another into the same records, as a drain does: a
	// record's extension columns differ from the one it overwrites.
	other, err := messages.EncodeRecords(nil, usagegen.Generate(1000, usagegen.Options{Seed: 2, Start: time.Date(2024, 7, 1, 0, 0, 0, 0, time.UTC), Hours: 1}))
	if err != nil {
		b.Fatal(err)
	}
	b.Run("reusing-two-parts", func(b *testing.B) {
		b.ReportAllocs()
		var dst []messages.UsageRecord
		for i := 0; i < b.N; i++ {
			p := payload
			if i%2 == 1 {
				p = other
			}
			var err error
			if dst, err = messages.DecodeRecordsReusing(dst[:0], p, messages.SchemaVersion); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N*len(recs))/b.Elapsed().Seconds(), "records/s")
	})
}

func BenchmarkEncodePart(b *testing.B) {
	recs, payload := benchPart(b)
	b.ReportAllocs()
	b.SetBytes(int64(len(payload)))
	buf := make([]byte, 0, len(payload))
	for i := 0; i < b.N; i++ {
		var err error
		if buf, err = messages.EncodeRecords(buf[:0], recs); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*len(recs))/b.Elapsed().Seconds(), "records/s")
}

// The webhook's encoding: a part's records as JSON into one buffer.
func BenchmarkAppendJSON(b *testing.B) {
	recs, _ := benchPart(b)
	b.ReportAllocs()
	var buf []byte
	for i := 0; i < b.N; i++ {
		buf = buf[:0]
		for k := range recs {
			buf = recs[k].AppendJSON(buf)
		}
	}
	b.SetBytes(int64(len(buf)))
	b.ReportMetric(float64(b.N*len(recs))/b.Elapsed().Seconds(), "records/s")
}
