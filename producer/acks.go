package producer

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/usagefleet/usagefleet/messages"
)

// AckFilter selects acks to follow. Empty fields match everything.
type AckFilter struct {
	Source      string
	Destination string
	Since       time.Time // zero: only acks stored from now on
}

// FollowAcks calls fn for every ack matching f, in stream order, until ctx
// ends or fn returns an error. An ack that cannot be decoded is reported to
// fn as an ack with Status "" and the decode error as Reason.
//
// A failure that a later try can fix (a node of the cluster lost, the
// meta leader being elected: "JetStream system temporarily unavailable")
// does not end it: it follows again, after the last ack it passed to fn,
// until ctx ends. `--wait` during a node loss failed on it (the soak test).
func (p *Producer) FollowAcks(ctx context.Context, f AckFilter, fn func(messages.Ack) error) error {
	src, dst := f.Source, f.Destination
	if src == "" {
		src = "*"
	}
	if dst == "" {
		dst = "*"
	}
	cfg := jetstream.OrderedConsumerConfig{FilterSubjects: []string{"acks." + src + "." + dst}}
	since := f.Since
	if since.IsZero() {
		cfg.DeliverPolicy = jetstream.DeliverNewPolicy
		since = time.Now() // a follow again must not skip what arrived since the call
	} else {
		cfg.DeliverPolicy = jetstream.DeliverByStartTimePolicy
		cfg.OptStartTime = &since
	}
	var last uint64 // the stream sequence of the last ack passed to fn
	bo := backoff.NewExponentialBackOff()
	bo.InitialInterval, bo.MaxInterval = 100*time.Millisecond, 2*time.Second
	for try := 0; ; try++ {
		switch {
		case last > 0:
			cfg.DeliverPolicy, cfg.OptStartTime, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, nil, last+1
		case try > 0:
			cfg.DeliverPolicy, cfg.OptStartTime = jetstream.DeliverByStartTimePolicy, &since
		}
		fromFn, err := p.followOnce(ctx, cfg, &last, fn)
		if err == nil || fromFn || ctx.Err() != nil || !retryable(err) {
			return err
		}
		wait := bo.NextBackOff()
		p.log.Warn("following acks failed, following again", "err", err, "retry_in", wait)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
	}
}

// followOnce follows the acks cfg selects, recording in last the stream
// sequence of each ack passed to fn. fromFn says the error is fn's.
func (p *Producer) followOnce(ctx context.Context, cfg jetstream.OrderedConsumerConfig, last *uint64, fn func(messages.Ack) error) (fromFn bool, err error) {
	// Bounded: without a JetStream quorum a request may go unanswered
	// until ctx ends, instead of failing and being tried again.
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	cons, err := p.js.OrderedConsumer(cctx, messages.StreamAcks, cfg)
	cancel()
	if err != nil {
		return false, fmt.Errorf("following acks: %w", err)
	}
	it, err := cons.Messages()
	if err != nil {
		return false, fmt.Errorf("following acks: %w", err)
	}
	stop := context.AfterFunc(ctx, it.Stop)
	defer stop()
	defer it.Stop()
	for {
		msg, err := it.Next()
		if err != nil {
			if ctx.Err() != nil {
				return false, ctx.Err()
			}
			if errors.Is(err, jetstream.ErrMsgIteratorClosed) {
				return false, ctx.Err()
			}
			return false, fmt.Errorf("following acks: %w", err)
		}
		a, derr := messages.DecodeAck(msg.Data())
		if derr != nil {
			a = messages.Ack{Reason: derr.Error()}
		}
		if md, err := msg.Metadata(); err == nil {
			*last = md.Sequence.Stream
		}
		if err := fn(a); err != nil {
			return true, err
		}
	}
}

// Summary is what happened to a batch at one destination.
type Summary struct {
	Destination     string
	Parts           int // parts expected
	Delivered       int
	Rejected        int
	Dead            int
	Superseded      int
	Records         int // delivered
	RejectedRecords int // refused, dead-lettered by the destination (in Rejected and Dead parts)
	// Cost is the exact cost delivered, over every currency: see Costs.
	Cost messages.Decimal
	// Costs is the exact BilledCost delivered per BillingCurrency ("" for
	// records without one). Acks of a worker that predates per-currency
	// costs add theirs under UnknownCurrency.
	Costs map[string]messages.Decimal
	// ReasonCounts counts the refused records per reason, every reason of
	// every part (within the bounds of messages.ReasonCounts, past which
	// the rest are counted under one "(N more reasons)" key): the counts
	// add up to RejectedRecords.
	ReasonCounts map[string]int
	// Reasons is ReasonCounts as lines, most records first: "3 records:
	// the reason".
	Reasons []string
	// Warnings counts delivered records whose labels the destination
	// repaired or dropped (messages.Ack.Warnings).
	Warnings int
}

// UnknownCurrency is the key of Summary.Costs for cost from acks that carry
// no per-currency costs (a worker that predates them).
const UnknownCurrency = "*"

