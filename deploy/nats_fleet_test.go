package deploy

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/usagefleet/usagefleet/internal/broker"
	"github.com/usagefleet/usagefleet/internal/config"
	"github.com/usagefleet/usagefleet/internal/fleet"
	"github.com/usagefleet/usagefleet/internal/ops"
	sbwebhook "github.com/usagefleet/usagefleet/internal/sandbox/webhook"
	"github.com/usagefleet/usagefleet/internal/usagegen"
	"github.com/usagefleet/usagefleet/messages"
	"github.com/usagefleet/usagefleet/producer"
	"github.com/usagefleet/usagefleet/workers"
	"github.com/usagefleet/usagefleet/workers/webhook"
)

// TestNATSConfigRunsTheFleet starts the cluster from deploy/nats and moves
// usage through it as the deploy users: the worker creates the R3 streams
// and buckets and runs a webhook pool, the producer publishes and waits for
// the acks, the collector keeps a checkpoint and publishes; and each user
// is refused what its role must not do. Permissions too tight would break
// production; too loose would let a producer delete the stream.
func TestNATSConfigRunsTheFleet(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-node cluster from the deploy configs (about 10 s)")
	}
	started := time.Now()
	c := loadNATSConfigs(t)
	dc := startDeployCluster(t, c)
	t.Logf("cluster from deploy/nats up in %v", time.Since(started).Round(time.Millisecond))
	ctx := context.Background()

	worker := dc.login(t, "worker")
	worker.ensureStreams(ctx, t)

	sb := sbwebhook.New(sbwebhook.Config{Token: "s3cret"})
	srv := httptest.NewServer(sb.Handler())
	t.Cleanup(srv.Close)
	dest, err := webhook.New("hook", webhook.Settings{URL: srv.URL + "/ingest", Token: config.NewSecret("s3cret")}, "test")
	if err != nil {
		t.Fatal(err)
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	pool, err := workers.NewPool(worker.nc, dest, workers.Options{Feeds: []string{"cloud"}, LeaseTTL: 10 * time.Second, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	pctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- pool.Run(pctx) }()
	t.Cleanup(func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("the pool, as the worker user: %v", err)
		}
	})

	// The producer publishes and waits as the CLI does (--wait without
	// --dest lists the destinations from the consumers on USAGE).
	prodConn := dc.login(t, "producer")
	prod, err := producer.New(prodConn.nc, producer.Options{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	const n = 2000
	recs := usagegen.Generate(n, usagegen.Options{Seed: 5, Hours: 6})
	want := usagegen.Total(recs)
	wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	for i := 0; i < n; i += n / 2 {
		res, err := prod.Publish(wctx, &messages.Batch{ID: fmt.Sprintf("deploy-%d", i), Feed: "cloud", Source: "deploy", Records: recs[i : i+n/2]})
		if err != nil {
			t.Fatalf("the producer user cannot publish: %v", err)
		}
		sums, err := prod.Wait(wctx, res, nil, nil)
		if err != nil {
			t.Fatalf("the producer user cannot wait for acks: %v", err)
		}
		if s := sums["hook"]; s == nil || s.Delivered != len(res.Parts) || !s.Cost.Equal(res.Cost) {
			t.Fatalf("batch %s: %+v", res.BatchID, s)
		}
	}
	if st := sb.Stats(); st.UniqueRecords != n || !st.UniqueCost.Equal(want.Cost.Big()) {
		t.Fatalf("the receiver holds %d records costing %s; published %d costing %s", st.UniqueRecords, st.UniqueCost, n, want.Cost)
	}

	// The workers' acks reach the server (else every part would come back
	// after AckWait).
	deadline := time.Now().Add(10 * time.Second)
	for {
		ictx, cancel := context.WithTimeout(ctx, 2*time.Second)
		cons, err := worker.js.Consumer(ictx, messages.StreamUsage, workers.ConsumerName("hook"))
		var info *jetstream.ConsumerInfo
		if err == nil {
			info, err = cons.Info(ictx)
		}
		cancel()
		if err == nil && info.NumAckPending == 0 && info.NumPending == 0 && info.AckFloor.Stream > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the worker's acks do not reach the server: consumer %+v, err %v", info, err)
		}
		time.Sleep(100 * time.Millisecond)
	}

	// The collector keeps its checkpoint and publishes.
	coll := dc.login(t, "collector")
	kv, err := coll.js.KeyValue(wctx, messages.BucketCheckpoints)
	if err != nil {
		t.Fatalf("the collector user cannot open its checkpoints: %v", err)
	}
	if _, err := kv.Put(wctx, "deploy-test", []byte(`{}`)); err != nil {
		t.Fatalf("the collector user cannot write a checkpoint: %v", err)
	}
	// A KV read is a direct get, which any replica may answer: right after
	// the write a follower may not have it yet.
	for tries := 0; ; tries++ {
		_, err := kv.Get(wctx, "deploy-test")
		if err == nil {
			break
		}
		if tries == 50 {
			t.Fatalf("the collector user cannot read its checkpoint: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	cprod, err := producer.New(coll.nc, producer.Options{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cprod.Publish(wctx, &messages.Batch{ID: "deploy-collector", Feed: "msp", Source: "deploy-collector", Records: recs[:10]}); err != nil {
		t.Fatalf("the collector user cannot publish: %v", err)
	}
	// A rejected report row goes to DEAD on dead._collect.<collector>.
	if _, err := coll.js.Publish(wctx, messages.DeadSubject("_collect", "deploy-collector"), []byte(`{"reason":"test"}`)); err != nil {
		t.Fatalf("the collector user cannot keep a rejected row in DEAD: %v", err)
	}
	t.Logf("worker, producer and collector did their work in %v", time.Since(started).Round(time.Millisecond))

	// The worker reports its destinations' state for status; the operator
	// reads everything status, dead and reconcile read.
	wctx, cancel = context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	skv, err := worker.js.CreateOrUpdateKeyValue(wctx, jetstream.KeyValueConfig{Bucket: ops.BucketStatus, TTL: ops.StatusTTL, History: 1})
	if err != nil {
		t.Fatalf("the worker user cannot create the status bucket: %v", err)
	}
	if err := ops.WriteStates(wctx, skv, ops.PoolStates("deploy-worker", map[string]*workers.Pool{"hook": pool})()); err != nil {
		t.Fatalf("the worker user cannot write its status: %v", err)
	}
	opConn := dc.login(t, "operator")
	opCfg, err := fleet.Parse([]byte("destinations:\n  - {name: hook, type: webhook, feeds: [cloud], settings: {url: \"" + srv.URL + "/ingest\"}}\n"))
	if err != nil {
		t.Fatal(err)
	}
	dests, err := ops.BuildDests(opCfg)
	if err != nil {
		t.Fatal(err)
	}
	env := &ops.Env{NC: opConn.nc, JS: opConn.js, Dests: dests}
	var st *ops.Status
	for tries := 0; ; tries++ { // KV reads are direct gets any replica answers
		if st, err = env.Status(wctx, ops.StatusOptions{}); err == nil && len(st.Destinations) == 1 && len(st.Destinations[0].Workers) == 1 {
			break
		}
		if tries == 50 {
			t.Fatalf("the operator user cannot read the status: %v %+v", err, st)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if d := st.Destinations[0]; d.Workers[0] != "deploy-worker" || d.LastUpload.IsZero() || len(st.Collectors) != 1 {
		t.Errorf("status as the operator: %+v, collectors %+v", d, st.Collectors)
	}
	dead, err := ops.ListDead(wctx, opConn.js, ops.DeadFilter{Destination: "_collect"})
	if err != nil || len(dead) != 1 {
		t.Fatalf("the operator user cannot list DEAD: %v (%d)", err, len(dead))
	}
	if _, err := ops.GetDead(wctx, opConn.js, dead[0].Seq); err != nil {
		t.Fatalf("the operator user cannot read a dead letter: %v", err)
	}
	first, last := recs[0].ChargePeriodStart, recs[0].ChargePeriodStart
	for _, r := range recs {
		if r.ChargePeriodStart.Before(first) {
			first = r.ChargePeriodStart
		}
		if r.ChargePeriodStart.After(last) {
			last = r.ChargePeriodStart
		}
	}
	rec, err := env.Reconcile(wctx, "hook", first, last.Add(time.Hour))
	if err != nil || rec.Mismatches != 0 || len(rec.Units) == 0 {
		t.Fatalf("reconcile as the operator: %v %+v", err, rec)
	}
	rkv, err := opConn.js.CreateOrUpdateKeyValue(wctx, jetstream.KeyValueConfig{Bucket: ops.BucketReplays, History: 1})
	if err != nil {
		t.Fatalf("the operator user cannot create the replay bucket: %v", err)
	}
	if _, err := rkv.Put(wctx, "hook.1", []byte(`{}`)); err != nil {
		t.Fatalf("the operator user cannot remember a replay: %v", err)
	}
	t.Logf("the operator read status, dead letters and the reconciliation in %v", time.Since(started).Round(time.Millisecond))

	// What each role must not do. A refused JetStream API request gets no
	// answer: give each a short deadline.
	refuse := func(who *conn, what string, call func(ctx context.Context) error) {
		t.Helper()
		rctx, cancel := context.WithTimeout(ctx, 1500*time.Millisecond)
		defer cancel()
		if err := call(rctx); err == nil {
			t.Errorf("%s was allowed", what)
		}
	}
	refuse(prodConn, "the producer deleting USAGE", func(ctx context.Context) error { return prodConn.js.DeleteStream(ctx, messages.StreamUsage) })
	refuse(prodConn, "the producer purging USAGE", func(ctx context.Context) error {
		s, err := prodConn.js.Stream(ctx, messages.StreamUsage)
		if err != nil {
			return err
		}
		return s.Purge(ctx)
	})
	refuse(prodConn, "the producer changing USAGE", func(ctx context.Context) error {
		_, err := prodConn.js.UpdateStream(ctx, jetstream.StreamConfig{Name: messages.StreamUsage, Subjects: []string{"usage.>"}, MaxAge: time.Hour, Replicas: 3})
		return err
	})
	refuse(prodConn, "the producer deleting the workers' consumer", func(ctx context.Context) error {
		return prodConn.js.DeleteConsumer(ctx, messages.StreamUsage, workers.ConsumerName("hook"))
	})
	refuse(prodConn, "the producer reading a part back", func(ctx context.Context) error {
		s, err := prodConn.js.Stream(ctx, messages.StreamUsage)
		if err != nil {
			return err
		}
		_, err = s.GetMsg(ctx, 1)
		return err
	})
	refuse(prodConn, "the producer reading a subject's last part", func(ctx context.Context) error {
		s, err := prodConn.js.Stream(ctx, messages.StreamUsage)
		if err != nil {
			return err
		}
		_, err = s.GetLastMsgForSubject(ctx, "usage.cloud.>")
		return err
	})
	refuse(worker, "the worker deleting USAGE", func(ctx context.Context) error { return worker.js.DeleteStream(ctx, messages.StreamUsage) })
	refuse(opConn, "the operator deleting USAGE", func(ctx context.Context) error { return opConn.js.DeleteStream(ctx, messages.StreamUsage) })
	refuse(opConn, "the operator purging DEAD", func(ctx context.Context) error {
		s, err := opConn.js.Stream(ctx, messages.StreamDead)
		if err != nil {
			return err
		}
		return s.Purge(ctx)
	})
	refuse(opConn, "the operator changing USAGE", func(ctx context.Context) error {
		_, err := opConn.js.UpdateStream(ctx, jetstream.StreamConfig{Name: messages.StreamUsage, Subjects: []string{"usage.>"}, MaxAge: time.Hour, Replicas: 3})
		return err
	})
	refuse(opConn, "the operator deleting the workers' consumer", func(ctx context.Context) error {
		return opConn.js.DeleteConsumer(ctx, messages.StreamUsage, workers.ConsumerName("hook"))
	})
	refuse(opConn, "the operator deleting the lease bucket", func(ctx context.Context) error {
		return opConn.js.DeleteKeyValue(ctx, messages.BucketLeases)
	})
	// Issue 12 item 8: logged in as producer, one paused the workers'
	// consumer until 2030, pulled a part from it, read DEAD, ACKS' other
	// inboxes and the lease bucket.
	until := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, who := range []struct {
		name string
		c    *conn
	}{{"producer", prodConn}, {"collector", coll}, {"worker", worker}, {"operator", opConn}} {
		refuse(who.c, "the "+who.name+" pausing the workers' consumer", func(ctx context.Context) error {
			_, err := who.c.js.PauseConsumer(ctx, messages.StreamUsage, workers.ConsumerName("hook"), until)
			return err
		})
	}
	for _, who := range []struct {
		name string
		c    *conn
	}{{"producer", prodConn}, {"collector", coll}} {
		c := who.c
		refuse(c, "the "+who.name+" opening the workers' consumer", func(ctx context.Context) error {
			_, err := c.js.Consumer(ctx, messages.StreamUsage, workers.ConsumerName("hook"))
			return err
		})
		refuse(c, "the "+who.name+" opening the lease bucket", func(ctx context.Context) error {
			_, err := c.js.KeyValue(ctx, messages.BucketLeases)
			return err
		})
		refuse(c, "the "+who.name+" opening the unit bucket", func(ctx context.Context) error {
			_, err := c.js.KeyValue(ctx, messages.BucketUnits)
			return err
		})
		refuse(c, "the "+who.name+" reading DEAD", func(ctx context.Context) error {
			_, err := c.js.OrderedConsumer(ctx, messages.StreamDead, jetstream.OrderedConsumerConfig{})
			return err
		})
		refuse(c, "the "+who.name+" creating a consumer on USAGE", func(ctx context.Context) error {
			_, err := c.js.CreateConsumer(ctx, messages.StreamUsage, jetstream.ConsumerConfig{Name: "sneak", FilterSubject: "usage.>"})
			return err
		})
	}
	if _, err := worker.js.Consumer(ctx, messages.StreamUsage, workers.ConsumerName("hook")); err != nil {
		t.Fatal(err)
	} else if cons, _ := worker.js.Consumer(ctx, messages.StreamUsage, workers.ConsumerName("hook")); cons.CachedInfo().Paused {
		t.Error("the workers' consumer is paused")
	}
	// Inboxes are per user: nobody subscribes to all replies, or another's.
	for _, sub := range []struct {
		who     *conn
		name    string
		subject string
	}{
		{prodConn, "producer", "_INBOX.>"},
		{prodConn, "producer", "_INBOX_worker.>"},
		{prodConn, "producer", "$JS.API.>"},
		{coll, "collector", "_INBOX_producer.>"},
		{worker, "worker", "_INBOX_producer.>"},
		{worker, "worker", "usage.>"},
		{opConn, "operator", "_INBOX_worker.>"},
		{opConn, "operator", "usage.>"},
	} {
		if _, err := sub.who.nc.SubscribeSync(sub.subject); err != nil {
			t.Fatal(err)
		}
		_ = sub.who.nc.Flush()
		if !sub.who.denied(sub.subject) {
			t.Errorf("the %s user may subscribe to %s", sub.name, sub.subject)
		}
	}
	for _, p := range []struct {
		who     *conn
		name    string
		subject string
	}{
		{prodConn, "producer", "acks.deploy.hook"},
		{prodConn, "producer", "dead.hook.deploy"},
		{prodConn, "producer", "$KV.usagefleet_leases.x"},
		{prodConn, "producer", "$KV.usagefleet_units.x"},
		{prodConn, "producer", "$KV.usagefleet_checkpoints.x"},
		{prodConn, "producer", "$JS.API.CONSUMER.MSG.NEXT.USAGE.uf_hook"},
		{prodConn, "producer", "$JS.API.CONSUMER.PAUSE.USAGE.uf_hook"},
		{prodConn, "producer", "$JS.API.DIRECT.GET.DEAD"},
		{prodConn, "producer", "$JS.API.DIRECT.GET.KV_usagefleet_leases"},
		{worker, "worker", "$JS.API.STREAM.DELETE.USAGE"},
		{worker, "worker", "usage.cloud.2024.01.01.00"},
		{coll, "collector", "$KV.usagefleet_leases.x"},
		{coll, "collector", "acks.deploy.hook"},
		{coll, "collector", "dead.hook.deploy"},
		{opConn, "operator", "acks.deploy.hook"},
		{opConn, "operator", "dead.hook.deploy"},
		{opConn, "operator", "$KV.usagefleet_leases.x"},
		{opConn, "operator", "$KV.usagefleet_units.x"},
		{opConn, "operator", "$KV.uf_status.hook.x"},
		{opConn, "operator", "$KV.usagefleet_checkpoints.x"},
		{opConn, "operator", "$JS.ACK.USAGE.uf_hook.1.1.1.1.1"},
		{opConn, "operator", "$JS.API.CONSUMER.DELETE.USAGE.uf_hook"},
		{opConn, "operator", "$JS.API.STREAM.PURGE.USAGE"},
	} {
		if err := p.who.nc.Publish(p.subject, []byte("x")); err != nil {
			t.Fatal(err)
		}
		_ = p.who.nc.Flush()
		if !p.who.denied(p.subject) {
			t.Errorf("the %s user may publish to %s", p.name, p.subject)
		}
	}

	// And nothing of it happened.
	ictx, cancel2 := context.WithTimeout(ctx, 10*time.Second)
	defer cancel2()
	s, err := worker.js.Stream(ictx, messages.StreamUsage)
	if err != nil {
		t.Fatalf("USAGE after the refusals: %v", err)
	}
	if info := s.CachedInfo(); info.State.Msgs == 0 || info.Config.MaxAge != broker.DefaultUsageMaxAge {
		t.Errorf("USAGE after the refusals: %d messages, max age %v", info.State.Msgs, info.Config.MaxAge)
	}
	if _, err := s.Consumer(ictx, workers.ConsumerName("hook")); err != nil {
		t.Errorf("the workers' consumer after the refusals: %v", err)
	}
	t.Logf("total %v", time.Since(started).Round(time.Millisecond))
}
