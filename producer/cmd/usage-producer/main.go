// Command usage-producer publishes usage files to the usagefleet and follows
// what the destinations made of them.
//
//	usage-producer publish --feed F --source S [flags] FILE...
//	usage-producer acks [--source S] [--dest D] [--since 1h] [--json]
//	usage-producer collect --config FILE [--once]
//	usage-producer validate --config FILE
//	usage-producer version [--json]
//	usage-producer help [command]
//
// Flags may come before or after the files ("--" ends them).
//
// # publish
//
// Files are FOCUS CSV, NDJSON or JSON arrays, gzipped or not (see package
// producer/input for the formats and the error lines). Every file is read
// and checked before anything is published: one problem anywhere (a bad
// row, an unknown column, a file with no records, two files with the same
// content) and every problem is printed to stderr as "file:line: field:
// problem" and nothing is published. With --good-rows-only the good rows of
// every file are published and the bad ones reported (a file whose header
// is bad has no good rows). --dry-run does the checking and prints what
// would be published without connecting.
//
// Files are read twice, one at a time (check all, then publish each), so
// memory holds one file's records, not all of them; a file that changes
// between the two reads is not published.
//
// Each file is one batch; its id defaults to <source>-<first 16 hex digits
// of a SHA-256 over the feed and the file's bytes> (as stored: a .gz file
// hashes its compressed bytes), so publishing the same file again to the
// same feed is de-duplicated by JetStream and changes nothing; the output
// says so. Give --batch-id to publish it again on purpose.
//
// For each file publish prints its records, parts and exact cost (the sum
// of BilledCost per BillingCurrency, "0" without costs). With --wait it
// follows the acks of every part at the destinations (--dest, else every
// destination whose durable consumer serves the feed), drawing a progress
// bar on stderr (redrawn in place on a terminal; one line every 10 seconds
// otherwise), and ends with a table per destination: parts delivered,
// rejected, dead, superseded, records, rejected records, exact cost
// delivered, and the reasons.
//
// # acks
//
// acks follows the ack stream and prints one line per ack until SIGINT or
// SIGTERM (which ends it with status 0). Without --since only new acks are
// shown; --since takes a duration back from now or an RFC 3339 time.
//
// # Connecting
//
// Without --nats, the URL is $NATS_URL, else nats://127.0.0.1:4222: a
// producer publishes to the fleet's cluster, never to a private embedded
// server nobody consumes. Secrets are not flag values (ps and shell history
// would keep them): --token-env and --password-env name the environment
// variables holding them.
//
// # Exit status
//
//	0   everything was published (and, with --wait, delivered)
//	1   failure: bad input (nothing published), NATS or publish errors,
//	    or with --wait a part was rejected or dead, or the wait timed out
//	    or was interrupted
//	2   --good-rows-only published the good rows but skipped bad ones
//	64  usage error: unknown command, bad or missing flags
//
// (the table every usagefleet binary follows: README "Exit codes").
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/usagefleet/usagefleet/internal/telemetry"
)

// Exit codes.
const (
	exitOK      = 0
	exitFail    = 1
	exitSkipped = 2
	exitUsage   = 64
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run is main without the process: it stops at SIGINT or SIGTERM.
func run(args []string, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// Traces and metrics go where the standard OTEL_* variables say;
	// nothing is exported when they are unset.
	if tel, err := telemetry.Setup(ctx, "usage-producer"); err == nil {
		metricsHandler = tel.Metrics
		defer func() {
			sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_ = tel.Shutdown(sctx)
		}()
	} else {
		fmt.Fprintln(stderr, "usage-producer: telemetry:", err)
	}
	return runContext(ctx, args, stdout, stderr)
}

// metricsHandler serves the process's metrics in the Prometheus format
// (collect --metrics-listen); run sets it up with telemetry.
var metricsHandler http.Handler

// env is what a command runs with.
type env struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	getenv         func(string) string
}

// runFunc runs a command with its flags parsed and its other arguments.
type runFunc func(ctx context.Context, fs *flag.FlagSet, args []string) int

