package broker_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/usagefleet/usagefleet/internal/broker"
	"github.com/usagefleet/usagefleet/internal/config"
	sbwebhook "github.com/usagefleet/usagefleet/internal/sandbox/webhook"
	"github.com/usagefleet/usagefleet/internal/usagegen"
	"github.com/usagefleet/usagefleet/messages"
	"github.com/usagefleet/usagefleet/producer"
	"github.com/usagefleet/usagefleet/workers"
	"github.com/usagefleet/usagefleet/workers/webhook"
)

// watchedConn is a connection made by broker.Connect whose reconnect
// handler (the fleet's own, which logs) is wrapped to record each firing.
type watchedConn struct {
	*nats.Conn
	name       string
	reconnects chan string // the server reconnected to, per firing
}

// connectWatched connects the way the binaries do to url (one seed URL:
// the rest of the cluster is learnt from the server, as a client given a
// single service address learns it).
func connectWatched(t *testing.T, url, name string) *watchedConn {
	t.Helper()
	nc, err := broker.Connect(context.Background(), broker.Options{URL: url}, name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	fleetHandler := nc.Opts.ReconnectedCB
	if fleetHandler == nil {
		t.Fatal("broker.Connect sets no reconnect handler")
	}
	w := &watchedConn{Conn: nc, name: name, reconnects: make(chan string, 64)}
	nc.SetReconnectHandler(func(c *nats.Conn) {
		fleetHandler(c)
		select {
		case w.reconnects <- c.ConnectedServerName():
		default:
		}
	})
	return w
}

// waitReconnected waits for the reconnect handler to fire and checks that
// the connection is on another server than gone, and counts a reconnect.
func (w *watchedConn) waitReconnected(t *testing.T, gone string, within time.Duration) {
	t.Helper()
	select {
	case to := <-w.reconnects:
		if to == gone || to == "" {
			t.Fatalf("%s: reconnected to %q, the server that went down was %s", w.name, to, gone)
		}
	case <-time.After(within):
		t.Fatalf("%s: no reconnect within %v of %s going down (status %v, server %q, reconnects %d)",
			w.name, within, gone, w.Status(), w.ConnectedServerName(), w.Stats().Reconnects)
	}
	if now := w.ConnectedServerName(); now == gone || !w.IsConnected() {
		t.Fatalf("%s: connected %v to %q after the reconnect; %s went down", w.name, w.IsConnected(), now, gone)
	}
	if n := w.Stats().Reconnects; n < 1 {
		t.Fatalf("%s: %d reconnects counted", w.name, n)
	}
}

// TestClusterNodeLossReconnectsItsClients connects a producer and a worker
// (the only one of its destination) to the same node of a 3-node cluster,
// shuts that node down while records are being published and delivered,
// and checks that both reconnected to another node through the fleet's
// reconnect path (its handler fired, the connection's server changed),
// that the producer went on publishing and the worker went on
// delivering, and that the receiver ends up with every record exactly
// once (each by its own id) with the exact cost, every part acked and
// stored once. The node lost leads neither the meta layer nor USAGE when
// that can be had, so what is measured is the clients' reconnect, not a
// stream election (TestClusterFailoverDeliversEveryRecordExactly loses the
// stream leader).
func TestClusterNodeLossReconnectsItsClients(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-node cluster (about 10 s)")
	}
	t.Parallel() // beside the silent-loss test, which mostly waits
	start := time.Now()
	c := startCluster(t)
	ctx := context.Background()
	admin := c.connect(t, "admin")
	js, err := jetstream.New(admin)
	if err != nil {
		t.Fatal(err)
	}
	const leaseTTL = 10 * time.Second
	ensureStreams(t, js, broker.StreamOptions{Replicas: 3, LeaseTTL: config.Duration(leaseTTL)})

	// The clients' node: a follower of USAGE, and of the meta layer too
	// when one is.
	var node *server.Server
	for _, s := range c.servers {
		if s.JetStreamIsStreamLeader(server.DEFAULT_GLOBAL_ACCOUNT, messages.StreamUsage) {
			continue
		}
		if node == nil || node.JetStreamIsLeader() {
			node = s
		}
	}
	if node == nil {
		t.Fatal("every server leads USAGE")
	}
	gone := node.Name()

	const bodyLimit = 256 << 10
	sb := sbwebhook.New(sbwebhook.Config{MaxBodyBytes: bodyLimit, Token: "s3cret"})
	srv := httptest.NewServer(sb.Handler())
	t.Cleanup(srv.Close)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))

	worker := connectWatched(t, node.ClientURL(), "worker")
	prodConn := connectWatched(t, node.ClientURL(), "producer")
	for _, w := range []*watchedConn{worker, prodConn} {
		if got := w.ConnectedServerName(); got != gone {
			t.Fatalf("%s is connected to %s, want %s", w.name, got, gone)
		}
		if d := w.DiscoveredServers(); len(d) != len(c.servers)-1 {
			t.Fatalf("%s learnt %v from its server; want the other %d nodes", w.name, d, len(c.servers)-1)
		}
	}

	dest, err := webhook.New("hook", webhook.Settings{URL: srv.URL + "/ingest", MaxBodyBytes: bodyLimit, Token: config.NewSecret("s3cret")}, "test")
	if err != nil {
		t.Fatal(err)
	}
	pool, err := workers.NewPool(worker.Conn, dest, workers.Options{
		Feeds:    []string{"cloud"},
		AckWait:  3 * time.Second,
		LeaseTTL: leaseTTL,
		Retry:    workers.RetryPolicy{Initial: 50 * time.Millisecond, Max: time.Second},
		Logger:   quiet,
	})
	if err != nil {
		t.Fatal(err)
	}
	pctx, stop := context.WithCancel(ctx)
	var poolErr error
	var wg sync.WaitGroup
	wg.Go(func() { poolErr = pool.Run(pctx) })
	t.Cleanup(func() { stop(); wg.Wait() })

	prod, err := producer.New(prodConn.Conn, producer.Options{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	const n, per = 12_000, 400
	recs := usagegen.Generate(n, usagegen.Options{Seed: 23, Hours: 6})
	for i := range recs {
		// Every record carries its own id, so the receiver's copy of each
		// can be counted.
		tags := map[string]string{"uf_seq": strconv.Itoa(i)}
		for k, v := range recs[i].Tags {
			tags[k] = v
		}
		recs[i].Tags = tags
	}
	want := usagegen.Total(recs)
	var results []*producer.Result
	parts := 0
	var deliveredAtLoss, publishedAtLoss int
	for i := 0; i < n; i += per {
		if i/per == n/per/3 {
			// Mid-run: the worker has been delivering, a third is published.
			for deadline := time.Now().Add(30 * time.Second); sb.Stats().UniqueRecords == 0; time.Sleep(20 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatalf("nothing delivered 30s after publishing %d records", i)
				}
			}
			deliveredAtLoss, publishedAtLoss = sb.Stats().UniqueRecords, i
			node.Shutdown()
			node.WaitForShutdown()
		}
		pctx, cancel := context.WithTimeout(ctx, 90*time.Second)
		res, err := prod.Publish(pctx, &messages.Batch{ID: fmt.Sprintf("reconnect-%d", i), Feed: "cloud", Source: "gen", Records: recs[i : i+per]})
		cancel()
		if err != nil {
			t.Fatalf("publish batch %d (after %s went down): %v", i/per, gone, err)
		}
		results = append(results, res)
		parts += len(res.Parts)
	}
	// Both reconnected; the publishes after the loss went through the
	// producer's reconnected connection (it has no other).
	prodConn.waitReconnected(t, gone, 30*time.Second)
	worker.waitReconnected(t, gone, 30*time.Second)
	t.Logf("%s (the node of both clients) went down with %d of %d records published and %d delivered; producer now on %s, worker on %s",
		gone, publishedAtLoss, n, deliveredAtLoss, prodConn.ConnectedServerName(), worker.ConnectedServerName())

	// Every part is acked with its exact count and cost.
	checkEveryPartAcked(t, ctx, prod, start.Add(-time.Second), results, parts, sb)

	// The receiver holds each record exactly once, and the exact cost.
	st := sb.Stats()
	if st.UniqueRecords != n || !st.UniqueCost.Equal(want.Cost.Big()) || st.KeyReuse != 0 {
		t.Fatalf("receiver holds %d unique records costing %s (%d keys reused); published %d costing %s", st.UniqueRecords, st.UniqueCost, st.KeyReuse, n, want.Cost)
	}
	seen := make([]int, n)
	var cost messages.Sum
	for _, raw := range sb.UniqueRecords() {
		var r messages.UsageRecord
		if err := json.Unmarshal(raw, &r); err != nil {
			t.Fatalf("the receiver holds a record that does not decode: %v", err)
		}
		i, err := strconv.Atoi(r.Tags["uf_seq"])
		if err != nil || i < 0 || i >= n {
			t.Fatalf("the receiver holds a record with id %q", r.Tags["uf_seq"])
		}
		if !r.BilledCost.Equal(recs[i].BilledCost) {
			t.Fatalf("record %d arrived costing %s; published %s", i, r.BilledCost, recs[i].BilledCost)
		}
		seen[i]++
		cost.Add(r.BilledCost)
	}
	for i, k := range seen {
		if k != 1 {
			t.Fatalf("record %d arrived %d times (unique by idempotency key)", i, k)
		}
	}
	if !cost.Decimal().Equal(want.Cost) {
		t.Fatalf("the records received cost %s; published %s", cost.Decimal(), want.Cost)
	}

	// Publishes retried over the reconnect were de-duplicated.
	ictx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	us, err := js.Stream(ictx, messages.StreamUsage)
	if err != nil {
		t.Fatal(err)
	}
	if msgs := us.CachedInfo().State.Msgs; msgs != uint64(parts) {
		t.Fatalf("USAGE holds %d messages; %d parts were published", msgs, parts)
	}
	stop()
	wg.Wait()
	if poolErr != nil {
		t.Fatalf("the pool stopped: %v", poolErr)
	}
	t.Logf("delivered %d records (%d unique, %d duplicate requests); total %v", st.Records, st.UniqueRecords, st.DuplicateRequests, time.Since(start).Round(time.Millisecond))
}

