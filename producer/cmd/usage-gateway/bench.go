package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
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
)

// bench runs the gateway as a child process (so its peak RSS is its own),
// against an embedded nats-server in this process, and drives it from
// here over loopback: everything on one machine, as the targets say.
//
//	batched: --batch-requests requests of --batch-size NDJSON records from
//	         --batch-clients clients; records/s stored (answered 200).
//	single:  --clients clients each posting one structured CloudEvent at a
//	         time for --duration; requests/s, p50 and p99 latency.
func benchCmd(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	batchSize := fs.Int("batch-size", 1000, "records per batched request")
	batchReqs := fs.Int("batch-requests", 300, "batched requests")
	batchClients := fs.Int("batch-clients", 4, "concurrent batched clients")
	clients := fs.Int("clients", 64, "concurrent single-event clients")
	duration := fs.Duration("duration", 5*time.Second, "single-event phase length")
	linger := fs.Duration("linger", 3*time.Millisecond, "gateway linger.delay")
	mode := fs.String("mode", "both", "both, batched or single")
	clientKind := fs.String("client", "raw", "single-event load generator: raw (one HTTP/1.1 keep-alive connection per client, written and read in place) or nethttp (net/http's client)")
	cpuprofile := fs.String("cpuprofile", "", "write the gateway's CPU profile to `file`")
	restprofile := fs.String("rest-cpuprofile", "", "write the CPU profile of the rest (embedded JetStream and the load generator) to `file`")
	if helpAsked(args) {
		fs.SetOutput(stdout)
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 64
	}
	if *cpuprofile != "" {
		abs, _ := filepath.Abs(*cpuprofile)
		os.Setenv("USAGE_GATEWAY_CPUPROFILE", abs)
	}
	if *restprofile != "" {
		f, err := os.Create(*restprofile)
		if err != nil {
			fmt.Fprintln(stderr, "usage-gateway bench:", err)
			return 1
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintln(stderr, "usage-gateway bench:", err)
			return 1
		}
		defer pprof.StopCPUProfile()
	}
	if *clientKind != "raw" && *clientKind != "nethttp" {
		fmt.Fprintln(stderr, "usage-gateway bench: --client is raw or nethttp")
		return 64
	}
	if err := bench(ctx, stdout, *mode, *clientKind, *batchSize, *batchReqs, *batchClients, *clients, *duration, *linger); err != nil {
		fmt.Fprintln(stderr, "usage-gateway bench:", err)
		return 1
	}
	return 0
}

const benchKey = "bench-key-0123456789abcdef"

func bench(ctx context.Context, out io.Writer, mode, clientKind string, batchSize, batchReqs, batchClients, clients int, duration, linger time.Duration) error {
	dir, err := os.MkdirTemp("", "gateway-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	emb, err := broker.StartEmbedded(filepath.Join(dir, "nats"), 0)
	if err != nil {
		return err
	}
	defer emb.Close()
	nc, err := nats.Connect(emb.URL)
	if err != nil {
		return err
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	if err := broker.EnsureStreams(ctx, js, broker.StreamOptions{}); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	addr := ln.Addr().String()
	ln.Close()
	cfgPath := filepath.Join(dir, "gateway.yaml")
	cfg := fmt.Sprintf("listen: %q\nnats: {url: %q}\nlog_level: warn\nlinger: {delay: %s}\nlimits: {max_in_flight: 4096}\nkeys:\n  - {name: bench, secret: {env: BENCH_GATEWAY_KEY}, sources: [bench], feeds: [bench]}\n", addr, emb.URL, linger)
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	child := exec.CommandContext(ctx, self, "serve", "--config", cfgPath)
	child.Env = append(os.Environ(), "BENCH_GATEWAY_KEY="+benchKey)
	child.Stderr = os.Stderr
	if err := child.Start(); err != nil {
		return err
	}
	defer func() { child.Process.Signal(os.Interrupt); child.Wait() }()
	base := "http://" + addr
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: clients + batchClients + 8, MaxConnsPerHost: clients + batchClients + 8}}
	if err := waitReady(ctx, client, base); err != nil {
		return err
	}
	fmt.Fprintf(out, "usage-gateway bench: gateway pid %d on %s, embedded JetStream, %d CPUs\n", child.Process.Pid, addr, runtime.NumCPU())
	pid := child.Process.Pid
	// CPU seconds per million: less sensitive than rates to a machine
	// shared with other work. "rest" is this process: the embedded
	// JetStream and the load generator.
	cpu := func(what string, n int, g0, s0 time.Duration) {
		g, s := procCPU(pid)-g0, selfCPU()-s0
		fmt.Fprintf(out, "  CPU per million %s: gateway %.2f s, JetStream + load generator %.2f s (gateway %.2fs, rest %.2fs in all)\n",
			what, g.Seconds()*1e6/float64(n), s.Seconds()*1e6/float64(n), g.Seconds(), s.Seconds())
	}
	if mode == "both" || mode == "batched" {
		g0, s0 := procCPU(pid), selfCPU()
		if err := benchBatched(ctx, out, client, base, batchSize, batchReqs, batchClients); err != nil {
			return err
		}
		cpu("records", batchSize*batchReqs, g0, s0)
		fmt.Fprintf(out, "  gateway peak RSS after batched: %s\n", peakRSS(pid))
	}
	if mode == "both" || mode == "single" {
		g0, s0 := procCPU(pid), selfCPU()
		n, err := benchSingle(ctx, out, client, clientKind, base, clients, duration)
		if err != nil {
			return err
		}
		cpu("requests", n, g0, s0)
		fmt.Fprintf(out, "  gateway peak RSS after single: %s\n", peakRSS(pid))
	}
	return nil
}

