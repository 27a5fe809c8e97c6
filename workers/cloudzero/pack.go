package cloudzero

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/usagefleet/usagefleet/messages"
	"github.com/usagefleet/usagefleet/workers"
	"github.com/usagefleet/usagefleet/workers/chunk"
)

// Operations of a billing drop [DOC].
const (
	opReplaceDrop   = "replace_drop"
	opReplaceHourly = "replace_hourly"
	opSum           = "sum"
)

var (
	// errRowTooLarge: the newest row alone makes a body over the limit.
	errRowTooLarge = errors.New("cloudzero: row too large alone")
	// errUnitRejected stops streaming a unit the API refused.
	errUnitRejected = errors.New("cloudzero: unit refused")
)

// rowMeta describes one encoded row in packer.buf.
type rowMeta struct {
	end         int   // offset in buf just after the row
	seg         int32 // index in packer.segs
	placeholder bool
	// skip: the API refused this row alone (isolate); it is left out of
	// every body and its record rejected through the job.
	skip bool
	ref  workers.RecordRef
}

// segment is one unit of the month being packed (one month in sum mode).
type segment struct {
	unit workers.Unit
	// op replaces the unit: replace_hourly for an hour, replace_drop for a
	// month (sum in sum mode). It follows the unit's span, not the mode, so
	// units left dirty under another mode are still replaced correctly.
	op string
	// replaced: a request carrying rows of the unit succeeded with the
	// replace operation, so its further rows go with sum.
	replaced bool
	// rejected: the API refused the unit (400); its rest is skipped.
	rejected bool
	// held: rows and bytes are what CloudZero holds for the unit after
	// this job (replace modes), or what the job added (sum mode).
	held        bool
	rows, bytes int64
	// finished: every record was streamed. buffered counts the unit's rows
	// in packer.buf, dropped its refused rows not yet rejected through the
	// job. A finished, replaced unit with neither is reported Done.
	finished bool
	buffered int
	dropped  int
	done     bool
}

// rowDrop is a record refused alone after it left the Records callback
// (413 on a single row, 400 in sum mode). It is rejected through the job
// once the unit can be streamed again.
type rowDrop struct {
	seg    int
	ref    workers.RecordRef
	reason string
}

// packer builds and sends the requests of one job. Memory is bounded by the
// body limit: buf holds at most one body's worth of rows (whole earlier
// units waiting for company, then the unit being streamed), plus the row
// that did not fit. Where a body ends is chunk.Packer's call (pk): each
// unit is a group of it, so whole hours waiting go before an hour is split.
//
// Rows in buf are each preceded by a comma, so any run of rows is a slice
// of buf and its body is envelope + run minus the first comma. buf starts
// with headRoom spare bytes: a body of the first rows is written in place,
// its envelope in front of them (over the first comma) and "]}" after.
type packer struct {
	d   *Destination
	job workers.Job

	rejectRows bool // sum mode: a refused request rejects its records, not units

	month     time.Time
	monthText string // "2024-08-01T00:00:00Z"
	scope     string // idempotency scope
	segs      []segment
	buf       []byte
	rows      []rowMeta
	pk        chunk.Packer // sizes of rows: rows[pk.Grouped():] belong to the unit being streamed, rows[:pk.Grouped()] are whole earlier units
	chunk     int          // requests so far in this job: the idempotency chunk index
	drops     []rowDrop
	isolated  int    // rows refused alone by a 400 or 422 in this job (isolate)
	dig, open []byte // scratch for digest and sendRows
}

func newPacker(d *Destination, job workers.Job) *packer {
	return &packer{d: d, job: job, rejectRows: d.mode == ModeSum}
}

// release gives the packer's buffer back to the pool (no transport holds
// it: sendRows leaves one that is still read and takes a copy).
func (p *packer) release() {
	p.pk.Release()
	if p.buf != nil {
		b := p.buf[:0]
		p.buf = nil
		bodyPool.Put(&b)
	}
}

