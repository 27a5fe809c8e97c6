package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/usagefleet/usagefleet/messages"
	"github.com/usagefleet/usagefleet/producer"
	"github.com/usagefleet/usagefleet/producer/input"
)

type publishCommand struct {
	env            *env
	feed, source   string
	batchID        string
	format         string
	goodRowsOnly   bool
	strict         bool
	maxBytes       int64
	dryRun         bool
	wait           bool
	dests          string
	timeout        time.Duration
	publishTimeout time.Duration
	signingKeyFile string
	progressTick   time.Duration // non-terminal progress lines; tests shorten it
	window         int
	partBytes      int
	spoolDir       string
	nats           natsFlags
}

func publishCmd(e *env) (*flag.FlagSet, runFunc) {
	c := &publishCommand{env: e, progressTick: 10 * time.Second}
	fs := newFlagSet("publish")
	fs.StringVar(&c.feed, "feed", "", "feed the batches belong to (required; routes them to destinations)")
	fs.StringVar(&c.source, "source", "", "producing source (required; acks come back on acks.<source>.<destination>)")
	fs.StringVar(&c.batchID, "batch-id", "", "batch `id` (one FILE only; default <source>-<16 hex digits of SHA-256 over the feed and the file>)")
	fs.StringVar(&c.format, "format", "auto", "input format: auto (by content, then extension), csv, ndjson, jsonl, json, parquet (gzip is recognised by content)")
	fs.BoolVar(&c.strict, "strict", false, "refuse a column that is neither FOCUS nor x_ (default: keep it as an extension column and warn once)")
	fs.Int64Var(&c.maxBytes, "max-bytes", input.DefaultMaxBytes, "refuse a file larger than this many `bytes` once decompressed (a bomb guard)")
	fs.BoolVar(&c.goodRowsOnly, "good-rows-only", false, "publish the good rows of every file and report the bad ones (exit 2 when rows were skipped)")
	fs.BoolVar(&c.dryRun, "dry-run", false, "check the files and print what would be published, without connecting")
	fs.BoolVar(&c.wait, "wait", false, "wait for every part's ack at the destinations, then print a summary")
	fs.StringVar(&c.dests, "dest", "", "destinations to wait for, comma-separated (default: every destination consuming the feed)")
	fs.DurationVar(&c.timeout, "timeout", 10*time.Minute, "how long --wait waits for acks")
	fs.DurationVar(&c.publishTimeout, "publish-timeout", 10*time.Minute, "how long publishing one FILE may take before it fails (a retried publish of the same FILE completes it without doubling)")
	fs.StringVar(&c.signingKeyFile, "signing-key-file", "", "nkey seed `file` of this source's signing key: parts are signed, so workers that bind sources accept them")
	fs.IntVar(&c.window, "window", 16, "parts in flight while publishing; a quarter as many parts' worth of rows are held while grouping them by hour: with --part-bytes, this bounds memory")
	fs.IntVar(&c.partBytes, "part-bytes", producer.DefaultPartBytes, "largest part payload in `bytes` (at most the server's max payload less 2 KiB; keep it the same when publishing a file again: it decides the parts)")
	fs.StringVar(&c.spoolDir, "spool-dir", "", "`directory` for the spool of encoded parts, about half the input's size while a file is checked and published (default $TMPDIR)")
	c.nats.register(fs)
	return fs, c.run
}

// file is one input file through the two passes.
type file struct {
	path     string
	hash     [sha256.Size]byte
	id       string
	good     int // rows that will be published
	problems int // problems reported (rows skipped with --good-rows-only)
	dupOf    string
	spool    *producer.Spool
	res      *producer.Result
}

