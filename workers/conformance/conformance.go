// Package conformance is the destination conformance suite: every replace
// destination runs it against its sandbox emulator, through the real pool
// and an embedded nats-server. It checks the invariants of the design:
// each unit at the destination holds exactly the records of that unit in
// the stream, whatever was retried, redelivered, crashed or regenerated.
package conformance

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptrace"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/usagefleet/usagefleet/internal/broker/natstest"
	"github.com/usagefleet/usagefleet/internal/sandbox/fault"
	"github.com/usagefleet/usagefleet/internal/usagegen"
	"github.com/usagefleet/usagefleet/messages"
	"github.com/usagefleet/usagefleet/producer"
	"github.com/usagefleet/usagefleet/workers"
)

// Totals is what a unit holds: a record count and exact sums.
type Totals struct {
	Records  int
	Cost     messages.Decimal // sum of BilledCost
	Quantity messages.Decimal // sum of ConsumedQuantity
}

// Sandbox is one running emulator, fresh for each subtest.
type Sandbox interface {
	// Destination builds the destination under test, pointed at the sandbox.
	Destination(t *testing.T, name string) workers.Destination
	// Totals reads what the sandbox holds, by unit key.
	Totals(t *testing.T) map[string]Totals
	// UnitOf is the unit key (as Totals uses it) a record lands in.
	UnitOf(r *messages.UsageRecord) string
	// Faults is the sandbox's fault injector.
	Faults() *fault.Injector
	// SetAuth revokes (false) or restores (true) the destination's credentials.
	SetAuth(valid bool)
	// ConcurrencyViolations counts requests that overlapped where the API
	// forbids it (0 if the API has no such rule).
	ConcurrencyViolations() int
	// RequestLog lists every request to the upload endpoint the sandbox
	// received (faulted ones included), in any order.
	RequestLog() []Request
}

// Request is one request a sandbox received.
type Request struct {
	Start  time.Time // when it arrived
	Status int       // the status answered (0: the connection was dropped)
}

// Harness describes a destination to the suite.
type Harness struct {
	// Start starts a fresh sandbox (stopped at the end of the test).
	Start func(t *testing.T) Sandbox
	// Records makes n records for the destination (default usagegen); they
	// must be deliverable (nothing the destination would reject).
	Records func(n int, seed uint64, start time.Time, hours int) []messages.UsageRecord
	// Scale multiplies the record counts (default 1).
	Scale float64
}

// Run runs every conformance check as a subtest.
func Run(t *testing.T, h Harness) {
	if h.Records == nil {
		h.Records = func(n int, seed uint64, start time.Time, hours int) []messages.UsageRecord {
			return usagegen.Generate(n, usagegen.Options{Seed: seed, Start: start, Hours: hours})
		}
	}
	if h.Scale == 0 {
		h.Scale = 1
	}
	t.Run("ReplaceMatchesStream", func(t *testing.T) { testReplace(t, h) })
	t.Run("LateDataResendsUnitWhole", func(t *testing.T) { testLate(t, h) })
	t.Run("SnapshotGenerationReplaces", func(t *testing.T) { testSnapshot(t, h) })
	t.Run("AmbiguousApplyThen500", func(t *testing.T) { testAmbiguous(t, h) })
	t.Run("AuthPauseAndResume", func(t *testing.T) { testAuth(t, h) })
	t.Run("RetryAfterHoldsEveryUploader", func(t *testing.T) { testRetryAfter(t, h) })
	t.Run("WorkerCrashMidUpload", func(t *testing.T) { testCrash(t, h) })
}

// Env is a running fleet around one sandbox, exported so destination
// packages can write their own end-to-end checks with it.
type Env struct {
	T    *testing.T
	NS   *natstest.Server
	SB   Sandbox
	Prod *producer.Producer
	Feed string

	mu        sync.Mutex
	published []messages.UsageRecord // append records, in publish order
	snapshots map[string][]messages.UsageRecord
}

