package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"runtime/pprof"
	"runtime/trace"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/usagefleet/usagefleet/internal/sandbox/cloudzero"
	"github.com/usagefleet/usagefleet/internal/sandbox/serve"
	"github.com/usagefleet/usagefleet/messages"
	"github.com/usagefleet/usagefleet/workers"
)

// The drain: a destination pool in a worker child empties the backlog
// into a sandbox served by the bench process, and the bench watches the
// sandbox until it holds every record and the consumer has nothing left.

// sink is what the drain delivers to: the CloudZero sandbox (counting or
// strict), the counting webhook receiver, or with --strict the webhook
// sandbox.
type sink struct {
	dest string
	sb   *serve.Running
	hook *countingWebhook
	url  string // what the worker child is given
	key  string
}

// startSink serves the sandbox o.Dest.
func startSink(o Options) (*sink, error) {
	s := &sink{dest: o.Dest}
	if o.Dest == "webhook" && !o.Strict {
		h, err := startCountingWebhook(webhookBody)
		if err != nil {
			return nil, err
		}
		s.hook, s.url = h, h.url
		return s, nil
	}
	sbo := serve.Options{Only: []string{o.Dest}}
	s.key = "bench-key"
	sbo.CloudZero = cloudzero.Config{Connections: map[string]string{benchDest: s.key}, FastCount: !o.Strict, MaxRowsPerMonth: -1, MaxBytesPerMonth: -1}
	sbo.Webhook.MaxBodyBytes = webhookBody
	sb, err := serve.Start(sbo)
	if err != nil {
		return nil, err
	}
	s.sb = sb
	switch o.Dest {
	case "cloudzero":
		s.url = sb.URLs[serve.CloudZero]
	case "webhook":
		s.url = sb.URLs[serve.Webhook] + "/ingest"
	}
	return s, nil
}

func (s *sink) close() {
	if s.hook != nil {
		s.hook.Close()
	}
	if s.sb != nil {
		s.sb.Close()
	}
}

// held is what the destination holds: records, their exact cost per
// currency (CloudZero's CBF and the webhook sandbox keep no currency: one
// total under "*"), request body bytes (0 where the sandbox does not
// count them) and requests.
func (s *sink) held() (rows int, cost map[string]*messages.Sum, bytes, reqs int64) {
	cost = map[string]*messages.Sum{}
	switch {
	case s.hook != nil:
		c := s.hook.count()
		return c.Records, c.Cost, c.BodyBytes, int64(c.Requests)
	case s.dest == "webhook":
		st := s.sb.Webhook.Stats()
		sum := &messages.Sum{}
		sum.Add(messages.FromBig(st.UniqueCost))
		cost["*"] = sum
		return st.UniqueRecords, cost, 0, int64(st.Requests)
	}
	sum := &messages.Sum{}
	for _, t := range s.sb.CloudZero.Hours(benchDest) {
		rows += t.Rows
		sum.Add(messages.FromBig(t.Cost))
	}
	cost["*"] = sum
	all := s.sb.CloudZero.Requests(benchDest)
	for _, r := range all {
		bytes += r.Bytes
	}
	return rows, cost, bytes, int64(len(all))
}

// exact says whether the destination holds the workload exactly, and
// what it holds against what was published.
func (s *sink) exact(w *workload) (bool, string) {
	rows, cost, _, _ := s.held()
	want := costString(w.wantCost)
	if all, ok := cost["*"]; ok && len(cost) == 1 {
		got := all.Decimal()
		return rows == w.wantRecords && got.Equal(w.wantTotal()),
			fmt.Sprintf("received %d records, cost %s (the destination keeps no currency: all summed); published %d, cost %s", rows, got, w.wantRecords, want)
	}
	got := costString(cost)
	ok := rows == w.wantRecords && len(cost) == len(w.wantCost)
	for cur, s := range w.wantCost {
		ok = ok && cost[cur] != nil && cost[cur].Decimal().Equal(s.Decimal())
	}
	return ok, fmt.Sprintf("received %d records, cost %s; published %d, cost %s", rows, got, w.wantRecords, want)
}

