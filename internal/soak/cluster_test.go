//go:build soak

package soak

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

var natsServer struct {
	once sync.Once
	dir  string
	path string
	err  error
	out  []byte
}

// natsServerBinary builds nats-server (the version go.mod pins) once.
func natsServerBinary(t testing.TB) string {
	t.Helper()
	natsServer.once.Do(func() {
		dir, err := os.MkdirTemp("", "usagefleet-soak-nats-")
		if err != nil {
			natsServer.err = err
			return
		}
		natsServer.dir, natsServer.path = dir, filepath.Join(dir, "nats-server")
		natsServer.out, natsServer.err = exec.Command("go", "build", "-o", natsServer.path, "github.com/nats-io/nats-server/v2").CombinedOutput()
	})
	if natsServer.err != nil {
		t.Fatalf("go build nats-server: %v\n%s", natsServer.err, natsServer.out)
	}
	return natsServer.path
}

// node is one nats-server process of the cluster.
type node struct {
	name        string
	conf, logf  string
	port, cport int

	mu sync.Mutex
	p  *proc
}

// cluster is three nats-server processes routed to each other on
// loopback, each with its own store, restartable on the same ports.
type cluster struct {
	bin   string
	nodes []*node
}

func freePorts(t *testing.T, n int) []int {
	t.Helper()
	var ls []net.Listener
	var ports []int
	for range n {
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
	return ports
}

func startCluster(t *testing.T, dir string) *cluster {
	t.Helper()
	c := &cluster{bin: natsServerBinary(t)}
	ports := freePorts(t, 6)
	var routes []string
	for i := range 3 {
		routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", ports[3+i]))
	}
	for i := range 3 {
		n := &node{name: fmt.Sprintf("n%d", i+1), port: ports[i], cport: ports[3+i]}
		store := filepath.Join(dir, n.name)
		n.conf, n.logf = filepath.Join(dir, n.name+".conf"), filepath.Join(dir, n.name+".log")
		conf := fmt.Sprintf(`server_name: %s
listen: 127.0.0.1:%d
jetstream { store_dir: %q }
cluster {
  name: soak
  listen: 127.0.0.1:%d
  routes: [%s]
}
`, n.name, n.port, store, n.cport, strings.Join(routes, ", "))
		if err := os.WriteFile(n.conf, []byte(conf), 0o644); err != nil {
			t.Fatal(err)
		}
		c.nodes = append(c.nodes, n)
	}
	for i := range c.nodes {
		if err := c.start(i); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		for i := range c.nodes {
			c.stop(i)
		}
	})
	c.waitReady(t, 60*time.Second)
	return c
}

// start starts node i (again) and waits until it listens.
func (c *cluster) start(i int) error {
	n := c.nodes[i]
	p, err := startProc(c.bin, []string{"-c", n.conf}, nil, n.logf)
	if err != nil {
		return err
	}
	n.mu.Lock()
	n.p = p
	n.mu.Unlock()
	for deadline := time.Now().Add(30 * time.Second); ; {
		conn, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", n.port), time.Second)
		if err == nil {
			conn.Close()
			return nil
		}
		if !p.alive() || time.Now().After(deadline) {
			return fmt.Errorf("node %s does not listen (see %s)", n.name, n.logf)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// kill sends SIGKILL to node i: no shutdown, no flush of its store.
func (c *cluster) kill(i int) {
	n := c.nodes[i]
	n.mu.Lock()
	p := n.p
	n.p = nil
	n.mu.Unlock()
	if p != nil {
		p.kill()
	}
}

// stop ends node i (SIGTERM, then SIGKILL after 10 s).
func (c *cluster) stop(i int) {
	n := c.nodes[i]
	n.mu.Lock()
	p := n.p
	n.p = nil
	n.mu.Unlock()
	if p != nil {
		p.stop(10 * time.Second)
	}
}

// urls is the client URL list of every node.
func (c *cluster) urls() string {
	var u []string
	for _, n := range c.nodes {
		u = append(u, fmt.Sprintf("nats://127.0.0.1:%d", n.port))
	}
	return strings.Join(u, ",")
}

// waitReady waits until JetStream answers through every node.
func (c *cluster) waitReady(t testing.TB, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for _, n := range c.nodes {
		for {
			err := func() error {
				nc, err := nats.Connect(fmt.Sprintf("nats://127.0.0.1:%d", n.port), nats.Timeout(2*time.Second))
				if err != nil {
					return err
				}
				defer nc.Close()
				js, err := jetstream.New(nc)
				if err != nil {
					return err
				}
				ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
				defer cancel()
				_, err = js.AccountInfo(ctx)
				return err
			}()
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("JetStream not ready through %s after %s: %v", n.name, timeout, err)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
}
