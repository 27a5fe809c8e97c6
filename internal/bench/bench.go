// Package bench is `usagefleet bench`: it publishes N realistic records
// through the producer library into JetStream, runs a raw fetch-and-ack
// consumer over them (the ceiling), drains them through a destination
// pool into a sandbox, and reports records/s, MB/s, CPU seconds per
// million records and peak RSS of each, and whether every record arrived
// with the exact cost per currency; --runs N prints each run and the
// medians.
//
// Processes: the consumers (the pool, the raw consumer) run in a worker
// child, this binary started again (child.go), so their CPU and peak RSS
// are theirs alone. The server is embedded in the bench process by
// default, in a process of its own with --spawn-nats (natsserver.go), or
// the user's with --nats. The sandbox or counting receiver (webhook.go),
// the publisher and the --delay proxy (proxy.go) run in the bench process.
//
// bench.go has the options, the runs, the workload (16 one-hour template
// batches, shifted to each batch's hour) and the publish; raw.go the raw
// consumer; drain.go the drain, its sandbox and its figures.
package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	neturl "net/url"
	"os"
	"runtime"
	"runtime/pprof"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/usagefleet/usagefleet/internal/broker"
	"github.com/usagefleet/usagefleet/internal/config"
	"github.com/usagefleet/usagefleet/internal/usagegen"
	"github.com/usagefleet/usagefleet/messages"
	"github.com/usagefleet/usagefleet/producer"
)

// Options of a bench.
type Options struct {
	Records    int    // records to publish (default 1,000,000)
	BatchSize  int    // records per batch; every batch is one hour, so one message (default 1000)
	Hours      int    // hours the records spread over (default 720: a month)
	Dest       string // cloudzero (default) or webhook
	Mode       string // all (default: publish, raw, drain), publish, raw, drain
	NATSURL    string // a server of the user's; empty: embedded in this process, or spawned
	SpawnNATS  bool   // run nats-server in a process of its own
	NATSServer string // the nats-server binary for SpawnNATS (default: built from go.mod, else PATH)
	Delay      time.Duration
	Runs       int  // runs in one sitting; with more than one, each is printed and the median returned
	Strict     bool // strict sandbox (parses every value) instead of the counting one / counting receiver
	Publishers int  // concurrent Publish calls (default 16)
	Workers    int  // pool workers (default 4)
	JSON       bool
	Out        io.Writer
	CPUProfile string // pprof CPU profile of the worker's drain (of the publish with Mode "publish"); FILE.runN with several runs
	MemProfile string // pprof heap profile of the worker at the end of the drain
	// BlockProfile: pprof block and mutex profiles of the worker's drain
	// (FILE and FILE.mutex; FILE.runN with several runs): where it waits.
	BlockProfile string
	Trace        string // runtime execution trace of the worker's drain (go tool trace)
}

