package broker_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/usagefleet/usagefleet/internal/broker"
	"github.com/usagefleet/usagefleet/internal/config"
	"github.com/usagefleet/usagefleet/internal/ops"
	sbwebhook "github.com/usagefleet/usagefleet/internal/sandbox/webhook"
	"github.com/usagefleet/usagefleet/internal/usagegen"
	"github.com/usagefleet/usagefleet/messages"
	"github.com/usagefleet/usagefleet/producer"
	"github.com/usagefleet/usagefleet/workers"
	"github.com/usagefleet/usagefleet/workers/webhook"
)

// cluster is three JetStream servers routed to each other on loopback.
type cluster struct {
	servers []*server.Server
	opts    []*server.Options // each server's, to restart it (restart)
	urls    string            // every client URL, comma-separated: clients fail over
}

// startCluster starts a 3-node JetStream cluster on loopback with stores
// in t.TempDir(), and waits for a meta leader that every node follows.
// Client and monitoring ports are random; the route ports are picked free
// beforehand, because every node must list its routes when it starts (a
// clustered JetStream server refuses to start without them).
func startCluster(t *testing.T) *cluster {
	t.Helper()
	ports := freePorts(t, 3)
	routes := make([]*url.URL, len(ports))
	for i, p := range ports {
		routes[i] = &url.URL{Scheme: "nats-route", Host: fmt.Sprintf("127.0.0.1:%d", p)}
	}
	c := &cluster{}
	for i, p := range ports {
		o := &server.Options{
			ServerName: fmt.Sprintf("n%d", i+1),
			Host:       "127.0.0.1",
			Port:       server.RANDOM_PORT,
			JetStream:  true,
			StoreDir:   t.TempDir(),
			Cluster:    server.ClusterOpts{Name: "usagefleet-test", Host: "127.0.0.1", Port: p},
			Routes:     routes, // its own is recognised and skipped
			NoSigs:     true,
			NoLog:      true,
		}
		s, err := server.NewServer(o)
		if err != nil {
			t.Fatal(err)
		}
		go s.Start()
		t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
		c.servers = append(c.servers, s)
		c.opts = append(c.opts, o)
	}
	urls := make([]string, len(c.servers))
	for i, s := range c.servers {
		if !s.ReadyForConnections(30 * time.Second) {
			t.Fatalf("server %s not ready", s.Name())
		}
		urls[i] = s.ClientURL()
	}
	c.urls = strings.Join(urls, ",")
	c.waitMeta(t, c.servers)
	return c
}

// restart starts server i again, shut down before, on its store and
// routes (a new client port).
func (c *cluster) restart(t *testing.T, i int) {
	t.Helper()
	o := *c.opts[i]
	s, err := server.NewServer(&o)
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	if !s.ReadyForConnections(30 * time.Second) {
		t.Fatalf("server %s not ready", s.Name())
	}
	c.servers[i] = s
}

// freePorts returns n loopback ports that were free a moment ago.
func freePorts(t *testing.T, n int) []int {
	t.Helper()
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	ports := make([]int, n)
	for i := range ports {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
		ports[i] = l.Addr().(*net.TCPAddr).Port
	}
	return ports
}

// waitMeta waits until one of live is the meta leader and every one of
// them is current with it.
func (c *cluster) waitMeta(t *testing.T, live []*server.Server) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		leaders, current := 0, 0
		for _, s := range live {
			if s.JetStreamIsLeader() {
				leaders++
			}
			if s.JetStreamIsCurrent() {
				current++
			}
		}
		if leaders == 1 && current == len(live) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no JetStream meta leader after 30s (leaders %d, current %d of %d)", leaders, current, len(live))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// connect connects the way the binaries do (broker.Connect: reconnect
