package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"runtime/pprof"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/usagefleet/usagefleet/internal/config"
	"github.com/usagefleet/usagefleet/internal/sandbox/cloudzero"
	"github.com/usagefleet/usagefleet/internal/sandbox/serve"
	"github.com/usagefleet/usagefleet/messages"
	"github.com/usagefleet/usagefleet/workers"
	czdest "github.com/usagefleet/usagefleet/workers/cloudzero"
	"github.com/usagefleet/usagefleet/workers/webhook"
)

// The drain: a destination pool empties the backlog into a sandbox, and
// the bench watches the sandbox until it holds every record.

// sink is the sandbox the drain delivers to, and the destination that
// delivers there.
type sink struct {
	dest string
	sb   *serve.Running
	to   workers.Destination
}

// startSink serves the sandbox o.Dest and makes the destination for it.
func startSink(o Options) (*sink, error) {
	sbo := serve.Options{Only: []string{o.Dest}}
	const key = "bench-key"
	sbo.CloudZero = cloudzero.Config{Connections: map[string]string{"bench": key}, FastCount: !o.Strict, MaxRowsPerMonth: -1, MaxBytesPerMonth: -1}
	sbo.Webhook.MaxBodyBytes = 5_000_000
	sb, err := serve.Start(sbo)
	if err != nil {
		return nil, err
	}
	s := &sink{dest: o.Dest, sb: sb}
	switch o.Dest {
	case "cloudzero":
		s.to, err = czdest.New("bench", czdest.Settings{BaseURL: sb.URLs[serve.CloudZero], ConnectionID: "bench", APIKey: config.NewSecret(key)})
	case "webhook":
		s.to, err = webhook.New("bench", webhook.Settings{URL: sb.URLs[serve.Webhook] + "/ingest", MaxBodyBytes: 5_000_000}, "bench")
	default:
		err = fmt.Errorf("--dest %q: want cloudzero or webhook", o.Dest)
	}
	if err != nil {
		sb.Close()
		return nil, err
	}
	return s, nil
}

// held is what the sandbox holds: records, their exact cost, request
// body bytes (CloudZero; 0 for the webhook) and requests.
func (s *sink) held() (rows int, cost messages.Decimal, bytes, reqs int64) {
	if s.dest == "webhook" {
		st := s.sb.Webhook.Stats()
		return st.UniqueRecords, messages.FromBig(st.UniqueCost), 0, int64(st.Requests)
	}
	var sum messages.Sum
	for _, t := range s.sb.CloudZero.Hours("bench") {
		rows += t.Rows
		sum.Add(messages.FromBig(t.Cost))
	}
	all := s.sb.CloudZero.Requests("bench")
	for _, r := range all {
		bytes += r.Bytes
	}
	return rows, sum.Decimal(), bytes, int64(len(all))
}

// drain runs a pool over the whole backlog until the sandbox holds every
// record with the exact cost, and fills in the drain's figures.
func drain(ctx context.Context, nc *nats.Conn, js jetstream.JetStream, o Options, w *workload, res *Result) error {
	s, err := startSink(o)
	if err != nil {
		return err
	}
	defer s.sb.Close()
	// Every drain reads the whole backlog: a consumer left by an earlier
	// drain of the same stream (--nats, --mode drain run twice) would have
	// nothing left to deliver.
	if err := js.DeleteConsumer(ctx, messages.StreamUsage, workers.ConsumerName("bench")); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return fmt.Errorf("removing the previous drain's consumer: %w", err)
	}
	pool, err := workers.NewPool(nc, s.to, workers.Options{
		Feeds:    []string{feed},
		Workers:  o.Workers,
		Flush:    workers.FlushPolicy{MaxDelay: 2 * time.Second, Quiet: 200 * time.Millisecond},
		LeaseTTL: 30 * time.Second,
		Logger:   slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		return err
	}
	runtime.GC()
	if o.CPUProfile != "" {
		stop, err := startCPUProfile(o.CPUProfile)
		if err != nil {
			return err
		}
		defer stop()
	}
	cpu0 := cpuSeconds()
	start := time.Now()
	pctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- pool.Run(pctx) }()
	err = waitDrained(ctx, s, pool, w, start, res)
	if err == nil {
		res.DrainSeconds = time.Since(start).Seconds()
		res.CPUPerMillion = (cpuSeconds() - cpu0) / float64(w.wantRecords) * 1e6
		if o.MemProfile != "" {
			writeHeapProfile(o.MemProfile)
		}
	}
	stop()
	<-done
	if err != nil {
		return err
	}
	report(o, s, pool, w, start, res)
	return nil
}

// waitDrained polls the sandbox every 20 ms until it holds every record
// with the exact cost; it gives up after a minute without progress.
func waitDrained(ctx context.Context, s *sink, pool *workers.Pool, w *workload, start time.Time, res *Result) error {
	lastRows, lastProgress := -1, time.Now()
	for {
		rows, cost, _, _ := s.held()
		if rows >= w.wantRecords && cost.Equal(w.wantCost) {
			return nil
		}
		if rows != lastRows {
			lastRows, lastProgress = rows, time.Now()
		} else if time.Since(lastProgress) > time.Minute {
			return fmt.Errorf("drain: no progress for a minute at %d of %d records (is the backlog there? with --nats, publish it first with the same --records and --batch)", rows, w.wantRecords)
		}
		if res.CaughtUp == 0 && pool.Stats().Received >= int64(w.batches) {
			res.CaughtUp = time.Since(start).Seconds()
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// report fills in and prints the drain's figures, once the pool stopped.
func report(o Options, s *sink, pool *workers.Pool, w *workload, start time.Time, res *Result) {
	rows, cost, bytes, reqs := s.held()
	if o.Dest == "webhook" {
		bytes = pool.Stats().BodyBytes
	}
	res.BodyBytes, res.Requests = bytes, reqs
	res.DrainRate = float64(w.wantRecords) / res.DrainSeconds
	res.DrainMBps = float64(bytes) / 1e6 / res.DrainSeconds
	exact := rows == w.wantRecords && cost.Equal(w.wantCost)
	res.Exact = &exact
	ps := pool.Stats()
	res.Jobs, res.JobFailures = ps.Jobs, ps.JobFailures
	if o.Dest == "cloudzero" {
		if all := s.sb.CloudZero.Requests("bench"); len(all) > 0 {
			res.FirstUpload = all[0].Time.Sub(start).Seconds()
		}
	}
	res.Detail = fmt.Sprintf("received %d records cost %s; published %d cost %s", rows, cost, w.wantRecords, w.wantCost)
	res.PeakRSSMB = peakRSSMB()
	o.say("drained %d records into the %s %s sandbox in %.2fs: %.0f records/s, %.1f MB/s of bodies in %d requests", w.wantRecords, res.Sandbox, o.Dest, res.DrainSeconds, res.DrainRate, res.DrainMBps, reqs)
	o.say("jobs: %d (%d failed tries); every message held after %.2fs, first upload after %.2fs", res.Jobs, res.JobFailures, res.CaughtUp, res.FirstUpload)
	o.say("cpu: %.2f s per million records drained (whole process: NATS server, sandbox and worker)", res.CPUPerMillion)
	o.say("peak RSS %.0f MB; exact: %v (%s)", res.PeakRSSMB, exact, res.Detail)
}

func writeHeapProfile(path string) {
	if f, err := os.Create(path); err == nil {
		pprof.WriteHeapProfile(f)
		f.Close()
	}
}
