// Command usagefleet is the developer's tool: it runs the whole pipeline on
// embedded defaults, and measures it.
//
//	usagefleet demo [flags]    the whole pipeline on embedded defaults, reconciled
//	usagefleet bench [flags]   publish and drain rates, CPU and memory
//
// (`go run ./internal/cmd/usagefleet demo` from the repository root.) Both
// carry the sandbox emulators, the usage generator and an embedded
// nats-server, which is why they are not commands of the production
// usage-worker binary (a test in workers/cmd/usage-worker holds it to
// that). It lives under internal/cmd: it is built from this repository for
// its developers, and nothing it is made of is for importers.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/usagefleet/usagefleet/internal/bench"
	"github.com/usagefleet/usagefleet/internal/demo"
	"github.com/usagefleet/usagefleet/internal/telemetry"
)

func main() {
	bench.MaybeChild() // the bench's worker child is this binary started again
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

const usage = `usagefleet: the usagefleet developer's tool

  usagefleet demo [flags]    run the whole pipeline on embedded defaults and reconcile
  usagefleet bench [flags]   measure publish and drain rates, CPU and memory

Run "usagefleet COMMAND -h" for a command's flags. The worker is usage-worker,
the API emulators are usage-sandbox.
`

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "demo":
		return cmdDemo(ctx, args[1:], stdout, stderr)
	case "bench":
		return cmdBench(ctx, args[1:], stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	}
	fmt.Fprintf(stderr, "usagefleet: unknown command %q\n\n%s", args[0], usage)
	return 2
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
		o.Log = slog.New(telemetry.LogHandler(slog.NewTextHandler(stderr, nil)))
	}
	if _, err := demo.Run(ctx, o); err != nil {
		if errors.Is(err, context.Canceled) {
			return 130
		}
		fmt.Fprintln(stderr, "usagefleet demo:", err)
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
	fs.StringVar(&o.Mode, "mode", "all", "all (publish, raw fetch-and-ack, drain), publish, raw or drain (raw and drain read a backlog: with --nats, one published before)")
	fs.StringVar(&o.NATSURL, "nats", "", "NATS URL of a running server (default: an embedded server in a temporary directory)")
	fs.BoolVar(&o.SpawnNATS, "spawn-nats", false, "run nats-server in a process of its own (temporary store, random loopback port), as production does")
	fs.StringVar(&o.NATSServer, "nats-server", "", "the nats-server binary for --spawn-nats (default: built from go.mod when run in the repository, else nats-server on PATH)")
	fs.DurationVar(&o.Delay, "delay", 0, "one-way delay added between the worker and the server by a loopback proxy (e.g. 1ms)")
	fs.IntVar(&o.Runs, "runs", 1, "runs in one sitting: each is printed, then the medians")
	fs.BoolVar(&o.Strict, "strict", false, "use the strict sandbox (parses every value) instead of the counting one (the counting receiver with --dest webhook)")
	fs.IntVar(&o.Publishers, "publishers", 16, "concurrent publishers (each Publish waits for its parts to be stored)")
	fs.IntVar(&o.Workers, "workers", 4, "pool workers")
	fs.BoolVar(&o.JSON, "json", false, "print one JSON line")
	fs.StringVar(&o.CPUProfile, "cpuprofile", "", "write a CPU profile of the worker's drain (of the publish with --mode publish) to this file (FILE.runN with --runs)")
	fs.StringVar(&o.MemProfile, "memprofile", "", "write a heap profile of the worker at the end of the drain to this file")
	fs.StringVar(&o.BlockProfile, "blockprofile", "", "write block and mutex profiles of the worker's drain to this file and FILE.mutex (where it waits)")
	fs.StringVar(&o.Trace, "trace", "", "write an execution trace of the worker's drain to this file (go tool trace)")
	var in bench.InputOptions
	fs.IntVar(&in.GenerateFocus, "generate-focus", 0, "write a realistic 44-column FOCUS CSV of `N` rows to --out (about 750 bytes a row, over a month)")
	fs.StringVar(&in.OutFile, "out", "", "`file` --generate-focus writes")
	fs.StringVar(&in.Input, "input", "", "publish this usage `file` as usage-producer publish does (CSV, gzip, NDJSON, Parquet) and check the stream holds it exactly")
	fs.BoolVar(&in.Gzip, "gzip", false, "with --input: gzip the file first (not timed) and publish that")
	fs.BoolVar(&in.Parquet, "parquet", false, "with --input: convert the CSV to Parquet first (not timed) and publish that")
	fs.IntVar(&in.Window, "window", 16, "with --input: parts in flight (usage-producer publish --window)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if in.GenerateFocus > 0 || in.Input != "" {
		in.NATSURL, in.SpawnNATS, in.NATSServer = o.NATSURL, o.SpawnNATS, o.NATSServer
		in.JSON, in.Out, in.CPUProfile, in.MemProfile = o.JSON, stdout, o.CPUProfile, o.MemProfile
		r, err := bench.RunInput(ctx, in)
		if err != nil {
			fmt.Fprintln(stderr, "usagefleet bench:", err)
			return 1
		}
		bench.PrintInput(stdout, r, in.JSON)
		if r != nil && !r.Exact {
			return 1
		}
		return 0
	}
	o.Out = stdout
	r, err := bench.Run(ctx, o)
	if err != nil {
		fmt.Fprintln(stderr, "usagefleet bench:", err)
		return 1
	}
	bench.Print(stdout, r, o.JSON)
	if r.Exact != nil && !*r.Exact {
		fmt.Fprintln(stderr, "usagefleet bench: NOT EXACT:", r.Detail)
		return 1
	}
	if r.RawExact != nil && !*r.RawExact {
		fmt.Fprintln(stderr, "usagefleet bench: the raw consumer did not get every message exactly once")
		return 1
	}
	return 0
}
