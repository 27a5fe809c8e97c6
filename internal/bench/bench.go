// Package bench is `usagefleet bench`: it publishes N realistic records
// through the producer library into JetStream, drains them through a
// destination pool into a sandbox, and reports publish rate, drain rate
// (records/s and MB/s of request bodies), CPU seconds per million records,
// peak RSS, and whether every record arrived exactly.
//
// Everything runs in one process by default (embedded nats-server, the
// sandbox, the producer and the pool), so CPU and RSS are those of the whole
// pipeline on this machine; with --nats the server runs elsewhere.
package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
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

	"github.com/usagefleet/usagefleet/internal/config"
	"github.com/usagefleet/usagefleet/internal/natsutil"
	"github.com/usagefleet/usagefleet/internal/sandbox/cloudzero"
	"github.com/usagefleet/usagefleet/internal/sandbox/serve"
	"github.com/usagefleet/usagefleet/internal/usagegen"
	"github.com/usagefleet/usagefleet/messages"
	"github.com/usagefleet/usagefleet/producer"
	"github.com/usagefleet/usagefleet/workers"
	czdest "github.com/usagefleet/usagefleet/workers/cloudzero"
	"github.com/usagefleet/usagefleet/workers/webhook"
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
	say := func(format string, args ...any) {
		if !o.JSON {
			fmt.Fprintf(o.Out, format+"\n", args...)
		}
	}
	res := &Result{Mode: o.Mode, Records: o.Records, BatchSize: o.BatchSize, Destination: o.Dest, Sandbox: map[bool]string{true: "strict", false: "counting"}[o.Strict], GoMaxProcs: runtime.GOMAXPROCS(0)}

	url := o.NATSURL
	if url == "" {
		dir, err := os.MkdirTemp("", "usagefleet-bench-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(dir)
		emb, err := natsutil.StartEmbedded(dir, 0)
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
	if err := natsutil.EnsureStreams(ctx, js, natsutil.StreamOptions{LeaseTTL: config.Duration(30 * time.Second)}); err != nil {
		return nil, err
	}

	// Templates: 16 one-hour batches, shifted to the batch's hour.
	const templates = 16
	base := time.Date(2024, 7, 1, 0, 0, 0, 0, time.UTC)
	tmpl := make([][]messages.UsageRecord, templates)
	tmplCost := make([]messages.Sum, templates)
	for i := range tmpl {
		tmpl[i] = usagegen.Generate(o.BatchSize, usagegen.Options{Seed: uint64(i + 1), Start: base, Hours: 1})
		for k := range tmpl[i] {
			tmplCost[i].Add(tmpl[i][k].BilledCost)
		}
	}
	batches := (o.Records + o.BatchSize - 1) / o.BatchSize
	var want messages.Sum
	wantRecords := 0
	for b := 0; b < batches; b++ {
		n := min(o.BatchSize, o.Records-b*o.BatchSize)
		t := b % templates
		if n == o.BatchSize {
			want.AddSum(tmplCost[t])
		} else {
			for k := 0; k < n; k++ {
				want.Add(tmpl[t][k].BilledCost)
			}
		}
		wantRecords += n
	}

	// "drain" on an embedded server needs a backlog first: publish it
	// without reporting. With --nats, the backlog is already there (from
	// a "publish" run with the same --records and --batch).
	if o.Mode != "drain" || o.NATSURL == "" {
		prod, err := producer.New(nc, producer.Options{MaxInFlight: 512})
		if err != nil {
			return nil, err
		}
		if o.CPUProfile != "" && o.Mode == "publish" {
			stop, err := startCPUProfile(o.CPUProfile)
			if err != nil {
				return nil, err
			}
			defer stop()
		}
		cpu0 := cpuSeconds()
		start := time.Now()
		var next atomic.Int64
		var wg sync.WaitGroup
		errs := make(chan error, o.Publishers)
		for w := 0; w < o.Publishers; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				buf := make([]messages.UsageRecord, o.BatchSize)
				for {
					b := int(next.Add(1) - 1)
					if b >= batches {
						return
					}
					n := min(o.BatchSize, o.Records-b*o.BatchSize)
					src := tmpl[b%templates]
					shift := time.Duration(b%o.Hours) * time.Hour
					for k := 0; k < n; k++ {
						buf[k] = src[k]
						buf[k].ChargePeriodStart = src[k].ChargePeriodStart.Add(shift)
						buf[k].ChargePeriodEnd = src[k].ChargePeriodEnd.Add(shift)
					}
					if _, err := prod.Publish(ctx, &messages.Batch{ID: "bench-" + strconv.Itoa(b), Feed: feed, Source: "bench", Records: buf[:n]}); err != nil {
						errs <- err
						return
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		if err := <-errs; err != nil {
			return nil, fmt.Errorf("publish: %w", err)
		}
		res.PublishSeconds = time.Since(start).Seconds()
		res.PublishRate = float64(o.Records) / res.PublishSeconds
		res.PublishCPUPerMil = (cpuSeconds() - cpu0) / float64(o.Records) * 1e6
		say("published %d records in %d batches in %.2fs: %.0f records/s", o.Records, batches, res.PublishSeconds, res.PublishRate)
		if o.Mode == "drain" {
			res.PublishSeconds, res.PublishRate, res.PublishCPUPerMil = 0, 0, 0
		}
	}
	if o.Mode == "publish" {
		res.PeakRSSMB = peakRSSMB()
		return res, nil
	}

	// The sandbox and the destination.
	sbo := serve.Options{Only: []string{o.Dest}}
	key := "bench-key"
	sbo.CloudZero = cloudzero.Config{Connections: map[string]string{"bench": key}, FastCount: !o.Strict, MaxRowsPerMonth: -1, MaxBytesPerMonth: -1}
	sbo.Webhook.MaxBodyBytes = 5_000_000
	sb, err := serve.Start(sbo)
	if err != nil {
		return nil, err
	}
	defer sb.Close()
	var dest workers.Destination
	switch o.Dest {
	case "cloudzero":
		dest, err = czdest.New("bench", czdest.Settings{BaseURL: sb.URLs[serve.CloudZero], ConnectionID: "bench", APIKey: config.NewSecret(key)})
	case "webhook":
		dest, err = webhook.New("bench", webhook.Settings{URL: sb.URLs[serve.Webhook] + "/ingest", MaxBodyBytes: 5_000_000}, "bench")
	default:
		return nil, fmt.Errorf("--dest %q: want cloudzero or webhook", o.Dest)
	}
	if err != nil {
		return nil, err
	}
	held := func() (int, messages.Decimal, int64, int64) {
		switch o.Dest {
		case "cloudzero":
			var s messages.Sum
			rows := 0
			var bytes int64
			for _, t := range sb.CloudZero.Hours("bench") {
				rows += t.Rows
				s.Add(messages.FromBig(t.Cost))
			}
			reqs := sb.CloudZero.Requests("bench")
			for _, r := range reqs {
				bytes += r.Bytes
			}
			return rows, s.Decimal(), bytes, int64(len(reqs))
		default:
			st := sb.Webhook.Stats()
			return st.UniqueRecords, messages.FromBig(st.UniqueCost), 0, int64(st.Requests)
		}
	}
	// Every drain reads the whole backlog: a consumer left by an earlier
	// drain of the same stream (--nats, --mode drain run twice) would have
	// nothing left to deliver.
	if err := js.DeleteConsumer(ctx, messages.StreamUsage, workers.ConsumerName("bench")); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return nil, fmt.Errorf("removing the previous drain's consumer: %w", err)
	}
	pool, err := workers.NewPool(nc, dest, workers.Options{
		Feeds:    []string{feed},
		Workers:  o.Workers,
		Flush:    workers.FlushPolicy{MaxDelay: 2 * time.Second, Quiet: 200 * time.Millisecond},
		LeaseTTL: 30 * time.Second,
		Logger:   slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		return nil, err
	}
	runtime.GC()
	if o.CPUProfile != "" {
		stop, err := startCPUProfile(o.CPUProfile)
		if err != nil {
			return nil, err
		}
		defer stop()
	}
	cpu0 := cpuSeconds()
	start := time.Now()
	pctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- pool.Run(pctx) }()
	wantCost := want.Decimal()
	lastRows, lastProgress := -1, time.Now()
	for {
		rows, cost, _, _ := held()
		if rows >= wantRecords && cost.Equal(wantCost) {
			break
		}
		if rows != lastRows {
			lastRows, lastProgress = rows, time.Now()
		} else if time.Since(lastProgress) > time.Minute {
			stop()
			<-done
			return nil, fmt.Errorf("drain: no progress for a minute at %d of %d records (is the backlog there? with --nats, publish it first with the same --records and --batch)", rows, wantRecords)
		}
		if res.CaughtUp == 0 && pool.Stats().Received >= int64(batches) {
			res.CaughtUp = time.Since(start).Seconds()
		}
		if ctx.Err() != nil {
			stop()
			<-done
			return nil, ctx.Err()
		}
		time.Sleep(20 * time.Millisecond)
	}
	res.DrainSeconds = time.Since(start).Seconds()
	res.CPUPerMillion = (cpuSeconds() - cpu0) / float64(wantRecords) * 1e6
	if o.MemProfile != "" {
		if f, err := os.Create(o.MemProfile); err == nil {
			pprof.WriteHeapProfile(f)
			f.Close()
		}
	}
	stop()
	<-done
	rows, cost, bytes, reqs := held()
	if o.Dest == "webhook" {
		bytes = pool.Stats().BodyBytes
	}
	res.BodyBytes, res.Requests = bytes, reqs
	res.DrainRate = float64(wantRecords) / res.DrainSeconds
	res.DrainMBps = float64(bytes) / 1e6 / res.DrainSeconds
	exact := rows == wantRecords && cost.Equal(wantCost)
	res.Exact = &exact
	ps := pool.Stats()
	res.Jobs, res.JobFailures = ps.Jobs, ps.JobFailures
	if o.Dest == "cloudzero" {
		if reqs := sb.CloudZero.Requests("bench"); len(reqs) > 0 {
			res.FirstUpload = reqs[0].Time.Sub(start).Seconds()
		}
	}
	res.Detail = fmt.Sprintf("received %d records cost %s; published %d cost %s", rows, cost, wantRecords, wantCost)
	res.PeakRSSMB = peakRSSMB()
	say("drained %d records into the %s %s sandbox in %.2fs: %.0f records/s, %.1f MB/s of bodies in %d requests", wantRecords, res.Sandbox, o.Dest, res.DrainSeconds, res.DrainRate, res.DrainMBps, reqs)
	say("jobs: %d (%d failed tries); every message held after %.2fs, first upload after %.2fs", res.Jobs, res.JobFailures, res.CaughtUp, res.FirstUpload)
	say("cpu: %.2f s per million records drained (whole process: NATS server, sandbox and worker)", res.CPUPerMillion)
	say("peak RSS %.0f MB; exact: %v (%s)", res.PeakRSSMB, exact, res.Detail)
	return res, nil
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