// NewEnv starts NATS and the sandbox.
func NewEnv(t *testing.T, h Harness) *Env {
	ns := natstest.Start(t)
	sb := h.Start(t)
	prod, err := producer.New(ns.Connect(t), producer.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return &Env{T: t, NS: ns, SB: sb, Prod: prod, Feed: "conf", snapshots: map[string][]messages.UsageRecord{}}
}

// FastOptions are pool options that keep tests quick.
func FastOptions() workers.Options {
	return workers.Options{
		Flush:      workers.FlushPolicy{MaxDelay: 400 * time.Millisecond, Quiet: 150 * time.Millisecond},
		Retry:      workers.RetryPolicy{Initial: 50 * time.Millisecond, Max: 400 * time.Millisecond},
		PauseProbe: 300 * time.Millisecond,
		AckWait:    3 * time.Second,
		LeaseTTL:   natstest.LeaseTTL,
	}
}

// Pool is a running pool.
type Pool struct {
	*workers.Pool
	NC   *nats.Conn
	Stop func() // a graceful stop: cancel Run and wait for its drain

	t      *testing.T
	cancel context.CancelFunc
	conns  *connCutter
	killed time.Time // when Kill was called
	cutAt  time.Time // when Kill had cut every connection
	sent   sendLog
}

// sendLog records when each request of a pool left its cooldown gate.
type sendLog struct {
	mu    sync.Mutex
	times []time.Time
}

func (l *sendLog) add(*http.Request) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.times = append(l.times, time.Now())
}

// Sent lists when each request the pool sent (each try) left the
// destination's cooldown gate: Job.Do's before-send hook, called just
// after the gate let the request go and before anything else (a lease
// renewal, the connection, the network, the server) can delay it. A
// destination that sets its own before-send hook hides its requests here.
func (p *Pool) Sent() []time.Time {
	p.sent.mu.Lock()
	defer p.sent.mu.Unlock()
	return append([]time.Time(nil), p.sent.times...)
}

// StartPool runs a pool on its own connection.
func (e *Env) StartPool(name string, opts workers.Options) *Pool {
	nc := e.NS.Connect(e.T)
	if opts.Feeds == nil {
		opts.Feeds = []string{e.Feed}
	}
	p, err := workers.NewPool(nc, e.SB.Destination(e.T, name), opts)
	if err != nil {
		e.T.Fatal(err)
	}
	// The pool's HTTP connections are seen through a client trace in its
	// context (the pool's jobs run on a context that keeps its values),
	// so Kill can cut them.
	cut := &connCutter{conns: map[net.Conn]bool{}}
	pool := &Pool{Pool: p, NC: nc, t: e.T, conns: cut}
	// The same context carries the before-send hook that Sent reads.
	ctx, cancel := context.WithCancel(httptrace.WithClientTrace(context.Background(), &httptrace.ClientTrace{GotConn: cut.gotConn}))
	ctx = workers.WithBeforeSend(ctx, pool.sent.add)
	pool.cancel = cancel
	done := make(chan struct{})
	var returned time.Time // when Run returned (read after done is closed)
	go func() {
		defer close(done)
		if err := p.Run(ctx); err != nil && !nc.IsClosed() {
			e.T.Errorf("pool: %v", err)
		}
		returned = time.Now()
	}()
	var once sync.Once
	pool.Stop = func() {
		once.Do(func() {
			cancel()
			<-done
			if d := returned.Sub(pool.killed); !pool.killed.IsZero() && d > 5*time.Second {
				e.T.Logf("the killed pool's Run returned only %s after the kill (a job of it was blocked on its closed NATS connection)", d.Round(time.Millisecond))
			}
		})
	}
	e.T.Cleanup(pool.Stop)
	return pool
}

// Kill kills the pool as a crash of its process would: its NATS connection
// closes at once (no drain, no acks, no lease released: its leases are left
// to expire), every HTTP connection it has open is cut and any it opens
// later is cut as it gets it (nothing it sends after this reaches the
// API), and its Run is cancelled. Kill does not wait for Run: what is left
// of the dead pool winds down on its own (the test's cleanup waits for it,
// and logs it if that took long).
func (p *Pool) Kill() {
	p.t.Helper()
	if p.conns.used() == 0 {
		p.t.Fatal("Kill: the pool's HTTP connections were never seen (its jobs no longer run on its context's values?): the harness cannot cut them")
	}
	p.killed = time.Now()
	p.NC.Close() // first: nothing the cut provokes may reach NATS
	p.conns.cut()
	p.cutAt = time.Now()
	p.cancel()
}