// Result is one run's figures, or their medians (Run 0, Runs set).
type Result struct {
	Run         int     `json:"run,omitempty"`
	Mode        string  `json:"mode"`
	Records     int     `json:"records"`
	BatchSize   int     `json:"batch_size"`
	Messages    int     `json:"messages"`
	Destination string  `json:"destination"`
	Sandbox     string  `json:"sandbox"`
	Server      string  `json:"server"`                // embedded, spawned, or the --nats URL
	DelayMS     float64 `json:"delay_ms,omitempty"`    // --delay, one way
	LinkRTTMS   float64 `json:"link_rtt_ms,omitempty"` // a NATS round trip over the worker's link, measured at start

	PublishSeconds   float64 `json:"publish_seconds,omitempty"`
	PublishRate      float64 `json:"publish_records_per_second,omitempty"`
	PublishCPUPerMil float64 `json:"publish_cpu_seconds_per_million,omitempty"` // the bench process

	RawSeconds       float64 `json:"raw_seconds,omitempty"`
	RawRate          float64 `json:"raw_records_per_second,omitempty"`
	RawMBps          float64 `json:"raw_mb_per_second,omitempty"` // message data
	RawCPUPerMillion float64 `json:"raw_cpu_seconds_per_million,omitempty"`
	RawPeakRSSMB     float64 `json:"raw_peak_rss_mb,omitempty"`
	RawExact         *bool   `json:"raw_exact,omitempty"` // every message once, acked, none redelivered

	DrainSeconds        float64 `json:"drain_seconds,omitempty"`
	DrainRate           float64 `json:"drain_records_per_second,omitempty"`
	DrainOfRaw          float64 `json:"drain_percent_of_raw,omitempty"`
	DrainMBps           float64 `json:"drain_body_mb_per_second,omitempty"`
	BodyBytes           int64   `json:"drain_body_bytes,omitempty"`
	Requests            int64   `json:"drain_requests,omitempty"`
	CaughtUp            float64 `json:"drain_caught_up_seconds,omitempty"`              // from go until the pool held every message (20 ms resolution)
	FirstUpload         float64 `json:"drain_first_upload_seconds,omitempty"`           // from go to the first request (cloudzero)
	Jobs                int64   `json:"drain_jobs,omitempty"`                           // jobs (lease takes) the drain needed
	JobFailures         int64   `json:"drain_job_failures,omitempty"`                   // job tries that failed and were retried
	CPUPerMillion       float64 `json:"drain_cpu_seconds_per_million,omitempty"`        // the worker process only
	WorkerPeakRSSMB     float64 `json:"worker_peak_rss_mb,omitempty"`                   // the worker process's VmHWM
	BenchCPUPerMillion  float64 `json:"drain_bench_cpu_seconds_per_million,omitempty"`  // the bench process during the drain: sandbox, proxy, embedded server
	ServerCPUPerMillion float64 `json:"drain_server_cpu_seconds_per_million,omitempty"` // a spawned nats-server during the drain
	Exact               *bool   `json:"exact,omitempty"`                                // every record arrived, exact cost (drain modes)
	Detail              string  `json:"detail,omitempty"`

	BenchPeakRSSMB float64   `json:"bench_peak_rss_mb"`
	GoMaxProcs     int       `json:"gomaxprocs"`
	Runs           []*Result `json:"runs,omitempty"`
}

const (
	feed         = "bench"
	feedSubjects = "usage." + feed + ".>"
	benchDest    = "bench" // the destination's name: its consumer, its CloudZero connection
	webhookBody  = 5_000_000
)

// Run runs the benchmark o.Runs times in one sitting and returns the run,
// or the medians of the runs with each run in Runs.
func Run(ctx context.Context, o Options) (*Result, error) {
	if os.Getenv(childEnv) == "1" {
		// Started as a worker child, yet here: main (or TestMain) did not
		// call MaybeChild first. Stop rather than start children of our own.
		return nil, errors.New("bench: this process is a bench worker child: call bench.MaybeChild first in main and TestMain")
	}
	o.defaults()
	if err := o.check(); err != nil {
		return nil, err
	}
	env, err := setUp(ctx, o)
	if err != nil {
		return nil, err
	}
	defer env.close()
	w := newWorkload(o)
	var runs []*Result
	for i := 1; i <= o.Runs; i++ {
		res := &Result{Run: i, Mode: o.Mode, Records: o.Records, BatchSize: o.BatchSize, Destination: o.Dest, Sandbox: map[bool]string{true: "strict", false: "counting"}[o.Strict],
			Server: env.server, DelayMS: float64(o.Delay) / float64(time.Millisecond), LinkRTTMS: env.linkRTTMS, GoMaxProcs: runtime.GOMAXPROCS(0)}
		if err := runOnce(ctx, o, env, w, res); err != nil {
			if o.Runs > 1 {
				err = fmt.Errorf("run %d: %w", i, err)
			}
			return nil, err
		}
		printRun(o, res)
		runs = append(runs, res)
	}
	if len(runs) == 1 {
		return runs[0], nil
	}
	m := median(runs)
	printMedian(o, m)
	return m, nil
}

