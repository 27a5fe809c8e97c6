package producer_test

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/usagefleet/usagefleet/messages"
	"github.com/usagefleet/usagefleet/producer"
)

// Waiting for acks while the cluster has no JetStream quorum (two of
// three nodes lost: every consumer create answers 503 "JetStream system
// temporarily unavailable") goes on once a node is back, and the batch's
// ack arrives. Before, Wait failed at once; the soak test saw it during a
// node kill.
func TestWaitOutlastsALostJetStreamQuorum(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-node cluster")
	}
	var ports []int
	for range 3 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
		l.Close()
	}
	routes := make([]*url.URL, 3)
	for i, p := range ports {
		routes[i] = &url.URL{Scheme: "nats-route", Host: fmt.Sprintf("127.0.0.1:%d", p)}
	}
	dirs := []string{t.TempDir(), t.TempDir(), t.TempDir()}
	clientPorts := []int{0, 0, 0}
	start := func(i int) *server.Server {
		t.Helper()
		port := server.RANDOM_PORT
		if clientPorts[i] != 0 {
			port = clientPorts[i]
		}
		s, err := server.NewServer(&server.Options{
			ServerName: fmt.Sprintf("q%d", i+1), Host: "127.0.0.1", Port: port,
			JetStream: true, StoreDir: dirs[i], NoSigs: true, NoLog: true,
			Cluster: server.ClusterOpts{Name: "quorum", Host: "127.0.0.1", Port: ports[i]}, Routes: routes,
		})
		if err != nil {
			t.Fatal(err)
		}
		go s.Start()
		if !s.ReadyForConnections(30 * time.Second) {
			t.Fatalf("server %d not ready", i+1)
		}
		clientPorts[i] = s.Addr().(*net.TCPAddr).Port
		t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
		return s
	}
	servers := []*server.Server{start(0), start(1), start(2)}
	nc, err := nats.Connect(servers[0].ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	for {
		cctx, ccancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := js.CreateStream(cctx, jetstream.StreamConfig{Name: messages.StreamAcks, Subjects: []string{"acks.>"}, Replicas: 3})
		ccancel()
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			t.Fatal(err)
		}
		time.Sleep(200 * time.Millisecond) // the young cluster elects its meta leader
	}
	servers[1].Shutdown()
	servers[1].WaitForShutdown()
	servers[2].Shutdown()
	servers[2].WaitForShutdown()

	p, err := producer.New(nc, producer.Options{})
	if err != nil {
		t.Fatal(err)
	}
	res := &producer.Result{BatchID: "q-1", Source: "s", Feed: "f", Parts: []producer.PartInfo{{Part: 1}}, Records: 1, Published: time.Now()}
	type waited struct {
		sums map[string]*producer.Summary
		err  error
	}
	done := make(chan waited, 1)
	go func() {
		sums, err := p.Wait(ctx, res, []string{"d"}, nil)
		done <- waited{sums, err}
	}()
	// Negative check: for 3 s (bounded) Wait must not give up while the
	// quorum is lost.
	select {
	case w := <-done:
		t.Fatalf("Wait ended while the quorum was lost: %v", w.err)
	case <-time.After(3 * time.Second):
	}
	start(1)
	ack, _ := messages.EncodeAck(messages.Ack{BatchID: "q-1", Part: 1, Feed: "f", Source: "s", Destination: "d", Status: messages.AckDelivered, Records: 1, Time: time.Now()})
	for {
		pctx, pcancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := js.Publish(pctx, "acks.s.d", ack)
		pcancel()
		if err == nil {
			break
		} else if ctx.Err() != nil {
			t.Fatalf("publishing the ack once the quorum is back: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	select {
	case w := <-done:
		if w.err != nil || w.sums["d"] == nil || w.sums["d"].Delivered != 1 {
			t.Fatalf("Wait = %+v, %v; want part 1 delivered at d", w.sums["d"], w.err)
		}
	case <-ctx.Done():
		t.Fatal("Wait did not see the ack once the quorum was back")
	}
}
