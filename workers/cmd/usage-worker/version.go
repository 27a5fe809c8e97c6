package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"

	"github.com/usagefleet/usagefleet/internal/ops"
)

func cmdVersion(_ context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlags("version", "[--json]", stderr)
	asJSON := fs.Bool("json", false, "print JSON")
	pos, code, ok := parseFlags(fs, args, stdout)
	if !ok {
		return code
	}
	if len(pos) > 0 {
		return usageError(stderr, "version", "unexpected argument %q", pos[0])
	}
	b := ops.ReadBuild()
	if *asJSON {
		enc := json.NewEncoder(stdout)
		_ = enc.Encode(b)
		return exitOK
	}
	mod := ""
	if b.Modified {
		mod = " (modified)"
	}
	fmt.Fprintf(stdout, "usage-worker %s\ncommit %s%s %s\n%s %s\n", b.Version, b.Commit, mod, b.CommitAt, b.GoVersion, b.Platform)
	return exitOK
}