// runOnce publishes (or finds) the backlog, then runs the raw consumer
// and the drain over it, as the mode says.
func runOnce(ctx context.Context, o Options, env *env, w *workload, res *Result) error {
	publishes := o.Mode == "all" || o.Mode == "publish"
	// raw and drain on a server of our own need a backlog first: publish it
	// once, without reporting. On --nats it is already there (from a
	// "publish" run with the same --records and --batch).
	if publishes || (o.NATSURL == "" && !env.published) {
		if err := env.purge(ctx); err != nil {
			return err
		}
		if err := publish(ctx, env.nc, o, w, res); err != nil {
			return err
		}
		env.published = true
		if !publishes {
			res.PublishSeconds, res.PublishRate, res.PublishCPUPerMil = 0, 0, 0
		}
	}
	n, err := env.backlog(ctx)
	if err != nil {
		return err
	}
	res.Messages = n
	if o.Mode != "publish" && n == 0 {
		return fmt.Errorf("no backlog on %s: publish it first (--mode publish with the same --records and --batch)", feedSubjects)
	}
	if o.Mode == "all" || o.Mode == "raw" {
		if err := raw(ctx, o, env, w, res); err != nil {
			return fmt.Errorf("raw: %w", err)
		}
	}
	if o.Mode == "all" || o.Mode == "drain" {
		if err := drain(ctx, o, env, w, res); err != nil {
			return err
		}
		if res.RawRate > 0 {
			res.DrainOfRaw = 100 * res.DrainRate / res.RawRate
		}
	}
	res.BenchPeakRSSMB = peakRSSMB()
	return nil
}

// env is what the runs share: the server, the bench's connection, the
// worker's link (through the delay proxy with --delay).
type env struct {
	server    string
	nc        *nats.Conn
	js        jetstream.JetStream
	workerURL string
	linkRTTMS float64
	serverCPU func() float64 // a spawned server's CPU seconds; nil otherwise
	published bool
	closers   []func()
}

func (e *env) close() {
	for i := len(e.closers) - 1; i >= 0; i-- {
		e.closers[i]()
	}
}

// setUp starts or joins the server, makes the streams, starts the proxy.
func setUp(ctx context.Context, o Options) (_ *env, err error) {
	e := &env{}
	defer func() {
		if err != nil {
			e.close()
		}
	}()
	url := o.NATSURL
	switch {
	case url != "":
		e.server = "--nats " + redactURL(url)
	case o.SpawnNATS:
		s, err := spawnNATS(ctx, o.NATSServer)
		if err != nil {
			return nil, err
		}
		e.closers = append(e.closers, s.Close)
		url, e.server, e.serverCPU = s.URL, "spawned", s.cpuSeconds
		o.say("nats-server in its own process: %s, %s, at %s", s.Binary, s.Version, s.URL)
	default:
		dir, err := os.MkdirTemp("", "usagefleet-bench-")
		if err != nil {
			return nil, err
		}
		e.closers = append(e.closers, func() { os.RemoveAll(dir) })
		emb, err := broker.StartEmbedded(dir, 0)
		if err != nil {
			return nil, err
		}
		e.closers = append(e.closers, emb.Close)
		url, e.server = emb.URL, "embedded"
	}
	if e.nc, err = nats.Connect(url, nats.Name("usage-bench"), nats.MaxReconnects(-1)); err != nil {
		return nil, err
	}
	e.closers = append(e.closers, e.nc.Close)
	e.js, _ = jetstream.New(e.nc)
	if err := broker.EnsureStreams(ctx, e.js, broker.StreamOptions{LeaseTTL: config.Duration(broker.DefaultLeaseTTL)}); err != nil {
		return nil, err
	}
	e.workerURL = url
	if o.Delay > 0 {
		p, err := startDelayProxy(e.nc.ConnectedAddr(), o.Delay)
		if err != nil {
			return nil, err
		}
		e.closers = append(e.closers, func() { p.Close() })
		// The same URL (its user info too) with the proxy for its host.
		u, err := neturl.Parse(e.nc.ConnectedUrl())
		if err != nil {
			return nil, err
		}
		u.Host = p.Addr()
		e.workerURL = u.String()
	}
	if e.linkRTTMS, err = linkRTT(e.workerURL); err != nil {
		return nil, err
	}
	if o.Delay > 0 {
		o.say("worker link: through a delay proxy, %v each way; a NATS round trip over it takes %.2f ms", o.Delay, e.linkRTTMS)
	}
	return e, nil
}

