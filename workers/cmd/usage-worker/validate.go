package main

import (
	"context"
	"fmt"
	"io"

	"github.com/usagefleet/usagefleet/internal/fleet"
)

// cmdValidate loads a worker config exactly as run does (the same loader,
// the same errors with key path and line) and connects to nothing.
func cmdValidate(_ context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlags("validate", "--config FILE", stderr)
	path := fs.String("config", "", "worker configuration file (YAML)")
	pos, code, ok := parseFlags(fs, args, stdout)
	if !ok {
		return code
	}
	if len(pos) > 0 {
		return usageError(stderr, "validate", "unexpected argument %q", pos[0])
	}
	if *path == "" {
		return usageError(stderr, "validate", "--config FILE is required")
	}
	cfg, err := fleet.Load(*path)
	if err != nil {
		fmt.Fprintln(stderr, "usage-worker:", err)
		return exitAttention
	}
	for _, notice := range cfg.Deprecated() {
		fmt.Fprintln(stderr, "usage-worker: warning: deprecated setting:", notice)
	}
	for _, notice := range cfg.Advisories() {
		fmt.Fprintln(stderr, "usage-worker: warning:", notice)
	}
	fmt.Fprintf(stdout, "%s: ok (%d destination(s):", *path, len(cfg.Destinations))
	for _, d := range cfg.Destinations {
		fmt.Fprintf(stdout, " %s/%s", d.Name, d.Type)
	}
	fmt.Fprintln(stdout, ")")
	return exitOK
}