// forever, with jitter) to every server of the cluster.
func (c *cluster) connect(t *testing.T, name string) *nats.Conn {
	t.Helper()
	nc, err := broker.Connect(context.Background(), broker.Options{URL: c.urls}, name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// TestClusterFailoverDeliversEveryRecordExactly publishes usage through a
// 3-node cluster with R3 streams, shuts down the USAGE stream's leader in
// the middle of it, and checks that the webhook receiver still holds every
// published record exactly once (by idempotency key) with the exact cost,
// that every part is acked, and that the stream holds each part once
// although publishes were retried across the failover.
func TestClusterFailoverDeliversEveryRecordExactly(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-node cluster and waits out a leader election (about 10-20 s)")
	}
	start := time.Now()
	c := startCluster(t)
	t.Logf("cluster up with a meta leader in %v", time.Since(start).Round(time.Millisecond))

	ctx := context.Background()
	admin := c.connect(t, "admin")
	js, err := jetstream.New(admin)
	if err != nil {
		t.Fatal(err)
	}
	const leaseTTL = 10 * time.Second
	ensureStreams(t, js, broker.StreamOptions{Replicas: 3, LeaseTTL: config.Duration(leaseTTL)})
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	info, err := js.Stream(sctx, messages.StreamUsage)
	if err != nil {
		t.Fatal(err)
	}
	if r := info.CachedInfo().Config.Replicas; r != 3 {
		t.Fatalf("USAGE has %d replicas, want 3", r)
	}

	// The receiver, on loopback, and two worker processes sharing the
	// destination's durable consumer.
	const bodyLimit = 256 << 10
	sb := sbwebhook.New(sbwebhook.Config{MaxBodyBytes: bodyLimit, Token: "s3cret"})
	srv := httptest.NewServer(sb.Handler())
	t.Cleanup(srv.Close)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	var poolErrs sync.Map
	for i := range 2 {
		nc := c.connect(t, fmt.Sprintf("worker-%d", i))
		dest, err := webhook.New("hook", webhook.Settings{URL: srv.URL + "/ingest", MaxBodyBytes: bodyLimit, Token: config.NewSecret("s3cret")}, "test")
		if err != nil {
			t.Fatal(err)
		}
		pool, err := workers.NewPool(nc, dest, workers.Options{
			Feeds:    []string{"cloud"},
			AckWait:  3 * time.Second, // a lost ack is redelivered quickly
			LeaseTTL: leaseTTL,
			Retry:    workers.RetryPolicy{Initial: 50 * time.Millisecond, Max: time.Second},
			Logger:   quiet,
		})
		if err != nil {
			t.Fatal(err)
		}
		pctx, stop := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() {
			defer close(done)
			if err := pool.Run(pctx); err != nil {
				poolErrs.Store(i, err)
			}
		}()
		t.Cleanup(func() { stop(); <-done })
	}

	prod, err := producer.New(c.connect(t, "producer"), producer.Options{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	const n, per = 20_000, 500
	recs := usagegen.Generate(n, usagegen.Options{Seed: 11, Hours: 12})
	want := usagegen.Total(recs)
	var results []*producer.Result
	parts := 0
	var killed string
	var killedAt time.Time
	var deliveredBefore int
	var consumerLeader string
	for i := 0; i < n; i += per {
		if i/per == n/per/3 {
			deliveredBefore = sb.Stats().UniqueRecords
			for _, s := range c.servers {
				if s.JetStreamIsConsumerLeader(server.DEFAULT_GLOBAL_ACCOUNT, messages.StreamUsage, workers.ConsumerName("hook")) {
					consumerLeader = s.Name()
				}
			}
			killed = c.killStreamLeader(t, messages.StreamUsage)
			killedAt = time.Now()
		}
		pctx, cancel := context.WithTimeout(ctx, 90*time.Second)
		res, err := prod.Publish(pctx, &messages.Batch{ID: fmt.Sprintf("failover-%d", i), Feed: "cloud", Source: "gen", Records: recs[i : i+per]})
		cancel()
		if err != nil {
			t.Fatalf("publish batch %d (after %s went down): %v", i/per, killed, err)
		}
		results = append(results, res)
		parts += len(res.Parts)
	}
	t.Logf("published %d records in %d parts; %s (the USAGE leader; %s led uf_hook) went down after a third of them, with %d records delivered, %v ago",
		n, parts, killed, consumerLeader, deliveredBefore, time.Since(killedAt).Round(time.Millisecond))
	published := time.Now()

	// Every part is acked by the destination, with its exact count and
	// cost: the ACKS stream lived through the failover too.
	checkEveryPartAcked(t, ctx, prod, start.Add(-time.Second), results, parts, sb)
	t.Logf("every part acked %v after the last publish", time.Since(published).Round(time.Millisecond))
	st := sb.Stats()
	if st.UniqueRecords != n || !st.UniqueCost.Equal(want.Cost.Big()) {
		t.Fatalf("receiver holds %d unique records costing %s; published %d costing %s", st.UniqueRecords, st.UniqueCost, n, want.Cost)
	}
	if st.KeyReuse != 0 {
		t.Fatalf("%d idempotency keys were reused for another body", st.KeyReuse)
	}
	// Per unit (the UTC hour of ChargePeriodStart): the receiver holds
	// exactly the hour's published records and cost.
	type hourTally struct {
		records int
		cost    messages.Sum
	}
	pubHours, recvHours := map[time.Time]*hourTally{}, map[time.Time]*hourTally{}
	count := func(m map[time.Time]*hourTally, r *messages.UsageRecord) {
		h := r.ChargePeriodStart.UTC().Truncate(time.Hour)
		if m[h] == nil {
			m[h] = &hourTally{}
		}
		m[h].records++
		m[h].cost.Add(r.BilledCost)
	}
	for i := range recs {
		count(pubHours, &recs[i])
	}
	for _, raw := range sb.UniqueRecords() {
		var r messages.UsageRecord
		if err := json.Unmarshal(raw, &r); err != nil {
			t.Fatalf("the receiver holds a record that does not decode: %v", err)
		}
		count(recvHours, &r)
	}
	if len(recvHours) != len(pubHours) {
		t.Fatalf("the receiver holds records of %d hours; %d were published", len(recvHours), len(pubHours))
	}
	for h, p := range pubHours {
		r := recvHours[h]
		if r == nil || r.records != p.records || !r.cost.Decimal().Equal(p.cost.Decimal()) {
			t.Fatalf("hour %s: received %+v; published %d records costing %s", h.Format(time.RFC3339), r, p.records, p.cost.Decimal())
		}
	}
	if st.MaxBodyBytes > bodyLimit {
		t.Fatalf("a body of %d bytes exceeded the %d limit", st.MaxBodyBytes, bodyLimit)
	}

	// Publishes retried across the failover were de-duplicated: the
	// stream holds each part once, on a new leader.
	ictx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	si, err := info.Info(ictx)
	if err != nil {
		t.Fatal(err)
	}
	if si.State.Msgs != uint64(parts) {
		t.Fatalf("USAGE holds %d messages; %d parts were published", si.State.Msgs, parts)
	}
	if si.Cluster == nil || si.Cluster.Leader == "" || si.Cluster.Leader == killed {
		t.Fatalf("USAGE leader after the failover: %+v", si.Cluster)
	}
	poolErrs.Range(func(k, v any) bool {
		t.Errorf("pool %v stopped: %v", k, v)
		return true
	})
	t.Logf("delivered: %d records, %d unique, %d duplicate requests (append: at least once, deduplicated by key); new USAGE leader %s; total %v",
		st.Records, st.UniqueRecords, st.DuplicateRequests, si.Cluster.Leader, time.Since(start).Round(time.Millisecond))
}

// ensureStreams creates the streams, trying again while a young cluster
// loses a reply (a meta leader change swallows in-flight API requests; a
// worker would exit and be restarted).
func ensureStreams(t *testing.T, js jetstream.JetStream, o broker.StreamOptions) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := broker.EnsureStreams(ctx, js, o)
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("creating the streams: %v", err)
		}
		t.Logf("creating the streams: %v; trying again", err)
	}
}

