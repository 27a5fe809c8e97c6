package producer_test

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/usagefleet/usagefleet/internal/broker"
	"github.com/usagefleet/usagefleet/internal/broker/natstest"
	"github.com/usagefleet/usagefleet/internal/usagegen"
	"github.com/usagefleet/usagefleet/messages"
	"github.com/usagefleet/usagefleet/producer"
)

// team-b's run-42 is not team-a's run-42; the same id with other content
// from the same source is an error, never "already stored".
func TestBatchIDsAreScopedAndAReusedIDWithOtherContentIsRefused(t *testing.T) {
	ns := natstest.Start(t)
	nc := ns.Connect(t)
	p, err := producer.New(nc, producer.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	recsA := usagegen.Generate(50, usagegen.Options{Seed: 1, Hours: 2})
	recsB := usagegen.Generate(50, usagegen.Options{Seed: 2, Hours: 2})
	a, err := p.Publish(ctx, &messages.Batch{ID: "run-42", Feed: "f", Source: "team-a", Records: recsA})
	if err != nil {
		t.Fatal(err)
	}
	b, err := p.Publish(ctx, &messages.Batch{ID: "run-42", Feed: "f", Source: "team-b", Records: recsB})
	if err != nil {
		t.Fatal(err)
	}
	if a.Duplicate() || b.Duplicate() {
		t.Fatalf("team-b's run-42 taken for team-a's: duplicate a=%v b=%v", a.Duplicate(), b.Duplicate())
	}
	// The same source, the same id, other content: refused, nothing stored.
	js, _ := jetstream.New(nc)
	st, _ := js.Stream(ctx, messages.StreamUsage)
	before, _ := st.Info(ctx)
	_, err = p.Publish(ctx, &messages.Batch{ID: "run-42", Feed: "f", Source: "team-a", Records: recsB})
	if !errors.Is(err, producer.ErrBatchConflict) || !strings.Contains(err.Error(), `batch "run-42" of source team-a, feed f`) {
		t.Fatalf("reused id with other content: err = %v, want ErrBatchConflict", err)
	}
	after, _ := st.Info(ctx)
	if after.State.Msgs != before.State.Msgs {
		t.Fatalf("a refused batch stored %d messages", after.State.Msgs-before.State.Msgs)
	}
	// A true repeat is still a duplicate, and a success.
	again, err := p.Publish(ctx, &messages.Batch{ID: "run-42", Feed: "f", Source: "team-a", Records: recsA})
	if err != nil || !again.Duplicate() {
		t.Fatalf("a repeat: %v, duplicate %v", err, again != nil && again.Duplicate())
	}
	// Another producer (a new process) sees the same claims.
	p2, _ := producer.New(ns.Connect(t), producer.Options{})
	if _, err := p2.Publish(ctx, &messages.Batch{ID: "run-42", Feed: "f", Source: "team-b", Records: recsA}); !errors.Is(err, producer.ErrBatchConflict) {
		t.Fatalf("a second process reusing team-b's id: err = %v", err)
	}
}

// A server without the fleet's streams: Publish says so at once, instead
// of retrying "no response from stream" for minutes.
func TestPublishToAServerWithoutStreamsSaysSoAtOnce(t *testing.T) {
	e, err := broker.StartEmbedded(t.TempDir(), 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	nc, err := nats.Connect(e.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	p, err := producer.New(nc, producer.Options{RetryMaxElapsed: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, err = p.Publish(ctx, &messages.Batch{ID: "x", Feed: "f", Source: "s", Records: usagegen.Generate(3, usagegen.Options{Seed: 1})})
	if !errors.Is(err, producer.ErrStreamMissing) || !strings.Contains(err.Error(), "start a usage-worker") {
		t.Fatalf("err = %v, want ErrStreamMissing with how to create the streams", err)
	}
	if ctx.Err() != nil {
		t.Fatal("Publish ran until the deadline instead of saying the stream is missing")
	}

	// The bucket exists (an older setup) but USAGE does not.
	js, _ := jetstream.New(nc)
	if _, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: messages.BucketBatches}); err != nil {
		t.Fatal(err)
	}
	_, err = p.Publish(ctx, &messages.Batch{ID: "y", Feed: "f", Source: "s", Records: usagegen.Generate(3, usagegen.Options{Seed: 1})})
	if !errors.Is(err, producer.ErrStreamMissing) || !strings.Contains(err.Error(), "stream USAGE") {
		t.Fatalf("err = %v, want ErrStreamMissing naming USAGE", err)
	}
	if ctx.Err() != nil {
		t.Fatal("Publish ran until the deadline")
	}
}

// "duplicate message id is in process" (409/10158) means an earlier try may
// still be stored: the producer tries the same id again until it is
// settled, and the batch succeeds. A responder on the real server plays a
// stream leader in a failover: 10158 twice, then the stored answer.
func TestMsgIDInProcessIsRetriedUntilSettled(t *testing.T) {
	e, err := broker.StartEmbedded(t.TempDir(), 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	nc, err := nats.Connect(e.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: messages.BucketBatches}); err != nil {
		t.Fatal(err)
	}
	var tries atomic.Int32
	ids := make(chan string, 10)
	sub, err := nc.Subscribe("usage.>", func(m *nats.Msg) {
		ids <- m.Header.Get(messages.HdrMsgID)
		var reply []byte
		if tries.Add(1) <= 2 {
			reply = []byte(`{"error":{"code":409,"err_code":10158,"description":"duplicate message id is in process"}}`)
		} else {
			reply, _ = json.Marshal(map[string]any{"stream": "USAGE", "seq": 7, "duplicate": true})
		}
		m.Respond(reply)
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	p, err := producer.New(nc, producer.Options{RetryMaxElapsed: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	recs := usagegen.Generate(3, usagegen.Options{Seed: 1, Hours: 1})
	res, err := p.Publish(ctx, &messages.Batch{ID: "b", Feed: "f", Source: "s", Records: recs})
	if err != nil {
		t.Fatalf("the batch failed on an id in process: %v", err)
	}
	if len(res.Parts) != 1 || res.Parts[0].Seq != 7 || !res.Parts[0].Duplicate {
		t.Fatalf("parts %+v, want the settled answer (seq 7, stored before)", res.Parts)
	}
	if n := tries.Load(); n != 3 {
		t.Fatalf("%d tries, want 3", n)
	}
	first := <-ids
	for i := 1; i < 3; i++ {
		if id := <-ids; id != first {
			t.Fatalf("try %d used id %q, the first %q: a retry must reuse the id", i+1, id, first)
		}
	}
}

// A producer with a signing key signs parts and markers as its source; a
// generation from the far future (2^63-1 froze a period) is refused.
func TestPublishSignsPartsAndRefusesImplausibleGenerations(t *testing.T) {
	ns := natstest.Start(t)
	nc := ns.Connect(t)
	kp, _ := nkeys.CreateUser()
	pub, _ := kp.PublicKey()
	p, err := producer.New(nc, producer.Options{SigningKey: kp})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	start := time.Now().UTC().Truncate(time.Hour).Add(-48 * time.Hour)
	recs := usagegen.Generate(20, usagegen.Options{Seed: 4, Hours: 1})
	for i := range recs {
		recs[i].ChargePeriodStart, recs[i].ChargePeriodEnd = start, time.Time{}
	}
	period := messages.Period{Start: start, End: start.Add(2 * time.Hour)}
	_, err = p.Publish(ctx, &messages.Batch{ID: "frozen", Feed: "f", Source: "team-a", Snapshot: &messages.Snapshot{Period: period, Generation: math.MaxInt64}, Records: recs})
	var ve messages.ValidationError
	if !errors.As(err, &ve) || ve[0].Field != "Snapshot.Generation" {
		t.Fatalf("generation 2^63-1: err = %v", err)
	}
	if _, err := p.Publish(ctx, &messages.Batch{ID: "snap", Feed: "f", Source: "team-a", Snapshot: &messages.Snapshot{Period: period, Generation: time.Now().UnixNano()}, Records: recs}); err != nil {
		t.Fatal(err)
	}
	js, _ := jetstream.New(nc)
	st, _ := js.Stream(ctx, messages.StreamUsage)
	info, _ := st.Info(ctx)
	if info.State.Msgs != 3 { // one part, two markers
		t.Fatalf("%d messages, want 3", info.State.Msgs)
	}
	keys := messages.SourceKeys{"team-a": {pub}}
	for seq := uint64(1); seq <= info.State.Msgs; seq++ {
		m, err := st.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		if err := keys.VerifyPart(m.Subject, m.Header); err != nil {
			t.Fatalf("seq %d: %v", seq, err)
		}
		if err := messages.VerifyPayload(m.Header, m.Data); err != nil {
			t.Fatalf("seq %d: %v", seq, err)
		}
		meta, _ := messages.ParseMeta(m.Header)
		if err := messages.CheckGeneration(meta.Generation, m.Time); err != nil {
			t.Fatalf("seq %d: %v", seq, err)
		}
	}
}
