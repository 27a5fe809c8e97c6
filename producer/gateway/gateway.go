package gateway

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/trace"

	"github.com/usagefleet/usagefleet/messages"
	"github.com/usagefleet/usagefleet/producer"
)

// Gateway is the HTTP ingest service. It holds no state of its own: every
// replica publishes to the same JetStream and reads the same streams.
type Gateway struct {
	cfg    *Config
	nc     *nats.Conn
	js     jetstream.JetStream
	stream jetstream.Stream
	// replies: the reply subscription of the batched direct gets.
	replies *replyMux
	prod    *producer.Producer
	keys    keyring
	log     *slog.Logger
	linger  time.Duration
	// pipeline: a single event's group closes at once while fewer groups
	// of its (source, feed) are being stored (0: it always lingers).
	pipeline int
	timeout  time.Duration
	m        *metrics

	lingers  sync.Map // lingerKey → *lingerer
	flushWG  sync.WaitGroup
	storeq   chan func() // to an idle storer goroutine (goStore)
	draining atomic.Bool
	slots    chan struct{}

	flightMu sync.Mutex
	flights  map[string]*flight // event keys being stored by this replica
}

type flight struct {
	done chan struct{}
	out  outcome
}

// New builds a gateway on nc (its streams must exist; the GATEWAY stream is
// created or updated here with streamReplicas replicas).
func New(ctx context.Context, cfg *Config, nc *nats.Conn, log *slog.Logger) (*Gateway, error) {
	if log == nil {
		log = slog.Default()
	}
	timeout := time.Duration(cfg.Limits.RequestTimeout)
	if timeout <= 0 {
		timeout = DefaultRequestTimeout
	}
	linger := time.Duration(cfg.Linger.Delay)
	if linger == 0 {
		linger = DefaultLinger
	}
	// Publish retries stop well within the request timeout, so a caller
	// gets 503 and retries rather than a hung request.
	prod, err := producer.New(nc, producer.Options{Logger: log, RetryMaxElapsed: min(timeout/2, 5*time.Second)})
	if err != nil {
		return nil, err
	}
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(4096))
	if err != nil {
		return nil, err
	}
	st, err := ensureStream(ctx, js, cfg.Streams.Replicas, time.Duration(cfg.DedupWindow))
	if err != nil {
		return nil, err
	}
	replies, err := newReplyMux(nc)
	if err != nil {
		return nil, err
	}
	return &Gateway{
		cfg: cfg, nc: nc, js: js, stream: st, prod: prod, keys: newKeyring(cfg.Keys), log: log, replies: replies,
		linger: linger, pipeline: 1, timeout: timeout, m: newMetrics(),
		slots:   make(chan struct{}, cfg.Limits.MaxInFlight),
		storeq:  make(chan func()),
		flights: map[string]*flight{},
	}, nil
}

// Drain marks the gateway not ready (so a load balancer stops sending)
// and waits until every open group has been stored and answered. Call it
// after http.Server.Shutdown has let the in-flight requests finish.
func (g *Gateway) Drain() {
	g.draining.Store(true)
	g.lingers.Range(func(_, v any) bool {
		v.(*lingerer).flush()
		return true
	})
	g.flushWG.Wait()
}

// Ready reports whether the gateway can store: connected, not draining.
func (g *Gateway) Ready(ctx context.Context) error {
	if g.draining.Load() {
		return errors.New("draining")
	}
	if !g.nc.IsConnected() {
		return fmt.Errorf("NATS is %s", g.nc.Status())
	}
	return nil
}

const instrumentation = "github.com/usagefleet/usagefleet/producer/gateway"

func tracer() trace.Tracer { return otel.Tracer(instrumentation) }

// keyBatchID is the batch id of an Idempotency-Key: the same key from the
// same source is the same batch, so its parts have the same message ids
// (producer.Split numbers parts deterministically) and JetStream stores
// them once. Any replica computes the same id.
func keyBatchID(source, key string) string {
	h := sha256.Sum256([]byte(source + "\x00" + key))
	return "k-" + hex.EncodeToString(h[:16])
}

// costByCurrency is the exact BilledCost per BillingCurrency.
func costByCurrency(recs []messages.UsageRecord) map[string]messages.Decimal {
	sums := map[string]*messages.Sum{}
	for i := range recs {
		r := &recs[i]
		if !r.BilledCost.IsSet() {
			continue
		}
		s := sums[r.BillingCurrency]
		if s == nil {
			s = &messages.Sum{}
			sums[r.BillingCurrency] = s
		}
		s.Add(r.BilledCost)
	}
	out := make(map[string]messages.Decimal, len(sums))
	for c, s := range sums {
		out[c] = s.Decimal()
	}
	return out
}

