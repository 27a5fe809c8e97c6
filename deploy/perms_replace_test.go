package deploy

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/shopspring/decimal"

	"github.com/usagefleet/usagefleet/internal/config"
	sbcloudzero "github.com/usagefleet/usagefleet/internal/sandbox/cloudzero"
	"github.com/usagefleet/usagefleet/internal/usagegen"
	"github.com/usagefleet/usagefleet/messages"
	"github.com/usagefleet/usagefleet/producer"
	"github.com/usagefleet/usagefleet/workers"
	"github.com/usagefleet/usagefleet/workers/cloudzero"
)

// lacking is a worker user added to the deploy configs for this test: the
// deploy worker role less one publish permission (what a config that
// forgot it would give).
type lacking struct {
	user    string // the added user's name
	without string // the permission taken out of the worker's allow-list
	feed    string
}

var lackingWorkers = []lacking{
	// Rebuilds read a unit's parts, and the pool reads leases and units,
	// by direct get.
	{"worker-no-directget", "$JS.API.DIRECT.GET.>", "nodg"},
	// A replace pool takes a unit's lease (a KV create on the R3 bucket)
	// before it uploads the unit.
	{"worker-no-leases", "$KV.usagefleet_leases.>", "nolease"},
}

// addLackingWorkers adds, to every node's users, a copy of the deploy
// worker user (same account, same password, same inbox) without one
// permission.
func addLackingWorkers(t *testing.T, c *natsConfigs) {
	t.Helper()
	for _, n := range c.nodes {
		var worker *server.User
		for _, u := range n.opts.Users {
			if u.Username == "worker" {
				worker = u
			}
		}
		if worker == nil || worker.Permissions == nil || worker.Permissions.Publish == nil {
			t.Fatalf("%s: no worker user with publish permissions", n.file)
		}
		for _, l := range lackingWorkers {
			allow := slices.Clone(worker.Permissions.Publish.Allow)
			i := slices.Index(allow, l.without)
			if i < 0 {
				// The deploy worker lacks it: the pool as "worker" fails.
				t.Errorf("%s: the worker role has no %q", n.file, l.without)
			} else {
				allow = slices.Delete(allow, i, i+1)
			}
			p := &server.Permissions{
				Publish: &server.SubjectPermission{Allow: allow, Deny: slices.Clone(worker.Permissions.Publish.Deny)},
			}
			if s := worker.Permissions.Subscribe; s != nil {
				p.Subscribe = &server.SubjectPermission{Allow: slices.Clone(s.Allow), Deny: slices.Clone(s.Deny)}
			}
			n.opts.Users = append(n.opts.Users, &server.User{Username: l.user, Password: worker.Password, Account: worker.Account, Permissions: p})
		}
	}
}

// loginAs logs in as user with the worker's password and inbox.
func (dc *deployCluster) loginAs(t *testing.T, user, password string) *conn {
	t.Helper()
	return dc.connect(t, user, password, "_INBOX_worker")
}

// replaceSandbox is a CloudZero emulator on loopback with one connection.
type replaceSandbox struct {
	s    *sbcloudzero.Server
	url  string
	conn string
	key  string
}

func newReplaceSandbox(t *testing.T, name string) *replaceSandbox {
	sb := &replaceSandbox{conn: "deploy-" + name, key: "deploy-key-" + name + "-0123456789"}
	sb.s = sbcloudzero.New(sbcloudzero.Config{Connections: map[string]string{sb.conn: sb.key}})
	srv := httptest.NewServer(sb.s.Handler())
	t.Cleanup(srv.Close)
	sb.url = srv.URL
	return sb
}

