package collect

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/usagefleet/usagefleet/messages"
)

// publishUpTo publishes every open period that ends by end, and
// checkpoints it.
func (r *run) publishUpTo(ctx context.Context, end time.Time) error {
	c := r.c
	published := false
	for i, p := range r.periods {
		if r.done[i] || p.End.After(end) {
			continue
		}
		gen := r.rs.Generation
		b := &messages.Batch{
			ID:       BatchID(c.o.Name, c.p.Type(), c.p.Account(), p, gen),
			Feed:     c.o.Feed,
			Source:   c.o.Name,
			Snapshot: &messages.Snapshot{Period: p, Generation: gen},
			Records:  r.recs[i],
		}
		pr, err := c.prod.Publish(ctx, b)
		if err != nil {
			return fmt.Errorf("publishing %s (period %s): %w", b.ID, p, err)
		}
		r.res.Batches = append(r.res.Batches, BatchInfo{Period: p, ID: b.ID, Generation: gen, Records: len(b.Records),
			Parts: len(pr.Parts), Duplicate: pr.Duplicate(), Result: pr})
		r.res.Records += len(b.Records)
		r.recs[i], r.done[i] = nil, true
		r.rs.Published = append(r.rs.Published, Span{p.Start, p.End})
		published = true
		c.log.Debug("published", "batch", b.ID, "period", p.String(), "records", len(b.Records), "duplicate", pr.Duplicate())
	}
	if !published {
		return nil
	}
	// Reports whose periods are all published are no longer in flight.
	frontier := end
	for i, p := range r.periods {
		if !r.done[i] {
			frontier = minTime(frontier, p.Start)
			break
		}
	}
	var done []string
	r.rs.Reports = slices.DeleteFunc(r.rs.Reports, func(f InFlight) bool {
		if f.Range.End.After(frontier) {
			return false
		}
		done = append(done, f.ReportID)
		return true
	})
	if err := r.st.save(ctx, r.ck, c.o.Now().UTC()); err != nil {
		return err
	}
	if cl, ok := c.p.(ReportCleaner); ok {
		for _, id := range done {
			cl.CleanReport(ctx, id)
		}
	}
	return nil
}

// ReportCleaner is implemented by a platform that removes a report from
// the API once everything in it is published and the checkpoint no longer
// names it (Acronis deletes it: an hourly schedule would otherwise leave
// 24 report objects a day behind). A failure is the platform's to log.
type ReportCleaner interface {
	CleanReport(ctx context.Context, reportID string)
}

// rangeSink takes one download's rows into the open periods and can undo
// them (a download cut short, a report over the cap).
type rangeSink struct {
	r        *run
	report   string
	rg       Range
	marks    []int
	rejMark  int
	deadMark int
	header   []byte           // the file's header line, copied at the first rejection
	seen     map[[32]byte]int // rejected rows by content: the occurrence of each
}

func (r *run) sink(id string, rg Range) *rangeSink {
	s := &rangeSink{r: r, report: id, rg: rg, marks: make([]int, len(r.recs)), rejMark: len(r.res.Rejected),
		deadMark: len(r.dead), seen: map[[32]byte]int{}}
	for i := range r.recs {
		s.marks[i] = len(r.recs[i])
	}
	return s
}

func (s *rangeSink) rollback() {
	for i := range s.r.recs {
		if !s.r.done[i] {
			clear(s.r.recs[i][s.marks[i]:])
			s.r.recs[i] = s.r.recs[i][:s.marks[i]]
		}
	}
	s.r.res.Rejected = s.r.res.Rejected[:s.rejMark]
	clear(s.r.dead[s.deadMark:])
	s.r.dead = s.r.dead[:s.deadMark]
}

// Record implements Sink.
func (s *rangeSink) Record(row Row, rec *messages.UsageRecord) {
	if errs := rec.Validate(); len(errs) > 0 {
		var probs []string
		for _, e := range errs {
			probs = append(probs, e.Field+": "+e.Problem)
		}
		s.Reject(row, "", strings.Join(probs, "; "))
		return
	}
	t := rec.ChargePeriodStart
	if !(Range{s.rg.Start, s.rg.End}).contains(t) {
		s.Reject(row, "", fmt.Sprintf("usage start %s is outside the report's range %s", t.UTC().Format(time.RFC3339), s.rg))
		return
	}
	for i, p := range s.r.periods {
		if p.Contains(t) {
			if s.r.done[i] {
				break
			}
			s.r.recs[i] = append(s.r.recs[i], *rec)
			return
		}
	}
	s.Reject(row, "", fmt.Sprintf("usage start %s is in no period this run collects", t.UTC().Format(time.RFC3339)))
}

// Reject implements Sink: the row is a RowError of the result, and is
// kept (raw, at most MaxDeadRowBytes of it) to be dead-lettered once the
// download is complete.
func (s *rangeSink) Reject(row Row, column, reason string) {
	if len(reason) > maxReasonBytes { // a platform quoted a value unclipped (see Quote)
		reason = strings.ToValidUTF8(reason[:maxReasonBytes], "") + "…"
	}
	e := RowError{Report: s.report, Line: row.Line, Column: column, Reason: reason}
	s.r.res.Rejected = append(s.r.res.Rejected, e)
	if s.header == nil {
		s.header = bytes.Clone(row.Header)
	}
	sum := sha256.Sum256(row.Raw)
	s.seen[sum]++
	raw := row.Raw[:min(len(row.Raw), MaxDeadRowBytes)]
	s.r.dead = append(s.r.dead, deadRow{err: e, raw: bytes.Clone(raw), size: len(row.Raw), header: s.header, sum: sum, occurrence: s.seen[sum]})
	s.r.c.log.Warn("report row rejected", "report", s.report, "line", row.Line, "column", column, "reason", reason)
}

// maxReasonBytes bounds a rejected row's reason: it goes to the log, the
// result and the dead letter's header.
const maxReasonBytes = 1024

func (r Range) contains(t time.Time) bool { return !t.Before(r.Start) && t.Before(r.End) }
