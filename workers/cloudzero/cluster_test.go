package cloudzero

import (
	"context"
	"fmt"
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
	sandbox "github.com/usagefleet/usagefleet/internal/sandbox/cloudzero"
	"github.com/usagefleet/usagefleet/internal/usagegen"
	"github.com/usagefleet/usagefleet/messages"
	"github.com/usagefleet/usagefleet/producer"
	"github.com/usagefleet/usagefleet/workers"
	"github.com/usagefleet/usagefleet/workers/conformance"
)

// A replace destination (CloudZero) on a 3-node JetStream cluster with
// every stream and bucket on R3: the unit leases are KV writes on an R3
// bucket (conditional creates, renewals and deletes through its leader)
// and the rebuild reads the R3 USAGE stream by direct get. Two workers
// share the destination; every hour ends exact, each lease was written
// on the R3 bucket, and no two requests overlapped at the API.
func TestClusterR3ReplaceDestination(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-node cluster")
	}
	urls := startCluster3(t)
	nc := connectCluster(t, urls)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ensureR3Streams(ctx, t, js)
	kv, err := js.KeyValue(ctx, messages.BucketLeases)
	if err != nil {
		t.Fatal(err)
	}
	st, err := kv.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if r := st.(*jetstream.KeyValueBucketStatus).StreamInfo().Config.Replicas; r != 3 {
		t.Fatalf("the lease bucket has %d replicas, want 3", r)
	}
	leasePuts := watchPuts(t, kv)

	s := sandbox.New(sandbox.Config{Connections: map[string]string{testConn: testKey}, ProcessingDelay: time.Millisecond})
	ts := httptest.NewServer(s.Handler())
	defer ts.Close()
	sb := &confSandbox{s: s, url: ts.URL}
	for i := range 2 {
		opts := conformance.FastOptions()
		opts.Feeds, opts.WorkerID = []string{"r3"}, fmt.Sprintf("r3-worker-%d", i)
		opts.HTTPTimeout = 5 * time.Second // under the 10 s lease TTL
		p, err := workers.NewPool(connectCluster(t, urls), sb.Destination(t, "cz"), opts)
		if err != nil {
			t.Fatal(err)
		}
		pctx, pcancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); _ = p.Run(pctx) }()
		t.Cleanup(func() { pcancel(); <-done })
	}

	recs := usagegen.Generate(1200, usagegen.Options{Seed: 3, Start: time.Date(2024, 8, 16, 0, 0, 0, 0, time.UTC), Hours: 6})
	prod, err := producer.New(nc, producer.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < len(recs); i += 300 {
		if _, err := prod.Publish(ctx, &messages.Batch{ID: fmt.Sprintf("r3-%d", i), Feed: "r3", Source: "t", Records: recs[i : i+300]}); err != nil {
			t.Fatal(err)
		}
	}
	want := map[string]conformance.Totals{}
	for i := range recs {
		k := sb.UnitOf(&recs[i])
		w := want[k]
		w.Records++
		var c, q messages.Sum
		c.Add(w.Cost)
		c.Add(recs[i].BilledCost)
		q.Add(w.Quantity)
		q.Add(recs[i].ConsumedQuantity)
		w.Cost, w.Quantity = c.Decimal(), q.Decimal()
		want[k] = w
	}
	for deadline := time.Now().Add(45 * time.Second); ; {
		diff := conformance.Diff(want, sb.Totals(t))
		if diff == "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the sandbox is not exact on the R3 cluster:\n%s", diff)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if n := leasePuts(); n == 0 {
		t.Fatal("no lease was written on the R3 bucket: the check proved nothing")
	}
	if v, _ := s.Violations(); v != 0 {
		t.Fatalf("%d concurrent requests at the API", v)
	}
}

