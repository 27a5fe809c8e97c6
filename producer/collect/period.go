package collect

import (
	"fmt"
	"time"

	"github.com/usagefleet/usagefleet/messages"
)

// Unit is the length of a snapshot period: every period a collector
// publishes is one whole UTC day or one whole UTC calendar month. Periods
// are aligned to the calendar, never to the time of a run, so that
// collecting again publishes the same periods and each new generation
// replaces the last (a sliding window would publish overlapping periods
// that the workers could not tell apart, and count twice).
type Unit string

const (
	Day   Unit = "day"
	Month Unit = "month"
)

func (u Unit) valid() bool { return u == Day || u == Month }

// Floor is the start of the period containing t.
func (u Unit) Floor(t time.Time) time.Time {
	t = t.UTC()
	if u == Month {
		return time.Date(t.Year(), t.Month(), 1, 0, 0, 0, 0, time.UTC)
	}
	return time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
}

// Add moves the period start t by n periods.
func (u Unit) Add(t time.Time, n int) time.Time {
	if u == Month {
		return t.AddDate(0, n, 0)
	}
	return t.AddDate(0, 0, n)
}

// Range is a half-open UTC interval [Start, End) a report covers.
type Range struct {
	Start, End time.Time
}

func (r Range) String() string {
	return r.Start.UTC().Format(time.RFC3339) + "/" + r.End.UTC().Format(time.RFC3339)
}

func (r Range) dur() time.Duration { return r.End.Sub(r.Start) }

func spanOf(p messages.Period) Range { return Range{p.Start, p.End} }

// Window returns the periods a run at now collects: the last n periods up
// to the one containing now-lag, reaching back to lastEnd (the end of the
// last complete run) when the collector was away for longer, but by at
// most catchUp periods.
func Window(now time.Time, u Unit, n int, lag time.Duration, lastEnd time.Time, catchUp int) []messages.Period {
	last := u.Floor(now.Add(-lag))
	end := u.Add(last, 1)
	first := u.Add(end, -n)
	if !lastEnd.IsZero() && lastEnd.Before(first) {
		from := u.Floor(lastEnd)
		if limit := u.Add(end, -max(catchUp, n)); from.Before(limit) {
			from = limit
		}
		first = from
	}
	var out []messages.Period
	for s := first; s.Before(end); s = u.Add(s, 1) {
		out = append(out, messages.Period{Start: s, End: u.Add(s, 1)})
	}
	return out
}

// Limits is what a report API allows, as the planner needs it.
type Limits struct {
	// MaxRange is the longest range one report may cover (0: no limit).
	MaxRange time.Duration
	// Align is the finest boundary a range may be cut at (24h for an API
	// that takes dates, 1h for one that takes hours).
	Align time.Duration
	// MaxRecords is the record cap of one report (0: none). A report that
	// says it was truncated, or holds exactly MaxRecords rows, is split
	// into two smaller ranges and collected again.
	MaxRecords int
	// RowSpan is the time one row covers: Day or Month rows carry their
	// own date, so one report may span many periods; "" means a row covers
	// the whole report range (summaries), so one report covers one period
	// at most.
	RowSpan Unit
}

// Plan cuts the periods (in time order; they may have gaps) into report
// ranges under the limits: contiguous periods share a report while it
// stays within MaxRange (one report per period when rows carry no date),
// and a period longer than MaxRange is cut at Align boundaries.
func Plan(periods []messages.Period, lim Limits) []Range {
	var out []Range
	var cur *Range
	flush := func() {
		if cur != nil {
			out = append(out, *cur)
			cur = nil
		}
	}
	for _, p := range periods {
		r := spanOf(p)
		if cur != nil && (lim.RowSpan == "" || !cur.End.Equal(r.Start) || (lim.MaxRange > 0 && r.End.Sub(cur.Start) > lim.MaxRange)) {
			flush()
		}
		if lim.MaxRange > 0 && r.dur() > lim.MaxRange {
			flush()
			step := lim.MaxRange.Truncate(lim.align())
			for s := r.Start; s.Before(r.End); s = s.Add(step) {
				out = append(out, Range{s, minTime(s.Add(step), r.End)})
			}
			continue
		}
		if cur == nil {
			cur = &Range{r.Start, r.End}
		} else {
			cur.End = r.End
		}
	}
	flush()
	return out
}

func (l Limits) align() time.Duration {
	if l.Align <= 0 {
		return time.Hour
	}
	return l.Align
}

// Split cuts r in two for a report that hit the record cap: at the period
// boundary nearest its middle when it spans several periods, else at the
// Align boundary nearest the middle. ok is false when r is one Align unit.
func Split(r Range, periods []messages.Period, lim Limits) (a, b Range, ok bool) {
	mid := r.Start.Add(r.dur() / 2)
	best := time.Time{}
	for _, p := range periods {
		if p.Start.After(r.Start) && p.Start.Before(r.End) {
			if best.IsZero() || absDur(p.Start.Sub(mid)) < absDur(best.Sub(mid)) {
				best = p.Start
			}
		}
	}
	if best.IsZero() {
		best = r.Start.Add((r.dur() / 2).Truncate(lim.align()))
	}
	if !best.After(r.Start) || !best.Before(r.End) {
		return r, r, false
	}
	return Range{r.Start, best}, Range{best, r.End}, true
}

// Clamp ends r no later than now rounded up to align: a report API is
// not asked for the future (Acronis refuses it), while the period it
// belongs to stays whole, as the snapshot of what is known so far.
func Clamp(r Range, now time.Time, align time.Duration) Range {
	ceil := now.UTC().Truncate(align)
	if ceil.Before(now) {
		ceil = ceil.Add(align)
	}
	if r.End.After(ceil) {
		r.End = ceil
	}
	if !r.End.After(r.Start) {
		r.End = r.Start.Add(align)
	}
	return r
}

func absDur(d time.Duration) time.Duration {
	if d < 0 {
		return -d
	}
	return d
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// Clip returns [start, end) cut to r, for a row whose bucket (a day, a
// month) a report range only partly covers. ok is false when they do not
// overlap.
func Clip(start, end time.Time, r Range) (time.Time, time.Time, bool) {
	s, e := maxTime(start, r.Start), minTime(end, r.End)
	return s, e, e.After(s)
}

// periodLabel is a compact, readable period for ids: 2024081600-2024081700.
func periodLabel(p messages.Period) string {
	return fmt.Sprintf("%s-%s", p.Start.UTC().Format("2006010215"), p.End.UTC().Format("2006010215"))
}