func (c *publishCommand) run(ctx context.Context, fs *flag.FlagSet, args []string) int {
	stderr := c.env.stderr
	paths := args
	format, dests, code := c.checkArgs(fs, paths)
	if code != exitOK {
		return code
	}
	// Resolve the connection settings before reading what may be big files.
	opts, err := c.nats.options(c.env.getenv)
	if err != nil && !c.dryRun {
		return usageErr(fs, "%v", err)
	}
	key, err := loadSigningKey(c.signingKeyFile)
	if err != nil {
		return usageErr(fs, "%v", err)
	}

	// Pass 1: read and check every file, spooling its good rows as parts
	// (memory bounded by --window and --part-bytes, not by the files).
	files := make([]*file, 0, len(paths))
	defer func() {
		for _, f := range files {
			if f.spool != nil {
				f.spool.Discard()
			}
		}
	}()
	problems, bad, ok := c.spoolFiles(ctx, paths, format, &files)
	if !ok {
		return exitFail
	}
	publish, ok := c.toPublish(files, problems, bad)
	if !ok {
		return exitFail
	}

	var p *producer.Producer
	if !c.dryRun {
		nc, prod, err := connect(ctx, opts, key, stderr)
		if err != nil {
			fmt.Fprintf(stderr, "usage-producer: %v\n", err)
			fmt.Fprintln(stderr, "usage-producer: nothing published")
			return exitFail
		}
		defer nc.Close()
		p = prod
	}

	// Pass 2: publish each file's spooled parts, --window at a time.
	published, ok := c.publishFiles(ctx, p, publish)
	if !ok {
		return c.abort(published)
	}
	code = exitOK
	if problems > 0 {
		fmt.Fprintf(stderr, "usage-producer: %s in %d of %d files: those rows were skipped\n", plural(problems, "problem"), bad, len(files))
		code = exitSkipped
	}
	if !c.wait {
		return code
	}
	if waitCode := c.waitAcks(ctx, p, published, dests); waitCode != exitOK {
		return waitCode
	}
	return code
}

// checkArgs checks the flags and the FILE arguments before anything is
// read, and returns the input format and the --dest list; a code other
// than exitOK is the usage error already reported.
func (c *publishCommand) checkArgs(fs *flag.FlagSet, paths []string) (input.Format, []string, int) {
	stdins := 0
	for _, p := range paths {
		if p == "-" {
			stdins++
		}
	}
	switch {
	case c.feed == "":
		return input.Auto, nil, usageErr(fs, "--feed is required")
	case !messages.ValidToken(c.feed):
		return input.Auto, nil, usageErr(fs, "--feed %q: want 1-64 of A-Z a-z 0-9 _ -", c.feed)
	case c.source == "":
		return input.Auto, nil, usageErr(fs, "--source is required")
	case !messages.ValidToken(c.source):
		return input.Auto, nil, usageErr(fs, "--source %q: want 1-64 of A-Z a-z 0-9 _ -", c.source)
	case len(paths) == 0:
		return input.Auto, nil, usageErr(fs, "no FILE to publish (- reads standard input)")
	case stdins > 1:
		return input.Auto, nil, usageErr(fs, "- (standard input) can be read once")
	case c.batchID != "" && len(paths) > 1:
		return input.Auto, nil, usageErr(fs, "--batch-id names one batch, and each FILE is a batch: give one FILE, or leave --batch-id out")
	case c.batchID != "" && (len(c.batchID) > 200 || strings.ContainsAny(c.batchID, " \t\r\n")):
		return input.Auto, nil, usageErr(fs, "--batch-id: at most 200 bytes, no whitespace")
	case c.timeout <= 0:
		return input.Auto, nil, usageErr(fs, "--timeout must be positive")
	case c.publishTimeout <= 0:
		return input.Auto, nil, usageErr(fs, "--publish-timeout must be positive")
	case c.dests != "" && !c.wait:
		return input.Auto, nil, usageErr(fs, "--dest only matters with --wait")
	case c.dryRun && c.wait:
		return input.Auto, nil, usageErr(fs, "--dry-run publishes nothing to wait for")
	case c.maxBytes <= 0:
		return input.Auto, nil, usageErr(fs, "--max-bytes must be positive")
	case c.window < 1:
		return input.Auto, nil, usageErr(fs, "--window must be at least 1")
	case c.partBytes < 4096:
		return input.Auto, nil, usageErr(fs, "--part-bytes must be at least 4096")
	}
	format, err := input.ParseFormat(c.format)
	if err != nil {
		return input.Auto, nil, usageErr(fs, "--format: %v", err)
	}
	dests := splitList(c.dests)
	for _, d := range dests {
		if !messages.ValidToken(d) {
			return input.Auto, nil, usageErr(fs, "--dest %q: want 1-64 of A-Z a-z 0-9 _ -", d)
		}
	}
	return format, dests, exitOK
}