// killStreamLeader shuts down the server leading stream, without waiting
// for the others to elect a new leader: the clients live through it.
func (c *cluster) killStreamLeader(t *testing.T, stream string) string {
	t.Helper()
	for _, s := range c.servers {
		if s.Running() && s.JetStreamIsStreamLeader(server.DEFAULT_GLOBAL_ACCOUNT, stream) {
			s.Shutdown()
			s.WaitForShutdown()
			return s.Name()
		}
	}
	t.Fatalf("no server leads stream %s", stream)
	return ""
}

// checkEveryPartAcked follows the acks of source gen at destination hook
// since the given time until parts of them arrived, and checks every
// batch's parts, records and exact cost. One follower for all batches
// (producer.Wait per batch creates a consumer per call).
func checkEveryPartAcked(t *testing.T, ctx context.Context, prod *producer.Producer, since time.Time, results []*producer.Result, parts int, sb *sbwebhook.Server) {
	t.Helper()
	type tally struct {
		parts, records int
		cost           messages.Sum
	}
	got := map[string]*tally{}
	acked := 0
	errDone := errors.New("done")
	wctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	err := prod.FollowAcks(wctx, producer.AckFilter{Source: "gen", Destination: "hook", Since: since}, func(a messages.Ack) error {
		if a.Status != messages.AckDelivered {
			return fmt.Errorf("part %s/%d: %s %s", a.BatchID, a.Part, a.Status, a.Reason)
		}
		g := got[a.BatchID]
		if g == nil {
			g = &tally{}
			got[a.BatchID] = g
		}
		g.parts++
		g.records += a.Records
		g.cost.Add(a.Cost)
		if acked++; acked == parts {
			return errDone
		}
		return nil
	})
	if !errors.Is(err, errDone) {
		t.Fatalf("following acks: %v (%d of %d parts acked); receiver %+v", err, acked, parts, sb.Stats())
	}
	for _, res := range results {
		g := got[res.BatchID]
		if g == nil || g.parts != len(res.Parts) || g.records != res.Records || !g.cost.Decimal().Equal(res.Cost) {
			t.Fatalf("batch %s: acks %+v; published %d parts, %d records, cost %s", res.BatchID, g, len(res.Parts), res.Records, res.Cost)
		}
	}
}

