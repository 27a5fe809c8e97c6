package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/usagefleet/usagefleet/internal/broker"
	"github.com/usagefleet/usagefleet/internal/config"
	"github.com/usagefleet/usagefleet/workers"
	czdest "github.com/usagefleet/usagefleet/workers/cloudzero"
	"github.com/usagefleet/usagefleet/workers/webhook"
)

// The worker side of a drain (and the raw consumer) runs in a child
// process: the bench binary started again with childEnv set. So the CPU
// seconds and the peak RSS reported as the worker's are those of a
// process that holds only the pool (or the raw consumer), its NATS
// connection and its HTTP client: the server (embedded or spawned), the
// sandbox or counting receiver, the delay proxy and the publisher are in
// other processes.
//
// The protocol is lines on the child's stdin and stdout. The parent
// writes the childSpec as one JSON line; the child connects, builds what
// it runs and answers {"event":"ready"}; the parent writes "go" and
// starts its clock; the child starts. A raw consumer answers
// {"event":"done",...} once every message is acked; a drain runs until
// the parent, which watches the destination, writes "stop", then answers
// done with its figures, taken the moment "stop" arrived.

const childEnv = "USAGEFLEET_BENCH_CHILD"

// MaybeChild runs this process as the bench's worker child and exits, if
// it was started as one; otherwise it returns at once. The usagefleet
// command's main and the tests' TestMain call it first.
func MaybeChild() {
	if os.Getenv(childEnv) != "1" {
		return
	}
	if err := runChild(os.Stdin, os.Stdout); err != nil {
		b, _ := json.Marshal(childReport{Event: "error", Error: err.Error()})
		os.Stdout.Write(append(b, '\n'))
		os.Exit(1)
	}
	os.Exit(0)
}

// childSpec is what the parent asks of the child.
type childSpec struct {
	Role       string `json:"role"` // drain or raw
	NATSURL    string `json:"nats_url"`
	Dest       string `json:"dest"`        // drain: cloudzero or webhook
	URL        string `json:"url"`         // drain: the sandbox's base URL (cloudzero) or ingest URL (webhook)
	APIKey     string `json:"api_key"`     // drain, cloudzero: the sandbox connection's key (a bench value, not a credential)
	Workers    int    `json:"workers"`     // drain
	Messages   int    `json:"messages"`    // the backlog's messages
	CPUProfile string `json:"cpu_profile"` // drain: written from go to stop
	MemProfile string `json:"mem_profile"` // drain: written at stop
	// drain: block and mutex profiles (BlockProfile and BlockProfile.mutex)
	// and an execution trace, from go to stop.
	BlockProfile string `json:"block_profile"`
	Trace        string `json:"trace"`
}

// childReport is a line from the child.
type childReport struct {
	Event       string  `json:"event"` // ready, done, error
	Error       string  `json:"error,omitempty"`
	CPUSeconds  float64 `json:"cpu_seconds,omitempty"` // from go to done (raw) or stop (drain)
	Seconds     float64 `json:"seconds,omitempty"`     // raw: from go until every message was acked
	PeakRSSMB   float64 `json:"peak_rss_mb,omitempty"` // VmHWM
	Messages    int64   `json:"messages,omitempty"`    // raw: messages received
	Bytes       int64   `json:"bytes,omitempty"`       // raw: message data bytes
	Redelivered int     `json:"redelivered,omitempty"` // raw: the consumer's redelivered count at the end
	Jobs        int64   `json:"jobs,omitempty"`
	JobFailures int64   `json:"job_failures,omitempty"`
	BodyBytes   int64   `json:"body_bytes,omitempty"`
	CaughtUp    float64 `json:"caught_up,omitempty"` // drain: from go until the pool had received every message (20 ms resolution)
}

func runChild(in io.Reader, out io.Writer) error {
	lines := bufio.NewScanner(in)
	if !lines.Scan() {
		return errors.New("no spec on stdin")
	}
	var spec childSpec
	if err := json.Unmarshal(lines.Bytes(), &spec); err != nil {
		return fmt.Errorf("spec: %w", err)
	}
	say := func(r childReport) {
		b, _ := json.Marshal(r)
		out.Write(append(b, '\n'))
	}
	next := func() string {
		if !lines.Scan() {
			return ""
		}
		return lines.Text()
	}
	nc, err := nats.Connect(spec.NATSURL, nats.Name("usage-bench-"+spec.Role), nats.MaxReconnects(-1))
	if err != nil {
		return err
	}
	defer nc.Close()
	ctx := context.Background()
	switch spec.Role {
	case "raw":
		return rawChild(ctx, nc, spec, say, next)
	case "drain":
		return drainChild(ctx, nc, spec, say, next)
	}
	return fmt.Errorf("role %q", spec.Role)
}