// blackhole is a loopback TCP proxy to a server whose open connections can
// be made to go silent: nothing passes in either direction and nothing is
// closed, as when a node's machine or its network vanishes without a
// reset. Connections made after that pass again.
type blackhole struct {
	ln     net.Listener
	mu     sync.Mutex
	frozen map[net.Conn]bool // client side of every connection; true once silenced
}

func startBlackhole(t *testing.T, upstream string) *blackhole {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &blackhole{ln: ln, frozen: map[net.Conn]bool{}}
	var conns []net.Conn
	var wg sync.WaitGroup
	t.Cleanup(func() {
		ln.Close()
		b.mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		b.mu.Unlock()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			u, err := net.Dial("tcp", upstream)
			if err != nil {
				c.Close()
				continue
			}
			b.mu.Lock()
			b.frozen[c] = false
			conns = append(conns, c, u)
			b.mu.Unlock()
			pipe := func(dst, src net.Conn) {
				buf := make([]byte, 32<<10)
				for {
					n, err := src.Read(buf)
					if n > 0 && !b.silent(c) {
						if _, werr := dst.Write(buf[:n]); werr != nil {
							return
						}
					}
					if err != nil {
						if !b.silent(c) {
							dst.Close() // a live connection's close passes
						}
						return
					}
				}
			}
			wg.Go(func() { pipe(u, c) })
			wg.Go(func() { pipe(c, u) })
		}
	})
	return b
}