// redactURL drops the user info (a password, a token) of a NATS URL, for
// printing.
func redactURL(s string) string {
	var out []string
	for _, one := range strings.Split(s, ",") {
		if u, err := neturl.Parse(strings.TrimSpace(one)); err == nil && u.User != nil {
			u.User = nil
			one = u.String()
		}
		out = append(out, one)
	}
	return strings.Join(out, ",")
}

// linkRTT is the median of 9 NATS round trips over url, in ms.
func linkRTT(url string) (float64, error) {
	nc, err := nats.Connect(url, nats.Name("usage-bench-rtt"))
	if err != nil {
		return 0, err
	}
	defer nc.Close()
	var rtts []float64
	for range 9 {
		d, err := nc.RTT()
		if err != nil {
			return 0, err
		}
		rtts = append(rtts, float64(d)/float64(time.Millisecond))
	}
	return medianOf(rtts), nil
}

// purge removes the bench feed's parts, so a run publishes into nothing.
func (e *env) purge(ctx context.Context) error {
	s, err := e.js.Stream(ctx, messages.StreamUsage)
	if err != nil {
		return err
	}
	return s.Purge(ctx, jetstream.WithPurgeSubject(feedSubjects))
}

// backlog counts the bench feed's parts in the stream.
func (e *env) backlog(ctx context.Context) (int, error) {
	s, err := e.js.Stream(ctx, messages.StreamUsage)
	if err != nil {
		return 0, err
	}
	info, err := s.Info(ctx, jetstream.WithSubjectFilter(feedSubjects))
	if err != nil {
		return 0, err
	}
	n := 0
	for _, c := range info.State.Subjects {
		n += int(c)
	}
	return n, nil
}

func (o *Options) defaults() {
	if o.Records <= 0 {
		o.Records = 1_000_000
	}
	if o.BatchSize <= 0 {
		o.BatchSize = 1000
	}
	if o.Hours <= 0 {
		o.Hours = 720
	}
	if o.Dest == "" {
		o.Dest = "cloudzero"
	}
	if o.Mode == "" || o.Mode == "both" { // "both" was publish and drain: all adds the raw ceiling
		o.Mode = "all"
	}
	if o.Runs <= 0 {
		o.Runs = 1
	}
	if o.Publishers <= 0 {
		o.Publishers = 16
	}
	if o.Workers <= 0 {
		o.Workers = 4
	}
	if o.Out == nil {
		o.Out = os.Stdout
	}
}

// check refuses what Run cannot do before it publishes anything.
func (o *Options) check() error {
	if o.Dest != "cloudzero" && o.Dest != "webhook" {
		return fmt.Errorf("--dest %q: want cloudzero or webhook", o.Dest)
	}
	switch o.Mode {
	case "all", "publish", "raw", "drain":
	default:
		return fmt.Errorf("--mode %q: want all, publish, raw or drain", o.Mode)
	}
	if o.SpawnNATS && o.NATSURL != "" {
		return errors.New("--spawn-nats and --nats: give one (--nats joins a server that runs; --spawn-nats starts one)")
	}
	if o.NATSServer != "" && !o.SpawnNATS {
		return errors.New("--nats-server is the binary --spawn-nats runs: give --spawn-nats too")
	}
	if o.Delay < 0 {
		return fmt.Errorf("--delay %v: want a duration of 0 or more", o.Delay)
	}
	return nil
}

