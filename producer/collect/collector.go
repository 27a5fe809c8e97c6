package collect

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/usagefleet/usagefleet/messages"
	"github.com/usagefleet/usagefleet/producer"
)

// Schedule says when a collector runs and what each run collects.
type Schedule struct {
	Interval time.Duration // between runs (default 1h)
	Period   Unit          // snapshot period: Day (default) or Month
	Periods  int           // periods per run, ending with the one containing now-Lag (default 3 days / 2 months)
	Lag      time.Duration // how far behind now the newest period is
	CatchUp  int           // after a gap, reach back at most this many periods (default 31 days / 3 months)
}

// Poll paces report polling.
type Poll struct {
	Interval    time.Duration // first wait (default 2s)
	MaxInterval time.Duration // backoff cap (default 30s)
	Timeout     time.Duration // give up on a report after (default 1h; it stays checkpointed)
}

// Options configure a Collector.
type Options struct {
	Name     string // collector name: the batches' Source and the checkpoint key
	Feed     string // feed the batches are published to
	Schedule Schedule
	Poll     Poll
	// Retry is the backoff of a download cut short (the API calls retry
	// on their own through API.Do).
	Retry Retry
	// NotReadyWait: how long a run keeps asking when the API says the
	// usage data is not ready yet (0: the run ends with ErrNotReady at
	// once and the next scheduled run tries again; --once sets it).
	NotReadyWait time.Duration
	// ReuseReportsFor is how long a checkpointed report id stays worth
	// polling after it was requested (default 24h; keep it under the
	// USAGE stream's duplicate window, 48h by default).
	ReuseReportsFor time.Duration
	// DeadLetters is where rejected report rows are kept: the DEAD stream
	// (messages.StreamDead), on messages.DeadSubject(DeadDestination,
	// Name). A rejected row is never only logged: without DeadLetters, a
	// run that rejects a row fails before publishing that report's
	// periods.
	DeadLetters jetstream.JetStream
	Now         func() time.Time
	Log         *slog.Logger
}

