// Command usage-gateway is the HTTP ingest gateway of the usagefleet (see
// package producer/gateway and the README section "Publishing over HTTP:
// usage-gateway").
//
//	usage-gateway [serve] --config FILE   serve the API until SIGTERM/SIGINT
//	usage-gateway validate --config FILE  check the configuration as serve does at start (check: the same)
//	usage-gateway version [--json]        version, commit and Go version
//	usage-gateway bench [flags]           measure throughput, latency and RSS
//
// Exit codes follow the table of every usagefleet binary (README "Exit
// codes"): 0 ok (also -h), 1 failure or an invalid config, 64 usage error.
//
// On SIGTERM the gateway stops being ready (/readyz answers 503), stops
// accepting connections, lets every in-flight request finish (up to
// drain_timeout), stores and answers the events still lingering, then
// drains its NATS connection.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime/debug"
	"runtime/pprof"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/usagefleet/usagefleet/internal/broker"
	"github.com/usagefleet/usagefleet/internal/telemetry"
	"github.com/usagefleet/usagefleet/producer/gateway"
)

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

const gatewayUsage = `usage: usage-gateway [serve] --config FILE   serve the ingest API until SIGTERM
       usage-gateway validate --config FILE  check the configuration as serve does at start (alias: check)
       usage-gateway version [--json]        version, commit and Go version
       usage-gateway bench [flags]           measure throughput, latency and RSS
`

func run(args []string, stdout, stderr io.Writer) int {
	cmd := "serve"
	if len(args) > 0 {
		switch args[0] {
		case "serve", "check", "validate", "bench", "help", "version":
			cmd, args = args[0], args[1:]
		case "-h", "-help", "--help":
			cmd = "help"
		}
	}
	if cmd == "check" {
		cmd = "validate"
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	switch cmd {
	case "bench":
		return benchCmd(ctx, args, stdout, stderr)
	case "help":
		fmt.Fprint(stdout, gatewayUsage)
		return 0
	case "version":
		return versionCmd(args, stdout, stderr)
	}
	fs := flag.NewFlagSet(cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: usage-gateway %s --config FILE\n\nflags:\n", cmd)
		fs.PrintDefaults()
	}
	path := fs.String("config", "", "configuration `file` (YAML)")
	if helpAsked(args) {
		fs.SetOutput(stdout) // asked for: the usage is the answer, not an error
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 64
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "usage-gateway %s: unexpected argument %q\n", cmd, fs.Arg(0))
		return 64
	}
	if *path == "" {
		fmt.Fprintln(stderr, "usage-gateway: --config is required")
		return 64
	}
	cfg, err := gateway.Load(*path)
	if err != nil {
		fmt.Fprintln(stderr, "usage-gateway:", err)
		return 1
	}
	if cmd == "validate" {
		fmt.Fprintf(stdout, "%s: ok (%d keys)\n", *path, len(cfg.Keys))
		return 0
	}
	if f := os.Getenv("USAGE_GATEWAY_CPUPROFILE"); f != "" { // for bench --cpuprofile
		out, err := os.Create(f)
		if err == nil && pprof.StartCPUProfile(out) == nil {
			defer pprof.StopCPUProfile()
		}
	}
	log := newLogger(stderr, cfg.LogLevel, cfg.LogFormat)
	slog.SetDefault(log)
	if err := serve(ctx, cfg, log); err != nil {
		log.Error("usage-gateway stopped", "err", err)
		return 1
	}
	return 0
}

// helpAsked reports whether args ask for the usage (before any "--").
func helpAsked(args []string) bool {
	for _, a := range args {
		if a == "--" {
			return false
		}
		if a == "-h" || a == "-help" || a == "--help" || a == "--h" {
			return true
		}
	}
	return false
}

func versionCmd(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("version", flag.ContinueOnError)
	fs.SetOutput(stderr)
	asJSON := fs.Bool("json", false, "print JSON")
	if helpAsked(args) {
		fs.SetOutput(stdout)
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 64
	}
	b := telemetry.ReadBuild()
	if *asJSON {
		_ = json.NewEncoder(stdout).Encode(b)
		return 0
	}
	mod := ""
	if b.Modified {
		mod = " (modified)"
	}
	fmt.Fprintf(stdout, "usage-gateway %s\ncommit %s%s %s\n%s %s\n", b.Version, b.Commit, mod, b.CommitAt, b.GoVersion, b.Platform)
	return 0
}

