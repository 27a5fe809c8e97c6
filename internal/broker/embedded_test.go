package broker_test

import (
	"net"
	"testing"

	"github.com/usagefleet/usagefleet/internal/broker"
)

// The embedded server (a worker or gateway without nats.url, the demo,
// the tests) has no auth, so it must be reachable from this host only
// (issue 12 item 11): its client listener is bound to 127.0.0.1, on a
// random port or the one given, and it opens no other listener (HTTP
// monitoring, cluster, leaf nodes, profiler, websocket, MQTT), whose
// defaults would be all interfaces.
func TestEmbeddedListensOnLoopbackOnly(t *testing.T) {
	free := func() int {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		return l.Addr().(*net.TCPAddr).Port
	}
	for _, port := range []int{0, free()} {
		e, err := broker.StartEmbedded(t.TempDir(), port)
		if err != nil {
			t.Fatal(err)
		}
		addr, ok := e.Server.Addr().(*net.TCPAddr)
		if !ok || !addr.IP.Equal(net.IPv4(127, 0, 0, 1)) {
			t.Errorf("port %d: the client listener is on %v, want 127.0.0.1 only", port, e.Server.Addr())
		}
		if port != 0 && (addr == nil || addr.Port != port) {
			t.Errorf("the client listener is on %v, want port %d", e.Server.Addr(), port)
		}
		if want := "nats://127.0.0.1:"; len(e.URL) < len(want) || e.URL[:len(want)] != want {
			t.Errorf("URL %s, want %s...", e.URL, want)
		}
		for name, a := range map[string]*net.TCPAddr{"monitoring": e.Server.MonitorAddr(), "cluster": e.Server.ClusterAddr(), "profiler": e.Server.ProfilerAddr()} {
			if a != nil {
				t.Errorf("the embedded server listens for %s on %v: want no such listener", name, a)
			}
		}
		v, err := e.Server.Varz(nil)
		if err != nil {
			t.Fatal(err)
		}
		if v.Host != "127.0.0.1" || v.HTTPPort != 0 || v.HTTPSPort != 0 || v.Cluster.Port != 0 || v.Gateway.Port != 0 || v.LeafNode.Port != 0 || v.Websocket.Port != 0 || v.MQTT.Port != 0 {
			t.Errorf("listeners: host %q, http %d, https %d, cluster %d, gateway %d, leaf %d, websocket %d, mqtt %d; want 127.0.0.1 and clients only",
				v.Host, v.HTTPPort, v.HTTPSPort, v.Cluster.Port, v.Gateway.Port, v.LeafNode.Port, v.Websocket.Port, v.MQTT.Port)
		}
		e.Close()
	}
}
