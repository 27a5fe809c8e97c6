//go:build soak

package soak

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nkeys"

	"github.com/usagefleet/usagefleet/internal/broker"
	"github.com/usagefleet/usagefleet/internal/broker/natstest"
	"github.com/usagefleet/usagefleet/internal/config"
	ccsandbox "github.com/usagefleet/usagefleet/internal/sandbox/cloudcruiser"
	czsandbox "github.com/usagefleet/usagefleet/internal/sandbox/cloudzero"
	"github.com/usagefleet/usagefleet/internal/sandbox/fault"
	hooksandbox "github.com/usagefleet/usagefleet/internal/sandbox/webhook"
)

var soakDuration = flag.Duration("soak.duration", 10*time.Minute, "how long producers publish while faults and kills go on; then the fleet quiesces and every unit is checked")

const (
	czConn    = "50a50a50-1234-abcd-1234-abcd1234soak"
	czKey     = "SoakKey1234EfGh5678AbCd1234EfGh5678Ab"
	ccToken   = "cc-soak-7f3e91c04b2a5d68"
	hookToken = "hook-soak-0c4d2e1f"
)

// The destination names of the fleet.
const (
	destCZ   = "cz"
	destCC   = "cc"
	destHook = "hook"
	feed     = "soak"
)

var allDests = []string{destCZ, destCC, destHook}

func TestMain(m *testing.M) {
	flag.Parse()
	code := m.Run()
	natstest.RemoveWorkerBinary()
	if natsServer.dir != "" {
		os.RemoveAll(natsServer.dir)
	}
	os.Exit(code)
}

// sandboxes are the three destination emulators, in this process so the
// test reads what they hold, each behind a fault injector.
type sandboxes struct {
	cz   *czsandbox.Server
	cc   *ccsandbox.Server
	hook *hooksandbox.Server
	urls map[string]string
}

func startSandboxes(t *testing.T) *sandboxes {
	sb := &sandboxes{
		cz:   czsandbox.New(czsandbox.Config{Connections: map[string]string{czConn: czKey}, MaxRowsPerMonth: -1, MaxBytesPerMonth: -1, Seed: 1}),
		cc:   ccsandbox.New(ccsandbox.Config{Token: ccToken, Seed: 2}),
		hook: hooksandbox.New(hooksandbox.Config{Token: hookToken, Seed: 3}),
		urls: map[string]string{},
	}
	for name, h := range map[string]http.Handler{destCZ: sb.cz.Handler(), destCC: sb.cc.Handler(), destHook: sb.hook.Handler()} {
		ts := httptest.NewServer(h)
		t.Cleanup(ts.Close)
		sb.urls[name] = ts.URL
	}
	return sb
}

// faultRules are the faults every destination sees while the soak runs:
// errors before and after applying, 429 with Retry-After, resets before
// and after applying, slow answers and answers slower than http_timeout.
func faultRules(method string) []fault.Rule {
	return []fault.Rule{
		{Kind: fault.Status, Code: 500, Rate: 0.04, Method: method},
		{Kind: fault.Status, Code: 503, Rate: 0.02, Method: method},
		{Kind: fault.Status, Code: 429, RetryAfter: "1", Rate: 0.03, Method: method},
		{Kind: fault.ApplyThenStatus, Code: 502, Rate: 0.02, Method: method},
		{Kind: fault.Reset, Rate: 0.02, Method: method},
		{Kind: fault.ApplyThenReset, Rate: 0.02, Method: method},
		{Kind: fault.Timeout, Delay: 2 * time.Second, Rate: 0.02, Method: method},  // slow, then dropped
		{Kind: fault.Timeout, Delay: 20 * time.Second, Rate: 0.01, Method: method}, // beyond http_timeout
	}
}

// dumpRequests writes every request the CloudZero and Cloud Cruiser
// emulators logged, one JSON line each, to dir: what a concurrency
// violation needs for its post-mortem.
func (sb *sandboxes) dumpRequests(dir string) {
	write := func(name string, v any) {
		f, err := os.Create(filepath.Join(dir, name))
		if err != nil {
			return
		}
		defer f.Close()
		enc := json.NewEncoder(f)
		switch l := v.(type) {
		case []czsandbox.RequestLog:
			for _, r := range l {
				_ = enc.Encode(r)
			}
		case []ccsandbox.UploadLog:
			for _, r := range l {
				_ = enc.Encode(r)
			}
		}
	}
	write("cz-requests.jsonl", sb.cz.Requests(czConn))
	write("cc-uploads.jsonl", sb.cc.Uploads())
}

