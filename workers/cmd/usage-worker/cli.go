package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/usagefleet/usagefleet/internal/fleet"
	"github.com/usagefleet/usagefleet/internal/ops"
)

// Exit codes: one table for every binary (README "Exit codes").
const (
	exitOK        = ops.ExitOK
	exitAttention = ops.ExitAttention
	exitPartial   = ops.ExitPartial
	exitUsage     = ops.ExitUsage
)

// opsCommands are the operator subcommands (status, dead, reconcile,
// validate, version), dispatched from run.
var opsCommands = map[string]func(ctx context.Context, args []string, stdout, stderr io.Writer) int{
	"status":    cmdStatus,
	"dead":      cmdDead,
	"reconcile": cmdReconcile,
	"validate":  cmdValidate,
	"version":   cmdVersion,
}

// parseFlags parses args with fs, flags anywhere among the arguments. On
// -h it prints the usage to stdout and answers exitOK; on a bad flag the
// flag package has printed the problem and it answers exitUsage. ok says
// whether the command should run.
func parseFlags(fs *flag.FlagSet, args []string, stdout io.Writer) (pos []string, code int, ok bool) {
	for _, a := range args {
		if a == "--" {
			break
		}
		if a == "-h" || a == "-help" || a == "--help" || a == "--h" {
			// Asked for: the usage goes to stdout, and it is not an error.
			fs.SetOutput(stdout)
			fs.Usage()
			return nil, exitOK, false
		}
	}
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) { // -h as a flag's value's neighbour, say
				return nil, exitOK, false
			}
			return nil, exitUsage, false
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, exitOK, true
		}
		if args[0] == "--" {
			return append(pos, args[1:]...), exitOK, true
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

// newFlags makes a flag set whose usage names the command.
func newFlags(name, synopsis string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: usage-worker %s %s\n\nflags:\n", name, synopsis)
		fs.PrintDefaults()
	}
	return fs
}

// usageError prints a usage problem and answers exitUsage.
func usageError(stderr io.Writer, cmd, format string, args ...any) int {
	fmt.Fprintf(stderr, "usage-worker %s: %s (see usage-worker %s -h)\n", cmd, fmt.Sprintf(format, args...), cmd)
	return exitUsage
}

// openEnv loads the config and connects.
func openEnv(ctx context.Context, cmd, path string, stderr io.Writer) (*ops.Env, int) {
	if path == "" {
		return nil, usageError(stderr, cmd, "--config FILE is required")
	}
	cfg, err := fleet.Load(path)
	if err != nil {
		fmt.Fprintln(stderr, "usage-worker:", err)
		return nil, exitAttention
	}
	env, err := ops.Open(ctx, cfg)
	if err != nil {
		fmt.Fprintf(stderr, "usage-worker %s: %v\n", cmd, err)
		return nil, exitAttention
	}
	return env, exitOK
}

// parseTime reads an instant: RFC 3339, YYYY-MM-DD, YYYY-MM-DDTHH (UTC), or
// a duration before now ("24h", "90m").
func parseTime(s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if d, err := time.ParseDuration(s); err == nil {
		return now.Add(-d), nil
	}
	if n, err := strconv.Atoi(strings.TrimSuffix(s, "d")); err == nil && strings.HasSuffix(s, "d") {
		return now.AddDate(0, 0, -n), nil
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04", "2006-01-02T15", "2006-01-02", "2006-01"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, fmt.Errorf("%q: want RFC 3339, YYYY-MM-DD[THH[:MM]], YYYY-MM, or a duration ago (24h, 7d)", s)
}
