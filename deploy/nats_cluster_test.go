package deploy

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/usagefleet/usagefleet/internal/broker"
	"github.com/usagefleet/usagefleet/internal/config"
)

// deployCluster is the three nodes of deploy/nats started in this
// process: their own configuration, with only what a single machine
// needs changed (loopback, free ports, the routes pointing at those ports,
// temporary stores).
type deployCluster struct {
	servers []*server.Server
	urls    string
	ca      string // the CA file clients verify the nodes with
}

func startDeployCluster(t *testing.T, c *natsConfigs) *deployCluster {
	t.Helper()
	ports := map[string]int{} // node name → route port
	var ls []net.Listener
	for _, n := range c.nodes {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
		ports[n.opts.ServerName] = l.Addr().(*net.TCPAddr).Port
	}
	for _, l := range ls {
		l.Close()
	}
	dc := &deployCluster{ca: c.tls.CA}
	for _, n := range c.nodes {
		o := n.opts.Clone()
		o.Host = "127.0.0.1"
		o.Port = server.RANDOM_PORT
		o.HTTPPort = 0
		o.Cluster.Host = "127.0.0.1"
		o.Cluster.Port = ports[o.ServerName]
		o.Routes = nil
		for _, r := range n.opts.Routes {
			p, ok := ports[r.Hostname()]
			if !ok {
				t.Fatalf("%s routes to %s, which is none of the nodes", n.file, r.Host)
			}
			o.Routes = append(o.Routes, &url.URL{Scheme: r.Scheme, User: r.User, Host: fmt.Sprintf("127.0.0.1:%d", p)})
		}
		o.StoreDir = t.TempDir()
		o.NoSigs, o.NoLog = true, true
		s, err := server.NewServer(o)
		if err != nil {
			t.Fatalf("%s: %v", n.file, err)
		}
		go s.Start()
		t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
		dc.servers = append(dc.servers, s)
	}
	var urls []string
	for _, s := range dc.servers {
		if !s.ReadyForConnections(30 * time.Second) {
			t.Fatalf("node %s not ready", s.Name())
		}
		urls = append(urls, s.ClientURL())
	}
	dc.urls = strings.Join(urls, ",")
	deadline := time.Now().Add(30 * time.Second)
	for {
		leaders, current := 0, 0
		for _, s := range dc.servers {
			if s.JetStreamIsLeader() {
				leaders++
			}
			if s.JetStreamIsCurrent() {
				current++
			}
		}
		if leaders == 1 && current == len(dc.servers) {
			return dc
		}
		if time.Now().After(deadline) {
			t.Fatal("no JetStream meta leader after 30s")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// conn is a client logged in as one of the deploy users; violations
// collects the permission errors the server sends it.
type conn struct {
	nc         *nats.Conn
	js         jetstream.JetStream
	mu         sync.Mutex
	violations []string
}

func (dc *deployCluster) login(t *testing.T, user string) *conn {
	t.Helper()
	return dc.connect(t, user, os.Getenv(strings.ToUpper(user)+"_PASSWORD"), "")
}

// connect logs in as user with password (and the inbox prefix, if any),
// recording every permission violation the server reports.
func (dc *deployCluster) connect(t *testing.T, user, password, inbox string) *conn {
	t.Helper()
	nc, err := broker.Connect(context.Background(), broker.Options{URL: dc.urls, User: user, Password: config.NewSecret(password),
		InboxPrefix: inbox, TLS: broker.TLSOptions{CAFile: dc.ca}}, "deploy-test-"+user)
	if err != nil {
		t.Fatalf("login as %s: %v", user, err)
	}
	t.Cleanup(nc.Close)
	c := &conn{nc: nc}
	nc.SetErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
		c.mu.Lock()
		c.violations = append(c.violations, err.Error())
		c.mu.Unlock()
	})
	if c.js, err = jetstream.New(nc); err != nil {
		t.Fatal(err)
	}
	return c
}

// ensureStreams creates the fleet's streams and buckets on R3 as this
// user, trying again for a minute while the young cluster elects leaders.
func (c *conn) ensureStreams(ctx context.Context, t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := broker.EnsureStreams(sctx, c.js, broker.StreamOptions{Replicas: 3, LeaseTTL: config.Duration(10 * time.Second)})
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the user cannot create the streams: %v", err)
		}
		t.Logf("creating the streams: %v; trying again", err)
	}
}

// denied waits for the server to refuse a publish to subject.
func (c *conn) denied(subject string) bool {
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		c.mu.Lock()
		for _, v := range c.violations {
			if strings.Contains(v, "Permissions Violation") && strings.Contains(v, subject) {
				c.mu.Unlock()
				return true
			}
		}
		c.mu.Unlock()
		time.Sleep(20 * time.Millisecond)
	}
	return false
}
