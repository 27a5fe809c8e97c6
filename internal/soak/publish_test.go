//go:build soak

package soak

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/usagefleet/usagefleet/internal/broker"
	"github.com/usagefleet/usagefleet/internal/usagegen"
	"github.com/usagefleet/usagefleet/messages"
	"github.com/usagefleet/usagefleet/producer"
)

// The time ranges of the published data: each unit holds one currency.
var (
	usdStart  = time.Date(2024, 8, 1, 0, 0, 0, 0, time.UTC) // appends in USD, 20 days
	usdHours  = 20 * 24
	eurStart  = time.Date(2024, 9, 1, 0, 0, 0, 0, time.UTC) // appends in EUR, 5 days
	eurHours  = 5 * 24
	snapStart = time.Date(2024, 10, 1, 0, 0, 0, 0, time.UTC) // team-a's snapshot period, 6 hours in USD
	snapHours = 6
)

// snapPeriod is the period team-a re-publishes as snapshots.
var snapPeriod = messages.Period{Start: snapStart, End: snapStart.Add(time.Duration(snapHours) * time.Hour)}

func mustJS(t *testing.T, nc *nats.Conn) jetstream.JetStream {
	t.Helper()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// publishers are the well-behaved producers: team-a and team-b, each on
// its own connection to the cluster and signing with its own key.
type publishers struct {
	t    *testing.T
	ctx  context.Context
	prod map[string]*producer.Producer
	exp  *expect

	mu      sync.Mutex
	n       map[string]int // batches per source
	retried int
	probes  sync.WaitGroup
	probeN  int
}

func newPublishers(t *testing.T, ctx context.Context, urls string, kpA, kpB nkeys.KeyPair, exp *expect) *publishers {
	p := &publishers{t: t, ctx: ctx, prod: map[string]*producer.Producer{}, exp: exp, n: map[string]int{}}
	for src, kp := range map[string]nkeys.KeyPair{"team-a": kpA, "team-b": kpB} {
		nc, err := broker.Connect(ctx, broker.Options{URL: urls}, "soak-"+src)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		pr, err := producer.New(nc, producer.Options{SigningKey: kp})
		if err != nil {
			t.Fatal(err)
		}
		p.prod[src] = pr
	}
	return p
}

func (p *publishers) retries() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.retried
}

// soakClock maps the soak's wall time onto the data's hours: as the soak
// goes on, "now" moves from the first hour of a range to its last.
var soakClock struct {
	began time.Time
	span  time.Duration
}

// records makes n records of src for a batch: in USD within usdStart's
// range, or in EUR within eurStart's, each with a soak_id tag that names
// it. A batch covers 3 hours, as a service that publishes what it metered
// lately does: the hours at the soak's "now" (soakClock), or, for 1 batch
// in 8, late data for earlier hours. So each batch dirties a few units
// and units are rewritten many times, recent ones most.
func records(src, id string, n int, seed uint64, eur bool) []messages.UsageRecord {
	start, hours := usdStart, usdHours
	if eur {
		start, hours = eurStart, eurHours
	}
	const window = 3
	f := 0.0
	if soakClock.span > 0 {
		f = min(1, float64(time.Since(soakClock.began))/float64(soakClock.span))
	}
	now := uint64(f * float64(hours-window))
	at := start.Add(time.Duration(now) * time.Hour)
	if seed%8 == 5 { // late data
		at = start.Add(time.Duration((seed*7919)%(now+1)) * time.Hour)
	}
	o := usagegen.Options{Seed: seed, Start: at, Hours: window, Account: "acct-" + src}
	recs := usagegen.Generate(n, o)
	for i := range recs {
		if eur {
			recs[i].BillingCurrency = "EUR"
		}
		recs[i].Tags["soak_id"] = fmt.Sprintf("%s/%s/%d", src, id, i)
	}
	return recs
}

// publish publishes b until it is stored: a failed publish (a node lost
// for longer than the producer's retries) is published again with the
// same batch id, which JetStream and the batch claim make idempotent.
// Only what is stored counts in the expectation.
func (p *publishers) publish(b *messages.Batch) (*producer.Result, error) {
	for {
		res, err := p.prod[b.Source].Publish(p.ctx, b)
		if err == nil {
			p.exp.add(b, res)
			return res, nil
		}
		if errors.Is(err, producer.ErrBatchConflict) || p.ctx.Err() != nil {
			return nil, err
		}
		p.t.Logf("publish %s/%s failed, publishing it again: %v", b.Source, b.ID, err)
		p.mu.Lock()
		p.retried++
		p.mu.Unlock()
		time.Sleep(time.Second)
	}
}

// run publishes src's batches every every until ctx ends: 50 records
// each, every 10th in EUR; team-a also re-publishes its snapshot period
// every 40th batch (a new generation with other records).
func (p *publishers) run(ctx context.Context, src string, every time.Duration) {
	for i := 0; ; i++ {
		select {
		case <-ctx.Done():
			return
		case <-time.After(every):
		}
		p.mu.Lock()
		p.n[src]++
		n := p.n[src]
		p.mu.Unlock()
		id := fmt.Sprintf("%s-%d", src[len(src)-1:], n)
		seed := uint64(n)
		if src == "team-b" {
			seed += 1 << 32
		}
		b := &messages.Batch{ID: id, Feed: feed, Source: src, Records: records(src, id, 50, seed, n%10 == 0)}
		if src == "team-a" && n%40 == 1 {
			gen := time.Now().UnixNano()
			b = &messages.Batch{ID: fmt.Sprintf("snap-%d", gen), Feed: feed, Source: src, Snapshot: &messages.Snapshot{Period: snapPeriod, Generation: gen}}
			recs := usagegen.Generate(300, usagegen.Options{Seed: seed + 1<<40, Start: snapStart, Hours: snapHours, Account: "acct-" + src})
			for i := range recs {
				recs[i].Tags["soak_id"] = fmt.Sprintf("%s/%s/%d", src, b.ID, i)
			}
			b.Records = recs
		}
		if _, err := p.publish(b); err != nil && ctx.Err() == nil {
			p.t.Errorf("publish %s/%s: %v", src, b.ID, err)
		}
	}
}

// probe publishes a small batch of team-a at once and reports, in the
// background, how long after since every destination acked it.
func (p *publishers) probe(what string, done func(time.Duration, error), since time.Time) {
	p.mu.Lock()
	p.probeN++
	id := fmt.Sprintf("probe-%d-%s", p.probeN, what)
	p.mu.Unlock()
	p.probes.Add(1)
	go func() {
		defer p.probes.Done()
		b := &messages.Batch{ID: id, Feed: feed, Source: "team-a", Records: records("team-a", id, 20, uint64(1<<48+p.probeN), false)}
		res, err := p.publish(b)
		if err != nil {
			done(0, err)
			return
		}
		ctx, cancel := context.WithTimeout(p.ctx, 5*time.Minute)
		defer cancel()
		if _, err := p.prod["team-a"].Wait(ctx, res, allDests, nil); err != nil {
			p.t.Logf("probe %s not acked: %v", id, err)
			done(0, err)
			return
		}
		d := time.Since(since)
		p.t.Logf("probe %s acked by every destination %s after the kill", id, d.Round(100*time.Millisecond))
		done(d, nil)
	}()
}

func (p *publishers) batchesOf(src string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.n[src]
}

func (p *publishers) waitProbes() { p.probes.Wait() }
