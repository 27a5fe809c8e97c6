package workers

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os"
	"sort"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"

	"github.com/usagefleet/usagefleet/messages"
)

// Pool consumes the USAGE stream for one destination and delivers it. Any
// number of pools (in any number of processes) may share a destination:
// they share its durable consumer, and unit leases keep one uploader per
// unit (or per connection) at a time.
type Pool struct {
	dest   Destination
	sem    Semantics
	opts   Options
	log    *slog.Logger
	nc     *nats.Conn
	js     jetstream.JetStream
	usage  jetstream.Stream
	leases leaseStore
	units  jetstream.KeyValue

	bucketTTL  time.Duration // the lease bucket's TTL (openLeases)
	renewEvery time.Duration // lease renewal interval; 0: a quarter of the TTL
	http       *http.Client
	gate       gate
	deadHealth deadHealth // whether dead letters can be stored (deadletter.go)
	feeds      map[string]bool

	mu      sync.Mutex
	pending map[uint64]*pendingMsg // by stream sequence
	dirty   map[string]*unitState  // Replace: by unit key
	busy    map[string]bool        // Replace: lease keys with a job running here
	wake    chan struct{}

	stats Stats

	// caughtUp: the newest message delivered was the last one stored
	// for the destination (its delivery said nothing was pending).
	caughtUp bool

	metrics            *instruments
	cons               jetstream.Consumer
	consumerPending    uint64
	consumerAckPending uint64
}

// Stats are counters of one pool, for tests, the demo and metrics.
type Stats struct {
	Received      int64 // messages taken from the consumer
	Acked         int64 // messages acked after delivery
	Jobs          int64 // jobs that succeeded
	JobFailures   int64 // job tries that failed (each is retried)
	LeaseConflict int64 // jobs deferred: another worker held the lease
	DeadLetters   int64 // dead-letter messages published
	Rejected      int64 // records rejected
	AckEvents     int64 // ack events published
	Requests      int64 // HTTP requests sent (including resends)
	Resends       int64 // requests re-sent after no response
	BodyBytes     int64 // request body bytes sent
}

// NewPool builds a pool for dest. The streams and buckets must exist
// (broker.EnsureStreams).
func NewPool(nc *nats.Conn, dest Destination, opts Options) (*Pool, error) {
	if !messages.ValidToken(dest.Name()) {
		return nil, fmt.Errorf("destination name %q: want 1-64 of A-Z a-z 0-9 _ -", dest.Name())
	}
	if len(opts.Feeds) == 0 {
		return nil, fmt.Errorf("destination %s: no feeds", dest.Name())
	}
	opts.defaults(dest.Semantics())
	if opts.WorkerID == "" {
		host, _ := os.Hostname()
		opts.WorkerID = fmt.Sprintf("%s-%d-%08x", host, os.Getpid(), rand.Uint32())
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	p := &Pool{
		dest: dest, sem: dest.Semantics(), opts: opts, nc: nc, js: js,
		log:     opts.Logger.With("destination", dest.Name()),
		http:    &http.Client{Timeout: opts.HTTPTimeout},
		feeds:   map[string]bool{},
		pending: map[uint64]*pendingMsg{},
		dirty:   map[string]*unitState{},
		busy:    map[string]bool{},
		wake:    make(chan struct{}, 1),
	}
	for _, f := range opts.Feeds {
		if !messages.ValidToken(f) {
			return nil, fmt.Errorf("destination %s: feed %q: want 1-64 of A-Z a-z 0-9 _ -", dest.Name(), f)
		}
		p.feeds[f] = true
	}
	p.http.Transport = leaseTransport{next: otelhttp.NewTransport(http.DefaultTransport), p: p}
	p.initMetrics()
	return p, nil
}

// Stats returns a snapshot of the counters.
func (p *Pool) Stats() Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stats
}

// Paused reports whether the destination is paused (credentials refused, or a status configured to pause on)
// and why.
func (p *Pool) Paused() (bool, string) {
	paused, reason, _ := p.gate.state()
	return paused, reason
}

// CooldownUntil is when the destination's cooldown (after a 429 or 503
// with Retry-After, or repeated failures) ends; in the past when none.
func (p *Pool) CooldownUntil() time.Time {
	_, _, until := p.gate.state()
	return until
}

// ConsumerName is the durable consumer of a destination.
func ConsumerName(dest string) string { return "uf_" + dest }

// Run consumes and delivers until ctx ends, then drains: in-flight jobs get
// DrainTimeout to finish, and every message not yet delivered is handed
// back (nak with a delay) for another worker.
func (p *Pool) Run(ctx context.Context) error {
	cons, err := p.start(ctx)
	if err != nil {
		return err
	}
	p.cons = cons
	defer p.metrics.reg.Unregister()
	p.log.Info("pool started", "worker", p.opts.WorkerID, "feeds", p.opts.Feeds, "semantics", map[Semantics]string{Append: "append", Replace: "replace"}[p.sem])

	// Jobs run on their own context: on shutdown they get DrainTimeout.
	jobCtx, cancelJobs := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelJobs()
	var wg sync.WaitGroup
	work := make(chan func(context.Context), p.opts.Workers)
	for i := 0; i < p.opts.Workers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for f := range work {
				f(jobCtx)
			}
		}()
	}
	var loops sync.WaitGroup
	loops.Add(1)
	go func() { defer loops.Done(); p.heartbeats(ctx) }()
	if p.sem == Replace {
		loops.Add(1)
		go func() { defer loops.Done(); p.schedule(ctx, work) }()
	}
	ferr := p.fetch(ctx, cons, work)
	loops.Wait()
	close(work)
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(p.opts.DrainTimeout):
		p.log.Warn("drain timeout: cancelling in-flight jobs")
		cancelJobs()
		<-done
	}
	p.handBack()
	if ferr != nil && ctx.Err() == nil {
		return ferr
	}
	return nil
}

