// Package bench is `usagefleet bench`: it publishes N realistic records
// through the producer library into JetStream, drains them through a
// destination pool into a sandbox, and reports publish rate, drain rate
// (records/s and MB/s of request bodies), CPU seconds per million records,
// peak RSS, and whether every record arrived exactly.
//
// Everything runs in one process by default (embedded nats-server, the
// sandbox, the producer and the pool), so CPU and RSS are those of the whole
// pipeline on this machine; with --nats the server runs elsewhere.
//
// bench.go has the options, the workload (16 one-hour template batches,
// shifted to each batch's hour) and the publish; drain.go the pool, the
// sandbox it drains into, and the figures.
package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/pprof"
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

// Options of a run.
type Options struct {
	Records    int    // records to publish (default 1,000,000)
	BatchSize  int    // records per batch; every batch is one hour, so one message (default 1000)
	Hours      int    // hours the records spread over (default 720: a month)
	Dest       string // cloudzero (default) or webhook
	Mode       string // both (default), publish, drain
	NATSURL    string // empty: embedded server in a temporary directory
	Strict     bool   // strict sandbox (parses every value) instead of the counting one
	Publishers int    // concurrent Publish calls (default 16)
	Workers    int    // pool workers (default 4)
	JSON       bool
	Out        io.Writer
	CPUProfile string // pprof CPU profile of the drain phase (of the publish with Mode "publish")
	MemProfile string // pprof heap profile at the end of the drain
}

// Result is one run's figures.
type Result struct {
	Mode             string  `json:"mode"`
	Records          int     `json:"records"`
	BatchSize        int     `json:"batch_size"`
	Destination      string  `json:"destination"`
	Sandbox          string  `json:"sandbox"`
	PublishSeconds   float64 `json:"publish_seconds,omitempty"`
	PublishRate      float64 `json:"publish_records_per_second,omitempty"`
	DrainSeconds     float64 `json:"drain_seconds,omitempty"`
	DrainRate        float64 `json:"drain_records_per_second,omitempty"`
	DrainMBps        float64 `json:"drain_body_mb_per_second,omitempty"`
	BodyBytes        int64   `json:"drain_body_bytes,omitempty"`
	Requests         int64   `json:"drain_requests,omitempty"`
	CaughtUp         float64 `json:"drain_caught_up_seconds,omitempty"`    // from the pool's start until it held every message (20 ms resolution)
	FirstUpload      float64 `json:"drain_first_upload_seconds,omitempty"` // from the pool's start to its first request (cloudzero)
	Jobs             int64   `json:"drain_jobs,omitempty"`                 // jobs (lease takes) the drain needed
	JobFailures      int64   `json:"drain_job_failures,omitempty"`         // job tries that failed and were retried
	CPUPerMillion    float64 `json:"drain_cpu_seconds_per_million,omitempty"`
	PublishCPUPerMil float64 `json:"publish_cpu_seconds_per_million,omitempty"`
	PeakRSSMB        float64 `json:"peak_rss_mb"`
	Exact            *bool   `json:"exact,omitempty"` // every record arrived, exact cost (drain modes)
	Detail           string  `json:"detail,omitempty"`
	GoMaxProcs       int     `json:"gomaxprocs"`
}

const feed = "bench"

// Run runs the benchmark.
func Run(ctx context.Context, o Options) (*Result, error) {
	o.defaults()
	if err := o.check(); err != nil {
		return nil, err
	}
	res := &Result{Mode: o.Mode, Records: o.Records, BatchSize: o.BatchSize, Destination: o.Dest, Sandbox: map[bool]string{true: "strict", false: "counting"}[o.Strict], GoMaxProcs: runtime.GOMAXPROCS(0)}
	url := o.NATSURL
	if url == "" {
		dir, err := os.MkdirTemp("", "usagefleet-bench-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(dir)
		emb, err := broker.StartEmbedded(dir, 0)
		if err != nil {
			return nil, err
		}
		defer emb.Close()
		url = emb.URL
	}
	nc, err := nats.Connect(url, nats.Name("usage-bench"), nats.MaxReconnects(-1))
	if err != nil {
		return nil, err
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	if err := broker.EnsureStreams(ctx, js, broker.StreamOptions{LeaseTTL: config.Duration(30 * time.Second)}); err != nil {
		return nil, err
	}
	w := newWorkload(o)
	// "drain" on an embedded server needs a backlog first: publish it
	// without reporting. With --nats, the backlog is already there (from
	// a "publish" run with the same --records and --batch).
	if o.Mode != "drain" || o.NATSURL == "" {
		if err := publish(ctx, nc, o, w, res); err != nil {
			return nil, err
		}
	}
	if o.Mode == "publish" {
		res.PeakRSSMB = peakRSSMB()
		return res, nil
	}
	if err := drain(ctx, nc, js, o, w, res); err != nil {
		return nil, err
	}
	return res, nil
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
	if o.Mode == "" {
		o.Mode = "both"
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
	if o.Mode != "both" && o.Mode != "publish" && o.Mode != "drain" {
		return fmt.Errorf("--mode %q: want both, publish or drain", o.Mode)
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
	wantCost    messages.Decimal
}

func newWorkload(o Options) *workload {
	base := time.Date(2024, 7, 1, 0, 0, 0, 0, time.UTC)
	w := &workload{tmpl: make([][]messages.UsageRecord, templates)}
	tmplCost := make([]messages.Sum, templates)
	for i := range w.tmpl {
		w.tmpl[i] = usagegen.Generate(o.BatchSize, usagegen.Options{Seed: uint64(i + 1), Start: base, Hours: 1})
		for k := range w.tmpl[i] {
			tmplCost[i].Add(w.tmpl[i][k].BilledCost)
		}
	}
	w.batches = (o.Records + o.BatchSize - 1) / o.BatchSize
	var want messages.Sum
	for b := 0; b < w.batches; b++ {
		n := min(o.BatchSize, o.Records-b*o.BatchSize)
		t := b % templates
		if n == o.BatchSize {
			want.AddSum(tmplCost[t])
		} else {
			for k := 0; k < n; k++ {
				want.Add(w.tmpl[t][k].BilledCost)
			}
		}
		w.wantRecords += n
	}
	w.wantCost = want.Decimal()
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
// and records the rate (not in drain mode, where it only makes the
// backlog).
func publish(ctx context.Context, nc *nats.Conn, o Options, w *workload, res *Result) error {
	prod, err := producer.New(nc, producer.Options{MaxInFlight: 512})
	if err != nil {
		return err
	}
	if o.CPUProfile != "" && o.Mode == "publish" {
		stop, err := startCPUProfile(o.CPUProfile)
		if err != nil {
			return err
		}
		defer stop()
	}
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
				if _, err := prod.Publish(ctx, &messages.Batch{ID: "bench-" + strconv.Itoa(b), Feed: feed, Source: "bench", Records: recs}); err != nil {
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
	o.say("published %d records in %d batches in %.2fs: %.0f records/s", o.Records, w.batches, res.PublishSeconds, res.PublishRate)
	if o.Mode == "drain" {
		res.PublishSeconds, res.PublishRate, res.PublishCPUPerMil = 0, 0, 0
	}
	return nil
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