// A pool started while its JetStream cannot answer (two of three nodes
// down: no meta leader, no quorum, as when a fleet starts beside its
// servers or a rollout restarts them) waits for it instead of exiting
// (before, Run returned the API request's timeout and the process was
// restarted only after its orchestrator's crash-loop backoff), and
// delivers once the cluster is back.
func TestPoolStartWaitsForJetStream(t *testing.T) {
	c := startCluster(t)
	ctx := context.Background()
	js, err := jetstream.New(c.connect(t, "admin"))
	if err != nil {
		t.Fatal(err)
	}
	const leaseTTL = 10 * time.Second
	ensureStreams(t, js, broker.StreamOptions{Replicas: 3, LeaseTTL: config.Duration(leaseTTL)})
	for _, i := range []int{1, 2} {
		c.servers[i].Shutdown()
		c.servers[i].WaitForShutdown()
	}
	n1 := c.servers[0].ClientURL()
	nc, err := broker.Connect(ctx, broker.Options{URL: n1}, "worker")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	sb := sbwebhook.New(sbwebhook.Config{Token: "s3cret"})
	srv := httptest.NewServer(sb.Handler())
	t.Cleanup(srv.Close)
	dest, err := webhook.New("hook", webhook.Settings{URL: srv.URL + "/ingest", Token: config.NewSecret("s3cret")}, "test")
	if err != nil {
		t.Fatal(err)
	}
	pool, err := workers.NewPool(nc, dest, workers.Options{Feeds: []string{"cloud"}, LeaseTTL: leaseTTL,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	pctx, stop := context.WithCancel(ctx)
	runErr := make(chan error, 1)
	go func() { runErr <- pool.Run(pctx) }()
	t.Cleanup(func() { stop(); <-runErr })

	// Longer than a JetStream API request's timeout (5 s): one try failed.
	select {
	case err := <-runErr:
		runErr <- err // for the cleanup
		t.Fatalf("the pool gave up while JetStream had no quorum: %v", err)
	case <-time.After(7 * time.Second):
	}
	c.restart(t, 1)
	c.restart(t, 2)
	c.waitMeta(t, c.servers)

	pnc, err := broker.Connect(ctx, broker.Options{URL: n1}, "producer")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pnc.Close)
	prod, err := producer.New(pnc, producer.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	recs := usagegen.Generate(300, usagegen.Options{Seed: 5, Hours: 3})
	want := usagegen.Total(recs)
	pubCtx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	if _, err := prod.Publish(pubCtx, &messages.Batch{ID: "after-quorum", Feed: "cloud", Source: "gen", Records: recs}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		st := sb.Stats()
		if st.UniqueRecords == len(recs) && st.UniqueCost.Equal(want.Cost.Big()) {
			break
		}
		select {
		case err := <-runErr:
			runErr <- err
			t.Fatalf("the pool stopped: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("the receiver holds %d records costing %s; published %d costing %s", st.UniqueRecords, st.UniqueCost, len(recs), want.Cost)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// The operator's scans (ops.ListDead, as status and reconcile scan) read
// through an ordered consumer, new for each scan; on a cluster its first
// pull can reach the client's server before the consumer's interest has
// ("no responders"), which failed `usage-worker dead list` now and then
// (TestNATSConfigRunsTheFleet under load). Hundreds of scans from every
// node, each finding every letter.
func TestClusterScansSurviveNoResponders(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-node cluster")
	}
	c := startCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	js, err := jetstream.New(c.connect(t, "admin"))
	if err != nil {
		t.Fatal(err)
	}
	ensureStreams(t, js, broker.StreamOptions{Replicas: 3, LeaseTTL: config.Duration(10 * time.Second)})
	const letters = 3
	for i := range letters {
		b, _ := json.Marshal(messages.DeadLetter{Destination: "hook", Reason: fmt.Sprintf("letter %d", i), StreamSeq: uint64(i + 1)})
		if _, err := js.Publish(ctx, messages.DeadSubject("hook", "gen"), b); err != nil {
			t.Fatal(err)
		}
	}
	for _, s := range c.servers {
		nc, err := broker.Connect(ctx, broker.Options{URL: s.ClientURL()}, "operator-"+s.Name())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		ojs, err := jetstream.New(nc)
		if err != nil {
			t.Fatal(err)
		}
		for i := range 100 {
			dead, err := ops.ListDead(ctx, ojs, ops.DeadFilter{Destination: "hook"})
			if err != nil || len(dead) != letters {
				t.Fatalf("scan %d from %s: %d letters, %v", i, s.Name(), len(dead), err)
			}
		}
	}
}