// say prints a progress line (not with --json).
func (o *Options) say(format string, args ...any) {
	if !o.JSON {
		fmt.Fprintf(o.Out, format+"\n", args...)
	}
}

// templates is how many distinct one-hour batches the records are made
// of; batch b is template b%templates shifted to its hour.
const templates = 16

// workload is what the bench publishes and expects to arrive.
type workload struct {
	tmpl        [][]messages.UsageRecord
	batches     int
	wantRecords int
	wantCost    map[string]*messages.Sum // per BillingCurrency
}

// wantTotal is the cost summed over every currency (CloudZero's CBF
// carries none).
func (w *workload) wantTotal() messages.Decimal {
	var t messages.Sum
	for _, s := range w.wantCost {
		t.AddSum(*s)
	}
	return t.Decimal()
}

func newWorkload(o Options) *workload {
	base := time.Date(2024, 7, 1, 0, 0, 0, 0, time.UTC)
	w := &workload{tmpl: make([][]messages.UsageRecord, templates), wantCost: map[string]*messages.Sum{}}
	sum := func(m map[string]*messages.Sum, r *messages.UsageRecord) {
		if m[r.BillingCurrency] == nil {
			m[r.BillingCurrency] = &messages.Sum{}
		}
		m[r.BillingCurrency].Add(r.BilledCost)
	}
	for i := range w.tmpl {
		w.tmpl[i] = usagegen.Generate(o.BatchSize, usagegen.Options{Seed: uint64(i + 1), Start: base, Hours: 1})
	}
	w.batches = (o.Records + o.BatchSize - 1) / o.BatchSize
	// Batch b is template b%templates: whole batches are summed once per
	// template and added as often as it is used, then the last partial one.
	full := o.Records / o.BatchSize
	for t := range templates {
		times := full / templates
		if t < full%templates {
			times++
		}
		if times == 0 {
			continue
		}
		one := map[string]*messages.Sum{}
		for k := range w.tmpl[t] {
			sum(one, &w.tmpl[t][k])
		}
		for cur, s := range one {
			if w.wantCost[cur] == nil {
				w.wantCost[cur] = &messages.Sum{}
			}
			for range times {
				w.wantCost[cur].AddSum(*s)
			}
		}
	}
	if rest := o.Records % o.BatchSize; rest > 0 {
		for k := range rest {
			sum(w.wantCost, &w.tmpl[full%templates][k])
		}
	}
	w.wantRecords = o.Records
	return w
}

// batch fills buf with batch b's records and returns them.
func (w *workload) batch(o Options, b int, buf []messages.UsageRecord) []messages.UsageRecord {
	n := min(o.BatchSize, o.Records-b*o.BatchSize)
	src := w.tmpl[b%templates]
	shift := time.Duration(b%o.Hours) * time.Hour
	for k := 0; k < n; k++ {
		buf[k] = src[k]
		buf[k].ChargePeriodStart = src[k].ChargePeriodStart.Add(shift)
		buf[k].ChargePeriodEnd = src[k].ChargePeriodEnd.Add(shift)
	}
	return buf[:n]
}