// hours is what the emulator holds per UTC hour: rows and exact cost.
func (sb *replaceSandbox) hours() map[time.Time]string {
	out := map[time.Time]string{}
	for h := range sb.s.Hours(sb.conn) {
		n, cost := 0, decimal.Zero
		for _, r := range sb.s.Rows(sb.conn, h) {
			if r["lineitem/id"] == cloudzero.PlaceholderLineItemID {
				continue
			}
			n++
			cost = cost.Add(decimal.RequireFromString(r["cost/cost"]))
		}
		if n > 0 {
			out[h] = fmt.Sprintf("%d records, %s", n, cost)
		}
	}
	return out
}

// runReplacePool runs a CloudZero pool named dest on feed as the user of
// c until the test ends (or stop is called).
func runReplacePool(t *testing.T, c *conn, dest, feed string, sb *replaceSandbox) (stop func() error) {
	t.Helper()
	d, err := cloudzero.New(dest, cloudzero.Settings{BaseURL: sb.url, ConnectionID: sb.conn, APIKey: config.NewSecret(sb.key), HTTPTimeout: config.Duration(5 * time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	pool, err := workers.NewPool(c.nc, d, workers.Options{
		Feeds:    []string{feed},
		LeaseTTL: 10 * time.Second,
		Flush:    workers.FlushPolicy{MaxDelay: 300 * time.Millisecond, Quiet: 100 * time.Millisecond},
		Retry:    workers.RetryPolicy{Initial: 50 * time.Millisecond, Max: 500 * time.Millisecond},
		Logger:   quiet,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- pool.Run(ctx) }()
	var once sync.Once
	var runErr error
	stop = func() error {
		once.Do(func() { cancel(); runErr = <-done })
		return runErr
	}
	t.Cleanup(func() { _ = stop() })
	return stop
}

// TestNATSConfigWorkerRunsAReplacePool starts the cluster from deploy/nats
// and runs a CloudZero pool (a replace destination) as the deploy worker
// user on R3 streams and buckets, against the CloudZero emulator on
// loopback: each hour it holds is exactly what the producer user
// published, after leases were written on the R3 lease bucket and the
// units rebuilt from USAGE by direct get. TestNATSConfigRunsTheFleet runs
// only a webhook pool, which needs neither. Then the same pool as a
// worker user lacking the direct gets, and one lacking the lease bucket:
// each is refused by the server, and nothing of its feed reaches the API.
func TestNATSConfigWorkerRunsAReplacePool(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-node cluster from the deploy configs (about 10 s)")
	}
	c := loadNATSConfigs(t)
	workerPassword := ""
	for _, u := range c.nodes[0].opts.Users {
		if u.Username == "worker" {
			workerPassword = u.Password
		}
	}
	addLackingWorkers(t, c)
	dc := startDeployCluster(t, c)
	ctx := context.Background()

	worker := dc.login(t, "worker")
	worker.ensureStreams(ctx, t)
	ictx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for _, name := range []string{messages.StreamUsage, "KV_" + messages.BucketLeases, "KV_" + messages.BucketUnits} {
		s, err := worker.js.Stream(ictx, name)
		if err != nil {
			t.Fatal(err)
		}
		if r := s.CachedInfo().Config.Replicas; r != 3 {
			t.Fatalf("%s has %d replicas; want 3", name, r)
		}
	}
	leaseSeq := func() uint64 {
		t.Helper()
		s, err := worker.js.Stream(ictx, "KV_"+messages.BucketLeases)
		if err != nil {
			t.Fatal(err)
		}
		return s.CachedInfo().State.LastSeq
	}
	leasesBefore := leaseSeq()

	sb := newReplaceSandbox(t, "cz")
	runReplacePool(t, worker, "cz", "cloud", sb)

	prodConn := dc.login(t, "producer")
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	prod, err := producer.New(prodConn.nc, producer.Options{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	const n = 1200
	recs := usagegen.Generate(n, usagegen.Options{Seed: 8, Hours: 4})
	want := map[time.Time]string{}
	{
		type tot struct {
			n    int
			cost messages.Sum
		}
		per := map[time.Time]*tot{}
		for i := range recs {
			h := recs[i].ChargePeriodStart.UTC().Truncate(time.Hour)
			if per[h] == nil {
				per[h] = &tot{}
			}
			per[h].n++
			per[h].cost.Add(recs[i].BilledCost)
		}
		for h, v := range per {
			want[h] = fmt.Sprintf("%d records, %s", v.n, v.cost.Big())
		}
	}
	wctx, wcancel := context.WithTimeout(ctx, 90*time.Second)
	defer wcancel()
	// Three batches: later parts of an hour arrive after it was uploaded,
	// so hours are rebuilt and replaced again.
	for i := 0; i < n; i += n / 3 {
		res, err := prod.Publish(wctx, &messages.Batch{ID: fmt.Sprintf("replace-%d", i), Feed: "cloud", Source: "deploy", Records: recs[i : i+n/3]})
		if err != nil {
			t.Fatalf("the producer user cannot publish: %v", err)
		}
		sums, err := prod.Wait(wctx, res, []string{"cz"}, nil)
		if err != nil {
			t.Fatalf("waiting for the replace pool's acks: %v", err)
		}
		if s := sums["cz"]; s == nil || s.Delivered != len(res.Parts) || !s.Cost.Equal(res.Cost) {
			t.Fatalf("batch %s: %+v", res.BatchID, s)
		}
	}
	// Every part acked: each was in an upload whose rebuild began after it
	// was stored, so each hour's last upload holds all of it.
	got := sb.hours()
	for h, w := range want {
		if got[h] != w {
			t.Errorf("hour %s: the API holds %q; published %q", h.Format(time.RFC3339), got[h], w)
		}
	}
	for h, g := range got {
		if _, ok := want[h]; !ok {
			t.Errorf("hour %s: the API holds %q; nothing was published for it", h.Format(time.RFC3339), g)
		}
	}
	if leaseSeq() == leasesBefore {
		t.Error("no lease was written on the R3 lease bucket: the check proved nothing")
	}
	worker.mu.Lock()
	if len(worker.violations) > 0 {
		t.Errorf("the worker user was refused: %v", worker.violations)
	}
	worker.mu.Unlock()

	// The same pool as a worker user lacking what a replace pool needs.
	for _, l := range lackingWorkers {
		t.Run("without "+l.without, func(t *testing.T) {
			wc := dc.loginAs(t, l.user, workerPassword)
			lsb := newReplaceSandbox(t, l.feed)
			stop := runReplacePool(t, wc, "cz-"+l.feed, l.feed, lsb)
			pctx, cancel := context.WithTimeout(ctx, 60*time.Second)
			defer cancel()
			if _, err := prod.Publish(pctx, &messages.Batch{ID: "lacking-" + l.feed, Feed: l.feed, Source: "deploy", Records: recs[:50]}); err != nil {
				t.Fatal(err)
			}
			// The server refuses the pool what it lacks; until then no
			// upload could have started (each needs the lease and a
			// rebuild), and after it none can.
			denied := strings.TrimSuffix(l.without, ">")
			if !wc.deniedWithin(denied, 60*time.Second) {
				t.Fatalf("no permission violation on %s for the pool of %s", denied, l.user)
			}
			if err := stop(); err != nil {
				t.Errorf("the pool: %v", err)
			}
			if got := lsb.hours(); len(got) != 0 || len(lsb.s.Requests(lsb.conn)) != 0 {
				t.Fatalf("without %s the pool still uploaded: %v", l.without, got)
			}
		})
	}
}

// deniedWithin is denied with a longer wait: a pool reaches its first
// direct get or lease only after its flush delay.
func (c *conn) deniedWithin(subject string, d time.Duration) bool {
	for deadline := time.Now().Add(d); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		c.mu.Lock()
		for _, v := range c.violations {
			if strings.Contains(v, "Permissions Violation") && strings.Contains(v, subject) {
				c.mu.Unlock()
				return true
			}
		}
		c.mu.Unlock()
	}
	return false
}
