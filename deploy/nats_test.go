package deploy

import (
	"crypto/tls"
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/nats-io/nats-server/v2/server"
)

var natsFiles = []string{"deploy/nats/nats-1.conf", "deploy/nats/nats-2.conf", "deploy/nats/nats-3.conf"}

// The account the fleet's streams live in; KEDA's ScaledObject names it.
const fleetAccount = "USAGEFLEET"

type natsNode struct {
	file string
	opts *server.Options
}

type natsConfigs struct {
	nodes  []*natsNode
	byFile map[string]*natsNode
	port   int               // client port
	users  map[string]string // user → account
	tls    testTLS
}

func (n *natsConfigs) hasUser(u string) bool { _, ok := n.users[u]; return ok }

func natsProcess(rel string) (*server.Options, error) {
	return server.ProcessConfigFile(repoPath(rel))
}

// loadNATSConfigs reads the three node configs with the server's own
// parser, with the development environment (their passwords) set.
func loadNATSConfigs(t *testing.T) *natsConfigs {
	t.Helper()
	setenv(t, envFile(t, "deploy/compose/dev.env"))
	c := &natsConfigs{byFile: map[string]*natsNode{}, users: map[string]string{}, tls: newTestTLS(t)}
	// The certificates of this run, where compose mounts the dev ones.
	setenv(t, map[string]string{"NATS_TLS_CERT": c.tls.Cert, "NATS_TLS_KEY": c.tls.Key, "NATS_TLS_CA": c.tls.CA})
	for _, f := range natsFiles {
		o, err := natsProcess(f)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		n := &natsNode{file: f, opts: o}
		c.nodes = append(c.nodes, n)
		c.byFile[f] = n
	}
	c.port = c.nodes[0].opts.Port
	for _, u := range c.nodes[0].opts.Users {
		acc := ""
		if u.Account != nil {
			acc = u.Account.Name
		}
		c.users[u.Username] = acc
	}
	return c
}

// TestNATSConfigs checks the three node configs as the server reads them:
// JetStream with a store, a cluster of three routes naming the three
// nodes, the monitoring port KEDA reads, the users of each role in the
// fleet's account, passwords that must come from the environment, and
// files that differ only in the node's name.
func TestNATSConfigs(t *testing.T) {
	c := loadNATSConfigs(t)
	names := map[string]bool{}
	for _, n := range c.nodes {
		o := n.opts
		if !o.JetStream || o.StoreDir == "" {
			t.Errorf("%s: jetstream %v, store_dir %q", n.file, o.JetStream, o.StoreDir)
		}
		if o.ServerName == "" || names[o.ServerName] {
			t.Errorf("%s: server_name %q is empty or used twice", n.file, o.ServerName)
		}
		names[o.ServerName] = true
		if o.Cluster.Name != c.nodes[0].opts.Cluster.Name || o.Cluster.Port == 0 {
			t.Errorf("%s: cluster %q port %d", n.file, o.Cluster.Name, o.Cluster.Port)
		}
		if len(o.Routes) != 3 {
			t.Errorf("%s: %d routes; want 3 (every node, itself included)", n.file, len(o.Routes))
		}
		for _, r := range o.Routes {
			if r.Port() != fmt.Sprint(o.Cluster.Port) {
				t.Errorf("%s: route %s; the cluster port is %d", n.file, r, o.Cluster.Port)
			}
		}
		if o.HTTPPort != 8222 || o.HTTPHost != "127.0.0.1" {
			t.Errorf("%s: monitoring on %s:%d; want 127.0.0.1:8222 (unauthenticated: loopback only; the healthchecks use it)", n.file, o.HTTPHost, o.HTTPPort)
		}
		if o.TLSConfig == nil || o.TLSTimeout <= 0 {
			t.Errorf("%s: clients are not on TLS", n.file)
		}
		if tc := o.Cluster.TLSConfig; tc == nil || tc.ClientAuth != tls.RequireAndVerifyClientCert {
			t.Errorf("%s: routes are not mutual TLS", n.file)
		}
		if o.Port != c.port {
			t.Errorf("%s: client port %d, another node %d", n.file, o.Port, c.port)
		}
		if o.SystemAccount == "" || o.SystemAccount == fleetAccount {
			t.Errorf("%s: system_account %q", n.file, o.SystemAccount)
		}
	}
	for name := range names {
		found := false
		for _, r := range c.nodes[0].opts.Routes {
			found = found || r.Hostname() == name
		}
		if !found {
			t.Errorf("no route names node %s", name)
		}
	}
	for _, u := range []string{"worker", "producer", "collector", "operator"} {
		if c.users[u] != fleetAccount {
			t.Errorf("user %s is in account %q; want %s", u, c.users[u], fleetAccount)
		}
	}

	// The files are one file but for the node's name.
	norm := regexp.MustCompile(`(?m)^server_name: .*$|(?m)^# usagefleet NATS node .*$`)
	first := norm.ReplaceAllString(string(readFile(t, natsFiles[0])), "")
	for _, f := range natsFiles[1:] {
		if got := norm.ReplaceAllString(string(readFile(t, f)), ""); got != first {
			t.Errorf("%s differs from %s in more than server_name", f, natsFiles[0])
		}
	}

	// A password missing from the environment stops the server.
	for _, v := range []string{"WORKER_PASSWORD", "PRODUCER_PASSWORD", "COLLECTOR_PASSWORD", "OPERATOR_PASSWORD", "SYS_PASSWORD", "NATS_TLS_CERT", "NATS_TLS_CA"} {
		t.Run("without "+v, func(t *testing.T) {
			old := os.Getenv(v)
			os.Unsetenv(v)
			t.Cleanup(func() { os.Setenv(v, old) })
			if _, err := natsProcess(natsFiles[0]); err == nil || !strings.Contains(err.Error(), v) {
				t.Errorf("with $%s unset the config loads (err %v)", v, err)
			}
		})
	}
}