// SentBeforeCut counts the requests the killed pool sent (Sent) before
// Kill had cut its connections: no request of it can reach the API but
// those.
func (p *Pool) SentBeforeCut() int {
	n := 0
	for _, at := range p.Sent() {
		if at.Before(p.cutAt) {
			n++
		}
	}
	return n
}

// connCutter remembers a pool's HTTP connections and cuts them.
type connCutter struct {
	mu    sync.Mutex
	dead  bool
	seen  int
	conns map[net.Conn]bool
}

func (c *connCutter) gotConn(info httptrace.GotConnInfo) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.seen++
	if c.dead {
		_ = info.Conn.Close()
		return
	}
	c.conns[info.Conn] = true
}

func (c *connCutter) used() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.seen
}

func (c *connCutter) cut() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.dead = true
	for conn := range c.conns {
		_ = conn.Close()
	}
	c.conns = nil
}

// Publish publishes records as append batches of size per batch.
func (e *Env) Publish(id string, recs []messages.UsageRecord, per int) []*producer.Result {
	var out []*producer.Result
	for i := 0; i < len(recs); i += per {
		end := min(i+per, len(recs))
		res, err := e.Prod.Publish(context.Background(), &messages.Batch{ID: fmt.Sprintf("%s-%d", id, i), Feed: e.Feed, Source: "conf", Records: recs[i:end]})
		if err != nil {
			e.T.Fatal(err)
		}
		out = append(out, res)
	}
	e.mu.Lock()
	e.published = append(e.published, recs...)
	e.mu.Unlock()
	return out
}

// PublishSnapshot publishes recs as generation gen of source's period.
func (e *Env) PublishSnapshot(source string, period messages.Period, gen int64, recs []messages.UsageRecord) *producer.Result {
	res, err := e.Prod.Publish(context.Background(), &messages.Batch{ID: fmt.Sprintf("snap-%s-%d", source, gen), Feed: e.Feed, Source: source, Snapshot: &messages.Snapshot{Period: period, Generation: gen}, Records: recs})
	if err != nil {
		e.T.Fatal(err)
	}
	e.mu.Lock()
	e.snapshots[source+"|"+period.String()] = recs
	e.mu.Unlock()
	return res
}

// Expected is what every unit must hold: all append records plus the
// newest snapshot of each (source, period).
func (e *Env) Expected() map[string]Totals {
	e.mu.Lock()
	defer e.mu.Unlock()
	all := append([]messages.UsageRecord(nil), e.published...)
	for _, s := range e.snapshots {
		all = append(all, s...)
	}
	sums := map[string]*[2]messages.Sum{}
	counts := map[string]int{}
	for i := range all {
		k := e.SB.UnitOf(&all[i])
		if sums[k] == nil {
			sums[k] = &[2]messages.Sum{}
		}
		sums[k][0].Add(all[i].BilledCost)
		sums[k][1].Add(all[i].ConsumedQuantity)
		counts[k]++
	}
	out := map[string]Totals{}
	for k, s := range sums {
		out[k] = Totals{Records: counts[k], Cost: s[0].Decimal(), Quantity: s[1].Decimal()}
	}
	return out
}

