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
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/trace"

	"github.com/usagefleet/usagefleet/messages"
)

// Pool consumes the USAGE stream for one destination and delivers it. Any
// number of pools (in any number of processes) may share a destination:
// they share its durable consumer, and unit leases keep one uploader per
// unit (or per connection) at a time.
type Pool struct {
	dest  Destination
	sem   Semantics
	opts  Options
	log   *slog.Logger
	nc    *nats.Conn
	js    jetstream.JetStream
	usage jetstream.Stream
	lease jetstream.KeyValue
	units jetstream.KeyValue
	http  *http.Client
	gate  gate
	feeds map[string]bool

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

// acker acks one delivered message through its reply subject with the
// JetStream ack protocol (+ACK, -NAK, +WPI), as jetstream.Msg does, and
// holds nothing else of the message: a pool holds up to max_ack_pending of
// them, and a delivery's parsed headers were ~1.8 KB of each.
type acker struct {
	nc    *nats.Conn
	reply string
}

func newAcker(nc *nats.Conn, m jetstream.Msg) acker { return acker{nc: nc, reply: m.Reply()} }

func (a acker) Ack() error        { return a.nc.Publish(a.reply, []byte("+ACK")) }
func (a acker) InProgress() error { return a.nc.Publish(a.reply, []byte("+WPI")) }
func (a acker) NakWithDelay(d time.Duration) error {
	return a.nc.Publish(a.reply, fmt.Appendf(nil, "-NAK {\"delay\": %d}", d.Nanoseconds()))
}

type pendingMsg struct {
	msg     acker
	size    int               // stored payload bytes (Nats-Msg-Size of a headers-only delivery), 0 if unknown
	trace   trace.SpanContext // the producer's, from the headers
	seq     uint64
	meta    messages.PartMeta
	part    *messages.Part // Append: decoded records
	units   []string       // Replace: units still to upload (one or two)
	records int            // delivered
	reject  int
	cost    messages.Sum
	reasons []string
	seen    bool // the part's records were seen by a rebuild (not superseded)
}

type unitState struct {
	unit       Unit
	lease      string
	first      time.Time
	last       time.Time
	lastStored time.Time // when the newest of its messages was stored (server time)
	records    int
	seqs       map[uint64]bool
	attempt    int
	notBefore  time.Time
	inJob      bool
}

// NewPool builds a pool for dest. The streams and buckets must exist
// (natsutil.EnsureStreams).
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
		http:    &http.Client{Timeout: opts.HTTPTimeout, Transport: otelhttp.NewTransport(http.DefaultTransport)},
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
	p.initMetrics()
	return p, nil
}

// Stats returns a snapshot of the counters.
func (p *Pool) Stats() Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stats
}

// Paused reports whether the destination is paused (credentials refused)
// and why.
func (p *Pool) Paused() (bool, string) {
	paused, reason, _ := p.gate.state()
	return paused, reason
}

// ConsumerName is the durable consumer of a destination.
func ConsumerName(dest string) string { return "uf_" + dest }

// Run consumes and delivers until ctx ends, then drains: in-flight jobs get
// DrainTimeout to finish, and every message not yet delivered is handed
// back (nak with a delay) for another worker.
func (p *Pool) Run(ctx context.Context) error {
	var err error
	if p.usage, err = p.js.Stream(ctx, messages.StreamUsage); err != nil {
		return fmt.Errorf("stream %s: %w", messages.StreamUsage, err)
	}
	if p.lease, err = p.js.KeyValue(ctx, messages.BucketLeases); err != nil {
		return fmt.Errorf("bucket %s: %w", messages.BucketLeases, err)
	}
	if p.units, err = p.js.KeyValue(ctx, messages.BucketUnits); err != nil {
		return fmt.Errorf("bucket %s: %w", messages.BucketUnits, err)
	}
	filters := make([]string, 0, len(p.opts.Feeds))
	for _, f := range p.opts.Feeds {
		filters = append(filters, messages.FeedFilter(f))
	}
	sort.Strings(filters)
	cons, err := p.usage.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{
		Durable:        ConsumerName(p.dest.Name()),
		Description:    "usagefleet destination " + p.dest.Name(),
		FilterSubjects: filters,
		AckPolicy:      jetstream.AckExplicitPolicy,
		AckWait:        p.opts.AckWait,
		MaxDeliver:     -1, // billing data is never dropped for redelivery count
		MaxAckPending:  p.opts.MaxAckPending,
		HeadersOnly:    p.sem == Replace,
		DeliverPolicy:  jetstream.DeliverAllPolicy,
	})
	if err != nil {
		return fmt.Errorf("consumer %s: %w", ConsumerName(p.dest.Name()), err)
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

// fetch takes messages from the consumer until ctx ends.
func (p *Pool) fetch(ctx context.Context, cons jetstream.Consumer, work chan func(context.Context)) error {
	batch := 256
	if p.sem == Append {
		// Messages in the client's buffer get no heartbeats: keep it to
		// what the workers take next, so none outwaits its AckWait there.
		batch = min(p.opts.Workers*2, p.opts.MaxAckPending)
	}
	// A short pull expiry: when the node leading the consumer dies, the
	// next pull goes to the new leader within seconds instead of after
	// the default 30 s (measured in the 3-node cluster test: 28-53 s
	// stalls became ~7 s).
	it, err := cons.Messages(jetstream.PullMaxMessages(batch), jetstream.PullExpiry(5*time.Second))
	if err != nil {
		return err
	}
	// On shutdown the iterator drains: the messages already in its buffer
	// (pulled, so delivered to us, but not yet taken) come out of Next and
	// are handed back at once, instead of waiting out AckWait.
	stop := context.AfterFunc(ctx, it.Drain)
	defer stop()
	defer it.Stop()
	for {
		msg, err := it.Next()
		if err == nil && ctx.Err() != nil {
			_ = msg.NakWithDelay(time.Second)
			continue
		}
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, jetstream.ErrMsgIteratorClosed) {
				return nil
			}
			if errors.Is(err, nats.ErrConnectionClosed) || p.nc.IsClosed() {
				return fmt.Errorf("consumer: %w", nats.ErrConnectionClosed)
			}
			p.log.Warn("consumer", "err", err)
			time.Sleep(100 * time.Millisecond)
			continue
		}
		p.mu.Lock()
		p.stats.Received++
		p.mu.Unlock()
		if n, err := strconv.Atoi(msg.Headers().Get(messages.HdrRecords)); err == nil && n > 0 {
			p.metrics.add(ctx, p.metrics.recordsIn, int64(n))
		}
		if p.sem == Replace {
			p.mark(ctx, msg)
		} else {
			p.enqueueAppend(ctx, msg, work)
		}
	}
}