// spoolFiles is pass 1: it reads and checks every file, appending each to
// *files (whose spools the caller discards) with its batch id, its good
// rows and its problems reported on stderr, and returns the problems and
// the files that had any. Not ok: a file could not be read, reported.
func (c *publishCommand) spoolFiles(ctx context.Context, paths []string, format input.Format, files *[]*file) (problems, bad int, ok bool) {
	stderr := c.env.stderr
	byID := map[string]string{}
	for _, path := range paths {
		f := &file{path: path}
		res, err := c.spoolFile(ctx, path, format)
		if res != nil {
			f.spool = res.Spool
		}
		if err != nil {
			fmt.Fprintf(stderr, "%v\n", err)
			fmt.Fprintln(stderr, "usage-producer: nothing published")
			return problems, bad, false
		}
		*files = append(*files, f)
		f.hash = res.Hash
		f.good = res.Spool.Records()
		name := displayName(path)
		errs := res.Errors
		if res.Version != "" {
			fmt.Fprintf(stderr, "%s: %s, FOCUS %s (told from its columns)\n", name, res.Format, res.Version)
		}
		for _, w := range res.Warnings {
			fmt.Fprintf(stderr, "%s (warning)\n", w.Error())
		}
		for _, e := range errs {
			fmt.Fprintln(stderr, e.Error())
		}
		f.problems = len(errs)
		if f.good == 0 && len(errs) == 0 {
			fmt.Fprintf(stderr, "%s: no records\n", name)
			f.problems = 1
		}
		f.id = c.batchID
		if f.id == "" {
			// The feed is part of the id: the same file published to a
			// second feed is a different batch, not a duplicate.
			fh := sha256.Sum256(append([]byte(c.feed+"\x00"), f.hash[:]...))
			f.id = c.source + "-" + hex.EncodeToString(fh[:])[:16]
		}
		if prev, dup := byID[f.id]; dup {
			fmt.Fprintf(stderr, "%s: same content as %s (batch %s): publishing it again would change nothing\n", name, prev, f.id)
			f.problems++
			f.dupOf = prev
		}
		byID[f.id] = name
		if f.problems > 0 {
			problems += f.problems
			bad++
		}
	}
	return problems, bad, true
}

// toPublish picks the files pass 2 publishes: those without problems, and
// with --good-rows-only those with good rows that are no duplicate. Not
// ok: nothing is to be published, reported.
func (c *publishCommand) toPublish(files []*file, problems, bad int) (publish []*file, ok bool) {
	stderr := c.env.stderr
	for _, f := range files {
		if f.problems == 0 || (c.goodRowsOnly && f.good > 0 && f.dupOf == "") {
			publish = append(publish, f)
		}
	}
	if problems > 0 && !c.goodRowsOnly {
		fmt.Fprintf(stderr, "usage-producer: %s in %d of %d files; nothing published (--good-rows-only publishes the good rows)\n", plural(problems, "problem"), bad, len(files))
		return nil, false
	}
	if len(publish) == 0 {
		fmt.Fprintf(stderr, "usage-producer: %s in %d of %d files and no good rows; nothing published\n", plural(problems, "problem"), bad, len(files))
		return nil, false
	}
	return publish, true
}

