// Command usage-worker is the fleet binary.
//
//	usage-worker run --config FILE     consume and deliver (the worker)
//	usage-worker sandbox [flags]       serve the API emulators on loopback
//	usage-worker demo [flags]          the whole pipeline on embedded defaults
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
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/usagefleet/usagefleet/internal/bench"
	"github.com/usagefleet/usagefleet/internal/demo"
	"github.com/usagefleet/usagefleet/internal/fleet"
	"github.com/usagefleet/usagefleet/internal/ops"
	"github.com/usagefleet/usagefleet/internal/sandbox/serve"
	"github.com/usagefleet/usagefleet/internal/telemetry"
)

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

const usage = `usage-worker: the usagefleet worker fleet

  usage-worker run --config FILE     consume usage and deliver it to the configured destinations
  usage-worker sandbox [flags]       serve the sandbox API emulators on loopback
  usage-worker demo [flags]          run the whole pipeline on embedded defaults and reconcile
  usage-worker bench [flags]         measure publish and drain rates, CPU and memory
  usage-worker status --config FILE  is anything stuck: per destination and collector (exit 1: needs a person)
  usage-worker dead list|show|replay what was refused and why; send it again once the cause is fixed
  usage-worker reconcile --config FILE --dest D --from T1 --to T2
                                     per unit: published, acknowledged, held at the destination (exit 1: mismatch)
  usage-worker validate --config FILE  check a config as run would, connecting to nothing
  usage-worker version               version, commit and Go version

Run "usage-worker COMMAND -h" for a command's flags.
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
	case "sandbox":
		return cmdSandbox(ctx, args[1:], stdout, stderr)
	case "demo":
		return cmdDemo(ctx, args[1:], stdout, stderr)
	case "bench":
		return cmdBench(ctx, args[1:], stdout, stderr)
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
	if _, code, ok := parseFlags(fs, args, os.Stdout); !ok {
		return code
	}
	if *path == "" {
		fmt.Fprintln(stderr, "usage-worker run: --config FILE is required")
		return exitUsage
	}
	cfg, err := fleet.Load(*path)
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
	tel.Registry.MustRegister(ops.BuildInfoCollector())
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

func cmdSandbox(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("sandbox", flag.ContinueOnError)
	fs.SetOutput(stderr)
	host := fs.String("host", "127.0.0.1", "listen address (loopback only)")
	only := fs.String("only", "", "comma-separated emulators to serve (default all: "+strings.Join(serve.Names(), ", ")+")")
	ports := map[string]*int{}
	faults := map[string]*string{}
	for i, n := range serve.Names() {
		ports[n] = fs.Int(n+"-port", 18080+i, n+" emulator port (0 = random)")
		faults[n] = fs.String(n+"-faults", "", n+" faults, e.g. 500@0.1,429:retry=2x3,apply-500@0.2,timeout:delay=5s@0.05,reset@0.05")
	}
	hookToken := fs.String("webhook-token-env", "", "environment variable holding the bearer token the webhook emulator requires (default: none required)")
	czConn := fs.String("cloudzero-connection", "sandbox-connection", "CloudZero connection id")
	czKey := fs.String("cloudzero-key-env", "CLOUDZERO_API_KEY", "environment variable holding the CloudZero API key the emulator accepts (unset: sandbox-cloudzero-key)")
	ccToken := fs.String("cloudcruiser-token-env", "CLOUDCRUISER_TOKEN", "environment variable holding the Cloud Cruiser token the emulator accepts")
	acronisID := fs.String("acronis-client-id", "sandbox-client", "Acronis API client id the emulator accepts")
	acronisSecret := fs.String("acronis-secret-env", "ACRONIS_CLIENT_SECRET", "environment variable holding the Acronis client secret the emulator accepts")
	hereID := fs.String("here-access-key-id", "sandbox-here-key", "HERE access key id the emulator accepts")
	hereSecret := fs.String("here-secret-env", "HERE_ACCESS_KEY_SECRET", "environment variable holding the HERE access key secret the emulator accepts")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	o := serve.Options{Host: *host, Ports: map[string]int{}, Faults: map[string]string{}}
	if *only != "" {
		o.Only = strings.Split(*only, ",")
	}
	for n, p := range ports {
		o.Ports[n] = *p
		o.Faults[n] = *faults[n]
	}
	// The emulators' credentials come from the environment; unset, the
	// documented sandbox defaults apply (they guard nothing real).
	secret := func(env, def string) string {
		if env != "" {
			if v := os.Getenv(env); v != "" {
				return v
			}
		}
		return def
	}
	o.Webhook.Token = secret(*hookToken, "")
	o.CloudZero.Connections = map[string]string{*czConn: secret(*czKey, "sandbox-cloudzero-key")}
	o.CloudCruiser.Token = secret(*ccToken, "sandbox-cloudcruiser-token")
	o.Acronis.ClientID = *acronisID
	o.Acronis.ClientSecret = secret(*acronisSecret, "sandbox-secret")
	o.HERE.AccessKeyID = *hereID
	o.HERE.AccessKeySecret = secret(*hereSecret, "sandbox-here-secret")
	r, err := serve.Start(o)
	if err != nil {
		fmt.Fprintln(stderr, "usage-worker sandbox:", err)
		return 1
	}
	defer r.Close()
	names := make([]string, 0, len(r.URLs))
	for n := range r.URLs {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(stdout, "%-13s %s   (admin: %s/_sandbox/)\n", n, r.URLs[n], r.URLs[n])
	}
	<-ctx.Done()
	return 0
}

func cmdDemo(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	records := fs.Int("records", 50000, "records to publish")
	batch := fs.Int("batch", 5000, "records per batch")
	dir := fs.String("dir", "", "data directory (default: a temporary directory, removed afterwards)")
	faults := fs.String("faults", "", `faults injected at the sandboxes ("" = a light default, "none", a spec for every emulator, or ";"-separated groups with <emulator>=SPEC for one, e.g. "500@0.05;cloudcruiser=400x1")`)
	verbose := fs.Bool("v", false, "log the workers to stderr")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	o := demo.Options{Records: *records, BatchSize: *batch, Dir: *dir, Faults: *faults, Out: stdout}
	if *verbose {
		o.Log = newLogger(stderr, "info", "text")
	}
	if _, err := demo.Run(ctx, o); err != nil {
		if errors.Is(err, context.Canceled) {
			return 130
		}
		fmt.Fprintln(stderr, "usage-worker demo:", err)
		return 1
	}
	return 0
}

func cmdBench(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o bench.Options
	fs.IntVar(&o.Records, "records", 1_000_000, "records to publish and drain")
	fs.IntVar(&o.BatchSize, "batch", 1000, "records per batch (each batch is one hour: one message)")
	fs.IntVar(&o.Hours, "hours", 720, "hours the records spread over")
	fs.StringVar(&o.Dest, "dest", "cloudzero", "destination: cloudzero or webhook")
	fs.StringVar(&o.Mode, "mode", "both", "both, publish (only) or drain (a pre-loaded backlog)")
	fs.StringVar(&o.NATSURL, "nats", "", "NATS URL (default: an embedded server in a temporary directory)")
	fs.BoolVar(&o.Strict, "strict", false, "use the strict sandbox (parses every value) instead of the counting one")
	fs.IntVar(&o.Publishers, "publishers", 16, "concurrent publishers (each Publish waits for its parts to be stored)")
	fs.IntVar(&o.Workers, "workers", 4, "pool workers")
	fs.BoolVar(&o.JSON, "json", false, "print one JSON line")
	fs.StringVar(&o.CPUProfile, "cpuprofile", "", "write a CPU profile of the drain (of the publish with --mode publish) to this file")
	fs.StringVar(&o.MemProfile, "memprofile", "", "write a heap profile at the end of the drain to this file")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	o.Out = stdout
	r, err := bench.Run(ctx, o)
	if err != nil {
		fmt.Fprintln(stderr, "usage-worker bench:", err)
		return 1
	}
	bench.Print(stdout, r, o.JSON)
	if r.Exact != nil && !*r.Exact {
		fmt.Fprintln(stderr, "usage-worker bench: NOT EXACT:", r.Detail)
		return 1
	}
	return 0
}