func (sb *sandboxes) setFaults(on bool) {
	for _, x := range []struct {
		inj    *fault.Injector
		method string
	}{{sb.cz.Faults(), http.MethodPost}, {sb.cc.Faults(), http.MethodPut}, {sb.hook.Faults(), http.MethodPost}} {
		if on {
			x.inj.Set(faultRules(x.method)...)
		} else {
			x.inj.Clear()
		}
	}
}

// injected is how many faults each destination saw, by kind.
func (sb *sandboxes) injected() map[string]map[fault.Kind]int {
	return map[string]map[fault.Kind]int{destCZ: sb.cz.Faults().Injected(), destCC: sb.cc.Faults().Injected(), destHook: sb.hook.Faults().Injected()}
}

func workerConfig(urls string, sb *sandboxes, pubA, pubB string) string {
	dest := func(name, typ, settings string) string {
		return fmt.Sprintf(`  - name: %s
    type: %s
    feeds: [%s]
    http_timeout: 5s
    ack_wait: 5s
    flush: {max_delay: 2s, quiet: 500ms}
    retry: {initial: 100ms, max: 2s}
    settings:
%s`, name, typ, feed, settings)
	}
	return fmt.Sprintf(`nats: {url: %q}
streams: {replicas: 3, lease_ttl: 10s}
sources:
  team-a: [%s]
  team-b: [%s]
worker: {drain_timeout: 5s, log_format: json, newer_schema_max_hold: 1m}
destinations:
%s
%s
%s
`, urls, pubA, pubB,
		dest(destCZ, "cloudzero", fmt.Sprintf("      base_url: %s\n      connection_id: %s\n      api_key: {env: SOAK_CZ_KEY}\n", sb.urls[destCZ], czConn)),
		dest(destCC, "cloudcruiser", fmt.Sprintf("      base_url: %s\n      token: {env: SOAK_CC_TOKEN}\n", sb.urls[destCC])),
		dest(destHook, "webhook", fmt.Sprintf("      url: %s/ingest\n      token: {env: SOAK_HOOK_TOKEN}\n", sb.urls[destHook])))
}

func userKey(t *testing.T) (nkeys.KeyPair, string) {
	t.Helper()
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	pub, err := kp.PublicKey()
	if err != nil {
		t.Fatal(err)
	}
	return kp, pub
}