// replaceOp is the operation that replaces u: replace_hourly for one UTC
// hour, replace_drop for one UTC month.
func replaceOp(u workers.Unit) (string, error) {
	start := u.Start.UTC()
	switch {
	case start.Truncate(time.Hour).Equal(start) && u.End.Sub(start) == time.Hour:
		return opReplaceHourly, nil
	case monthOf(start).Equal(start) && u.End.Equal(start.AddDate(0, 1, 0)):
		return opReplaceDrop, nil
	}
	return "", fmt.Errorf("cloudzero: unit %s [%s, %s) is neither a UTC hour nor a UTC month: no billing_drops operation replaces it",
		u.Key, u.Start.Format(time.RFC3339), u.End.Format(time.RFC3339))
}

func (p *packer) startMonth(month time.Time, scope string) {
	p.month, p.monthText, p.scope = month, month.Format(time.RFC3339), scope
	p.segs = p.segs[:0]
	if p.buf == nil {
		p.buf = getBody(min(p.d.maxBody, 1<<20) + headRoom)
	}
	p.buf, p.rows = p.buf[:headRoom], p.rows[:0]
	p.pk.Reset(p.d.maxBody, 0, 1) // the envelope follows the operation: see full
}

// replaceMonth replaces units (all in month, in time order).
func (p *packer) replaceMonth(ctx context.Context, month time.Time, units []workers.Unit) error {
	p.startMonth(month, "m"+month.Format("2006-01"))
	for _, u := range units {
		op, err := replaceOp(u)
		if err != nil {
			return err
		}
		p.segs = append(p.segs, segment{unit: u, op: op})
	}
	for si := range p.segs {
		if err := p.streamUnit(ctx, si); err != nil {
			return err
		}
	}
	if err := p.flushAll(ctx); err != nil {
		return err
	}
	if err := p.rejectDrops(ctx); err != nil {
		return err
	}
	p.settle()
	// A unit whose every row was refused as too large was never replaced:
	// clear what CloudZero held for it.
	for si := range p.segs {
		if s := &p.segs[si]; !s.replaced && !s.rejected {
			if err := p.beginUnit(ctx, si); err != nil {
				return err
			}
			if err := p.addPlaceholder(ctx, si); err != nil {
				return err
			}
			if err := p.endUnit(ctx, si); err != nil {
				return err
			}
		}
	}
	if err := p.flushAll(ctx); err != nil {
		return err
	}
	p.recordUsage(ctx)
	return nil
}

// settle reports Done for every unit whose whole sequence succeeded, so a
// failure later in the job does not make the pool redo it. A unit with a
// refused row still to reject is not done until the row is rejected:
// settling it first would lose the row.
func (p *packer) settle() {
	if p.rejectRows {
		return // an Append job has no units to settle
	}
	for si := range p.segs {
		s := &p.segs[si]
		if s.finished && s.replaced && !s.rejected && !s.done && s.buffered == 0 && s.dropped == 0 {
			s.done = true
			p.job.Done(s.unit)
		}
	}
}

// streamUnit encodes the records of segs[si] into buf, sending requests as
// the buffer fills.
func (p *packer) streamUnit(ctx context.Context, si int) error {
	if err := p.beginUnit(ctx, si); err != nil {
		return err
	}
	err := p.job.EncodedRecords(ctx, p.segs[si].unit, func(ref workers.RecordRef, r *messages.UsageRecord, row []byte, err error) error {
		return p.addEncoded(ctx, si, ref, r, row, err)
	})
	if err != nil && !errors.Is(err, errUnitRejected) {
		return err
	}
	s := &p.segs[si]
	s.finished = true
	if s.rejected {
		p.dropFrom(p.pk.Grouped())
		return nil
	}
	if !s.replaced && len(p.rows) == p.pk.Grouped() {
		// No deliverable record: replace the unit with the placeholder.
		if err := p.addPlaceholder(ctx, si); err != nil {
			return err
		}
	}
	return p.endUnit(ctx, si)
}