func waitReady(ctx context.Context, c *http.Client, base string) error {
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if resp, err := c.Get(base + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return fmt.Errorf("the gateway at %s was not ready in 20s", base)
}

func post(c *http.Client, url, ct string, body []byte, extra ...string) (int, []byte, error) {
	req, _ := http.NewRequest("POST", url, bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+benchKey)
	req.Header.Set("Content-Type", ct)
	for i := 0; i+1 < len(extra); i += 2 {
		req.Header.Set(extra[i], extra[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode == 200 && len(extra) == 0 {
		// The single-event answer: read into a small reused buffer.
		var buf [512]byte
		n, _ := io.ReadFull(resp.Body, buf[:])
		io.Copy(io.Discard, resp.Body)
		return resp.StatusCode, buf[:n], nil
	}
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b, nil
}

// benchRecords is an NDJSON body of n varied records in one hour.
func benchRecords(n, seed int) []byte {
	var b bytes.Buffer
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, `{"ChargePeriodStart":"2026-03-01T%02d:%02d:00Z","ChargePeriodEnd":"2026-03-01T%02d:59:59Z","BillingAccountId":"acct-%d","SubAccountId":"sub-%d","ProviderName":"Example","ServiceName":"Compute","ChargeCategory":"Usage","SkuId":"sku-%d","ResourceId":"res-%d-%d","RegionId":"eu-west-1","ConsumedQuantity":"%d.25","ConsumedUnit":"Hours","PricingQuantity":"%d","PricingUnit":"Hours","BilledCost":"0.%04d","EffectiveCost":"0.%04d","BillingCurrency":"USD","Tags":{"team":"t%d","env":"prod"}}`+"\n",
			seed%24, i%60, seed%24, i%50, i%20, i%40, seed, i, i%9, i%9+1, i%10000, i%10000, i%7)
	}
	return b.Bytes()
}

func benchBatched(ctx context.Context, out io.Writer, c *http.Client, base string, size, reqs, clients int) error {
	bodies := make([][]byte, 8)
	for i := range bodies {
		bodies[i] = benchRecords(size, i)
	}
	var next, failed atomic.Int64
	var firstErr atomic.Value
	start := time.Now()
	var wg sync.WaitGroup
	for w := 0; w < clients; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				if i >= int64(reqs) || ctx.Err() != nil {
					return
				}
				code, b, err := post(c, base+"/v1/usage", "application/x-ndjson", bodies[i%8], "Idempotency-Key", "bench-"+strconv.FormatInt(time.Now().UnixNano(), 36)+"-"+strconv.FormatInt(i, 10))
				if err != nil || code != 200 {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, fmt.Sprintf("%d %v %s", code, err, b))
				}
			}
		}()
	}
	wg.Wait()
	el := time.Since(start)
	if f := failed.Load(); f > 0 {
		return fmt.Errorf("%d batched requests failed, first: %v", f, firstErr.Load())
	}
	recs := float64(size * reqs)
	fmt.Fprintf(out, "batched: %d requests x %d NDJSON records, %d clients: %.0f records/s stored (%.2fs)\n", reqs, size, clients, recs/el.Seconds(), el.Seconds())
	return nil
}

