package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/usagefleet/usagefleet/internal/telemetry"
	"github.com/usagefleet/usagefleet/messages"
	"github.com/usagefleet/usagefleet/producer/collect"
	_ "github.com/usagefleet/usagefleet/producer/collect/acronis" // registers the acronis collector type
	_ "github.com/usagefleet/usagefleet/producer/collect/here"    // registers the here collector type
)

// collect runs the report collectors of a configuration file (see package
// producer/collect for the format): every collector once with --once,
// else each on its schedule until SIGINT or SIGTERM. One line per run
// goes to stdout; rejected rows, failures and logs go to stderr. Each
// rejected row is also kept in the DEAD stream (dead._collect.<collector>)
// before its report's periods are published; the line says how many dead
// letters were stored and how many were already there (an earlier run of
// the same report range).
//
// Exit status with --once: 0 every collector published its periods, 1 a
// collector failed (or the configuration is invalid, or NATS is
// unreachable), 2 every collector published but some report rows were
// rejected (and kept in DEAD). Without --once: 0 when stopped by a
// signal, 1 when it could not start.
//
// --metrics-listen serves the process's metrics for Prometheus
// (usagefleet_publish_duration_seconds, ...) with /healthz and /readyz
// (ready = connected to NATS and the checkpoint bucket answers), as the
// worker's metrics listener does; OTLP export follows the OTEL_* variables
// either way. --log-format json writes structured logs with trace ids.
type collectCommand struct {
	env           *env
	config        string
	once          bool
	logLevel      string
	logFormat     string
	metricsListen string
}

func collectCmd(e *env) (*flag.FlagSet, runFunc) {
	c := &collectCommand{env: e}
	fs := newFlagSet("collect")
	fs.StringVar(&c.config, "config", "", "collector configuration `file` (YAML; required; see package producer/collect)")
	fs.BoolVar(&c.once, "once", false, "run every collector once and exit (status 1 if one failed, 2 if report rows were rejected)")
	fs.StringVar(&c.logLevel, "log-level", "info", "log level on stderr: debug, info, warn or error")
	fs.StringVar(&c.logFormat, "log-format", "text", "log format on stderr: text or json (with trace ids)")
	fs.StringVar(&c.metricsListen, "metrics-listen", "", "serve /metrics (Prometheus), /healthz and /readyz on this `address` (e.g. :9092); default: not served")
	return fs, c.run
}

func (c *collectCommand) run(ctx context.Context, fs *flag.FlagSet, args []string) int {
	stdout, stderr := c.env.stdout, c.env.stderr
	if len(args) > 0 {
		return usageErr(fs, "unexpected argument %q", args[0])
	}
	if c.config == "" {
		return usageErr(fs, "--config is required")
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.logLevel)); err != nil {
		return usageErr(fs, "--log-level %q: want debug, info, warn or error", c.logLevel)
	}
	if c.logFormat != "text" && c.logFormat != "json" {
		return usageErr(fs, "--log-format %q: want text or json", c.logFormat)
	}
	if c.metricsListen != "" {
		if _, _, err := net.SplitHostPort(c.metricsListen); err != nil {
			return usageErr(fs, "--metrics-listen %q: want host:port or :port", c.metricsListen)
		}
	}
	cfg, err := collect.LoadConfig(c.config)
	if err != nil {
		fmt.Fprintf(stderr, "usage-producer collect: %v\n", err)
		return exitFail
	}
	hopts := &slog.HandlerOptions{Level: level}
	var handler slog.Handler = slog.NewTextHandler(stderr, hopts)
	if c.logFormat == "json" {
		handler = slog.NewJSONHandler(stderr, hopts)
	}
	log := slog.New(telemetry.LogHandler(handler))
	nc, prod, err := connect(ctx, cfg.NATS, nil, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "usage-producer collect: %v\n", err)
		return exitFail
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		fmt.Fprintf(stderr, "usage-producer collect: %v\n", err)
		return exitFail
	}
	kv, err := checkpointBucket(ctx, js)
	if err != nil {
		fmt.Fprintf(stderr, "usage-producer collect: %v\n", err)
		return exitFail
	}
	cs, err := cfg.BuildWithDeadLetters(prod, js, kv, log, c.once)
	if err != nil {
		fmt.Fprintf(stderr, "usage-producer collect: %v\n", err)
		return exitFail
	}
	if c.metricsListen != "" {
		stop, err := serveHealth(ctx, c.metricsListen, collectReady(nc, kv))
		if err != nil {
			fmt.Fprintf(stderr, "usage-producer collect: --metrics-listen: %v\n", err)
			return exitFail
		}
		defer stop()
		log.Info("serving /metrics, /healthz and /readyz", "addr", c.metricsListen)
	}
	if !c.once {
		collect.RunLoop(ctx, cs, func(o collect.Outcome) { printOutcome(stdout, stderr, o) })
		return exitOK
	}
	code := exitOK
	for _, o := range collect.RunOnce(ctx, cs) {
		printOutcome(stdout, stderr, o)
		switch {
		case o.Err != nil:
			code = exitFail
		case len(o.Result.Rejected) > 0 && code == exitOK:
			code = exitSkipped
		}
	}
	return code
}