// beginUnit starts buffering segs[si]. Only whole hours share a request: a
// month is sent on its own.
func (p *packer) beginUnit(ctx context.Context, si int) error {
	if p.segs[si].op != opReplaceHourly {
		if err := p.flushAll(ctx); err != nil {
			return err
		}
	}
	p.pk.Group()
	return nil
}

// endUnit follows the last record of segs[si]: a month, or the rest of an
// hour whose first part went already (with sum), is sent now and alone; a
// whole hour waits in the buffer for the next ones.
func (p *packer) endUnit(ctx context.Context, si int) error {
	if s := &p.segs[si]; s.op != opReplaceHourly || s.replaced {
		return p.flushAll(ctx)
	}
	return nil
}

// add encodes one record. A record that cannot be mapped, or that is too
// large alone, is rejected on its own.
func (p *packer) add(ctx context.Context, si int, ref workers.RecordRef, r *messages.UsageRecord) error {
	if p.segs[si].rejected {
		return errUnitRejected
	}
	start := len(p.buf)
	p.buf = append(p.buf, ',')
	var err error
	if p.buf, err = p.d.EncodeRow(p.buf, r); err != nil {
		p.buf = p.buf[:start]
		p.job.Reject(ref, r, err.Error())
		return nil
	}
	return p.added(ctx, si, ref, r)
}

// addEncoded is add for a record encoded already (EncodedRecords): row,
// or the mapping's error.
func (p *packer) addEncoded(ctx context.Context, si int, ref workers.RecordRef, r *messages.UsageRecord, row []byte, err error) error {
	if p.segs[si].rejected {
		return errUnitRejected
	}
	if err != nil {
		p.job.Reject(ref, r, err.Error())
		return nil
	}
	p.buf = append(p.buf, ',')
	p.buf = append(p.buf, row...)
	return p.added(ctx, si, ref, r)
}

// added books the row just appended to buf and sends what no longer fits.
func (p *packer) added(ctx context.Context, si int, ref workers.RecordRef, r *messages.UsageRecord) error {
	p.book(rowMeta{end: len(p.buf), seg: int32(si), ref: ref})
	switch err := p.fit(ctx, si); {
	case errors.Is(err, errRowTooLarge):
		size := p.size(len(p.rows)-1, len(p.rows))
		p.dropFrom(len(p.rows) - 1)
		p.job.Reject(ref, r, fmt.Sprintf("the row alone makes a %d-byte request body, over max_body_bytes %d", size, p.d.maxBody))
		return nil
	default:
		return err
	}
}

// addPlaceholder adds the placeholder row of segs[si].
func (p *packer) addPlaceholder(ctx context.Context, si int) error {
	p.buf = append(p.buf, ',')
	p.buf = AppendPlaceholder(p.buf, p.segs[si].unit.Start)
	p.book(rowMeta{end: len(p.buf), seg: int32(si), placeholder: true})
	if err := p.fit(ctx, si); err != nil {
		if errors.Is(err, errRowTooLarge) {
			return fmt.Errorf("cloudzero: max_body_bytes %d cannot hold the placeholder row", p.d.maxBody)
		}
		return err
	}
	return nil
}

// book notes the row just appended to buf.
func (p *packer) book(m rowMeta) {
	p.rows = append(p.rows, m)
	p.segs[m.seg].buffered++
	p.pk.Add(m.end - p.rowStart(len(p.rows)-1) - 1) // the row without its comma
}

// full reports whether the rows in buf make a body over the limit, with
// the envelope of the operation they would be sent with.
func (p *packer) full() bool {
	if len(p.rows) == 0 {
		return false
	}
	p.pk.SetEnvelope(envelope(p.opFor(0, len(p.rows))))
	return p.pk.Full()
}

