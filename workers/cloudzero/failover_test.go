package cloudzero

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"

	sandbox "github.com/usagefleet/usagefleet/internal/sandbox/cloudzero"
	"github.com/usagefleet/usagefleet/internal/usagegen"
	"github.com/usagefleet/usagefleet/messages"
	"github.com/usagefleet/usagefleet/producer"
	"github.com/usagefleet/usagefleet/workers"
	"github.com/usagefleet/usagefleet/workers/conformance"
)

// A replace destination (CloudZero) loses the node its worker is connected
// to in the middle of a drain, on a 3-node cluster with every stream and
// bucket on R3: the worker reconnects to another node, its leases (KV
// writes on the R3 bucket) and rebuilds (direct gets on R3 USAGE) go on
// there, every part is acked, every hour ends exact, and no two requests
// for the connection overlapped at the API. The webhook failover tests
// (internal/broker) run an append destination only.
func TestClusterFailoverReplaceDestination(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-node cluster and loses a node")
	}
	servers, urls := startCluster3Servers(t)
	admin := connectCluster(t, urls)
	js, err := jetstream.New(admin)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	ensureR3Streams(ctx, t, js)

	// The backlog first: 24 hours, more than a dozen requests of at most
	// 60 kB.
	recs := usagegen.Generate(2400, usagegen.Options{Seed: 21, Start: time.Date(2024, 9, 2, 0, 0, 0, 0, time.UTC), Hours: 24})
	prod, err := producer.New(admin, producer.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var results []*producer.Result
	for i := 0; i < len(recs); i += 400 {
		res, err := prod.Publish(ctx, &messages.Batch{ID: fmt.Sprintf("fo-%d", i), Feed: "fo", Source: "t", Records: recs[i : i+400]})
		if err != nil {
			t.Fatal(err)
		}
		results = append(results, res)
	}

	s := sandbox.New(sandbox.Config{Connections: map[string]string{testConn: testKey}, ProcessingDelay: time.Millisecond})
	// The third request is held at the API until the worker has lost its
	// node and reconnected: an upload in flight across the node loss.
	arrived, release := make(chan struct{}), make(chan struct{})
	var requests atomic.Int32
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if requests.Add(1) == 3 {
			close(arrived)
			<-release
		}
		s.Handler().ServeHTTP(w, r)
	}))
	defer ts.Close()
	sb := &confSandbox{s: s, url: ts.URL}
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

	// The worker's node is the one to lose; the acks are read through
	// another.
	wnc := connectCluster(t, urls)
	var victim *server.Server
	var others []string
	for _, srv := range servers {
		if srv.Name() == wnc.ConnectedServerName() {
			victim = srv
		} else {
			others = append(others, srv.ClientURL())
		}
	}
	if victim == nil {
		t.Fatalf("the worker is on %q, none of the nodes", wnc.ConnectedServerName())
	}
	if prod, err = producer.New(connectCluster(t, strings.Join(others, ",")), producer.Options{}); err != nil {
		t.Fatal(err)
	}
	opts := conformance.FastOptions()
	opts.Feeds, opts.WorkerID = []string{"fo"}, "fo-worker"
	opts.HTTPTimeout = 5 * time.Second // under the 10 s lease TTL
	p, err := workers.NewPool(wnc, sb.Destination(t, "cz"), opts)
	if err != nil {
		t.Fatal(err)
	}
	pctx, pcancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = p.Run(pctx) }()
	t.Cleanup(func() { pcancel(); <-done })

	// Mid-drain, with an upload in flight: lose the worker's node.
	select {
	case <-arrived:
	case <-time.After(60 * time.Second):
		t.Fatal("no third request within 60s")
	}
	heldAtKill := len(sb.Totals(t))
	victim.Shutdown()
	victim.WaitForShutdown()
	for deadline := time.Now().Add(30 * time.Second); !wnc.IsConnected() || wnc.ConnectedServerName() == victim.Name(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			close(release)
			t.Fatalf("the worker did not reconnect to another node within 30s (status %v)", wnc.Status())
		}
	}
	close(release)
	t.Logf("%s (the worker's node) went down with an upload in flight and %d of %d hours at the API; the worker is on %s now",
		victim.Name(), heldAtKill, len(want), wnc.ConnectedServerName())
	if heldAtKill >= len(want) {
		t.Fatal("the drain ended before the node went down: the check proved nothing")
	}

	// Every part acked: each was in an upload whose rebuild began after it
	// was stored, so every hour's last upload holds all of it.
	for _, res := range results {
		wctx, wcancel := context.WithTimeout(ctx, 90*time.Second)
		sums, err := prod.Wait(wctx, res, []string{"cz"}, nil)
		wcancel()
		if err != nil {
			t.Fatalf("batch %s after the node loss: %v", res.BatchID, err)
		}
		if s := sums["cz"]; s == nil || s.Delivered != len(res.Parts) || !s.Cost.Equal(res.Cost) {
			t.Fatalf("batch %s: %+v", res.BatchID, s)
		}
	}
	if diff := conformance.Diff(want, sb.Totals(t)); diff != "" {
		t.Fatalf("the API is not exact after the node loss:\n%s", diff)
	}
	if n := requests.Load(); n <= 3 {
		t.Fatalf("%d requests: nothing was uploaded after the node loss", n)
	}
	if v, _ := s.Violations(); v != 0 {
		t.Fatalf("%d concurrent requests at the API", v)
	}
}