// Between the tries of a pool's start while JetStream does not answer: a
// wait doubling from startRetryMin to startRetryMax.
const (
	startRetryMin = 250 * time.Millisecond
	startRetryMax = 5 * time.Second
)

// start looks up the stream and buckets and creates (or updates) the
// destination's consumer. JetStream that does not answer (an API request
// timed out, a cluster without a meta leader or quorum: a fleet starting
// beside its servers, a rollout, a failover) is waited for, with a
// warning each try, until ctx ends: a worker that exited instead was
// restarted only after its orchestrator's crash-loop backoff. Any other
// error (a stream missing, a permission refused) ends it at once.
func (p *Pool) start(ctx context.Context) (jetstream.Consumer, error) {
	wait := startRetryMin
	for {
		cons, err := p.setup(ctx)
		if err == nil || ctx.Err() != nil || !jetStreamUnavailable(err) {
			return cons, err
		}
		p.log.Warn("JetStream does not answer: the pool starts once it does", "err", err, "retry_in", wait)
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(wait):
		}
		wait = min(2*wait, startRetryMax)
	}
}

// jetStreamUnavailable: err says JetStream did not answer in time, or
// answered that it cannot serve now (503), not that what was asked for is
// wrong.
func jetStreamUnavailable(err error) bool {
	var apiErr *jetstream.APIError
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, nats.ErrTimeout):
		return true
	case errors.As(err, &apiErr):
		return apiErr.Code == 503
	}
	return false
}

// setup is one try of start.
func (p *Pool) setup(ctx context.Context) (jetstream.Consumer, error) {
	var err error
	if p.usage, err = p.js.Stream(ctx, messages.StreamUsage); err != nil {
		return nil, fmt.Errorf("stream %s: %w", messages.StreamUsage, err)
	}
	leases, err := p.js.KeyValue(ctx, messages.BucketLeases)
	if err != nil {
		return nil, fmt.Errorf("bucket %s: %w", messages.BucketLeases, err)
	}
	if err := p.openLeases(ctx, leases); err != nil {
		return nil, err
	}
	if p.units, err = p.js.KeyValue(ctx, messages.BucketUnits); err != nil {
		return nil, fmt.Errorf("bucket %s: %w", messages.BucketUnits, err)
	}
	filters := make([]string, 0, len(p.opts.Feeds))
	for _, f := range p.opts.Feeds {
		filters = append(filters, messages.FeedFilter(f))
	}
	sort.Strings(filters)
	cons, err := p.usage.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{
		Durable:           ConsumerName(p.dest.Name()),
		Description:       "usagefleet destination " + p.dest.Name(),
		FilterSubjects:    filters,
		AckPolicy:         jetstream.AckExplicitPolicy,
		AckWait:           p.opts.AckWait,
		MaxDeliver:        -1, // billing data is never dropped for redelivery count
		MaxAckPending:     p.opts.MaxAckPending,
		HeadersOnly:       p.sem == Replace,
		DeliverPolicy:     jetstream.DeliverAllPolicy,
		InactiveThreshold: p.opts.ConsumerInactive,
	})
	if err != nil {
		return nil, fmt.Errorf("consumer %s: %w", ConsumerName(p.dest.Name()), err)
	}
	return cons, nil
}

// failed classifies a delivery failure, logs it and updates the gate. It
// returns the delay before the next try, or -1 if the content was refused.
func (p *Pool) failed(log *slog.Logger, derr error, job *job) time.Duration {
	p.mu.Lock()
	p.stats.JobFailures++
	p.mu.Unlock()
	if errors.Is(derr, context.Canceled) {
		return 0
	}
	p.metrics.add(context.Background(), p.metrics.retries, 1)
	var de *Error
	if !errors.As(derr, &de) {
		de = &Error{Class: ClassTransient, Err: derr}
	}
	switch de.Class {
	case ClassAuth:
		reason := de.Error()
		p.gate.pause(reason, p.opts.PauseProbe)
		what, fix := "credentials refused", "Fix the credentials"
		if de.Status != 0 && de.Status != http.StatusUnauthorized && de.Status != http.StatusForbidden {
			// A status the destination is configured to pause on (a
			// webhook's pause_statuses): say which, not "credentials".
			what, fix = "the destination answered "+itoa(de.Status)+" "+http.StatusText(de.Status), "Fix the receiver"
		}
		log.Error("DESTINATION PAUSED: "+what+"; data waits in the stream, nothing is dead-lettered. "+fix+"; the pool probes again.", "reason", reason, "probe_in", p.opts.PauseProbe)
		return p.opts.PauseProbe
	case ClassReject, ClassTooLarge:
		log.Error("destination refused the content: dead-lettering the units", "reason", de.Error())
		return -1
	default:
		d := p.gate.transient(de.RetryAfter, p.opts.Retry)
		// The job's logger carries the attempt already.
		log.Warn("delivery failed, will retry", "reason", de.Error(), "retry_in", d)
		return d
	}
}