// publishFiles is pass 2: it publishes each file's spooled parts (with
// --dry-run only says what it would publish) and prints a line per file
// and the total. Not ok: a publish failed, reported; published is what
// was published before it.
func (c *publishCommand) publishFiles(ctx context.Context, p *producer.Producer, publish []*file) (published []*file, ok bool) {
	stdout, stderr := c.env.stdout, c.env.stderr
	total := struct {
		records, parts int
		cost           costs
	}{cost: costs{}}
	for _, f := range publish {
		name := displayName(f.path)
		cost := costsOf(f.spool.Costs())
		total.records += f.good
		total.cost.add(cost)
		if c.dryRun {
			fmt.Fprintf(stdout, "%s: %s, %s, cost %s, batch %s%s (dry run: not published)\n", name, plural(f.good, "record"), plural(f.spool.Parts(), "part"), cost, f.id, skipped(f))
			continue
		}
		pctx, cancel := context.WithTimeout(ctx, c.publishTimeout)
		res, err := c.publishSpool(pctx, p, f)
		timedOut := err != nil && ctx.Err() == nil && errors.Is(pctx.Err(), context.DeadlineExceeded)
		cancel()
		if timedOut {
			fmt.Fprintf(stderr, "%s: publishing batch %s: --publish-timeout %s reached (%v): run it again to complete it (the parts already stored are not stored twice)\n", name, f.id, c.publishTimeout, err)
			return published, false
		}
		if err != nil {
			fmt.Fprintf(stderr, "%s: publishing batch %s: %v\n", name, f.id, err)
			return published, false
		}
		f.res = res
		published = append(published, f)
		total.parts += len(res.Parts)
		fmt.Fprintf(stdout, "%s: %s, %s, cost %s, batch %s%s%s\n", name, plural(res.Records, "record"), plural(len(res.Parts), "part"), cost, f.id, skipped(f), duplicates(res))
	}
	if len(publish) > 1 {
		if c.dryRun {
			fmt.Fprintf(stdout, "total: %s, cost %s in %s\n", plural(total.records, "record"), total.cost, plural(len(publish), "batch"))
		} else {
			fmt.Fprintf(stdout, "total: %s, %s, cost %s in %s\n", plural(total.records, "record"), plural(total.parts, "part"), total.cost, plural(len(publish), "batch"))
		}
	}
	return published, true
}

// displayName is how a path is named in messages ("-" is standard input).
func displayName(path string) string {
	if path == "-" {
		return "<stdin>"
	}
	return path
}

// abort says what was published before a failure, and fails.
func (c *publishCommand) abort(published []*file) int {
	if len(published) == 0 {
		fmt.Fprintln(c.env.stderr, "usage-producer: nothing published")
	} else {
		var names []string
		for _, f := range published {
			names = append(names, displayName(f.path))
		}
		fmt.Fprintf(c.env.stderr, "usage-producer: stopped; published before the failure: %s\n", strings.Join(names, ", "))
	}
	return exitFail
}

// spoolFile reads path ("-": standard input) in format into a spool,
// drawing its progress on stderr.
func (c *publishCommand) spoolFile(ctx context.Context, path string, format input.Format) (*producer.FileResult, error) {
	var r io.Reader
	var size int64
	if path == "-" {
		r = c.env.stdin
		if r == nil {
			r = os.Stdin
		}
	} else {
		fh, err := os.Open(path)
		if err != nil {
			return nil, err
		}
		defer fh.Close()
		if fi, err := fh.Stat(); err == nil && fi.Mode().IsRegular() {
			size = fi.Size()
		}
		if format == input.Auto {
			format = input.FormatOf(path)
		}
		r = fh
	}
	var bytesRead, rows atomic.Int64
	rp := startReadProgress(c.env.stderr, isTerminal(c.env.stderr), displayName(path), size, &bytesRead, &rows)
	res, err := producer.SpoolFile(ctx, displayName(path), r, producer.FileOptions{
		Input:     input.Options{Format: format, Strict: c.strict, MaxBytes: c.maxBytes},
		Spool:     producer.SpoolOptions{PartBytes: c.partBytes, OpenBytes: c.window * c.partBytes / 4, Dir: c.spoolDir},
		BytesRead: &bytesRead,
		Rows:      &rows,
	})
	rp.finish(err == nil)
	return res, err
}