// fit sends requests until buf holds at most one body: first the whole
// earlier units waiting in it, then, if the unit being streamed (segs[si])
// is over the limit on its own, all its rows but the newest.
func (p *packer) fit(ctx context.Context, si int) error {
	for p.full() {
		r, tooLarge := p.pk.Flush()
		if tooLarge {
			return errRowTooLarge
		}
		if err := p.flushPrefix(ctx, r.Len()); err != nil {
			return err
		}
		if p.segs[si].rejected {
			p.dropFrom(p.pk.Grouped())
			return errUnitRejected
		}
	}
	return nil
}

func (p *packer) flushAll(ctx context.Context) error {
	if len(p.rows) == 0 {
		return nil
	}
	return p.flushPrefix(ctx, p.pk.FlushAll().Len())
}

// flushPrefix sends rows[:n] (which pk has handed back) and removes them
// from the buffer.
func (p *packer) flushPrefix(ctx context.Context, n int) error {
	if err := p.sendRange(ctx, 0, n); err != nil {
		return err
	}
	for _, m := range p.rows[:n] {
		p.segs[m.seg].buffered--
	}
	off := p.rows[n-1].end
	p.buf = p.buf[:headRoom+copy(p.buf[headRoom:], p.buf[off:])]
	p.rows = p.rows[:copy(p.rows, p.rows[n:])]
	for i := range p.rows {
		p.rows[i].end -= off - headRoom
	}
	p.settle()
	return nil
}

// dropFrom forgets rows[i:].
func (p *packer) dropFrom(i int) {
	for _, m := range p.rows[i:] {
		p.segs[m.seg].buffered--
	}
	p.buf = p.buf[:p.rowStart(i)]
	p.rows = p.rows[:i]
	p.pk.Truncate(i)
}

func (p *packer) rowStart(i int) int {
	if i == 0 {
		return headRoom
	}
	return p.rows[i-1].end
}

// opFor is the operation for rows[a:b]: the replace operation, unless they
// are the rest of a unit whose first part was already replaced.
func (p *packer) opFor(a, b int) string {
	s := p.rows[a].seg
	if p.segs[s].replaced && p.rows[b-1].seg == s {
		return opSum
	}
	return p.segs[s].op
}

// sendRows sends rows[a:b]. A run from the first row is sent from buf
// itself: the envelope goes in front of it and "]}" after it, and buf is
// not touched again until the transport is done with it. Other runs (the
// halves of a split) are copied out.
func (p *packer) sendRows(ctx context.Context, op string, a, b int) error {
	start, end := p.rowStart(a), p.rows[b-1].end
	digest := p.digest(op, a, b)
	if n := p.live(a, b); n != b-a {
		return p.post(ctx, op, p.liveBody(op, a, b), n, digest)
	}
	if a != 0 {
		return p.post(ctx, op, p.body(op, p.buf[start:end]), b-a, digest)
	}
	opening := p.appendOpening(p.open[:0], op)
	p.open = opening
	from := start + 1 - len(opening)
	var saved [2]byte
	tail := end+2 <= len(p.buf)
	if tail {
		copy(saved[:], p.buf[end:end+2])
	} else {
		p.buf = append(p.buf[:end], ']', '}')
	}
	copy(p.buf[from:], opening)
	p.buf[end], p.buf[end+1] = ']', '}'
	body := &sharedBody{buf: p.buf[from : end+2], released: make(chan struct{})}
	body.refs.Store(1)
	body.refs.Add(1) // the packer's, dropped once the transport is done
	err := p.post(ctx, op, body, b-a, digest)
	if !body.wait(ctx) {
		// The transport still reads it: leave it that buffer and go on
		// with a copy.
		nb := getBody(cap(p.buf))
		p.buf = append(nb[:0], p.buf...)
	}
	if tail {
		copy(p.buf[end:end+2], saved[:])
	} else {
		p.buf = p.buf[:end]
	}
	return err
}

// sendRange sends rows[a:b] as one request and handles what the API says:
// a 413 splits the run (chunk.Bisect), a 400 refuses its units (its
// records in sum mode); an auth or transient failure is returned and ends
// the job.
func (p *packer) sendRange(ctx context.Context, a, b int) error {
	return chunk.Bisect(chunk.Range{From: a, To: b}, func(r chunk.Range) error {
		return p.sendOnce(ctx, r.From, r.To)
	}, p.split, p.tooLargeAlone)
}

