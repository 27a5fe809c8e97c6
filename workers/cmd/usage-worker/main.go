// Command usage-worker is the production fleet binary: it consumes usage
// from JetStream and delivers it to the configured destinations.
//
//	usage-worker run --config FILE     consume and deliver (the worker)
//
// It links the worker runtime and nothing else: the API emulators are
// usage-sandbox, the demo and the bench are `usagefleet demo` and
// `usagefleet bench` (internal/cmd). deps_test.go holds it to that.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/usagefleet/usagefleet/internal/fleet"
	"github.com/usagefleet/usagefleet/internal/ops"
	"github.com/usagefleet/usagefleet/internal/telemetry"
)

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

const usage = `usage-worker: the usagefleet worker fleet

  usage-worker run --config FILE     consume usage and deliver it to the configured destinations
  usage-worker status --config FILE  is anything stuck: per destination and collector (exit 1: needs a person)
  usage-worker dead list|show|replay what was refused and why; send it again once the cause is fixed
  usage-worker reconcile --config FILE --dest D --from T1 --to T2
                                     per unit: published, acknowledged, held at the destination (exit 1: mismatch)
  usage-worker validate --config FILE  check a config as run would, connecting to nothing
  usage-worker version               version, commit and Go version

Run "usage-worker COMMAND -h" for a command's flags. The API emulators are usage-sandbox;
the demo and the bench are "usagefleet demo" and "usagefleet bench".
`

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	switch args[0] {
	case "run":
		return cmdRun(ctx, args[1:], stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	}
	if cmd, ok := opsCommands[args[0]]; ok {
		return cmd(ctx, args[1:], stdout, stderr)
	}
	fmt.Fprintf(stderr, "usage-worker: unknown command %q\n\n%s", args[0], usage)
	return exitUsage
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

func cmdRun(ctx context.Context, args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "", "configuration file (YAML)")
	validateOnly := fs.Bool("validate-only", false, "a CloudZero dry run: every cloudzero destination runs as <name>-validate against validate_billing_drop (nothing is stored; its own consumer, deleted an hour after the run), and no other destination runs")
	if _, code, ok := parseFlags(fs, args, os.Stdout); !ok {
		return code
	}
	if *path == "" {
		fmt.Fprintln(stderr, "usage-worker run: --config FILE is required")
		return exitUsage
	}
	load := fleet.Load
	if *validateOnly {
		load = fleet.LoadValidateOnly
	}
	cfg, err := load(*path)
	if err != nil {
		fmt.Fprintln(stderr, "usage-worker:", err)
		return 1
	}
	log := newLogger(stderr, cfg.Worker.LogLevel, cfg.Worker.LogFormat)
	slog.SetDefault(log)
	if n, _ := cfg.Worker.MemoryLimitBytes(); n > 0 && os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(n)
		log.Info("memory limit set", "bytes", n)
	}
	tel, err := telemetry.Setup(ctx, "usage-worker")
	if err != nil {
		log.Error("telemetry", "err", err)
		return 1
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = tel.Shutdown(sctx)
	}()
	f, err := fleet.Start(ctx, cfg, log)
	if err != nil {
		log.Error("start", "err", err)
		return 1
	}
	defer f.Close()
	go ops.StatusWriter(ctx, f.NC, ops.PoolStates(cfg.Worker.ID, f.Pools), log)
	if every := cfg.Worker.Reconcile.Every.D(0); every > 0 {
		env, err := ops.NewEnv(f.NC, cfg)
		if err != nil {
			log.Error("scheduled reconciliation", "err", err)
			return 1
		}
		window := cfg.Worker.Reconcile.Window.D(fleet.DefaultReconcileWindow)
		go env.RunReconcile(ctx, every, window, ops.NewReconcileMetrics(tel.Registry, env.Names()...), log)
		log.Info("scheduled reconciliation", "every", every, "window", window)
	}
	if l := cfg.Worker.Metrics.Listen; l != "" {
		srv := &http.Server{Addr: l, Handler: telemetry.Health(tel.Metrics, f.Ready), ReadHeaderTimeout: 5 * time.Second}
		go func() {
			if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Error("metrics listener", "addr", l, "err", err)
			}
		}()
		defer srv.Close()
		log.Info("serving /metrics, /healthz and /readyz", "addr", l)
	}
	log.Info("worker running; SIGTERM drains")
	if err := f.Run(ctx); err != nil {
		log.Error("stopped", "err", err)
		return 1
	}
	log.Info("drained and stopped")
	return 0
}