// summing is a Summary being added up from acks.
type summing struct {
	cost    messages.CurrencySums
	reasons messages.ReasonCounts
}

// add counts one ack of the batch into s.
func (t *summing) add(s *Summary, a messages.Ack) {
	switch a.Status {
	case messages.AckDelivered:
		s.Delivered++
	case messages.AckRejected:
		s.Rejected++
	case messages.AckDead:
		s.Dead++
	case messages.AckSuperseded:
		s.Superseded++
	}
	s.Records += a.Records
	s.RejectedRecords += a.Rejected
	s.Warnings += a.Warnings
	if a.Costs != nil {
		t.cost.AddAll(a.Costs)
	} else if a.Cost.IsSet() && !a.Cost.Big().IsZero() {
		t.cost.Add(UnknownCurrency, a.Cost)
	}
	switch {
	case a.Reasons != nil:
		t.reasons.AddAll(a.Reasons)
	case a.Reason != "" && a.Rejected > 0:
		t.reasons.Add(a.Reason, a.Rejected) // an older worker's ack
	}
}

// finish writes the sums into s.
func (t *summing) finish(s *Summary) {
	s.Cost = t.cost.Total()
	s.Costs = t.cost.Decimals()
	s.ReasonCounts = t.reasons.Map()
	s.Reasons = nil
	for _, rc := range t.reasons.Sorted() {
		s.Reasons = append(s.Reasons, fmt.Sprintf("%s: %s", plural(rc.Count, "record"), rc.Reason))
	}
}

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return fmt.Sprintf("%d %ss", n, word)
}

// Done reports whether every part has an outcome.
func (s *Summary) Done() bool { return s.Delivered+s.Rejected+s.Dead+s.Superseded >= s.Parts }

// Progress counts part outcomes over all destinations waited for.
type Progress struct {
	Done, Total int
}

// Wait follows the ack stream until every part of res has an outcome at
// each destination (none: the destinations consuming res.Feed). progress,
// if not nil, is called after each new outcome.
func (p *Producer) Wait(ctx context.Context, res *Result, destinations []string, progress func(Progress)) (map[string]*Summary, error) {
	if len(destinations) == 0 {
		ds, err := p.Destinations(ctx, res.Feed)
		if err != nil {
			return nil, err
		}
		if len(ds) == 0 {
			return nil, fmt.Errorf("no destination consumes feed %q: name destinations to wait for", res.Feed)
		}
		destinations = ds
	}
	out := map[string]*Summary{}
	seen := map[string]map[int]bool{}
	sums := map[string]*summing{}
	for _, d := range destinations {
		out[d] = &Summary{Destination: d, Parts: len(res.Parts)}
		seen[d] = map[int]bool{}
		sums[d] = &summing{}
	}
	total := len(res.Parts) * len(destinations)
	done := 0
	if total == 0 {
		return out, nil
	}
	// Acks of a repeated publish were stored when the batch was first
	// delivered: look back over the de-duplication window then.
	since := res.Published.Add(-5 * time.Second)
	if res.Duplicate() || anyDuplicate(res) {
		since = res.Published.Add(-48 * time.Hour)
	}
	errDone := errors.New("done")
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	err := p.FollowAcks(wctx, AckFilter{Source: res.Source, Since: since}, func(a messages.Ack) error {
		if a.BatchID != res.BatchID {
			return nil
		}
		s, ok := out[a.Destination]
		if !ok || seen[a.Destination][a.Part] {
			return nil
		}
		seen[a.Destination][a.Part] = true
		sums[a.Destination].add(s, a)
		done++
		if progress != nil {
			progress(Progress{Done: done, Total: total})
		}
		if done >= total {
			return errDone
		}
		return nil
	})
	for d, s := range out {
		sums[d].finish(s)
	}
	if errors.Is(err, errDone) {
		return out, nil
	}
	return out, err
}

func anyDuplicate(res *Result) bool {
	for _, p := range res.Parts {
		if p.Duplicate {
			return true
		}
	}
	return false
}

// Destinations lists the destinations whose durable consumer on the USAGE
// stream serves feed (durable names "uf_<destination>").
func (p *Producer) Destinations(ctx context.Context, feed string) ([]string, error) {
	st, err := p.js.Stream(ctx, messages.StreamUsage)
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", messages.StreamUsage, err)
	}
	var out []string
	lister := st.ListConsumers(ctx)
	for ci := range lister.Info() {
		name := ci.Config.Durable
		if !strings.HasPrefix(name, "uf_") {
			continue
		}
		filters := ci.Config.FilterSubjects
		if ci.Config.FilterSubject != "" {
			filters = append(filters, ci.Config.FilterSubject)
		}
		for _, f := range filters {
			if f == messages.FeedFilter(feed) || f == "usage.>" || f == "usage.*.*.*.*.*" {
				out = append(out, strings.TrimPrefix(name, "uf_"))
				break
			}
		}
	}
	if err := lister.Err(); err != nil {
		return nil, err
	}
	sort.Strings(out)
	return out, nil
}