// sendOnce sends rows[a:b] as one request. A 413 is returned for
// chunk.Bisect to split the run.
func (p *packer) sendOnce(ctx context.Context, a, b int) error {
	if p.allRejected(a, b) {
		return nil
	}
	op := p.opFor(a, b)
	err := p.sendRows(ctx, op, a, b)
	if err == nil {
		p.applied(a, b, op)
		return nil
	}
	var we *workers.Error
	if errors.As(err, &we) {
		switch we.Class {
		case workers.ClassTooLarge:
			if b-a > 1 {
				p.job.Log().Info("cloudzero: body too large for the API, splitting it", "rows", b-a, "bytes", p.size(a, b), "message", we.Message)
			}
		case workers.ClassReject:
			return p.isolate(ctx, a, b, we)
		}
	}
	return err
}

// applied notes that rows[a:b] were stored with op.
func (p *packer) applied(a, b int, op string) {
	last := int32(-1)
	for i := a; i < b; i++ {
		m := p.rows[i]
		if m.skip {
			continue
		}
		s := &p.segs[m.seg]
		if m.seg != last {
			last = m.seg
			if op != opSum {
				s.rows, s.bytes = 0, 0 // the unit now holds this request's rows
			}
			s.replaced, s.held = true, true
		}
		s.rows++
		s.bytes += int64(m.end - p.rowStart(i) - 1)
	}
}

// split picks where chunk.Bisect cuts rows[a:b] (b-a >= 2): whole units
// stay together as long as the run holds more than one, so the unit
// boundary nearest the middle byte when there is one, else the row
// boundary nearest it.
func (p *packer) split(r chunk.Range) int {
	a, b := r.From, r.To
	mid := p.rowStart(a) + (p.rows[b-1].end-p.rowStart(a))/2
	best := -1
	for i := a + 1; i < b; i++ {
		if p.rows[i].seg != p.rows[i-1].seg && (best < 0 || abs(p.rowStart(i)-mid) < abs(p.rowStart(best)-mid)) {
			best = i
		}
	}
	if best > 0 {
		return best
	}
	i := a + 1 + sort.Search(b-a-1, func(k int) bool { return p.rowStart(a+1+k) >= mid })
	return min(i, b-1)
}

func abs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}

// sumPart appends the records of an Append job with sum, one month per
// request (a part is one UTC hour, so normally one month in all).
func (p *packer) sumPart(ctx context.Context) error {
	var drops []rowDrop
	endMonth := func() error {
		if p.monthText == "" {
			return nil
		}
		if err := p.flushAll(ctx); err != nil {
			return err
		}
		p.recordUsage(ctx)
		drops = append(drops, p.drops...)
		p.drops = p.drops[:0]
		return nil
	}
	err := p.job.Records(ctx, workers.Unit{}, func(ref workers.RecordRef, r *messages.UsageRecord) error {
		if r.ChargePeriodStart.IsZero() {
			_, err := AppendRow(nil, r)
			p.job.Reject(ref, r, err.Error())
			return nil
		}
		if m := monthOf(r.ChargePeriodStart); p.monthText == "" || !m.Equal(p.month) {
			if err := endMonth(); err != nil {
				return err
			}
			p.startMonth(m, "part")
			p.segs = append(p.segs, segment{unit: monthUnit(m), op: opSum})
		}
		return p.add(ctx, 0, ref, r)
	})
	if err != nil {
		return err
	}
	if err := endMonth(); err != nil {
		return err
	}
	if len(drops) == 0 {
		return nil
	}
	refs := make(map[workers.RecordRef]string, len(drops))
	for _, dr := range drops {
		refs[dr.ref] = dr.reason
	}
	return p.rejectRefs(ctx, workers.Unit{}, refs)
}