// A unit delivered before and dirtied again is rebuilt with an ordered
// consumer (the worker no longer holds its first parts). On a cluster each
// of its fetches creates a consumer on one node and pulls from it at once
// through another, and about 2 in 100 pulls get "no responders" (the
// consumer's interest has not reached the client's node yet). That must
// not fail the job: a job of 200 re-dirtied hours holds hundreds of such
// fetches, and under load (the soak test) no CloudZero job ever
// completed. Here a failed job would wait its 10-minute retry, so the
// second round is exact within a minute only if no job failed.
func TestClusterR3OrderedRebuildSurvivesNoResponders(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-node cluster")
	}
	urls := startCluster3(t)
	nc := connectCluster(t, urls)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	ensureR3Streams(ctx, t, js)
	s := sandbox.New(sandbox.Config{Connections: map[string]string{testConn: testKey}})
	ts := httptest.NewServer(s.Handler())
	defer ts.Close()
	sb := &confSandbox{s: s, url: ts.URL}
	opts := conformance.FastOptions()
	opts.Feeds, opts.WorkerID = []string{"nr"}, "nr-worker"
	opts.HTTPTimeout = 5 * time.Second
	opts.Retry = workers.RetryPolicy{Initial: 10 * time.Minute, Max: 10 * time.Minute}
	p, err := workers.NewPool(connectCluster(t, urls), sb.Destination(t, "cz"), opts)
	if err != nil {
		t.Fatal(err)
	}
	pctx, pcancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = p.Run(pctx) }()
	t.Cleanup(func() { pcancel(); <-done })
	prod, err := producer.New(nc, producer.Options{})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Date(2024, 8, 1, 0, 0, 0, 0, time.UTC)
	var all []messages.UsageRecord
	for round := range 2 {
		recs := usagegen.Generate(1000, usagegen.Options{Seed: uint64(10 + round), Start: start, Hours: 200})
		if _, err := prod.Publish(ctx, &messages.Batch{ID: fmt.Sprintf("nr-%d", round), Feed: "nr", Source: "t", Records: recs}); err != nil {
			t.Fatal(err)
		}
		all = append(all, recs...)
		want := map[string]conformance.Totals{}
		for i := range all {
			k := sb.UnitOf(&all[i])
			w := want[k]
			w.Records++
			var c, q messages.Sum
			c.Add(w.Cost)
			c.Add(all[i].BilledCost)
			q.Add(w.Quantity)
			q.Add(all[i].ConsumedQuantity)
			w.Cost, w.Quantity = c.Decimal(), q.Decimal()
			want[k] = w
		}
		for deadline := time.Now().Add(time.Minute); ; {
			diff := conformance.Diff(want, sb.Totals(t))
			if diff == "" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("round %d: not exact after a minute (a job failed and waits its retry):\n%s", round+1, diff)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
}

// watchPuts counts the puts on kv from now on.
func watchPuts(t *testing.T, kv jetstream.KeyValue) func() int {
	w, err := kv.WatchAll(context.Background(), jetstream.UpdatesOnly())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = w.Stop() })
	var mu sync.Mutex
	n := 0
	go func() {
		for e := range w.Updates() {
			if e != nil && e.Operation() == jetstream.KeyValuePut {
				mu.Lock()
				n++
				mu.Unlock()
			}
		}
	}()
	return func() int { mu.Lock(); defer mu.Unlock(); return n }
}

// startCluster3 starts three JetStream servers routed to each other on
// loopback (as internal/broker's cluster tests do) and returns their
// client URLs, once one is the meta leader and every one is current.
func startCluster3(t *testing.T) string {
	t.Helper()
	_, urls := startCluster3Servers(t)
	return urls
}

// startCluster3Servers is startCluster3 returning the servers too (a test
// that loses a node shuts one down).
func startCluster3Servers(t *testing.T) ([]*server.Server, string) {
	t.Helper()
	var ports []int
	var ls []net.Listener
	for range 3 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	for _, l := range ls {
		l.Close()
	}
	routes := make([]*url.URL, len(ports))
	for i, p := range ports {
		routes[i] = &url.URL{Scheme: "nats-route", Host: fmt.Sprintf("127.0.0.1:%d", p)}
	}
	var servers []*server.Server
	var urls []string
	for i, p := range ports {
		s, err := server.NewServer(&server.Options{
			ServerName: fmt.Sprintf("n%d", i+1), Host: "127.0.0.1", Port: server.RANDOM_PORT,
			JetStream: true, StoreDir: t.TempDir(), NoSigs: true, NoLog: true,
			Cluster: server.ClusterOpts{Name: "cz-r3", Host: "127.0.0.1", Port: p}, Routes: routes,
		})
		if err != nil {
			t.Fatal(err)
		}
		go s.Start()
		t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
		servers = append(servers, s)
	}
	for _, s := range servers {
		if !s.ReadyForConnections(30 * time.Second) {
			t.Fatalf("server %s not ready", s.Name())
		}
		urls = append(urls, s.ClientURL())
	}
	for deadline := time.Now().Add(30 * time.Second); ; {
		leaders, current := 0, 0
		for _, s := range servers {
			if s.JetStreamIsLeader() {
				leaders++
			}
			if s.JetStreamIsCurrent() {
				current++
			}
		}
		if leaders == 1 && current == len(servers) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no JetStream meta leader after 30s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	return servers, strings.Join(urls, ",")
}

func connectCluster(t *testing.T, urls string) *nats.Conn {
	nc, err := broker.Connect(context.Background(), broker.Options{URL: urls}, "cz-r3-test")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// ensureR3Streams creates the fleet's streams and buckets on R3 with a
// 10 s lease TTL, trying again a few times: a young cluster may lose a
// reply.
func ensureR3Streams(ctx context.Context, t *testing.T, js jetstream.JetStream) {
	t.Helper()
	for attempt := 0; ; attempt++ {
		actx, acancel := context.WithTimeout(ctx, 10*time.Second)
		err := broker.EnsureStreams(actx, js, broker.StreamOptions{Replicas: 3, LeaseTTL: config.Duration(10 * time.Second)})
		acancel()
		if err == nil {
			return
		}
		if attempt == 5 {
			t.Fatal(err)
		}
	}
}