func newLogger(w io.Writer, level, format string) *slog.Logger {
	var lv slog.Level
	switch level {
	case "debug":
		lv = slog.LevelDebug
	case "warn":
		lv = slog.LevelWarn
	case "error":
		lv = slog.LevelError
	}
	opts := &slog.HandlerOptions{Level: lv}
	if format == "json" {
		return slog.New(telemetry.LogHandler(slog.NewJSONHandler(w, opts)))
	}
	return slog.New(telemetry.LogHandler(slog.NewTextHandler(w, opts)))
}

// connect reaches NATS, or starts the embedded server (no url) with the
// fleet's streams.
func connect(ctx context.Context, cfg *gateway.Config) (*nats.Conn, func(), error) {
	if cfg.NATS.URL != "" {
		nc, err := broker.Connect(ctx, cfg.NATS, "usage-gateway")
		if err != nil {
			return nil, nil, err
		}
		return nc, nc.Close, nil
	}
	emb, err := broker.StartEmbedded(cfg.NATS.DataDir, cfg.NATS.Port)
	if err != nil {
		return nil, nil, err
	}
	nc, err := nats.Connect(emb.URL, nats.MaxReconnects(-1))
	if err != nil {
		emb.Close()
		return nil, nil, err
	}
	js, _ := jetstream.New(nc)
	if err := broker.EnsureStreams(ctx, js, cfg.Streams); err != nil {
		nc.Close()
		emb.Close()
		return nil, nil, err
	}
	return nc, func() { nc.Close(); emb.Close() }, nil
}

func serve(ctx context.Context, cfg *gateway.Config, log *slog.Logger) error {
	// A request allocates little that outlives it: collect half as often
	// as Go's default (GC was ~15% of the gateway's CPU), with a soft
	// memory limit that keeps the heap well under the 100 MB RSS target.
	// GOGC and GOMEMLIMIT, when set, decide instead.
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(200)
	}
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(64 << 20)
	}
	tel, err := telemetry.Setup(ctx, "usage-gateway")
	if err != nil {
		return fmt.Errorf("telemetry: %w", err)
	}
	cfg.SkipSpans = !tel.TracesExported
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = tel.Shutdown(sctx)
	}()
	nc, closeNATS, err := connect(ctx, cfg)
	if err != nil {
		return err
	}
	defer closeNATS()
	gw, err := gateway.New(ctx, cfg, nc, log)
	if err != nil {
		return err
	}
	timeout := time.Duration(cfg.Limits.RequestTimeout)
	if timeout <= 0 {
		timeout = gateway.DefaultRequestTimeout
	}
	maxWait := time.Duration(cfg.Limits.MaxWait)
	if maxWait <= 0 {
		maxWait = gateway.DefaultMaxWait
	}
	srv := &http.Server{
		Addr:              cfg.Listen,
		Handler:           gw.Handler(tel.Metrics),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       timeout,
		WriteTimeout:      max(timeout, maxWait) + 10*time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return err
	}
	var msrv *http.Server
	if cfg.Metrics.Listen != "" {
		msrv = &http.Server{Addr: cfg.Metrics.Listen, Handler: telemetry.Health(tel.Metrics, gw.Ready), ReadHeaderTimeout: 10 * time.Second}
		go func() {
			if err := msrv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Error("metrics listener", "err", err)
			}
		}()
	}
	errc := make(chan error, 1)
	go func() {
		if cfg.TLS.CertFile != "" {
			errc <- srv.ServeTLS(ln, cfg.TLS.CertFile, cfg.TLS.KeyFile)
		} else {
			errc <- srv.Serve(ln)
		}
	}()
	log.Info("usage-gateway listening", "addr", ln.Addr().String(), "tls", cfg.TLS.CertFile != "", "keys", len(cfg.Keys))
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	drain := time.Duration(cfg.DrainTimeout)
	if drain <= 0 {
		drain = 20 * time.Second
	}
	log.Info("draining: finishing in-flight requests", "timeout", drain)
	dctx, cancel := context.WithTimeout(context.Background(), drain)
	defer cancel()
	gw.Drain()               // not ready: new requests get 503 and go to another replica
	err = srv.Shutdown(dctx) // in-flight requests finish; handlers wait for their group's store
	gw.Drain()               // groups opened meanwhile are stored and answered
	if msrv != nil {
		msrv.Shutdown(dctx)
	}
	if derr := nc.Drain(); derr != nil && err == nil {
		err = derr
	}
	log.Info("drained")
	return err
}