// TestSoak runs everything of issue 12 at once for -soak.duration, then
// quiesces and checks every unit at every destination.
func TestSoak(t *testing.T) {
	began := time.Now()
	dir := t.TempDir()
	// The producers' and connections' retry warnings go to a file: a node
	// kill makes hundreds.
	plog, err := os.Create(filepath.Join(dir, "producers.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer plog.Close()
	defer slog.SetDefault(slog.Default())
	slog.SetDefault(slog.New(slog.NewTextHandler(plog, nil)))
	// On failure keep the logs and the emulators' request logs (the temp
	// dir goes when the test ends; this cleanup runs before that).
	var sb *sandboxes
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		keep, err := os.MkdirTemp("", "usagefleet-soak-logs-")
		if err != nil {
			return
		}
		logs, _ := filepath.Glob(filepath.Join(dir, "*.log"))
		for _, l := range logs {
			if b, err := os.ReadFile(l); err == nil {
				_ = os.WriteFile(filepath.Join(keep, filepath.Base(l)), b, 0o644)
			}
		}
		if sb != nil {
			sb.dumpRequests(keep)
		}
		t.Logf("the soak failed: logs and request logs kept in %s", keep)
	})
	workerBin := natstest.WorkerBinary(t)
	cl := startCluster(t, dir)
	t.Logf("cluster up: %s", cl.urls())

	ctx, cancel := context.WithTimeout(context.Background(), *soakDuration+20*time.Minute)
	defer cancel()
	nc, err := broker.Connect(ctx, broker.Options{URL: cl.urls()}, "soak-test")
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js := mustJS(t, nc)
	for attempt := 0; ; attempt++ { // a young cluster may lose a reply
		actx, acancel := context.WithTimeout(ctx, 15*time.Second)
		err = broker.EnsureStreams(actx, js, broker.StreamOptions{Replicas: 3, LeaseTTL: config.Duration(10 * time.Second)})
		acancel()
		if err == nil {
			break
		}
		if attempt == 10 {
			t.Fatal(err)
		}
		time.Sleep(time.Second)
	}

	sb = startSandboxes(t)
	kpA, pubA := userKey(t)
	kpB, pubB := userKey(t)
	cfg := filepath.Join(dir, "worker.yaml")
	if err := os.WriteFile(cfg, []byte(workerConfig(cl.urls(), sb, pubA, pubB)), 0o644); err != nil {
		t.Fatal(err)
	}
	fl := &fleet{bin: workerBin, cfg: cfg, dir: dir, env: []string{"SOAK_CZ_KEY=" + czKey, "SOAK_CC_TOKEN=" + ccToken, "SOAK_HOOK_TOKEN=" + hookToken}}
	for i := range 2 {
		if err := fl.start(i); err != nil {
			t.Fatal(err)
		}
	}
	defer fl.stopAll()
	t.Logf("logs, configs and stores in %s", dir)

	exp := newExpect()
	soakClock.began, soakClock.span = time.Now(), *soakDuration
	pubs := newPublishers(t, ctx, cl.urls(), kpA, kpB, exp)
	sb.setFaults(true)

	// The chaos: producers, worker kills, node kills, the hostile producer
	// and poison, all at once until the duration is over.
	soakCtx, soakStop := context.WithTimeout(ctx, *soakDuration)
	defer soakStop()
	var wg sync.WaitGroup
	st := &stats{}
	wg.Add(2)
	go func() { defer wg.Done(); pubs.run(soakCtx, "team-a", 400*time.Millisecond) }()
	go func() { defer wg.Done(); pubs.run(soakCtx, "team-b", 800*time.Millisecond) }()
	wg.Add(1)
	go func() { defer wg.Done(); killWorkers(soakCtx, t, fl, pubs, st) }()
	wg.Add(1)
	go func() { defer wg.Done(); killNodes(soakCtx, t, cl, pubs, st) }()
	var hostile *hostileResult
	wg.Add(1)
	go func() {
		defer wg.Done()
		select {
		case <-soakCtx.Done():
			return
		case <-time.After(min(20*time.Second, *soakDuration/4)):
		}
		hostile = runHostile(ctx, t, nc, js, pubs, kpA, kpB)
	}()
	wg.Add(1)
	go func() { // a worker dies only when the test kills it
		defer wg.Done()
		for {
			select {
			case <-soakCtx.Done():
				return
			case <-time.After(2 * time.Second):
			}
			for _, i := range fl.sample() {
				t.Errorf("worker %d died on its own: see %s", i+1, filepath.Join(dir, fmt.Sprintf("worker%d.log", i+1)))
				if err := fl.start(i); err != nil {
					t.Error(err)
				}
			}
		}
	}()
	<-soakCtx.Done()
	wg.Wait()
	soakEnd := time.Now()
	pubs.waitProbes()

	// Quiesce: faults off, every node and worker up, then wait until every
	// unit is exact (or the deadline says what is not).
	sb.setFaults(false)
	faults := sb.injected()
	for i, n := range cl.nodes {
		n.mu.Lock()
		down := n.p == nil
		n.mu.Unlock()
		if down {
			if err := cl.start(i); err != nil {
				t.Fatal(err)
			}
		}
	}
	t.Logf("soak over after %s: quiescing (faults off)", soakEnd.Sub(began).Round(time.Second))
	want := exp.final()
	var diff string
	quiesceDeadline := time.Now().Add(10 * time.Minute)
	for {
		diff = diffAll(want, held(sb))
		if diff == "" || time.Now().After(quiesceDeadline) {
			break
		}
		time.Sleep(5 * time.Second)
	}
	quiesced := time.Since(soakEnd)
	if diff != "" {
		t.Errorf("after %s of quiescing the destinations are not exact:\n%s", quiesced.Round(time.Second), clip(diff, 60))
	}
	checkViolations(t, sb)
	deadOK := checkDead(t, ctx, js, hostile, pubs)
	fl.sample()

	// The figures.
	rec := st.recoveries()
	t.Logf("SOAK FIGURES (%s, soak %s, wall %s)", began.UTC().Format(time.RFC3339), soakDuration.String(), time.Since(began).Round(time.Second))
	t.Logf("  records published: %d (batches %d, parts %d; team-a %d, team-b %d records), snapshot generations %d",
		exp.records, exp.batches, exp.parts, exp.bySource["team-a"], exp.bySource["team-b"], exp.generations)
	t.Logf("  publish retries (a batch failed and was published again): %d", pubs.retries())
	t.Logf("  kills: %d workers (kill -9, restarted), %d nats-server nodes (kill -9, restarted)", st.workerKills, st.nodeKills)
	t.Logf("  recovery after a kill (kill to a probe batch acked by all 3 destinations): %s", rec)
	for _, d := range allDests {
		t.Logf("  faults injected at %s: %s", d, kinds(faults[d]))
	}
	t.Logf("  units checked: %d CloudZero hours, %d Cloud Cruiser dates, %d webhook hour/currency units and %d webhook records by id",
		len(want.cz), len(want.cc), len(want.hookUnits), len(want.hookIDs))
	hs := sb.hook.Stats()
	t.Logf("  webhook: %d records received, %d unique by idempotency key, %d duplicate requests (retries the key removed)", hs.Records, hs.UniqueRecords, hs.DuplicateRequests)
	t.Logf("  dead letters checked: %s", deadOK)
	t.Logf("  quiesced (exact everywhere) %s after the soak ended", quiesced.Round(time.Second))
	t.Logf("  peak RSS of a worker: %.1f MB", float64(fl.peakRSS())/1e6)
}