// WaitExact waits until the sandbox holds exactly Expected, and fails with
// the difference if it does not within timeout.
func (e *Env) WaitExact(timeout time.Duration) {
	e.T.Helper()
	want := e.Expected()
	deadline := time.Now().Add(timeout)
	var diff string
	for {
		got := e.SB.Totals(e.T)
		diff = Diff(want, got)
		if diff == "" {
			return
		}
		if time.Now().After(deadline) {
			e.T.Fatalf("the sandbox does not hold exactly what the stream holds after %s:\n%s", timeout, diff)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Diff describes how got differs from want ("" if equal). Units with no
// records on both sides are equal.
func Diff(want, got map[string]Totals) string {
	keys := map[string]bool{}
	for k := range want {
		keys[k] = true
	}
	for k := range got {
		keys[k] = true
	}
	var ks []string
	for k := range keys {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	s := ""
	n := 0
	for _, k := range ks {
		w, g := want[k], got[k]
		if w.Records == g.Records && w.Cost.Equal(orZero(g.Cost)) && (w.Records == 0 || !g.Quantity.IsSet() || w.Quantity.Equal(g.Quantity)) {
			continue
		}
		if w.Records == 0 && g.Records == 0 {
			continue
		}
		n++
		if n <= 10 {
			s += fmt.Sprintf("  unit %s: want %d records cost %s qty %s, have %d records cost %s qty %s\n", k, w.Records, w.Cost, w.Quantity, g.Records, g.Cost, g.Quantity)
		}
	}
	if n > 10 {
		s += fmt.Sprintf("  and %d more units\n", n-10)
	}
	return s
}

func orZero(d messages.Decimal) messages.Decimal {
	if !d.IsSet() {
		return messages.DecimalFromInt(0)
	}
	return d
}

func (h Harness) n(base int) int { return int(float64(base) * h.Scale) }

// leaseEntry is one lease bucket change.
type leaseEntry struct {
	key   string
	op    jetstream.KeyValueOp
	owner string
	rev   uint64
	at    time.Time // the server's timestamp
}

// watchLeases records every change of the lease bucket from now on; the
// returned function lists them.
func watchLeases(t *testing.T, e *Env) func() []leaseEntry {
	t.Helper()
	kv := leaseBucket(t, e)
	w, err := kv.WatchAll(context.Background(), jetstream.UpdatesOnly())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = w.Stop() })
	var mu sync.Mutex
	var out []leaseEntry
	go func() {
		for en := range w.Updates() {
			if en == nil {
				continue
			}
			mu.Lock()
			out = append(out, leaseEntry{key: en.Key(), op: en.Operation(), owner: string(en.Value()), rev: en.Revision(), at: en.Created()})
			mu.Unlock()
		}
	}()
	st, err := leaseStream(t, e)
	if err != nil {
		t.Fatal(err)
	}
	from := lastRevision(t, st) // the watcher sees what comes after this
	return func() []leaseEntry {
		t.Helper()
		// Caught up once the watcher has seen the bucket's last revision
		// as of now (an expiry adds none).
		last := lastRevision(t, st)
		for deadline := time.Now().Add(time.Minute); ; time.Sleep(10 * time.Millisecond) {
			mu.Lock()
			seen := uint64(0)
			if len(out) > 0 {
				seen = out[len(out)-1].rev
			}
			evs := append([]leaseEntry(nil), out...)
			mu.Unlock()
			if seen >= last || last <= from {
				return evs
			}
			if time.Now().After(deadline) {
				t.Fatalf("the lease watcher saw revision %d of %d", seen, last)
			}
		}
	}
}

func leaseStream(t *testing.T, e *Env) (jetstream.Stream, error) {
	js, err := jetstream.New(e.NS.Connect(t))
	if err != nil {
		return nil, err
	}
	return js.Stream(context.Background(), "KV_"+messages.BucketLeases)
}

// lastRevision is the lease bucket's newest revision.
func lastRevision(t *testing.T, st jetstream.Stream) uint64 {
	t.Helper()
	info, err := st.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return info.State.LastSeq
}

// leasesOf lists the leases owner holds now.
func leasesOf(t *testing.T, e *Env, owner string) map[string]leaseEntry {
	t.Helper()
	kv := leaseBucket(t, e)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	keys, err := kv.ListKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]leaseEntry{}
	for k := range keys.Keys() {
		en, err := kv.Get(ctx, k)
		if err != nil {
			continue // expired or released meanwhile
		}
		if string(en.Value()) == owner {
			out[k] = leaseEntry{key: k, op: en.Operation(), owner: owner, rev: en.Revision(), at: en.Created()}
		}
	}
	return out
}

func leaseBucket(t *testing.T, e *Env) jetstream.KeyValue {
	t.Helper()
	js, err := jetstream.New(e.NS.Connect(t))
	if err != nil {
		t.Fatal(err)
	}
	kv, err := js.KeyValue(context.Background(), messages.BucketLeases)
	if err != nil {
		t.Fatal(err)
	}
	return kv
}
