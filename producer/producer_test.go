package producer_test

import (
	"context"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/usagefleet/usagefleet/internal/broker/natstest"
	"github.com/usagefleet/usagefleet/internal/usagegen"
	"github.com/usagefleet/usagefleet/messages"
	"github.com/usagefleet/usagefleet/producer"
)

func TestSplitByHourAndSize(t *testing.T) {
	recs := usagegen.Generate(3000, usagegen.Options{Seed: 5, Hours: 5})
	b := &messages.Batch{ID: "b", Feed: "f", Source: "s", Records: recs}
	const max = 64 << 10
	parts, err := producer.Split(b, max)
	if err != nil {
		t.Fatal(err)
	}
	seen := 0
	prevHour := time.Time{}
	for i, p := range parts {
		if p.Meta.Part != i+1 {
			t.Fatalf("part %d numbered %d", i, p.Meta.Part)
		}
		if len(p.Payload) > max {
			t.Fatalf("part %d is %d bytes, over %d", p.Meta.Part, len(p.Payload), max)
		}
		if p.Meta.Hour.Before(prevHour) {
			t.Fatal("parts not in hour order")
		}
		prevHour = p.Meta.Hour
		got, err := messages.DecodePart(p.Meta.Header(), p.Payload)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range got.Records {
			if !r.ChargePeriodStart.Truncate(time.Hour).Equal(p.Meta.Hour) {
				t.Fatalf("part %d (hour %s) holds a record of %s", p.Meta.Part, p.Meta.Hour, r.ChargePeriodStart)
			}
		}
		seen += len(got.Records)
	}
	if seen != len(recs) {
		t.Fatalf("%d records in parts, %d published", seen, len(recs))
	}
	if len(parts) < 10 {
		t.Fatalf("only %d parts: the size limit did not split", len(parts))
	}
	// Deterministic: the same batch splits the same way (same message ids).
	again, _ := producer.Split(b, max)
	if !reflect.DeepEqual(parts, again) {
		t.Fatal("splitting the same batch twice differs")
	}
}

func TestSplitRefusesARecordOverTheLimit(t *testing.T) {
	r := usagegen.Generate(1, usagegen.Options{Seed: 1})[0]
	r.ChargeDescription = string(make([]byte, 2000))
	_, err := producer.Split(&messages.Batch{ID: "b", Feed: "f", Source: "s", Records: []messages.UsageRecord{r}}, 1024)
	var ve messages.ValidationError
	if !errors.As(err, &ve) || ve[0].Index != 0 {
		t.Fatalf("err = %v", err)
	}
}

