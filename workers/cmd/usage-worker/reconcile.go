package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/usagefleet/usagefleet/internal/ops"
)

func cmdReconcile(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlags("reconcile", "--config FILE --dest NAME --from T1 --to T2 [--format table|csv|json]", stderr)
	path := fs.String("config", "", "worker configuration file (YAML)")
	dest := fs.String("dest", "", "destination to reconcile (required)")
	fromS := fs.String("from", "", "start of the range, inclusive, by usage hour (RFC 3339, YYYY-MM-DD[THH], or a duration ago; required)")
	toS := fs.String("to", "", "end of the range, exclusive (default: now)")
	format := fs.String("format", "table", "table, csv or json")
	pos, code, ok := parseFlags(fs, args, stdout)
	if !ok {
		return code
	}
	if len(pos) > 0 {
		return usageError(stderr, "reconcile", "unexpected argument %q", pos[0])
	}
	now := time.Now().UTC()
	from, err := parseTime(*fromS, now)
	if err != nil {
		return usageError(stderr, "reconcile", "--from %v", err)
	}
	to, err := parseTime(*toS, now)
	if err != nil {
		return usageError(stderr, "reconcile", "--to %v", err)
	}
	switch {
	case *dest == "":
		return usageError(stderr, "reconcile", "--dest NAME is required")
	case from.IsZero():
		return usageError(stderr, "reconcile", "--from is required")
	case *format != "table" && *format != "csv" && *format != "json":
		return usageError(stderr, "reconcile", "--format %q: want table, csv or json", *format)
	}
	if to.IsZero() {
		to = now
	}
	if !from.Before(to) {
		return usageError(stderr, "reconcile", "--from %s is not before --to %s", from.Format(time.RFC3339), to.Format(time.RFC3339))
	}
	env, code := openEnv(ctx, "reconcile", *path, stderr)
	if env == nil {
		return code
	}
	defer env.Close()
	r, err := env.Reconcile(ctx, *dest, from, to)
	if err != nil {
		fmt.Fprintln(stderr, "usage-worker reconcile:", err)
		return exitAttention
	}
	if err := ops.WriteReconciliation(stdout, r, *format); err != nil {
		fmt.Fprintln(stderr, "usage-worker reconcile:", err)
		return exitAttention
	}
	if r.Mismatches > 0 {
		return exitAttention
	}
	return exitOK
}