func kinds(m map[fault.Kind]int) string {
	var ks []string
	total := 0
	for k, n := range m {
		ks = append(ks, fmt.Sprintf("%s %d", k, n))
		total += n
	}
	sort.Strings(ks)
	return fmt.Sprintf("%d (%s)", total, strings.Join(ks, ", "))
}

func clip(s string, lines int) string {
	l := strings.Split(s, "\n")
	if len(l) <= lines {
		return s
	}
	return strings.Join(l[:lines], "\n") + fmt.Sprintf("\n  ... %d more lines", len(l)-lines)
}

// stats are the kills and the recovery after each.
type stats struct {
	mu                     sync.Mutex
	workerKills, nodeKills int
	recovery               []time.Duration
	failed                 int
}

func (s *stats) recoveries() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.recovery) == 0 {
		return fmt.Sprintf("none measured (%d probes failed)", s.failed)
	}
	r := append([]time.Duration(nil), s.recovery...)
	sort.Slice(r, func(i, j int) bool { return r[i] < r[j] })
	var all []string
	for _, d := range s.recovery {
		all = append(all, d.Round(100*time.Millisecond).String())
	}
	return fmt.Sprintf("%d probes, median %s, max %s (%s)%s", len(r), r[len(r)/2].Round(100*time.Millisecond), r[len(r)-1].Round(100*time.Millisecond),
		strings.Join(all, " "), map[bool]string{true: fmt.Sprintf("; %d probes not acked in time", s.failed), false: ""}[s.failed > 0])
}

func (s *stats) probe(pubs *publishers, what string, killed time.Time) {
	pubs.probe(what, func(d time.Duration, err error) {
		s.mu.Lock()
		defer s.mu.Unlock()
		if err != nil {
			s.failed++
			return
		}
		s.recovery = append(s.recovery, d)
	}, killed)
}

// sleepCtx sleeps d unless ctx ends first (false).
func sleepCtx(ctx context.Context, d time.Duration) bool {
	select {
	case <-ctx.Done():
		return false
	case <-time.After(d):
		return true
	}
}

// killWorkers SIGKILLs a worker every 30 to 60 s, in turn, and restarts
// it 2 s later; a probe batch published at the kill measures recovery.
func killWorkers(ctx context.Context, t *testing.T, fl *fleet, pubs *publishers, st *stats) {
	rng := rand.New(rand.NewPCG(7, 8))
	for i := 0; ; i++ {
		if !sleepCtx(ctx, 30*time.Second+time.Duration(rng.IntN(30))*time.Second) {
			return
		}
		w := i % 2
		fl.kill(w)
		killed := time.Now()
		st.mu.Lock()
		st.workerKills++
		st.mu.Unlock()
		t.Logf("%s kill -9 worker %d", time.Now().Format("15:04:05"), w+1)
		st.probe(pubs, fmt.Sprintf("worker%d", w+1), killed)
		time.Sleep(2 * time.Second)
		if err := fl.start(w); err != nil {
			t.Error(err)
		}
	}
}

// killNodes SIGKILLs a nats-server node at 90 s and every 150 s after, in
// turn, and restarts it 15 s later.
func killNodes(ctx context.Context, t *testing.T, cl *cluster, pubs *publishers, st *stats) {
	if !sleepCtx(ctx, 90*time.Second) {
		return
	}
	for i := 0; ; i++ {
		n := i % len(cl.nodes)
		cl.kill(n)
		killed := time.Now()
		st.mu.Lock()
		st.nodeKills++
		st.mu.Unlock()
		t.Logf("%s kill -9 nats-server %s", time.Now().Format("15:04:05"), cl.nodes[n].name)
		st.probe(pubs, cl.nodes[n].name, killed)
		time.Sleep(15 * time.Second)
		if err := cl.start(n); err != nil {
			t.Error(err)
		}
		if !sleepCtx(ctx, 135*time.Second) {
			return
		}
	}
}