// checkpointBucket is the collectors' checkpoint bucket, which the fleet
// creates with its streams.
func checkpointBucket(ctx context.Context, js jetstream.JetStream) (jetstream.KeyValue, error) {
	kv, err := js.KeyValue(ctx, messages.BucketCheckpoints)
	if err != nil {
		if errors.Is(err, jetstream.ErrBucketNotFound) {
			err = fmt.Errorf("the checkpoint bucket %s does not exist: the fleet creates it with its streams (start usage-worker once)", messages.BucketCheckpoints)
		}
		return nil, err
	}
	return kv, nil
}

// collectReady is the collector's /readyz check: connected to NATS, and
// the checkpoint bucket answers.
func collectReady(nc *nats.Conn, kv jetstream.KeyValue) func(context.Context) error {
	return func(ctx context.Context) error {
		if !nc.IsConnected() {
			return errors.New("not connected to NATS")
		}
		sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		if _, err := kv.Status(sctx); err != nil {
			return fmt.Errorf("checkpoint bucket %s: %w", messages.BucketCheckpoints, err)
		}
		return nil
	}
}

// maxRejectedShown bounds the rejected rows printed per run (all are logged).
const maxRejectedShown = 50

func printOutcome(stdout, stderr io.Writer, o collect.Outcome) {
	r := o.Result
	if r != nil && (len(r.Batches) > 0 || o.Err == nil) {
		reused := 0
		for _, rep := range r.Reports {
			if rep.Reused {
				reused++
			}
		}
		dup := 0
		for _, b := range r.Batches {
			if b.Duplicate {
				dup++
			}
		}
		var b strings.Builder
		fmt.Fprintf(&b, "%s: %s %s..%s, generation %d: %d report(s)", o.Collector, verb(o.Err), r.Window.Start.Format(time.DateOnly),
			r.Window.End.Add(-time.Nanosecond).Format(time.DateOnly), r.Generation, len(r.Reports))
		if reused > 0 {
			fmt.Fprintf(&b, " (%d reused)", reused)
		}
		fmt.Fprintf(&b, ", %d period(s) published", len(r.Batches))
		if dup > 0 {
			fmt.Fprintf(&b, " (%d already stored)", dup)
		}
		fmt.Fprintf(&b, ", %d record(s), %d row(s) rejected", r.Records, len(r.Rejected))
		if len(r.Rejected) > 0 {
			fmt.Fprintf(&b, " (dead letters on %s: %d stored, %d already there)", r.DeadSubject, r.DeadLetters, r.DeadKnown)
		}
		fmt.Fprintln(stdout, b.String())
	}
	if r != nil {
		for i, rej := range r.Rejected {
			if i == maxRejectedShown {
				fmt.Fprintf(stderr, "%s: ... and %d more rejected rows (see the log)\n", o.Collector, len(r.Rejected)-i)
				break
			}
			fmt.Fprintf(stderr, "%s: rejected %s\n", o.Collector, rej.Error())
		}
	}
	switch {
	case o.Err == nil:
	case errors.Is(o.Err, collect.ErrNotReady):
		fmt.Fprintf(stderr, "%s: not collected, the usage data is not ready yet: %v\n", o.Collector, o.Err)
	default:
		fmt.Fprintf(stderr, "%s: failed: %v\n", o.Collector, o.Err)
	}
}

// serveHealth serves the Prometheus metrics of this process (those of
// telemetry.Setup in main; set up here when main did not), /healthz and
// /readyz on addr until stop is called.
func serveHealth(ctx context.Context, addr string, ready func(context.Context) error) (stop func(), err error) {
	metrics := metricsHandler
	if metrics == nil {
		tel, err := telemetry.Setup(ctx, "usage-producer")
		if err != nil {
			return nil, err
		}
		metrics = tel.Metrics
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	srv := &http.Server{Handler: telemetry.Health(metrics, ready), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(l) }()
	return func() { _ = srv.Close() }, nil
}

func verb(err error) string {
	if err != nil {
		return "partly collected"
	}
	return "collected"
}