func (o *Options) defaults() error {
	if !messages.ValidToken(o.Name) {
		return fmt.Errorf("collector name %q: want 1-64 of A-Z a-z 0-9 _ -", o.Name)
	}
	if !messages.ValidToken(o.Feed) {
		return fmt.Errorf("collector %s: feed %q: want 1-64 of A-Z a-z 0-9 _ -", o.Name, o.Feed)
	}
	s := &o.Schedule
	if s.Period == "" {
		s.Period = Day
	}
	if !s.Period.valid() {
		return fmt.Errorf("collector %s: period %q: want day or month", o.Name, s.Period)
	}
	if s.Interval <= 0 {
		s.Interval = time.Hour
	}
	if s.Periods <= 0 {
		s.Periods = map[Unit]int{Day: 3, Month: 2}[s.Period]
	}
	if s.CatchUp <= 0 {
		s.CatchUp = map[Unit]int{Day: 31, Month: 3}[s.Period]
	}
	if o.Poll.Interval <= 0 {
		o.Poll.Interval = 2 * time.Second
	}
	if o.Poll.MaxInterval <= 0 {
		o.Poll.MaxInterval = 30 * time.Second
	}
	if o.Poll.MaxInterval < o.Poll.Interval {
		o.Poll.MaxInterval = o.Poll.Interval
	}
	if o.Poll.Timeout <= 0 {
		o.Poll.Timeout = time.Hour
	}
	if o.ReuseReportsFor <= 0 {
		o.ReuseReportsFor = 24 * time.Hour
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	return nil
}

// Collector collects one account of one report API and publishes each
// period it collects as one snapshot batch. Run it once (Run) or on its
// schedule (Loop); one Collector must not run twice at the same time.
type Collector struct {
	p    Platform
	prod *producer.Producer
	kv   jetstream.KeyValue
	o    Options
	log  *slog.Logger
}

// New returns a collector. kv is the checkpoint bucket
// (messages.BucketCheckpoints); nil keeps no checkpoint.
func New(p Platform, prod *producer.Producer, kv jetstream.KeyValue, o Options) (*Collector, error) {
	if err := o.defaults(); err != nil {
		return nil, err
	}
	lim := p.Limits()
	if lim.RowSpan == Month && o.Schedule.Period == Day {
		return nil, fmt.Errorf("collector %s: the reports' rows are per month, so the period must be month", o.Name)
	}
	return &Collector{p: p, prod: prod, kv: kv, o: o,
		log: o.Log.With("collector", o.Name, "type", p.Type())}, nil
}

// Name is the collector's name.
func (c *Collector) Name() string { return c.o.Name }

// Options returns the effective options (defaults filled in).
func (c *Collector) Options() Options { return c.o }

// Result is what one run did.
type Result struct {
	Collector string
	Type      string
	Account   string
	Window    Range // the periods this run collected
	// Generation is the generation the run published with (a resumed run
	// keeps its checkpointed one until it has to ask for a new report).
	Generation int64
	Resumed    bool // a run the checkpoint left unfinished was resumed
	Reports    []ReportRun
	Batches    []BatchInfo
	Records    int // records published over all batches
	// Rejected are the rows the run rejected. Each is kept in the DEAD
	// stream on DeadSubject before its report's periods are published (a
	// run that cannot keep them fails first): DeadLetters of them stored
	// by this run, DeadKnown already there (the same rows of the same
	// report range, kept by an earlier run or try).
	Rejected    []RowError
	DeadSubject string
	DeadLetters int
	DeadKnown   int
	Started     time.Time
	Finished    time.Time
}

// ReportRun is one report a run used.
type ReportRun struct {
	ID        string
	Range     Range // the range it covers (clamped to the time of the request)
	Reused    bool  // taken over from the checkpoint, not requested by this run
	Rows      int
	Truncated bool // hit the record cap; its range was split
}

// BatchInfo is one published snapshot batch.
type BatchInfo struct {
	Period     messages.Period
	ID         string
	Generation int64
	Records    int
	Parts      int
	Duplicate  bool // JetStream already had every part (a resumed run re-published it)
	Result     *producer.Result
}

// fingerprint ties checkpointed reports to the parameters they were asked
// with.
func (c *Collector) fingerprint() string {
	h := sha256.Sum256([]byte(c.p.Type() + "\x00" + c.p.Account() + "\x00" + c.p.Fingerprint() + "\x00" + string(c.o.Schedule.Period)))
	return hex.EncodeToString(h[:12])
}

// BatchID is the id of the snapshot batch of period in generation gen:
// the same inputs give the same id, so a re-published batch is
// de-duplicated by JetStream.
func BatchID(collector, typ, account string, p messages.Period, gen int64) string {
	h := sha256.Sum256([]byte(typ + "\x00" + account))
	return fmt.Sprintf("collect.%s.%s.%s.%d", collector, hex.EncodeToString(h[:6]), periodLabel(p), gen)
}

// run is one run's working state.
type run struct {
	c       *Collector
	st      *store
	ck      *Checkpoint
	rs      *RunState
	res     *Result
	lim     Limits
	fromCk  bool // rs.Generation came from the checkpoint
	periods []messages.Period
	recs    [][]messages.UsageRecord
	done    []bool
	// dead are the rows rejected in the report being collected, to keep
	// in DEAD once its download is complete; deadKept are the ids of the
	// dead letters DEAD already holds (read once per run, when needed).
	dead     []deadRow
	deadKept map[string]bool
}

// Run collects the schedule's current window once: it plans report ranges,
// requests (or reuses) and downloads each report, and publishes every
// period as one snapshot batch once all its rows are in. Periods are
// published in time order as they complete, so memory holds the records of
// the periods still open. The Result is returned with the error too (what
// was published before the failure).
func (c *Collector) Run(ctx context.Context) (*Result, error) {
	now := c.o.Now().UTC()
	res := &Result{Collector: c.o.Name, Type: c.p.Type(), Account: c.p.Account(), Started: now,
		DeadSubject: messages.DeadSubject(DeadDestination, c.o.Name)}
	defer func() { res.Finished = c.o.Now().UTC() }()
	st := &store{kv: c.kv, key: c.o.Name}
	ck, err := st.load(ctx)
	if err != nil {
		return res, err
	}
	if ck.PeriodUnit != "" && ck.PeriodUnit != c.o.Schedule.Period {
		return res, fmt.Errorf("collector %s: its checkpoint was written with period %s, the configuration says %s: "+
			"periods of both lengths would be counted twice; keep %s, or give the collector a new name",
			c.o.Name, ck.PeriodUnit, c.o.Schedule.Period, ck.PeriodUnit)
	}
	var lastEnd time.Time
	if ck.LastWindow != nil {
		lastEnd = ck.LastWindow.End
	}
	sch := c.o.Schedule
	periods := Window(now, sch.Period, sch.Periods, sch.Lag, lastEnd, sch.CatchUp)
	window := Range{periods[0].Start, periods[len(periods)-1].End}
	res.Window = window
	fp := c.fingerprint()
	r := &run{c: c, st: st, ck: ck, res: res, lim: c.p.Limits()}
	r.rs, r.fromCk = c.runState(ck, fp, window, now)
	res.Resumed = r.fromCk
	ck.Collector, ck.Type, ck.Account, ck.Fingerprint, ck.PeriodUnit = c.o.Name, c.p.Type(), c.p.Account(), fp, sch.Period
	ck.Generation, ck.Run = r.rs.Generation, r.rs
	res.Generation = r.rs.Generation
	if err := st.save(ctx, ck, now); err != nil {
		return res, err
	}
	for _, p := range periods {
		if !slices.ContainsFunc(r.rs.Published, func(s Span) bool { return s.eq(spanOf(p)) }) {
			r.periods = append(r.periods, p)
		}
	}
	r.recs = make([][]messages.UsageRecord, len(r.periods))
	r.done = make([]bool, len(r.periods))
	if err := r.collectAll(ctx, Plan(r.periods, r.lim)); err != nil {
		return res, err
	}
	if err := r.publishUpTo(ctx, window.End); err != nil { // periods no range covered (none, normally)
		return res, err
	}
	last := periods[len(periods)-1]
	ck.Run = nil
	ck.LastPeriod, ck.LastWindow, ck.LastRun = &Span{last.Start, last.End}, &Span{window.Start, window.End}, now
	if err := st.save(ctx, ck, c.o.Now().UTC()); err != nil {
		return res, err
	}
	c.log.Info("collected", "window", window.String(), "generation", res.Generation, "reports", len(res.Reports),
		"batches", len(res.Batches), "records", res.Records, "rejected", len(res.Rejected), "dead_letters_stored", res.DeadLetters)
	return res, nil
}

// runState is the state of the run about to start: the checkpoint's
// unfinished run, resumed (true), if it is for the same settings and
// window and recent enough; else a new generation, which keeps the
// recent reports an abandoned run of the same settings asked for.
func (c *Collector) runState(ck *Checkpoint, fp string, window Range, now time.Time) (*RunState, bool) {
	if old := ck.Run; old != nil && ck.Fingerprint == fp && old.Window.eq(window) && now.Sub(old.Started) < c.o.ReuseReportsFor {
		c.log.Info("resuming the run the checkpoint left unfinished", "generation", old.Generation,
			"reports", len(old.Reports), "published", len(old.Published))
		return old, true
	}
	rs := &RunState{Generation: max(now.UnixNano(), ck.Generation+1), Window: toSpan(window), Started: now}
	if old := ck.Run; old != nil && ck.Fingerprint == fp {
		// Reports an abandoned run asked for can still serve this one.
		for _, f := range old.Reports {
			if now.Sub(f.Requested) < c.o.ReuseReportsFor {
				rs.Reports = append(rs.Reports, f)
			}
		}
		rs.Truncated = old.Truncated
	}
	return rs, false
}

// collectAll collects the ranges of queue in order, splitting a range
// whose report hit the record cap, and publishes each period as soon as
// the ranges covering it are in.
func (r *run) collectAll(ctx context.Context, queue []Range) error {
	c := r.c
	for len(queue) > 0 {
		rg := queue[0]
		truncated, err := r.collect(ctx, rg)
		if err != nil {
			return err
		}
		if truncated {
			a, b, ok := Split(rg, r.periods, r.lim)
			if !ok {
				return fmt.Errorf("collector %s: the report for %s is over the record cap (%d) and cannot be split further", c.o.Name, rg, r.lim.MaxRecords)
			}
			c.log.Info("report hit the record cap, collecting two smaller ranges", "range", rg.String(), "first", a.String(), "second", b.String())
			queue = append([]Range{a, b}, queue[1:]...)
			continue
		}
		queue = queue[1:]
		if err := r.publishUpTo(ctx, rg.End); err != nil {
			return err
		}
	}
	return nil
}

// collect gets one range's report into the open periods. truncated means
// the report hit the record cap: nothing of it was kept.
func (r *run) collect(ctx context.Context, rg Range) (truncated bool, err error) {
	c := r.c
	if slices.ContainsFunc(r.rs.Truncated, func(s Span) bool { return s.eq(rg) }) {
		return true, nil
	}
	asked := Clamp(rg, c.o.Now(), r.lim.align())
	var id string
	reused := false
	// A resumed run takes its report over even if it was asked when less
	// of a running period was known (its snapshot is then as of that
	// time; the next run refreshes it); a new run only takes over a
	// report asked exactly as it would ask.
	if i := slices.IndexFunc(r.rs.Reports, func(f InFlight) bool {
		return f.Range.eq(rg) && (f.Asked.eq(asked) || r.res.Resumed && f.Asked.Start.Equal(asked.Start) && !f.Asked.End.After(asked.End))
	}); i >= 0 {
		id, reused, asked = r.rs.Reports[i].ReportID, true, r.rs.Reports[i].Asked.Range()
		c.log.Info("reusing the checkpointed report", "report", id, "range", asked.String())
	}
	for attempt := 0; ; attempt++ {
		if id == "" {
			asked = Clamp(rg, c.o.Now(), r.lim.align())
			if id, err = r.request(ctx, rg, asked); err != nil {
				return false, err
			}
		}
		info, st, err := r.await(ctx, id, asked)
		if err != nil && attempt == 0 && (errors.Is(err, ErrReportGone) || reused && errors.Is(err, ErrReportFailed)) {
			c.log.Warn("checkpointed report unusable, asking for a new one", "report", id, "err", err)
			r.forget(id)
			id, reused = "", false
			continue
		}
		if err != nil {
			return false, err
		}
		trunc := st.Truncated || info.Truncated || (r.lim.MaxRecords > 0 && info.Rows >= r.lim.MaxRecords)
		r.res.Reports = append(r.res.Reports, ReportRun{ID: id, Range: asked, Reused: reused, Rows: info.Rows, Truncated: trunc})
		if trunc {
			r.forget(id)
			r.rs.Truncated = append(r.rs.Truncated, toSpan(rg))
			return true, r.st.save(ctx, r.ck, c.o.Now().UTC())
		}
		// The rejected rows go to DEAD before any period of this report is
		// published: until then the checkpoint keeps the report in flight,
		// so a run that dies here downloads it again and keeps them (under
		// the same ids) before publishing.
		if err := r.keepRejected(ctx, id, rg); err != nil {
			return false, err
		}
		return false, nil
	}
}

// request asks for a new report, waiting out "not ready" answers for up to
// NotReadyWait, and checkpoints it before anything else happens.
func (r *run) request(ctx context.Context, rg, asked Range) (string, error) {
	c := r.c
	if r.fromCk {
		// New content must not be published under a generation that may
		// already hold other content for the same periods.
		r.rs.Generation = max(c.o.Now().UnixNano(), r.rs.Generation+1)
		r.ck.Generation, r.res.Generation, r.fromCk = r.rs.Generation, r.rs.Generation, false
	}
	bo := Retry{Initial: c.o.Poll.Interval, Max: c.o.Poll.MaxInterval, For: c.o.NotReadyWait}.backoff()
	for {
		id, err := c.p.Request(ctx, asked)
		if err == nil {
			c.log.Info("report requested", "report", id, "range", asked.String())
			r.rs.Reports = append(r.rs.Reports, InFlight{ReportID: id, Range: toSpan(rg), Asked: toSpan(asked), Requested: c.o.Now().UTC()})
			return id, r.st.save(ctx, r.ck, c.o.Now().UTC())
		}
		if !errors.Is(err, ErrNotReady) || c.o.NotReadyWait <= 0 {
			return "", err
		}
		d := bo.NextBackOff()
		if d == backoff.Stop {
			return "", fmt.Errorf("%w (still after waiting %s)", err, c.o.NotReadyWait)
		}
		c.log.Info("usage data not ready yet, asking again later", "range", asked.String(), "in", d, "err", err)
		if err := sleep(ctx, d); err != nil {
			return "", err
		}
	}
}

// await polls the report until it is ready, then downloads it into the
// open periods, retrying a download cut short (its rows are dropped first).
func (r *run) await(ctx context.Context, id string, asked Range) (FetchInfo, Status, error) {
	c := r.c
	bo := Retry{Initial: c.o.Poll.Interval, Max: c.o.Poll.MaxInterval, For: c.o.Poll.Timeout}.backoff()
	var st Status
	for {
		var err error
		st, err = c.p.Status(ctx, id)
		if err != nil {
			return FetchInfo{}, st, err
		}
		if st.State == Ready {
			break
		}
		d := bo.NextBackOff()
		if d == backoff.Stop {
			return FetchInfo{}, st, fmt.Errorf("report %s is not ready after %s (it stays checkpointed for the next run)", id, c.o.Poll.Timeout)
		}
		if err := sleep(ctx, d); err != nil {
			return FetchInfo{}, st, err
		}
	}
	if st.Truncated {
		return FetchInfo{Truncated: true}, st, nil
	}
	fbo := c.o.Retry.backoff()
	for {
		s := r.sink(id, asked)
		info, err := c.p.Fetch(ctx, id, st, asked, s)
		if err == nil && !info.Truncated && (r.lim.MaxRecords == 0 || info.Rows < r.lim.MaxRecords) {
			return info, st, nil
		}
		s.rollback()
		if err == nil {
			return info, st, nil
		}
		if !Transient(err) || ctx.Err() != nil {
			return info, st, fmt.Errorf("report %s: %w", id, err)
		}
		d := fbo.NextBackOff()
		if d == backoff.Stop {
			return info, st, fmt.Errorf("report %s: %w", id, err)
		}
		c.log.Warn("report download failed, downloading again", "report", id, "err", err, "in", d)
		if err := sleep(ctx, d); err != nil {
			return info, st, err
		}
	}
}

func (r *run) forget(id string) {
	r.rs.Reports = slices.DeleteFunc(r.rs.Reports, func(f InFlight) bool { return f.ReportID == id })
}

// Loop runs the collector now and then every Schedule.Interval (counted
// from the start of the previous run) until ctx ends, calling report
// after each run. A failed run (the API not ready, down, a report that
// failed) is reported and tried again at the next interval; the
// checkpoint carries what it had requested over.
func (c *Collector) Loop(ctx context.Context, report func(*Result, error)) {
	for {
		start := time.Now()
		res, err := c.Run(ctx)
		if ctx.Err() != nil {
			return
		}
		if report != nil {
			report(res, err)
		}
		if err != nil {
			c.log.Error("collection failed; trying again at the next interval", "err", err, "next", c.o.Schedule.Interval)
		}
		if err := sleep(ctx, time.Until(start.Add(c.o.Schedule.Interval))); err != nil {
			return
		}
	}
}