func TestPublishIsDeduplicatedAndSnapshotsEndWithMarkers(t *testing.T) {
	ns := natstest.Start(t)
	nc := ns.Connect(t)
	p, err := producer.New(nc, producer.Options{MaxInFlight: 4})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	recs := usagegen.Generate(5000, usagegen.Options{Seed: 9, Hours: 3})
	b := &messages.Batch{ID: "dup", Feed: "f", Source: "s", Records: recs}
	first, err := p.Publish(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	again, err := p.Publish(ctx, b)
	if err != nil {
		t.Fatal(err)
	}
	if first.Duplicate() || !again.Duplicate() {
		t.Fatalf("duplicate flags: first %v again %v", first.Duplicate(), again.Duplicate())
	}
	want := usagegen.Total(recs)
	if first.Records != want.Records || !first.Cost.Equal(want.Cost) {
		t.Fatalf("result %d %s, want %d %s", first.Records, first.Cost, want.Records, want.Cost)
	}
	js, _ := jetstream.New(nc)
	st, _ := js.Stream(ctx, messages.StreamUsage)
	info, _ := st.Info(ctx)
	if int(info.State.Msgs) != len(first.Parts) {
		t.Fatalf("stream holds %d messages after publishing %d parts twice", info.State.Msgs, len(first.Parts))
	}
	// A snapshot: its parts, then one closing marker per hour of the period.
	start := time.Date(2024, 8, 1, 0, 0, 0, 0, time.UTC)
	snap := &messages.Batch{ID: "snap", Feed: "f", Source: "s", Snapshot: &messages.Snapshot{Period: messages.Period{Start: start, End: start.Add(6 * time.Hour)}, Generation: 1}, Records: recs[:10]}
	for i := range snap.Records {
		snap.Records[i].ChargePeriodStart = start.Add(time.Duration(i%2) * time.Hour)
		snap.Records[i].ChargePeriodEnd = time.Time{}
	}
	res, err := p.Publish(ctx, snap)
	if err != nil {
		t.Fatal(err)
	}
	if res.Markers != 6 {
		t.Fatalf("%d markers, want 6 (one per hour of the period)", res.Markers)
	}
	raw, err := st.GetLastMsgForSubject(ctx, messages.UsageSubject("f", start.Add(5*time.Hour)))
	if err != nil {
		t.Fatal(err)
	}
	m, err := messages.ParseMeta(raw.Header)
	if err != nil || m.Kind != messages.KindSnapshotEnd || m.Parts != 0 {
		t.Fatalf("marker of an empty hour: %+v %v", m, err)
	}
}

func TestPublishRefusesInvalidBatchAndStoresNothing(t *testing.T) {
	ns := natstest.Start(t)
	nc := ns.Connect(t)
	p, _ := producer.New(nc, producer.Options{})
	recs := usagegen.Generate(10, usagegen.Options{Seed: 2})
	recs[7].BilledCost = messages.MustDecimal("1")
	recs[7].BillingCurrency = ""
	_, err := p.Publish(context.Background(), &messages.Batch{ID: "bad", Feed: "f", Source: "s", Records: recs})
	var ve messages.ValidationError
	if !errors.As(err, &ve) || ve[0].Index != 7 || ve[0].Field != "BillingCurrency" {
		t.Fatalf("err = %v", err)
	}
	js, _ := jetstream.New(nc)
	st, _ := js.Stream(context.Background(), messages.StreamUsage)
	info, _ := st.Info(context.Background())
	if info.State.Msgs != 0 {
		t.Fatalf("%d messages stored from an invalid batch", info.State.Msgs)
	}
}

// PublishWith: RecordsValidated still checks the batch's own fields (and
// nothing is stored when they are wrong); FreshID stores the parts without
// a claim in the batches bucket, which Publish writes.
func TestPublishWithWhatTheCallerKnows(t *testing.T) {
	ns := natstest.Start(t)
	nc := ns.Connect(t)
	p, _ := producer.New(nc, producer.Options{})
	ctx := context.Background()
	recs := usagegen.Generate(10, usagegen.Options{Seed: 3})
	_, err := p.PublishWith(ctx, &messages.Batch{ID: "fields", Feed: "no.dots", Source: "s", Records: recs}, producer.PublishOptions{RecordsValidated: true, FreshID: true})
	var ve messages.ValidationError
	if !errors.As(err, &ve) || ve[0].Index != -1 || ve[0].Field != "Feed" {
		t.Fatalf("a bad feed with RecordsValidated: err = %v", err)
	}
	js, _ := jetstream.New(nc)
	st, _ := js.Stream(ctx, messages.StreamUsage)
	if info, _ := st.Info(ctx); info.State.Msgs != 0 {
		t.Fatalf("%d messages stored from an invalid batch", info.State.Msgs)
	}
	kv, err := js.KeyValue(ctx, messages.BucketBatches)
	if err != nil {
		t.Fatal(err)
	}
	fresh, err := p.PublishWith(ctx, &messages.Batch{ID: "fresh-1", Feed: "f", Source: "s", Records: recs}, producer.PublishOptions{RecordsValidated: true, FreshID: true})
	if err != nil || len(fresh.Parts) == 0 || fresh.Parts[0].Seq == 0 || fresh.Duplicate() {
		t.Fatalf("fresh: %+v %v", fresh, err)
	}
	if _, err := kv.Get(ctx, messages.BatchKey("s", "f", "fresh-1")); !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Fatalf("a fresh id's claim: err = %v, want none", err)
	}
	if _, err := p.Publish(ctx, &messages.Batch{ID: "claimed-1", Feed: "f", Source: "s", Records: recs}); err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Get(ctx, messages.BatchKey("s", "f", "claimed-1")); err != nil {
		t.Fatalf("Publish's claim: %v", err)
	}
}
