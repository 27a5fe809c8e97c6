package producer_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/usagefleet/usagefleet/internal/broker/natstest"
	"github.com/usagefleet/usagefleet/internal/usagegen"
	"github.com/usagefleet/usagefleet/messages"
	"github.com/usagefleet/usagefleet/producer"
	"github.com/usagefleet/usagefleet/producer/input"
)

func spoolOf(t *testing.T, recs []messages.UsageRecord, o producer.SpoolOptions) *producer.Spool {
	t.Helper()
	o.Dir = t.TempDir()
	s, err := producer.NewSpool(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Discard() })
	for i := range recs {
		if err := s.Add(&recs[i]); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return s
}

// storedRecords reads every record of batch id back from the USAGE stream,
// and how many times each part is stored.
func storedRecords(t *testing.T, js jetstream.JetStream, id string) ([]messages.UsageRecord, map[int]int) {
	t.Helper()
	ctx := context.Background()
	cons, err := js.OrderedConsumer(ctx, messages.StreamUsage, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	var recs []messages.UsageRecord
	parts := map[int]int{}
	for {
		batch, err := cons.FetchNoWait(500)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for m := range batch.Messages() {
			n++
			meta, err := messages.ParseMeta(m.Headers())
			if err != nil {
				t.Fatal(err)
			}
			if meta.BatchID != id {
				continue
			}
			parts[meta.Part]++
			rs, err := messages.DecodeRecordsAs(nil, m.Data(), meta.Schema)
			if err != nil {
				t.Fatal(err)
			}
			recs = append(recs, rs...)
		}
		if n == 0 {
			return recs, parts
		}
	}
}

// Parts hold one hour each and are cut by size, not one per row: records
// of 10 hours in shuffled order make 10 parts when they fit the open
// bytes, and the same records in the same order always make the same
// parts (the claim digest is the same).
func TestSpoolGroupsHoursDeterministically(t *testing.T) {
	recs := usagegen.Generate(1000, usagegen.Options{Seed: 3, Hours: 10})
	rand.New(rand.NewPCG(1, 2)).Shuffle(len(recs), func(i, j int) { recs[i], recs[j] = recs[j], recs[i] })
	a := spoolOf(t, recs, producer.SpoolOptions{})
	b := spoolOf(t, recs, producer.SpoolOptions{})
	if a.Parts() != 10 {
		t.Errorf("%d parts for 10 hours, want 10", a.Parts())
	}
	if a.Digest() != b.Digest() || a.Records() != 1000 {
		t.Errorf("digests %s and %s, %d records", a.Digest(), b.Digest(), a.Records())
	}
	want := usagegen.Total(recs)
	if !a.Cost().Equal(want.Cost) {
		t.Errorf("cost %s, want %s", a.Cost(), want.Cost)
	}
	// A small part size cuts an hour into several parts, every one under
	// the size.
	small := spoolOf(t, recs, producer.SpoolOptions{PartBytes: 8192})
	if small.Parts() <= 10 {
		t.Errorf("%d parts at 8 KiB, want more than 10", small.Parts())
	}
}

// The open-hours bound holds whatever the order: records spread over 200
// hours in random order, with room for a few parts' worth, are cut early
// (smaller parts, more of them) instead of held.
func TestSpoolBoundsOpenHours(t *testing.T) {
	recs := usagegen.Generate(4000, usagegen.Options{Seed: 5, Hours: 200})
	rand.New(rand.NewPCG(3, 4)).Shuffle(len(recs), func(i, j int) { recs[i], recs[j] = recs[j], recs[i] })
	roomy := spoolOf(t, recs, producer.SpoolOptions{})
	tight := spoolOf(t, recs, producer.SpoolOptions{OpenBytes: 16384})
	if roomy.Parts() != 200 {
		t.Errorf("%d parts with room for every hour, want 200", roomy.Parts())
	}
	if tight.Parts() <= roomy.Parts() {
		t.Errorf("%d parts with 16 KiB open, want more than %d: the bound did not cut early", tight.Parts(), roomy.Parts())
	}
	if tight.Records() != 4000 {
		t.Errorf("%d records", tight.Records())
	}
}

// PublishSpool never has more parts in flight than its window, stores
// every record exactly once, and a second publish of the same spool
// content stores nothing new.
func TestPublishSpoolWindowAndRepeat(t *testing.T) {
	ns := natstest.Start(t)
	nc := ns.Connect(t)
	p, err := producer.New(nc, producer.Options{})
	if err != nil {
		t.Fatal(err)
	}
	recs := usagegen.Generate(6000, usagegen.Options{Seed: 11, Hours: 4})
	var mu sync.Mutex
	peak := 0
	producer.SetSpoolInFlight(func(n int) {
		mu.Lock()
		peak = max(peak, n)
		mu.Unlock()
	})
	t.Cleanup(func() { producer.SetSpoolInFlight(nil) })
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s := spoolOf(t, recs, producer.SpoolOptions{PartBytes: 8192})
	res, err := p.PublishSpool(ctx, s, producer.SpoolPublish{BatchID: "w", Feed: "f", Source: "s", Window: 3})
	if err != nil {
		t.Fatal(err)
	}
	if peak > 3 || peak < 1 {
		t.Errorf("%d parts in flight, window 3", peak)
	}
	if len(res.Parts) < 50 || res.Records != 6000 || res.Duplicate() {
		t.Fatalf("%d parts, %d records, duplicate %v", len(res.Parts), res.Records, res.Duplicate())
	}
	again, err := p.PublishSpool(ctx, spoolOf(t, recs, producer.SpoolOptions{PartBytes: 8192}), producer.SpoolPublish{BatchID: "w", Feed: "f", Source: "s", Window: 3})
	if err != nil || !again.Duplicate() {
		t.Fatalf("again: %v, duplicate %v", err, again != nil && again.Duplicate())
	}
	js, _ := jetstream.New(nc)
	stored, parts := storedRecords(t, js, "w")
	for part, n := range parts {
		if n != 1 {
			t.Errorf("part %d stored %d times", part, n)
		}
	}
	if len(parts) != len(res.Parts) || len(stored) != 6000 || !usagegen.Total(stored).Cost.Equal(usagegen.Total(recs).Cost) {
		t.Fatalf("%d parts, %d records stored", len(parts), len(stored))
	}
	// Other content under the same id is refused before any part.
	other := spoolOf(t, recs[:10], producer.SpoolOptions{PartBytes: 8192})
	if _, err := p.PublishSpool(ctx, other, producer.SpoolPublish{BatchID: "w", Feed: "f", Source: "s"}); err == nil {
		t.Fatal("other content under a used batch id was published")
	}
}

// SpoolFile reads any input format into the same parts: a CSV and its
// gzip spool the same digest.
func TestSpoolFileGzipIsTheSameBatch(t *testing.T) {
	var csv bytes.Buffer
	if _, err := usagegen.WriteFocusCSV(&csv, 2000, usagegen.Options{Seed: 2}); err != nil {
		t.Fatal(err)
	}
	var gz bytes.Buffer
	zw := gzipWriter(&gz)
	zw.Write(csv.Bytes())
	zw.Close()
	ctx := context.Background()
	a, err := producer.SpoolFile(ctx, "a.csv", bytes.NewReader(csv.Bytes()), producer.FileOptions{Spool: producer.SpoolOptions{Dir: t.TempDir()}})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Spool.Discard()
	b, err := producer.SpoolFile(ctx, "a.csv.gz", bytes.NewReader(gz.Bytes()), producer.FileOptions{Input: input.Options{Format: input.CSV}, Spool: producer.SpoolOptions{Dir: t.TempDir()}})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Spool.Discard()
	if len(a.Errors)+len(b.Errors) > 0 || a.Spool.Records() != 2000 || a.Spool.Digest() != b.Spool.Digest() {
		t.Fatalf("errors %v %v, %d records, digests %s %s", a.Errors, b.Errors, a.Spool.Records(), a.Spool.Digest(), b.Spool.Digest())
	}
}

func gzipWriter(w *bytes.Buffer) *gzip.Writer { return gzip.NewWriter(w) }