// publish stores a batch and its record; it returns the record. Its
// records were validated as they were decoded (recordDecoder.record), so
// producer.Publish checks only the batch's own fields; a batch id that is
// a nuid (no Idempotency-Key) needs no claim against reuse.
func (g *Gateway) publish(ctx context.Context, b *messages.Batch, claims []*event, fingerprint string, fresh bool) (*batchRecord, error) {
	res, err := g.prod.PublishWith(ctx, b, producer.PublishOptions{RecordsValidated: true, FreshID: fresh})
	if err != nil {
		return nil, err
	}
	br := recordOf(res)
	br.CostByCurrency = costByCurrency(b.Records)
	br.BodySHA256 = fingerprint
	if err := g.publishMeta(ctx, br, claims); err != nil {
		// The parts are stored: the request succeeded. Without its claims an
		// event retried later could be stored again; without the record
		// the batch's status is unknown.
		g.log.Warn("batch stored, but its gateway record or event claims were not", "batch", br.BatchID, "err", err)
	}
	if res.Duplicate() {
		g.m.replays.Add(ctx, 1)
	}
	return br, nil
}

// storeEvents stores the events that are new and says what became of each.
func (g *Gateway) storeEvents(ctx context.Context, source, feed string, evs []*event) []outcome {
	outs := make([]outcome, len(evs))
	// Repeated within the request, or in flight in another request here.
	first := make(map[string]int, len(evs))
	repeat := make([]int, len(evs)) // index+1 of the same event earlier in evs
	var mine []int
	var waits []struct {
		i int
		f *flight
	}
	g.flightMu.Lock()
	for i, ev := range evs {
		if j, ok := first[ev.key]; ok {
			repeat[i] = j + 1
			continue
		}
		first[ev.key] = i
		if f, ok := g.flights[ev.key]; ok {
			waits = append(waits, struct {
				i int
				f *flight
			}{i, f})
			continue
		}
		f := &flight{done: make(chan struct{})}
		g.flights[ev.key] = f
		mine = append(mine, i)
	}
	g.flightMu.Unlock()

	g.storeNew(ctx, source, feed, evs, mine, outs)

	g.flightMu.Lock()
	for _, i := range mine {
		f := g.flights[evs[i].key]
		f.out = outs[i]
		delete(g.flights, evs[i].key)
		close(f.done)
	}
	g.flightMu.Unlock()
	for _, w := range waits {
		select {
		case <-w.f.done:
			outs[w.i] = w.f.out
			if w.f.out.err == nil {
				outs[w.i].status = "duplicate"
			}
		case <-ctx.Done():
			outs[w.i].err = publishProblem(ctx.Err())
		}
	}
	for i, j := range repeat {
		if j > 0 {
			outs[i] = outs[j-1]
			if outs[i].err == nil {
				outs[i].status = "duplicate"
			}
		}
	}
	return outs
}

// storeNew: the claim check, then one batch of the events not seen before.
func (g *Gateway) storeNew(ctx context.Context, source, feed string, evs []*event, idx []int, outs []outcome) {
	if len(idx) == 0 {
		return
	}
	sub := make([]*event, len(idx))
	for k, i := range idx {
		sub[k] = evs[i]
	}
	seen, err := g.claimed(ctx, sub)
	if err != nil {
		p := publishProblem(err)
		for _, i := range idx {
			outs[i].err = p
		}
		return
	}
	b := &messages.Batch{ID: "e-" + nuid.Next(), Source: source, Feed: feed, Records: make([]messages.UsageRecord, 0, len(idx))}
	fresh := make([]*event, 0, len(idx))
	freshIdx := make([]int, 0, len(idx))
	for k, i := range idx {
		if seen[k] != "" {
			outs[i] = outcome{status: "duplicate", batchID: seen[k]}
			continue
		}
		b.Records = append(b.Records, evs[i].rec)
		fresh = append(fresh, evs[i])
		freshIdx = append(freshIdx, i)
	}
	if len(fresh) == 0 {
		return
	}
	_, err = g.publish(ctx, b, fresh, "", true)
	var p *Problem
	if err != nil {
		var ve messages.ValidationError
		if errors.As(err, &ve) {
			p = invalid("The batch is invalid", ProblemError{Detail: ve.Error()})
		} else {
			p = publishProblem(err)
		}
	}
	for _, i := range freshIdx {
		if p != nil {
			outs[i].err = p
		} else {
			outs[i] = outcome{status: "stored", batchID: b.ID}
		}
	}
	if p == nil {
		g.m.records.Add(ctx, int64(len(fresh)))
	}
}

func nuidNext() string { return nuid.Next() }