// drain runs a pool in a worker child over the whole backlog until the
// destination holds every record exactly and the consumer has nothing
// pending, and fills in the drain's figures.
func drain(ctx context.Context, o Options, e *env, w *workload, res *Result) error {
	s, err := startSink(o)
	if err != nil {
		return err
	}
	defer s.close()
	// Every drain reads the whole backlog: a consumer left by an earlier
	// drain would have nothing left to deliver.
	if err := e.js.DeleteConsumer(ctx, messages.StreamUsage, workers.ConsumerName(benchDest)); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return fmt.Errorf("removing the previous drain's consumer: %w", err)
	}
	ch, err := startChild(ctx, childSpec{
		Role: "drain", NATSURL: e.workerURL, Dest: o.Dest, URL: s.url, APIKey: s.key, Workers: o.Workers, Messages: res.Messages,
		CPUProfile: profilePath(o.CPUProfile, res.Run, o.Runs), MemProfile: profilePath(o.MemProfile, res.Run, o.Runs),
		BlockProfile: profilePath(o.BlockProfile, res.Run, o.Runs), Trace: profilePath(o.Trace, res.Run, o.Runs),
	})
	if err != nil {
		return err
	}
	defer ch.kill()
	runtime.GC()
	bench0, server0 := cpuSeconds(), 0.0
	if e.serverCPU != nil {
		server0 = e.serverCPU()
	}
	start := time.Now()
	if err := ch.send("go"); err != nil {
		return err
	}
	err = waitDrained(ctx, s, e.js, w, ch)
	res.DrainSeconds = time.Since(start).Seconds()
	bench1 := cpuSeconds()
	if e.serverCPU != nil {
		res.ServerCPUPerMillion = (e.serverCPU() - server0) / float64(w.wantRecords) * 1e6
	}
	if err != nil {
		return err
	}
	if err := ch.send("stop"); err != nil {
		return err
	}
	r, err := ch.await(ctx, "done", time.Minute)
	if err != nil {
		return err
	}
	_, _, bytes, reqs := s.held()
	if bytes == 0 {
		bytes = r.BodyBytes // the strict webhook sandbox does not count them: the worker's own count
	}
	res.BodyBytes, res.Requests = bytes, reqs
	res.DrainRate = float64(w.wantRecords) / res.DrainSeconds
	res.DrainMBps = float64(bytes) / 1e6 / res.DrainSeconds
	res.CPUPerMillion = r.CPUSeconds / float64(w.wantRecords) * 1e6
	res.BenchCPUPerMillion = (bench1 - bench0) / float64(w.wantRecords) * 1e6
	res.WorkerPeakRSSMB = r.PeakRSSMB
	res.Jobs, res.JobFailures, res.CaughtUp = r.Jobs, r.JobFailures, r.CaughtUp
	if s.sb != nil && s.sb.CloudZero != nil {
		if all := s.sb.CloudZero.Requests(benchDest); len(all) > 0 {
			res.FirstUpload = all[0].Time.Sub(start).Seconds()
		}
	}
	exact, detail := s.exact(w)
	res.Exact, res.Detail = &exact, detail
	return nil
}

// waitDrained polls every 20 ms until the destination holds every record
// with the exact cost and the drain's consumer has no message pending or
// unacked; it gives up after a minute without progress, or when the
// worker child ends.
func waitDrained(ctx context.Context, s *sink, js jetstream.JetStream, w *workload, ch *child) error {
	lastRows, lastProgress := -1, time.Now()
	for {
		rows, _, _, _ := s.held()
		if rows >= w.wantRecords {
			if ok, _ := s.exact(w); ok {
				if c, err := js.Consumer(ctx, messages.StreamUsage, workers.ConsumerName(benchDest)); err == nil {
					if info, err := c.Info(ctx); err == nil && info.NumAckPending == 0 && info.NumPending == 0 {
						return nil
					}
				}
			}
		}
		if rows != lastRows {
			lastRows, lastProgress = rows, time.Now()
		} else if time.Since(lastProgress) > time.Minute {
			_, detail := s.exact(w)
			return fmt.Errorf("drain: no progress for a minute: %s", detail)
		}
		select {
		case <-ch.exited:
			return fmt.Errorf("drain: the worker child ended: %s", ch.why())
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func writeHeapProfile(path string) {
	if f, err := os.Create(path); err == nil {
		pprof.WriteHeapProfile(f)
		f.Close()
	}
}

// startWaitProfiles starts sampling where goroutines block and wait for
// locks (into block, and block+".mutex") and an execution trace (into
// tr), each when its path is set; stop writes them.
func startWaitProfiles(block, tr string) (stop func(), err error) {
	var tf *os.File
	if tr != "" {
		if tf, err = os.Create(tr); err != nil {
			return nil, err
		}
		if err := trace.Start(tf); err != nil {
			tf.Close()
			return nil, err
		}
	}
	if block != "" {
		runtime.SetBlockProfileRate(10_000) // a sample per 10 µs blocked
		runtime.SetMutexProfileFraction(10)
	}
	return func() {
		if tf != nil {
			trace.Stop()
			tf.Close()
		}
		if block == "" {
			return
		}
		for name, path := range map[string]string{"block": block, "mutex": block + ".mutex"} {
			if f, err := os.Create(path); err == nil {
				pprof.Lookup(name).WriteTo(f, 0)
				f.Close()
			}
		}
		runtime.SetBlockProfileRate(0)
		runtime.SetMutexProfileFraction(0)
	}, nil
}