func (p *Pool) poke() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// heartbeats keeps every message we hold from being redelivered elsewhere.
func (p *Pool) heartbeats(ctx context.Context) {
	t := time.NewTicker(p.opts.AckWait / 3)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		p.mu.Lock()
		msgs := make([]acker, 0, len(p.pending))
		for _, pm := range p.pending {
			msgs = append(msgs, pm.msg)
		}
		p.mu.Unlock()
		for _, m := range msgs {
			if err := m.InProgress(); err != nil && ctx.Err() == nil {
				p.log.Debug("in-progress heartbeat", "err", err)
			}
		}
		if p.cons != nil {
			ictx, cancel := context.WithTimeout(ctx, 5*time.Second)
			if ci, err := p.cons.Info(ictx); err == nil {
				p.mu.Lock()
				p.consumerPending, p.consumerAckPending = ci.NumPending, uint64(ci.NumAckPending)
				p.mu.Unlock()
			}
			cancel()
		}
	}
}

// handBack naks what was not delivered, so another worker takes it now
// rather than after AckWait.
func (p *Pool) handBack() {
	p.mu.Lock()
	msgs := make([]acker, 0, len(p.pending))
	for seq, pm := range p.pending {
		msgs = append(msgs, pm.msg)
		delete(p.pending, seq)
	}
	p.dirty = map[string]*unitState{}
	p.mu.Unlock()
	for _, m := range msgs {
		_ = m.NakWithDelay(time.Second)
	}
	if len(msgs) > 0 {
		p.log.Info("handed back undelivered messages", "count", len(msgs))
	}
}

func seqOf(msg jetstream.Msg) uint64 {
	md, err := msg.Metadata()
	if err != nil {
		return 0
	}
	return md.Sequence.Stream
}

// mark records a Replace message: its units become dirty; it stays pending
// until they are uploaded by a rebuild that began after it was stored.
func (p *Pool) mark(ctx context.Context, msg jetstream.Msg) {
	var seq, numPending uint64
	var stored time.Time
	if md, err := msg.Metadata(); err == nil {
		seq, numPending, stored = md.Sequence.Stream, md.NumPending, md.Timestamp
	}
	meta, err := messages.ParseMeta(msg.Headers())
	if err == nil {
		var hour time.Time
		var feed string
		feed, hour, err = messages.ParseUsageSubject(msg.Subject())
		if err == nil && (feed != meta.Feed || !hour.Equal(meta.Hour)) {
			err = fmt.Errorf("headers say feed %q hour %s, subject says %q %s", meta.Feed, meta.Hour.Format(time.RFC3339), feed, hour.Format(time.RFC3339))
		}
	}
	if err != nil {
		p.deadMessage(ctx, msg, seq, meta, err)
		return
	}
	units := p.dest.Units(meta.Hour)
	now := time.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.caughtUp = numPending == 0
	if old, dup := p.pending[seq]; dup {
		old.msg = newAcker(p.nc, msg) // a redelivery of what we hold: keep the newest handle
		return
	}
	size, _ := strconv.Atoi(msg.Headers().Get(nats.MsgSize))
	pm := &pendingMsg{msg: newAcker(p.nc, msg), size: size, trace: traceOf(msg.Headers()), seq: seq, meta: meta, units: make([]string, 0, len(units))}
	p.pending[seq] = pm
	for _, u := range units {
		pm.units = append(pm.units, u.Key)
		us := p.dirty[u.Key]
		if us == nil {
			us = &unitState{unit: u, lease: p.dest.LeaseKey(u), first: now, seqs: map[uint64]bool{}}
			p.dirty[u.Key] = us
		}
		us.last = now
		if stored.After(us.lastStored) {
			us.lastStored = stored
		}
		us.records += meta.Records
		us.seqs[seq] = true
		if us.records >= p.opts.Flush.MaxRecords {
			p.poke()
		}
	}
	if len(units) == 0 {
		// A destination that maps an hour to no unit does not want it.
		delete(p.pending, seq)
		_ = msg.Ack()
	}
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
		log.Error("DESTINATION PAUSED: credentials refused; data waits in the stream, nothing is dead-lettered. Fix the credentials; the pool probes again.", "reason", reason, "probe_in", p.opts.PauseProbe)
		return p.opts.PauseProbe
	case ClassReject, ClassTooLarge:
		log.Error("destination refused the content: dead-lettering the units", "reason", de.Error())
		return -1
	default:
		d := p.gate.transient(de.RetryAfter, p.opts.Retry)
		log.Warn("delivery failed, will retry", "reason", de.Error(), "retry_in", d, "attempt", job.attempt)
		return d
	}
}
