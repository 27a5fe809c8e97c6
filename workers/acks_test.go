package workers_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/usagefleet/usagefleet/internal/broker/natstest"
	"github.com/usagefleet/usagefleet/messages"
	"github.com/usagefleet/usagefleet/producer"
	"github.com/usagefleet/usagefleet/workers"
)

// ackDest is a destination of the test: it refuses records whose SkuId
// starts with "bad-" (each SkuId a reason of its own), and counts a warning
// for a record with a tag key that has a space. Its rows are the SkuId.
// encoded picks EncodedRecords (the read-ahead, RowWarner) or Records.
type ackDest struct {
	name    string
	sem     workers.Semantics
	encoded bool
}

func (d ackDest) Name() string                 { return d.name }
func (d ackDest) Semantics() workers.Semantics { return d.sem }
func (d ackDest) LeaseKey(u workers.Unit) string {
	if d.sem == workers.Append {
		return ""
	}
	return "one"
}
func (d ackDest) Units(h time.Time) []workers.Unit {
	return []workers.Unit{{Key: "h" + h.UTC().Format("2006-01-02T15"), Start: h, End: h.Add(time.Hour)}}
}

func (d ackDest) EncodeRow(dst []byte, r *messages.UsageRecord) ([]byte, error) {
	dst, _, err := d.EncodeRowWarnings(dst, r)
	return dst, err
}

func (d ackDest) EncodeRowWarnings(dst []byte, r *messages.UsageRecord) ([]byte, int, error) {
	if strings.HasPrefix(r.SkuId, "bad-") {
		return dst, 0, fmt.Errorf("SkuId %s is unknown here", r.SkuId)
	}
	w := 0
	for k := range r.Tags {
		if strings.Contains(k, " ") {
			w = 1
		}
	}
	return append(dst, r.SkuId...), w, nil
}

func (d ackDest) Deliver(ctx context.Context, j workers.Job) error {
	units := j.Units()
	if d.sem == workers.Append {
		units = []workers.Unit{{}}
	}
	for _, u := range units {
		var err error
		if d.encoded {
			err = j.EncodedRecords(ctx, u, func(ref workers.RecordRef, r *messages.UsageRecord, _ []byte, err error) error {
				if err != nil {
					j.Reject(ref, r, err.Error())
				}
				return nil
			})
		} else {
			err = j.Records(ctx, u, func(ref workers.RecordRef, r *messages.UsageRecord) error {
				if _, _, err := d.EncodeRowWarnings(nil, r); err != nil {
					j.Reject(ref, r, err.Error())
				}
				return nil
			})
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// Through real pools of every kind (append and replace, rows encoded ahead
// or records read): the acks of a batch in USD and EUR carry the exact
// cost of each currency, all 48 distinct reasons with their counts, and
// the warnings of the encoded rows.
func TestAcksCarryCurrenciesReasonsWarnings(t *testing.T) {
	ns := natstest.Start(t)
	dests := []ackDest{
		{"app-enc", workers.Append, true},
		{"app-rec", workers.Append, false},
		{"rep-enc", workers.Replace, true},
		{"rep-rec", workers.Replace, false},
	}
	for _, d := range dests {
		pool, err := workers.NewPool(ns.Connect(t), d, workers.Options{Feeds: []string{"f"}, LeaseTTL: natstest.LeaseTTL,
			Flush: workers.FlushPolicy{MaxDelay: 200 * time.Millisecond, Quiet: 50 * time.Millisecond}})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); _ = pool.Run(ctx) }()
		t.Cleanup(func() { cancel(); <-done })
	}
	h := time.Date(2024, 5, 1, 10, 0, 0, 0, time.UTC)
	rec := func(min int, sku, cost, cur string) messages.UsageRecord {
		return messages.UsageRecord{ChargePeriodStart: h.Add(time.Duration(min) * time.Minute), BillingAccountId: "a", SkuId: sku,
			BilledCost: messages.MustDecimal(cost), BillingCurrency: cur}
	}
	var recs []messages.UsageRecord
	for i := range 3 {
		recs = append(recs, rec(i, "ok", "0.10", "USD"), rec(i, "ok", "0.333", "EUR"))
	}
	tagged := rec(5, "ok", "1", "EUR")
	tagged.ResourceId, tagged.Tags = "i-1", map[string]string{"Cost department": "eng"}
	recs = append(recs, tagged)
	for i := range 96 {
		recs = append(recs, rec(60+i%60, fmt.Sprintf("bad-%02d", i%48), "5", "USD"))
	}
	prod, err := producer.New(ns.Connect(t), producer.Options{})
	if err != nil {
		t.Fatal(err)
	}
	res, err := prod.Publish(context.Background(), &messages.Batch{ID: "acks", Feed: "f", Source: "s", Records: recs})
	if err != nil {
		t.Fatal(err)
	}
	names := []string{}
	for _, d := range dests {
		names = append(names, d.name)
	}
	wctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	sums, err := prod.Wait(wctx, res, names, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range dests {
		s := sums[d.name]
		if len(s.Costs) != 2 || !s.Costs["USD"].Equal(messages.MustDecimal("0.30")) || !s.Costs["EUR"].Equal(messages.MustDecimal("1.999")) {
			t.Errorf("%s: costs %v, want 0.30 USD and 1.999 EUR", d.name, s.Costs)
		}
		if s.Records != 7 || s.RejectedRecords != 96 || len(s.ReasonCounts) != 48 {
			t.Errorf("%s: %d delivered, %d rejected, %d reasons; want 7, 96, 48", d.name, s.Records, s.RejectedRecords, len(s.ReasonCounts))
		}
		for i := range 48 {
			if r := fmt.Sprintf("SkuId bad-%02d is unknown here", i); s.ReasonCounts[r] != 2 {
				t.Errorf("%s: %q counts %d, want 2", d.name, r, s.ReasonCounts[r])
			}
		}
		want := 0
		if d.encoded {
			want = 1
		}
		if s.Warnings != want {
			t.Errorf("%s: %d warnings, want %d", d.name, s.Warnings, want)
		}
	}
}
