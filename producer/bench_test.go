package producer_test

import (
	"bytes"
	"context"
	"syscall"
	"testing"
	"time"

	"github.com/usagefleet/usagefleet/internal/usagegen"
	"github.com/usagefleet/usagefleet/messages"
	"github.com/usagefleet/usagefleet/producer"
	"github.com/usagefleet/usagefleet/producer/input"
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

// BenchmarkSpoolFile reads, checks and spools a generated 44-column FOCUS
// CSV (the first half of usage-producer publish); BenchmarkReadFocusCSV
// only reads and checks it. Per row: b.N rows.
func BenchmarkSpoolFile(b *testing.B) {
	data := focusCSV(b)
	b.SetBytes(int64(len(data)) / 20000)
	b.ReportAllocs()
	for b.Loop() {
		fr, err := producer.SpoolFile(context.Background(), "f.csv", bytes.NewReader(data), producer.FileOptions{Spool: producer.SpoolOptions{Dir: b.TempDir()}})
		if err != nil || fr.Spool.Records() != 20000 {
			b.Fatal(err)
		}
		fr.Spool.Discard()
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/20000, "ns/row")
}

func BenchmarkReadFocusCSV(b *testing.B) {
	data := focusCSV(b)
	b.ReportAllocs()
	for b.Loop() {
		n := 0
		if _, err := input.ReadWith("f.csv", bytes.NewReader(data), input.Options{}, func(input.Row) error { n++; return nil }); err != nil || n != 20000 {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/20000, "ns/row")
}

func focusCSV(b *testing.B) []byte {
	var buf bytes.Buffer
	if _, err := usagegen.WriteFocusCSV(&buf, 20000, usagegen.Options{Seed: 1}); err != nil {
		b.Fatal(err)
	}
	return buf.Bytes()
}

// BenchmarkSpoolFileParquet is BenchmarkSpoolFile with the same rows as
// Parquet (usagegen.CSVToParquet); BenchmarkReadEncodedParquet only reads,
// checks and encodes them (input.ReadEncoded). cpu-ns/row is the
// process's CPU time (all goroutines) per row: steadier than ns/row on a
// shared machine.
func BenchmarkSpoolFileParquet(b *testing.B) {
	data := focusParquet(b)
	b.ReportAllocs()
	cpu := cpuTime()
	for b.Loop() {
		fr, err := producer.SpoolFile(context.Background(), "f.parquet", bytes.NewReader(data), producer.FileOptions{Spool: producer.SpoolOptions{Dir: b.TempDir()}})
		if err != nil || fr.Spool.Records() != 20000 {
			b.Fatal(err)
		}
		fr.Spool.Discard()
	}
	reportPerRow(b, cpu, 20000)
}

func BenchmarkReadEncodedParquet(b *testing.B) {
	data := focusParquet(b)
	b.ReportAllocs()
	cpu := cpuTime()
	for b.Loop() {
		n := 0
		enc := func(e *input.EncodedRows) error {
			n += len(e.Rows)
			e.Release()
			return nil
		}
		if _, err := input.ReadEncoded("f.parquet", bytes.NewReader(data), input.Options{}, func(input.Row) error { return nil }, enc); err != nil || n != 20000 {
			b.Fatal(err, n)
		}
	}
	reportPerRow(b, cpu, 20000)
}

func focusParquet(b *testing.B) []byte {
	var pq bytes.Buffer
	if err := usagegen.CSVToParquet(&pq, bytes.NewReader(focusCSV(b))); err != nil {
		b.Fatal(err)
	}
	return pq.Bytes()
}

func reportPerRow(b *testing.B, cpu0 time.Duration, rows int) {
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(rows), "ns/row")
	b.ReportMetric(float64((cpuTime()-cpu0).Nanoseconds())/float64(b.N)/float64(rows), "cpu-ns/row")
}

// cpuTime is the process's user and system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
