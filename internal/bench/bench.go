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
// bench.go has the options and the runs; env.go the server, the
// connections and the streams the runs share; workload.go the workload (16
// one-hour template batches, shifted to each batch's hour) and the
// publish; raw.go the raw consumer; drain.go the drain, its sandbox and its
// figures; figures.go the medians, the printing and the CPU, RSS and
// profile readings.
package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"time"
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