// publish publishes the workload with o.Publishers concurrent publishers
// and records the rate. Batch ids carry a tag of their own per publish, so
// a run after a purge is stored again, not deduplicated.
func publish(ctx context.Context, nc *nats.Conn, o Options, w *workload, res *Result) error {
	prod, err := producer.New(nc, producer.Options{MaxInFlight: 512})
	if err != nil {
		return err
	}
	if o.CPUProfile != "" && o.Mode == "publish" {
		stop, err := startCPUProfile(profilePath(o.CPUProfile, res.Run, o.Runs))
		if err != nil {
			return err
		}
		defer stop()
	}
	tag := "bench-" + strconv.FormatInt(time.Now().UnixNano(), 36) + "-"
	cpu0 := cpuSeconds()
	start := time.Now()
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, o.Publishers)
	for range o.Publishers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]messages.UsageRecord, o.BatchSize)
			for {
				b := int(next.Add(1) - 1)
				if b >= w.batches {
					return
				}
				recs := w.batch(o, b, buf)
				if _, err := prod.Publish(ctx, &messages.Batch{ID: tag + strconv.Itoa(b), Feed: feed, Source: "bench", Records: recs}); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return fmt.Errorf("publish: %w", err)
	}
	res.PublishSeconds = time.Since(start).Seconds()
	res.PublishRate = float64(o.Records) / res.PublishSeconds
	res.PublishCPUPerMil = (cpuSeconds() - cpu0) / float64(o.Records) * 1e6
	return nil
}

// profilePath is FILE with one run, FILE.runN with several.
func profilePath(path string, run, runs int) string {
	if path == "" || runs <= 1 {
		return path
	}
	return path + ".run" + strconv.Itoa(run)
}

// printRun says one run's figures (not with --json).
func printRun(o Options, r *Result) {
	p := fmt.Sprintf("run %d: ", r.Run)
	if o.Runs == 1 {
		p = ""
	}
	if r.PublishRate > 0 {
		o.say("%spublished %d records in %d messages in %.2fs: %.0f records/s; %.2f CPU-s per million (the bench process: producer, and the server when embedded)", p, r.Records, r.Messages, r.PublishSeconds, r.PublishRate, r.PublishCPUPerMil)
	}
	if r.RawRate > 0 {
		o.say("%sraw fetch-and-ack of %d messages: %.0f records/s, %.1f MB/s of messages in %.2fs; consumer %.2f CPU-s per million, peak RSS %.0f MB; exact: %v", p, r.Messages, r.RawRate, r.RawMBps, r.RawSeconds, r.RawCPUPerMillion, r.RawPeakRSSMB, *r.RawExact)
	}
	if r.DrainRate > 0 {
		ofRaw := ""
		if r.DrainOfRaw > 0 {
			ofRaw = fmt.Sprintf(" (%.0f%% of raw)", r.DrainOfRaw)
		}
		into := fmt.Sprintf("the %s %s sandbox", r.Sandbox, r.Destination)
		if r.Destination == "webhook" && r.Sandbox == "counting" {
			into = "the counting webhook receiver"
		}
		o.say("%sdrained %d records into %s in %.2fs: %.0f records/s%s, %.1f MB/s of bodies in %d requests", p, r.Records, into, r.DrainSeconds, r.DrainRate, ofRaw, r.DrainMBps, r.Requests)
		server := ""
		if r.ServerCPUPerMillion > 0 {
			server = fmt.Sprintf(", nats-server %.2f", r.ServerCPUPerMillion)
		}
		o.say("%s  worker: %.2f CPU-s per million records, peak RSS %.0f MB; others: bench process %.2f%s CPU-s per million", p, r.CPUPerMillion, r.WorkerPeakRSSMB, r.BenchCPUPerMillion, server)
		o.say("%s  jobs: %d (%d failed tries); every message held after %.2fs, first upload after %.2fs", p, r.Jobs, r.JobFailures, r.CaughtUp, r.FirstUpload)
		o.say("%s  exact: %v (%s)", p, *r.Exact, r.Detail)
	}
}

