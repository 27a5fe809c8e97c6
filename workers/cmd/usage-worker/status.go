package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/usagefleet/usagefleet/internal/ops"
)

func cmdStatus(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlags("status", "--config FILE [--json] [--watch 10s] [--since 24h] [--max-unit-age 1h]", stderr)
	path := fs.String("config", "", "worker configuration file (YAML): the NATS to read and the destinations")
	asJSON := fs.Bool("json", false, "print JSON (one document; one line per refresh with --watch)")
	watch := fs.Duration("watch", 0, "refresh every `interval` until interrupted (0: once)")
	since := fs.Duration("since", 24*time.Hour, "dead letters newer than this need a person")
	maxAge := fs.Duration("max-unit-age", time.Hour, "data waiting longer than this for its upload needs a person")
	pos, code, ok := parseFlags(fs, args, stdout)
	if !ok {
		return code
	}
	if len(pos) > 0 {
		return usageError(stderr, "status", "unexpected argument %q", pos[0])
	}
	env, code := openEnv(ctx, "status", *path, stderr)
	if env == nil {
		return code
	}
	defer env.Close()
	for {
		st, err := env.Status(ctx, ops.StatusOptions{Since: *since, MaxUnitAge: *maxAge})
		if err != nil {
			if ctx.Err() != nil {
				return ops.ExitInterrupt
			}
			fmt.Fprintln(stderr, "usage-worker status:", err)
			return exitAttention
		}
		code = exitOK
		if st.NeedsAttention() {
			code = exitAttention
		}
		if *asJSON {
			enc := json.NewEncoder(stdout)
			if *watch == 0 {
				enc.SetIndent("", "  ")
			}
			_ = enc.Encode(st)
		} else {
			if *watch > 0 {
				fmt.Fprintf(stdout, "--- %s\n", st.Time.Format(time.RFC3339))
			}
			ops.WriteStatus(stdout, st)
		}
		if *watch <= 0 {
			return code
		}
		select {
		case <-ctx.Done():
			return code
		case <-time.After(*watch):
		}
	}
}
