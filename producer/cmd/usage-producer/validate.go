package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"

	"github.com/usagefleet/usagefleet/internal/telemetry"
	"github.com/usagefleet/usagefleet/producer/collect"
)

// validateCmd checks a collector configuration exactly as collect does at
// start (the same loader, the same errors with key path and line, secrets
// resolved) and connects to nothing.
func validateCmd(e *env) (*flag.FlagSet, runFunc) {
	fs := newFlagSet("validate")
	path := fs.String("config", "", "collector configuration `file` (YAML; required; see package producer/collect)")
	return fs, func(_ context.Context, fs *flag.FlagSet, args []string) int {
		if len(args) > 0 {
			return usageErr(fs, "unexpected argument %q", args[0])
		}
		if *path == "" {
			return usageErr(fs, "--config is required")
		}
		cfg, err := collect.LoadConfig(*path)
		if err != nil {
			fmt.Fprintf(e.stderr, "usage-producer validate: %v\n", err)
			return exitFail
		}
		fmt.Fprintf(e.stdout, "%s: ok (%d collector(s))\n", *path, len(cfg.Collectors))
		return exitOK
	}
}

func versionCmd(e *env) (*flag.FlagSet, runFunc) {
	fs := newFlagSet("version")
	asJSON := fs.Bool("json", false, "print JSON")
	return fs, func(_ context.Context, fs *flag.FlagSet, args []string) int {
		if len(args) > 0 {
			return usageErr(fs, "unexpected argument %q", args[0])
		}
		b := telemetry.ReadBuild()
		if *asJSON {
			_ = json.NewEncoder(e.stdout).Encode(b)
			return exitOK
		}
		mod := ""
		if b.Modified {
			mod = " (modified)"
		}
		fmt.Fprintf(e.stdout, "usage-producer %s\ncommit %s%s %s\n%s %s\n", b.Version, b.Commit, mod, b.CommitAt, b.GoVersion, b.Platform)
		return exitOK
	}
}