// publishSpool publishes f's spool, drawing progress on a terminal.
func (c *publishCommand) publishSpool(ctx context.Context, p *producer.Producer, f *file) (*producer.Result, error) {
	var rows, none atomic.Int64
	rp := startPublishProgress(c.env.stderr, isTerminal(c.env.stderr), displayName(f.path), int64(f.good), &rows, &none)
	res, err := p.PublishSpool(ctx, f.spool, producer.SpoolPublish{
		BatchID: f.id, Feed: c.feed, Source: c.source, Window: c.window,
		Progress: func(recs, _ int) { rows.Store(int64(recs)) },
	})
	rp.finish(err == nil)
	return res, err
}

// waitAcks follows the acks of every published batch, drawing progress on
// stderr, and prints the per-destination summary.
func (c *publishCommand) waitAcks(ctx context.Context, p *producer.Producer, published []*file, dests []string) int {
	stdout, stderr := c.env.stdout, c.env.stderr
	if len(dests) == 0 {
		ds, err := p.Destinations(ctx, c.feed)
		if err != nil {
			fmt.Fprintf(stderr, "usage-producer: finding the destinations of feed %s: %v\n", c.feed, err)
			return exitFail
		}
		if len(ds) == 0 {
			fmt.Fprintf(stderr, "usage-producer: no destination consumes feed %s yet; name the ones to wait for with --dest\n", c.feed)
			return exitFail
		}
		dests = ds
	}
	total := 0
	for _, f := range published {
		total += len(f.res.Parts) * len(dests)
	}
	fmt.Fprintf(stderr, "waiting for %s at %s\n", plural(total, "part outcome"), strings.Join(dests, ", "))
	wctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	bar := startProgress(stderr, isTerminal(stderr), total, c.progressTick)
	agg := map[string]*summary{}
	for _, d := range dests {
		agg[d] = &summary{Summary: producer.Summary{Destination: d}, cost: costs{}}
	}
	base := 0
	var waitErr error
	for _, f := range published {
		sums, err := p.Wait(wctx, f.res, dests, func(pg producer.Progress) { bar.set(base + pg.Done) })
		for d, s := range sums {
			if a := agg[d]; a != nil {
				a.merge(s)
			}
		}
		if err != nil {
			waitErr = err
			break
		}
		base += len(f.res.Parts) * len(dests)
		bar.set(base)
	}
	done := bar.finish()
	printSummary(stdout, dests, agg)
	code := exitOK
	switch {
	case errors.Is(waitErr, context.DeadlineExceeded):
		fmt.Fprintf(stderr, "usage-producer: timed out after %s with %d of %d part outcomes\n", c.timeout, done, total)
		code = exitFail
	case waitErr != nil && ctx.Err() != nil:
		fmt.Fprintf(stderr, "usage-producer: interrupted with %d of %d part outcomes; the batches are published and will be delivered\n", done, total)
		code = exitFail
	case waitErr != nil:
		fmt.Fprintf(stderr, "usage-producer: waiting for acks: %v\n", waitErr)
		code = exitFail
	}
	for _, d := range dests {
		s := agg[d]
		if s.Rejected > 0 || s.Dead > 0 || s.RejectedRecords > 0 {
			fmt.Fprintf(stderr, "usage-producer: %s: %s dead-lettered (%s with rejected records, %s undecodable)\n",
				d, plural(s.RejectedRecords, "record"), plural(s.Rejected, "part"), plural(s.Dead, "part"))
			code = exitFail
		}
		if s.Warnings > 0 {
			fmt.Fprintf(stderr, "usage-producer: %s: warning: %s delivered with labels repaired or dropped\n", d, plural(s.Warnings, "record"))
		}
	}
	return code
}

func skipped(f *file) string {
	if f.problems == 0 {
		return ""
	}
	return fmt.Sprintf(" (%s skipped)", plural(f.problems, "problem"))
}

func duplicates(res *producer.Result) string {
	n := 0
	for _, p := range res.Parts {
		if p.Duplicate {
			n++
		}
	}
	switch {
	case n == 0:
		return ""
	case n == len(res.Parts):
		return " (already stored: nothing new published)"
	}
	return fmt.Sprintf(" (%d of %d parts already stored)", n, len(res.Parts))
}

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	if strings.HasSuffix(word, "ch") {
		return fmt.Sprintf("%d %ses", n, word)
	}
	return fmt.Sprintf("%d %ss", n, word)
}