// drainChild runs the destination pool from go until stop.
func drainChild(ctx context.Context, nc *nats.Conn, spec childSpec, say func(childReport), next func() string) error {
	var to workers.Destination
	var err error
	switch spec.Dest {
	case "cloudzero":
		to, err = czdest.New(benchDest, czdest.Settings{BaseURL: spec.URL, ConnectionID: benchDest, APIKey: config.NewSecret(spec.APIKey)})
	case "webhook":
		to, err = webhook.New(benchDest, webhook.Settings{URL: spec.URL, MaxBodyBytes: webhookBody}, "bench")
	default:
		err = fmt.Errorf("dest %q", spec.Dest)
	}
	if err != nil {
		return err
	}
	pool, err := workers.NewPool(nc, to, workers.Options{
		Feeds:   []string{feed},
		Workers: spec.Workers,
		Flush:   workers.FlushPolicy{MaxDelay: 2 * time.Second, Quiet: 200 * time.Millisecond},
		// The lease TTL production runs with (the bucket's; lease_ttl's
		// default): with a TTL no longer than http_timeout every request
		// renewed the lease first, a KV round trip that was over half the
		// upload's time.
		LeaseTTL: broker.DefaultLeaseTTL,
		Logger:   slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		return err
	}
	say(childReport{Event: "ready"})
	if next() != "go" {
		return errors.New("no go")
	}
	var stopProfile func()
	if spec.CPUProfile != "" {
		if stopProfile, err = startCPUProfile(spec.CPUProfile); err != nil {
			return err
		}
	}
	stopWaits, err := startWaitProfiles(spec.BlockProfile, spec.Trace)
	if err != nil {
		return err
	}
	cpu0, start := cpuSeconds(), time.Now()
	pctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- pool.Run(pctx) }()
	var mu sync.Mutex
	caughtUp := 0.0
	go func() {
		for pctx.Err() == nil {
			if pool.Stats().Received >= int64(spec.Messages) {
				mu.Lock()
				caughtUp = time.Since(start).Seconds()
				mu.Unlock()
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	stopped := make(chan string, 1)
	go func() { stopped <- next() }()
	select {
	case err := <-done:
		return fmt.Errorf("the pool stopped before the drain ended: %v", err)
	case <-stopped:
	}
	r := childReport{Event: "done", CPUSeconds: cpuSeconds() - cpu0, PeakRSSMB: peakRSSMB()}
	if stopProfile != nil {
		stopProfile()
	}
	stopWaits()
	if spec.MemProfile != "" {
		writeHeapProfile(spec.MemProfile)
	}
	st := pool.Stats()
	r.Jobs, r.JobFailures, r.BodyBytes = st.Jobs, st.JobFailures, st.BodyBytes
	mu.Lock()
	r.CaughtUp = caughtUp
	mu.Unlock()
	cancel()
	<-done
	say(r)
	return nil
}

// child is a running worker child, seen from the parent.
type child struct {
	cmd     *exec.Cmd
	stdin   io.WriteCloser
	reports chan childReport
	stderr  *tailBuffer
	exited  chan struct{}
}

// startChild starts the bench binary again as a child with spec and waits
// until it is ready.
func startChild(ctx context.Context, spec childSpec) (*child, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), childEnv+"=1")
	c := &child{cmd: cmd, reports: make(chan childReport, 4), stderr: &tailBuffer{max: 8 << 10}, exited: make(chan struct{})}
	cmd.Stderr = c.stderr
	if c.stdin, err = cmd.StdinPipe(); err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			var r childReport
			if json.Unmarshal(sc.Bytes(), &r) == nil {
				c.reports <- r
			}
		}
		cmd.Wait()
		close(c.reports)
		close(c.exited)
	}()
	b, _ := json.Marshal(spec)
	if _, err := c.stdin.Write(append(b, '\n')); err != nil {
		c.kill()
		return nil, err
	}
	if _, err := c.await(ctx, "ready", 2*time.Minute); err != nil {
		c.kill()
		return nil, err
	}
	return c, nil
}

// send writes a line to the child.
func (c *child) send(line string) error {
	_, err := io.WriteString(c.stdin, line+"\n")
	return err
}

// await waits for the child's next report, which must be want.
func (c *child) await(ctx context.Context, want string, limit time.Duration) (childReport, error) {
	t := time.NewTimer(limit)
	defer t.Stop()
	select {
	case r, ok := <-c.reports:
		switch {
		case !ok:
			return r, fmt.Errorf("the worker child exited (does main, or TestMain, call bench.MaybeChild?): %s", c.stderr.String())
		case r.Event == "error":
			return r, fmt.Errorf("worker child: %s", r.Error)
		case r.Event != want:
			return r, fmt.Errorf("worker child: %q, want %q", r.Event, want)
		}
		return r, nil
	case <-t.C:
		return childReport{}, fmt.Errorf("worker child: no %q after %v", want, limit)
	case <-ctx.Done():
		return childReport{}, ctx.Err()
	}
}

// why is what an ended child said: its error report, else its stderr.
func (c *child) why() string {
	for r := range c.reports {
		if r.Event == "error" {
			return r.Error
		}
	}
	return c.stderr.String()
}

// kill ends the child if it still runs and waits for it.
func (c *child) kill() {
	c.stdin.Close()
	select {
	case <-c.exited:
		return
	case <-time.After(30 * time.Second):
	}
	c.cmd.Process.Kill()
	<-c.exited
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   bytes.Buffer
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b.Write(p)
	if over := t.b.Len() - t.max; over > 0 {
		t.b.Next(over)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.b.String()
}