// command is one subcommand. A new one (collect, say) is one more entry in
// commands.
type command struct {
	name    string
	args    string // synopsis after the flags
	summary string
	flags   func(*env) (*flag.FlagSet, runFunc)
}

var commands []command

func init() {
	commands = []command{
		{name: "publish", args: "--feed F --source S [flags] FILE...", summary: "check usage files and publish them, one batch per file", flags: publishCmd},
		{name: "acks", args: "[--source S] [--dest D] [--since 1h]", summary: "follow the ack stream and print one line per ack until interrupted", flags: acksCmd},
		{name: "collect", args: "--config FILE [--once]", summary: "pull usage reports (Acronis, HERE) on a schedule and publish them as snapshots", flags: collectCmd},
		{name: "validate", args: "--config FILE", summary: "check a collector configuration as collect does at start, connecting to nothing", flags: validateCmd},
		{name: "version", args: "[--json]", summary: "version, commit and Go version", flags: versionCmd},
	}
}

func lookup(name string) *command {
	for i := range commands {
		if commands[i].name == name {
			return &commands[i]
		}
	}
	return nil
}

func runContext(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	e := &env{stdin: os.Stdin, stdout: stdout, stderr: stderr, getenv: os.Getenv}
	if len(args) == 0 {
		usage(stderr)
		return exitUsage
	}
	name, rest := args[0], args[1:]
	switch name {
	case "help", "-h", "-help", "--help":
		if len(rest) == 0 {
			usage(stdout)
			return exitOK
		}
		c := lookup(rest[0])
		if c == nil {
			fmt.Fprintf(stderr, "usage-producer: unknown command %q\n", rest[0])
			usage(stderr)
			return exitUsage
		}
		fs, _ := c.flags(e)
		fs.SetOutput(stdout)
		fs.Usage()
		return exitOK
	}
	c := lookup(name)
	if c == nil {
		fmt.Fprintf(stderr, "usage-producer: unknown command %q\n", name)
		usage(stderr)
		return exitUsage
	}
	fs, runCmd := c.flags(e)
	fs.SetOutput(stderr)
	for _, a := range rest {
		if a == "--" {
			break
		}
		if a == "-h" || a == "-help" || a == "--help" || a == "--h" {
			fs.SetOutput(stdout) // asked for: the usage is the answer, not an error
		}
	}
	pos, err := parseInterspersed(fs, rest)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage // the flag package printed the problem and the usage
	}
	return runCmd(ctx, fs, pos)
}

// parseInterspersed parses flags wherever they are among the arguments
// ("publish *.csv --feed f" works); after "--" everything is an argument.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		if len(args) > len(rest) && args[len(args)-len(rest)-1] == "--" {
			return append(pos, rest...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: usage-producer <command> [flags]")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "commands:")
	for _, c := range commands {
		fmt.Fprintf(w, "  %-8s %s\n", c.name, c.summary)
	}
	fmt.Fprintf(w, "  %-8s %s\n", "help", "show a command's flags: usage-producer help <command>")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "exit status: 0 ok, 1 failure (nothing published on bad input), 2 published with bad rows skipped (--good-rows-only), 64 usage error")
}

// newFlagSet makes a subcommand's flag set with a usage that lists its
// synopsis and flags.
func newFlagSet(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.Usage = func() {
		c := lookup(name)
		fmt.Fprintf(fs.Output(), "usage: usage-producer %s %s\n\n%s\n\nflags:\n", name, c.args, c.summary)
		fs.PrintDefaults()
	}
	return fs
}

// usageErr reports a usage problem and returns exitUsage.
func usageErr(fs *flag.FlagSet, format string, args ...any) int {
	fmt.Fprintf(fs.Output(), "usage-producer %s: %s\n", fs.Name(), fmt.Sprintf(format, args...))
	fmt.Fprintf(fs.Output(), "run 'usage-producer help %s' for the flags\n", fs.Name())
	return exitUsage
}

// splitList splits a comma-separated flag value, dropping blanks.
func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