// median is the runs' medians, field by field; exact only if every run was.
func median(runs []*Result) *Result {
	m := *runs[0]
	m.Run, m.Runs = 0, runs
	f := func(get func(r *Result) *float64) {
		var v []float64
		for _, r := range runs {
			v = append(v, *get(r))
		}
		*get(&m) = medianOf(v)
	}
	for _, get := range []func(r *Result) *float64{
		func(r *Result) *float64 { return &r.PublishSeconds },
		func(r *Result) *float64 { return &r.PublishRate },
		func(r *Result) *float64 { return &r.PublishCPUPerMil },
		func(r *Result) *float64 { return &r.RawSeconds },
		func(r *Result) *float64 { return &r.RawRate },
		func(r *Result) *float64 { return &r.RawMBps },
		func(r *Result) *float64 { return &r.RawCPUPerMillion },
		func(r *Result) *float64 { return &r.RawPeakRSSMB },
		func(r *Result) *float64 { return &r.DrainSeconds },
		func(r *Result) *float64 { return &r.DrainRate },
		func(r *Result) *float64 { return &r.DrainOfRaw },
		func(r *Result) *float64 { return &r.DrainMBps },
		func(r *Result) *float64 { return &r.CaughtUp },
		func(r *Result) *float64 { return &r.FirstUpload },
		func(r *Result) *float64 { return &r.CPUPerMillion },
		func(r *Result) *float64 { return &r.WorkerPeakRSSMB },
		func(r *Result) *float64 { return &r.BenchCPUPerMillion },
		func(r *Result) *float64 { return &r.ServerCPUPerMillion },
		func(r *Result) *float64 { return &r.BenchPeakRSSMB },
	} {
		f(get)
	}
	all := func(get func(r *Result) *bool) *bool {
		if get(runs[0]) == nil {
			return nil
		}
		ok := true
		for _, r := range runs {
			ok = ok && *get(r)
		}
		return &ok
	}
	m.Exact = all(func(r *Result) *bool { return r.Exact })
	m.RawExact = all(func(r *Result) *bool { return r.RawExact })
	for _, r := range runs {
		if r.Exact != nil && !*r.Exact {
			m.Detail = fmt.Sprintf("run %d: %s", r.Run, r.Detail)
		}
	}
	return &m
}

func medianOf(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// printMedian says the medians of the runs (not with --json).
func printMedian(o Options, m *Result) {
	var parts []string
	if m.PublishRate > 0 {
		parts = append(parts, fmt.Sprintf("publish %.0f records/s", m.PublishRate))
	}
	if m.RawRate > 0 {
		parts = append(parts, fmt.Sprintf("raw %.0f records/s", m.RawRate))
	}
	if m.DrainRate > 0 {
		d := fmt.Sprintf("drain %.0f records/s", m.DrainRate)
		if m.DrainOfRaw > 0 {
			d += fmt.Sprintf(" (%.0f%% of raw)", m.DrainOfRaw)
		}
		parts = append(parts, d, fmt.Sprintf("%.1f MB/s of bodies", m.DrainMBps), fmt.Sprintf("worker %.2f CPU-s per million", m.CPUPerMillion), fmt.Sprintf("worker peak RSS %.0f MB", m.WorkerPeakRSSMB))
	}
	exact := ""
	if m.Exact != nil {
		exact = fmt.Sprintf("; exact in every run: %v", *m.Exact)
	}
	o.say("median of %d runs: %s%s", len(m.Runs), strings.Join(parts, ", "), exact)
}

// Print writes the result (one JSON line with --json).
func Print(w io.Writer, r *Result, asJSON bool) {
	if asJSON {
		b, _ := json.Marshal(r)
		fmt.Fprintln(w, string(b))
	}
}

func startCPUProfile(path string) (stop func(), err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}

func cpuSeconds() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return float64(ru.Utime.Sec+ru.Stime.Sec) + float64(ru.Utime.Usec+ru.Stime.Usec)/1e6
}

// peakRSSMB is VmHWM from /proc/self/status (Linux), else the Go heap peak.
func peakRSSMB() float64 {
	b, err := os.ReadFile("/proc/self/status")
	if err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(line, "VmHWM:") {
				f := strings.Fields(line)
				if len(f) >= 2 {
					kb, _ := strconv.ParseFloat(f[1], 64)
					return kb / 1024
				}
			}
		}
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return float64(ms.Sys) / (1 << 20)
}
