// Package natstest starts a real embedded nats-server with JetStream for
// tests: a random loopback port, a temporary store, the fleet's streams.
package natstest

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/usagefleet/usagefleet/internal/broker"
	"github.com/usagefleet/usagefleet/internal/config"
)

// Server is a running test server.
type Server struct {
	*broker.Embedded
	Dir string
}

// LeaseTTL is the lease bucket TTL of test servers: short, so a test that
// kills a worker holding a lease sees it expire in seconds. Pools in tests
// must use the same value (workers.Options.LeaseTTL).
const LeaseTTL = 10 * time.Second

// Start starts a server whose store lives in t.TempDir() and creates the
// streams and buckets. It stops when the test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	dir := t.TempDir()
	e, err := broker.StartEmbedded(dir, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	s := &Server{Embedded: e, Dir: dir}
	nc := s.Connect(t)
	js, err := jetstreamNew(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := broker.EnsureStreams(ctx, js, broker.StreamOptions{LeaseTTL: config.Duration(LeaseTTL)}); err != nil {
		t.Fatal(err)
	}
	return s
}

// Connect opens a client connection closed at the end of the test.
func (s *Server) Connect(t testing.TB) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(s.URL, nats.MaxReconnects(-1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}