func benchSingle(ctx context.Context, out io.Writer, c *http.Client, clientKind, base string, clients int, d time.Duration) (int, error) {
	var mu sync.Mutex
	var lat []time.Duration
	var failed atomic.Int64
	var firstErr atomic.Value
	stop := time.Now().Add(d)
	run := strconv.FormatInt(time.Now().UnixNano(), 36)
	var wg sync.WaitGroup
	start := time.Now()
	for w := 0; w < clients; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []time.Duration
			// The body is built in one reused buffer (the load generator
			// shares the cores with the gateway and JetStream).
			head := []byte(`{"specversion":"1.0","id":"` + run + "-" + strconv.Itoa(w) + "-")
			tail := []byte(`","source":"/bench","type":"usage","time":"2026-03-01T10:00:00Z","data":{"BillingAccountId":"acct-` + strconv.Itoa(w) + `","SkuId":"sku-1","ConsumedQuantity":"1","ConsumedUnit":"Requests","BilledCost":"0.001","BillingCurrency":"USD"}}`)
			url := base + "/v1/events"
			send := func(ev []byte) (int, []byte, error) { return post(c, url, "application/cloudevents+json", ev) }
			if clientKind == "raw" {
				rc := &rawClient{addr: strings.TrimPrefix(base, "http://"), path: "/v1/events", ct: "application/cloudevents+json"}
				defer rc.close()
				send = rc.post
			}
			var ev []byte
			for i := 0; time.Now().Before(stop) && ctx.Err() == nil; i++ {
				ev = append(strconv.AppendInt(append(ev[:0], head...), int64(i), 10), tail...)
				t0 := time.Now()
				code, b, err := send(ev)
				mine = append(mine, time.Since(t0))
				if err != nil || code != 200 || !bytes.Contains(b, []byte(`"stored"`)) {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, fmt.Sprintf("%d %v %s", code, err, b))
				}
			}
			mu.Lock()
			lat = append(lat, mine...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	el := time.Since(start)
	if f := failed.Load(); f > 0 {
		return 0, fmt.Errorf("%d single requests failed, first: %v", f, firstErr.Load())
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	q := func(p float64) time.Duration { return lat[min(len(lat)-1, int(p*float64(len(lat))))] }
	fmt.Fprintf(out, "single: %d clients (%s), %.1fs: %d requests, %.0f req/s, p50 %v, p99 %v\n", clients, clientKind, el.Seconds(), len(lat), float64(len(lat))/el.Seconds(), q(0.5).Round(10*time.Microsecond), q(0.99).Round(10*time.Microsecond))
	return len(lat), nil
}

// rawClient is one client of the single-event load: one HTTP/1.1
// keep-alive connection, each request written with one write and its
// answer read in the same goroutine (net/http's client hands every request
// to a writer and a reader goroutine: on a 2-core machine shared with the
// gateway and JetStream that was about half of the load generator's CPU).
// A closed connection is dialed again; an answer with Connection: close
// closes it.
type rawClient struct {
	addr, path, ct string
	conn           net.Conn
	br             *bufio.Reader
	req            []byte
	body           []byte
}

func (c *rawClient) close() {
	if c.conn != nil {
		c.conn.Close()
		c.conn = nil
	}
}

func (c *rawClient) post(body []byte) (int, []byte, error) {
	if c.conn == nil {
		conn, err := net.Dial("tcp", c.addr)
		if err != nil {
			return 0, nil, err
		}
		c.conn, c.br = conn, bufio.NewReaderSize(conn, 4096)
	}
	c.req = append(c.req[:0], "POST "...)
	c.req = append(c.req, c.path...)
	c.req = append(c.req, " HTTP/1.1\r\nHost: "...)
	c.req = append(c.req, c.addr...)
	c.req = append(c.req, "\r\nAuthorization: Bearer "+benchKey+"\r\nContent-Type: "...)
	c.req = append(c.req, c.ct...)
	c.req = append(c.req, "\r\nContent-Length: "...)
	c.req = strconv.AppendInt(c.req, int64(len(body)), 10)
	c.req = append(c.req, "\r\n\r\n"...)
	c.req = append(c.req, body...)
	if _, err := c.conn.Write(c.req); err != nil {
		c.close()
		return 0, nil, err
	}
	code, b, keep, err := c.read()
	if err != nil || !keep {
		c.close()
	}
	return code, b, err
}

// read reads one answer: the status line, the headers (Content-Length or
// chunked), the body.
func (c *rawClient) read() (code int, body []byte, keep bool, err error) {
	line, err := c.br.ReadSlice('\n')
	if err != nil {
		return 0, nil, false, err
	}
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.1 ")) {
		return 0, nil, false, fmt.Errorf("bad status line %q", line)
	}
	code, err = strconv.Atoi(string(line[9:12]))
	if err != nil {
		return 0, nil, false, fmt.Errorf("bad status line %q", line)
	}
	n, chunked, keep := -1, false, true
	for {
		line, err = c.br.ReadSlice('\n')
		if err != nil {
			return 0, nil, false, err
		}
		h := bytes.TrimRight(line, "\r\n")
		if len(h) == 0 {
			break
		}
		k, v, _ := bytes.Cut(h, []byte(":"))
		v = bytes.TrimSpace(v)
		switch {
		case bytes.EqualFold(k, []byte("Content-Length")):
			if n, err = strconv.Atoi(string(v)); err != nil {
				return 0, nil, false, fmt.Errorf("bad Content-Length %q", v)
			}
		case bytes.EqualFold(k, []byte("Transfer-Encoding")):
			chunked = bytes.EqualFold(v, []byte("chunked"))
		case bytes.EqualFold(k, []byte("Connection")):
			keep = !bytes.EqualFold(v, []byte("close"))
		}
	}
	c.body = c.body[:0]
	switch {
	case chunked:
		for {
			line, err = c.br.ReadSlice('\n')
			if err != nil {
				return 0, nil, false, err
			}
			size, err := strconv.ParseInt(string(bytes.TrimSpace(bytes.SplitN(line, []byte(";"), 2)[0])), 16, 32)
			if err != nil {
				return 0, nil, false, fmt.Errorf("bad chunk size %q", line)
			}
			if size == 0 {
				for { // trailers, then the blank line
					if line, err = c.br.ReadSlice('\n'); err != nil || len(bytes.TrimRight(line, "\r\n")) == 0 {
						return code, c.body, keep, err
					}
				}
			}
			at := len(c.body)
			c.body = append(c.body, make([]byte, size)...)
			if _, err := io.ReadFull(c.br, c.body[at:]); err != nil {
				return 0, nil, false, err
			}
			if _, err := c.br.Discard(2); err != nil {
				return 0, nil, false, err
			}
		}
	case n >= 0:
		if cap(c.body) < n {
			c.body = make([]byte, n)
		}
		c.body = c.body[:n]
		if _, err := io.ReadFull(c.br, c.body); err != nil {
			return 0, nil, false, err
		}
	default:
		return 0, nil, false, errors.New("an answer without Content-Length or chunked encoding")
	}
	return code, c.body, keep, nil
}

// procCPU is the user and system CPU time of process pid so far
// (/proc/<pid>/stat, in clock ticks of 1/100 s).
func procCPU(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * 10 * time.Millisecond
}

// selfCPU is this process's user and system CPU time so far.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// peakRSS reads VmHWM of a process.
func peakRSS(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return "unknown (" + err.Error() + ")"
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmHWM:") {
			return strings.TrimSpace(strings.TrimPrefix(l, "VmHWM:"))
		}
	}
	return "unknown"
}