func (b *blackhole) silent(c net.Conn) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.frozen[c]
}

// freeze silences every connection open now and returns how many.
func (b *blackhole) freeze() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := 0
	for c := range b.frozen {
		b.frozen[c] = true
		n++
	}
	return n
}

func (b *blackhole) url() string { return "nats://" + b.ln.Addr().String() }

// TestConnectNoticesASilentConnectionLoss: a connection that goes silent
// (the node's machine or network gone, no FIN or RST) is noticed by the
// client's pings and replaced within about the worker's default 30 s
// AckWait; with nats.go's default ping interval (2 min, 2 outstanding) it
// took 4 to 6 minutes, during which a producer's publishes hung and a
// worker's pulls and heartbeats went nowhere. Parallel: it mostly waits.
func TestConnectNoticesASilentConnectionLoss(t *testing.T) {
	if testing.Short() {
		t.Skip("waits out the client's ping timeout (20-30 s)")
	}
	t.Parallel()
	url := startServer(t, func(*server.Options) {})
	bh := startBlackhole(t, strings.TrimPrefix(url, "nats://"))
	w := connectWatched(t, bh.url(), "silent")
	ctx := context.Background()
	js, err := jetstream.New(w.Conn)
	if err != nil {
		t.Fatal(err)
	}
	ectx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if err := broker.EnsureStreams(ectx, js, broker.StreamOptions{}); err != nil {
		t.Fatal(err)
	}
	if n := bh.freeze(); n != 1 {
		t.Fatalf("%d connections through the proxy, want 1", n)
	}
	lost := time.Now()
	const within = 45 * time.Second
	select {
	case <-w.reconnects:
	case <-time.After(within):
		t.Fatalf("the silent connection was not replaced within %v (status %v, reconnects %d, ping interval %v, max pings out %d)",
			within, w.Status(), w.Stats().Reconnects, w.Opts.PingInterval, w.Opts.MaxPingsOut)
	}
	t.Logf("reconnected %v after the connection went silent", time.Since(lost).Round(time.Millisecond))
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, err := js.Publish(pctx, "usage.silent.2024.08.01.00", []byte("x")); err != nil {
		t.Fatalf("publishing after the reconnect: %v", err)
	}
}
