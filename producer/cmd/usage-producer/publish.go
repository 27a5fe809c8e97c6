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
	"sort"
	"strings"
	"sync/atomic"
	"text/tabwriter"
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
	stdout, stderr := c.env.stdout, c.env.stderr
	paths := args
	stdins := 0
	for _, p := range paths {
		if p == "-" {
			stdins++
		}
	}
	switch {
	case c.feed == "":
		return usageErr(fs, "--feed is required")
	case !messages.ValidToken(c.feed):
		return usageErr(fs, "--feed %q: want 1-64 of A-Z a-z 0-9 _ -", c.feed)
	case c.source == "":
		return usageErr(fs, "--source is required")
	case !messages.ValidToken(c.source):
		return usageErr(fs, "--source %q: want 1-64 of A-Z a-z 0-9 _ -", c.source)
	case len(paths) == 0:
		return usageErr(fs, "no FILE to publish (- reads standard input)")
	case stdins > 1:
		return usageErr(fs, "- (standard input) can be read once")
	case c.batchID != "" && len(paths) > 1:
		return usageErr(fs, "--batch-id names one batch, and each FILE is a batch: give one FILE, or leave --batch-id out")
	case c.batchID != "" && (len(c.batchID) > 200 || strings.ContainsAny(c.batchID, " \t\r\n")):
		return usageErr(fs, "--batch-id: at most 200 bytes, no whitespace")
	case c.timeout <= 0:
		return usageErr(fs, "--timeout must be positive")
	case c.publishTimeout <= 0:
		return usageErr(fs, "--publish-timeout must be positive")
	case c.dests != "" && !c.wait:
		return usageErr(fs, "--dest only matters with --wait")
	case c.dryRun && c.wait:
		return usageErr(fs, "--dry-run publishes nothing to wait for")
	case c.maxBytes <= 0:
		return usageErr(fs, "--max-bytes must be positive")
	case c.window < 1:
		return usageErr(fs, "--window must be at least 1")
	case c.partBytes < 4096:
		return usageErr(fs, "--part-bytes must be at least 4096")
	}
	format, err := input.ParseFormat(c.format)
	if err != nil {
		return usageErr(fs, "--format: %v", err)
	}
	dests := splitList(c.dests)
	for _, d := range dests {
		if !messages.ValidToken(d) {
			return usageErr(fs, "--dest %q: want 1-64 of A-Z a-z 0-9 _ -", d)
		}
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
	problems, bad := 0, 0
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
			return exitFail
		}
		files = append(files, f)
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
	var publish []*file
	for _, f := range files {
		if f.problems == 0 || (c.goodRowsOnly && f.good > 0 && f.dupOf == "") {
			publish = append(publish, f)
		}
	}
	if problems > 0 && !c.goodRowsOnly {
		fmt.Fprintf(stderr, "usage-producer: %s in %d of %d files; nothing published (--good-rows-only publishes the good rows)\n", plural(problems, "problem"), bad, len(files))
		return exitFail
	}
	if len(publish) == 0 {
		fmt.Fprintf(stderr, "usage-producer: %s in %d of %d files and no good rows; nothing published\n", plural(problems, "problem"), bad, len(files))
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
	var published []*file
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
			return c.abort(published)
		}
		if err != nil {
			fmt.Fprintf(stderr, "%s: publishing batch %s: %v\n", name, f.id, err)
			return c.abort(published)
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
	code := exitOK
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

// summary adds up one destination's outcomes over every batch: exact
// cost per currency, and every rejection reason with its records.
type summary struct {
	producer.Summary
	cost    costs
	reasons messages.ReasonCounts
}

func (s *summary) merge(o *producer.Summary) {
	s.Parts += o.Parts
	s.Delivered += o.Delivered
	s.Rejected += o.Rejected
	s.Dead += o.Dead
	s.Superseded += o.Superseded
	s.Records += o.Records
	s.RejectedRecords += o.RejectedRecords
	s.Warnings += o.Warnings
	for cur, d := range o.Costs {
		s.cost.addDecimal(cur, d)
	}
	s.reasons.AddAll(o.ReasonCounts)
}

// printSummary is a row per destination, then every rejection reason of
// each, most records first: "<destination>: <n> records: <reason>".
func printSummary(w io.Writer, dests []string, agg map[string]*summary) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "DESTINATION\tPARTS\tDELIVERED\tREJECTED\tDEAD\tSUPERSEDED\tRECORDS\tREJECTED RECORDS\tWARNINGS\tCOST")
	for _, d := range dests {
		s := agg[d]
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%s\n", d, s.Parts, s.Delivered, s.Rejected, s.Dead, s.Superseded, s.Records, s.RejectedRecords, s.Warnings, s.cost)
	}
	tw.Flush()
	for _, d := range dests {
		for _, rc := range agg[d].reasons.Sorted() {
			fmt.Fprintf(w, "%s: %s: %s\n", d, plural(rc.Count, "record"), rc.Reason)
		}
	}
}

// costs sums money exactly per currency.
type costs map[string]*messages.Sum

func (c costs) addDecimal(cur string, d messages.Decimal) {
	s := c[cur]
	if s == nil {
		s = &messages.Sum{}
		c[cur] = s
	}
	s.Add(d)
}

func (c costs) add(o costs) {
	for cur, s := range o {
		c.addDecimal(cur, s.Decimal())
	}
}

// String is "12.50 USD + 3.00 EUR", "0" when nothing was summed.
func (c costs) String() string {
	if len(c) == 0 {
		return "0"
	}
	curs := make([]string, 0, len(c))
	for cur := range c {
		curs = append(curs, cur)
	}
	sort.Strings(curs)
	parts := make([]string, 0, len(curs))
	for _, cur := range curs {
		parts = append(parts, strings.TrimSpace(c[cur].Decimal().String()+" "+cur))
	}
	return strings.Join(parts, " + ")
}

// costsOf is a spool's cost per currency.
func costsOf(m map[string]messages.Decimal) costs {
	c := costs{}
	for cur, d := range m {
		c.addDecimal(cur, d)
	}
	return c
}

// costOf sums BilledCost per BillingCurrency.
func costOf(recs []messages.UsageRecord) costs {
	c := costs{}
	for i := range recs {
		if recs[i].BilledCost.IsSet() {
			c.addDecimal(recs[i].BillingCurrency, recs[i].BilledCost)
		}
	}
	return c
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
