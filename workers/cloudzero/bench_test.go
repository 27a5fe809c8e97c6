package cloudzero

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/usagefleet/usagefleet/internal/usagegen"
	"github.com/usagefleet/usagefleet/messages"
	"github.com/usagefleet/usagefleet/workers"
	"github.com/usagefleet/usagefleet/workers/workerstest"
)

// go test -run '^$' -bench . -benchmem ./workers/cloudzero/

func BenchmarkAppendRow(b *testing.B) {
	recs := variedRecords(1024)
	buf := make([]byte, 0, 1<<20)
	var bytes int
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		r := &recs[n%len(recs)]
		if n%len(recs) == 0 {
			buf = buf[:0]
		}
		before := len(buf)
		var err error
		if buf, err = AppendRow(buf, r); err != nil {
			b.Fatal(err)
		}
		bytes += len(buf) - before
		n++
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "records/s")
	b.ReportMetric(float64(bytes)/float64(n), "B/row")
}

// BenchmarkPackMonth packs a 30-day month of 100 varied records an hour
// (72,000 records, ~35 MB of rows) into replace_hourly bodies of 5 MB.
func BenchmarkPackMonth(b *testing.B) {
	const perHour = 100
	d, err := New("cz", Settings{BaseURL: "http://127.0.0.1:1", ConnectionID: testConn, APIKey: newSecret()})
	if err != nil {
		b.Fatal(err)
	}
	// The job serves a month of records and answers every request 200 in
	// memory: the benchmark measures mapping, packing and body building.
	var reqs, bytes int64
	j := &workerstest.Job{Seq: 1, Encode: AppendRow, ForgetDone: true, Send: func(req *http.Request) (*http.Response, error) {
		n, err := io.Copy(io.Discard, req.Body)
		_ = req.Body.Close()
		if err != nil {
			return nil, err
		}
		reqs++
		bytes += n
		return &http.Response{StatusCode: 200, Header: http.Header{}, Body: io.NopCloser(strings.NewReader(`{}`)), Request: req}, nil
	}}
	proto := variedRecords(perHour)
	j.Recs = make([]messages.UsageRecord, 0, 30*24*perHour)
	for h := 0; h < 30*24; h++ {
		hour := time.Date(2024, 8, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(h) * time.Hour)
		j.UnitList = append(j.UnitList, hourUnit(hour))
		for i := range perHour {
			r := proto[i]
			r.ChargePeriodStart = hour.Add(time.Duration(i) * time.Second)
			r.ChargePeriodEnd = r.ChargePeriodStart.Add(time.Hour)
			j.Recs = append(j.Recs, r)
		}
	}
	for _, u := range j.UnitList { // find each unit's records once, outside the timing
		_ = j.Records(context.Background(), u, func(workers.RecordRef, *messages.UsageRecord) error { return nil })
	}
	records := 0
	b.ReportAllocs()
	for b.Loop() {
		reqs, bytes = 0, 0
		if err := d.Deliver(context.Background(), j); err != nil {
			b.Fatal(err)
		}
		records += 30 * 24 * perHour
	}
	if len(j.Rejects) != 0 || len(j.UnitRejects) != 0 {
		b.Fatalf("rejected: %v %v", j.Rejects, j.UnitRejects)
	}
	b.SetBytes(bytes)
	b.ReportMetric(float64(records)/b.Elapsed().Seconds(), "records/s")
	b.ReportMetric(float64(reqs), "requests/month")
}

// BenchmarkAppendRowPart is BenchmarkAppendRow for rows written from a
// schema-2 part (EncodePartRow, as a drain does), decoding included:
// compare BenchmarkAppendRow plus BenchmarkDecodePart/reusing.
func BenchmarkAppendRowPart(b *testing.B) {
	recs := variedRecords(1024)
	payload, err := messages.EncodeRecords(nil, recs)
	if err != nil {
		b.Fatal(err)
	}
	d := partDestination(b, "", 0)
	buf := make([]byte, 0, 1<<20)
	dst := make([]messages.UsageRecord, len(recs))
	var pr messages.PartReader
	var bytes, direct int
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		k := n % len(recs)
		if k == 0 {
			buf = buf[:0]
			if !pr.Reset(payload, messages.SchemaVersion) {
				b.Fatal("Reset refused the part")
			}
		}
		if err := pr.Next(&dst[k]); err != nil {
			b.Fatal(err)
		}
		before := len(buf)
		var ok bool
		if buf, ok = d.EncodePartRow(buf, &dst[k], &pr); ok {
			direct++
		} else {
			if err := pr.Full(&dst[k]); err != nil {
				b.Fatal(err)
			}
			if buf, err = AppendRow(buf, &dst[k]); err != nil {
				b.Fatal(err)
			}
		}
		bytes += len(buf) - before
		n++
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "records/s")
	b.ReportMetric(float64(bytes)/float64(n), "B/row")
	b.ReportMetric(float64(direct)/float64(n), "direct/row")
}

// BenchmarkEncodePart turns a part as the bench publishes it (1,000
// usagegen records of one hour) into CBF rows the two ways a drain can:
// whole (DecodeRecordsReusing, then EncodeRowWarnings per record: the way
// before EncodePartRow) and part (PartReader.Next and EncodePartRow, the
// whole record only where it declines).
func BenchmarkEncodePart(b *testing.B) {
	recs := usagegen.Generate(1000, usagegen.Options{Seed: 1, Start: time.Date(2024, 7, 1, 0, 0, 0, 0, time.UTC), Hours: 1})
	payload, err := messages.EncodeRecords(nil, recs)
	if err != nil {
		b.Fatal(err)
	}
	d := partDestination(b, "", 0)
	rows := make([]byte, 0, 2*len(payload))
	dst := make([]messages.UsageRecord, len(recs))
	b.Run("whole", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			got, err := messages.DecodeRecordsReusing(dst[:0], payload, messages.SchemaVersion)
			if err != nil {
				b.Fatal(err)
			}
			rows = rows[:0]
			for i := range got {
				if rows, _, err = d.EncodeRowWarnings(rows, &got[i]); err != nil {
					b.Fatal(err)
				}
			}
		}
		b.ReportMetric(float64(b.N*len(recs))/b.Elapsed().Seconds(), "records/s")
	})
	b.Run("part", func(b *testing.B) {
		b.ReportAllocs()
		var pr messages.PartReader
		for b.Loop() {
			if !pr.Reset(payload, messages.SchemaVersion) {
				b.Fatal("Reset refused the part")
			}
			rows = rows[:0]
			for i := range dst {
				r := &dst[i]
				if err := pr.Next(r); err != nil {
					b.Fatal(err)
				}
				var ok bool
				if rows, ok = d.EncodePartRow(rows, r, &pr); !ok {
					if err := pr.Full(r); err != nil {
						b.Fatal(err)
					}
					if rows, _, err = d.EncodeRowWarnings(rows, r); err != nil {
						b.Fatal(err)
					}
				}
			}
		}
		b.ReportMetric(float64(b.N*len(recs))/b.Elapsed().Seconds(), "records/s")
	})
}
