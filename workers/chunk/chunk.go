// Package chunk is the delivery mechanics the destinations share for
// bodies made of records: packing records into bodies under a byte limit,
// splitting a body the receiver refuses as too large (413) in two until the
// halves pass, and rejecting a record that is too large on its own.
//
// Packer is a small state machine in the style of Benthos's batch policy
// (internal/component/output/batcher: Add says whether to flush, Flush
// hands back the batch): the caller keeps the records and their bytes; the
// Packer keeps only their sizes and says which run of them to send next.
// Items are numbered from 0 in the order they are added, so a Range names
// the caller's items directly.
//
// A body is an envelope (Envelope bytes when empty: "[]", or a JSON object
// around an array) holding its items with Sep bytes between two of them
// (a comma). Items may be grouped (an hour's rows): a flush forced by the
// limit sends the whole groups waiting before it splits the group being
// filled.
package chunk

import (
	"errors"
	"sync"

	"github.com/usagefleet/usagefleet/workers"
)

// Range is the items [From, To), numbered in the order they were added.
// Bytes is the size of the body they make (envelope included), when the
// Packer hands the range back.
type Range struct {
	From, To int
	Bytes    int
}

// Len is the number of items in r.
func (r Range) Len() int { return r.To - r.From }

// Packer decides where bodies end. The zero value is not usable: call
// Reset (or use New) first.
type Packer struct {
	limit, sep, envelope int

	next    int   // number the next added item gets
	pending []int // sizes of the items not yet handed back, oldest first
	bytes   int   // their bytes with the separators between them
	grouped int   // pending[:grouped] are whole groups
}

// New is a Packer for bodies of at most limit bytes, envelope bytes when
// empty, with sep bytes between two items.
func New(limit, envelope, sep int) *Packer {
	p := &Packer{}
	p.Reset(limit, envelope, sep)
	return p
}

// Reset starts over with no pending item and numbering from 0, keeping the
// Packer's memory (or taking some a released Packer gave back).
func (p *Packer) Reset(limit, envelope, sep int) {
	pending := p.pending[:0]
	if pending == nil {
		if s, _ := sizesPool.Get().(*[]int); s != nil {
			pending = (*s)[:0]
		}
	}
	*p = Packer{limit: limit, sep: sep, envelope: envelope, pending: pending}
}

// sizesPool keeps the pending sizes of released Packers: a CloudZero job
// books some ten thousand rows a body, and growing that slice anew for
// every job added to the garbage that empties the body buffers' pool.
var sizesPool sync.Pool // *[]int

// Release gives the Packer's memory back for another Packer to use. Reset
// it before using it again.
func (p *Packer) Release() {
	if cap(p.pending) > 0 {
		s := p.pending[:0]
		sizesPool.Put(&s)
	}
	p.pending = nil
}

// SetEnvelope changes the envelope's size, for a body whose envelope
// depends on what it holds (CloudZero's operation name). It applies to
// the next Full or Flush.
func (p *Packer) SetEnvelope(n int) { p.envelope = n }

// Add books the next item, of size bytes, as pending, and reports whether
// the pending items are over the limit: then Flush now, and again while
// Full says so.
func (p *Packer) Add(size int) bool {
	if len(p.pending) > 0 {
		p.bytes += p.sep
	}
	p.bytes += size
	p.pending = append(p.pending, size)
	p.next++
	return p.Full()
}

// Full reports whether the pending items make a body over the limit.
func (p *Packer) Full() bool {
	return len(p.pending) > 0 && p.envelope+p.bytes > p.limit
}

// Flush hands back the range to send now and forgets it. When the pending
// items are over the limit (Full) that is the whole groups waiting if
// there are any, else every pending item but the newest; when the newest is
// the only one left and still over the limit, it is handed back alone with
// tooLarge set: it fits in no body, reject it. When they are not over the
// limit, Flush hands back all of them (the end of a run). The range is
// empty when nothing is pending.
func (p *Packer) Flush() (r Range, tooLarge bool) {
	n := len(p.pending)
	if p.Full() {
		switch {
		case p.grouped > 0:
			n = p.grouped
		case n == 1:
			tooLarge = true
		default:
			n--
		}
	}
	return p.take(n), tooLarge
}

// FlushAll hands back every pending item, whatever the limit: the end of a
// run, or of a group that must go on its own.
func (p *Packer) FlushAll() Range { return p.take(len(p.pending)) }

// take hands back the oldest n pending items.
func (p *Packer) take(n int) Range {
	first := p.next - len(p.pending)
	r := Range{From: first, To: first + n, Bytes: p.envelope}
	if n == 0 {
		return r
	}
	for _, s := range p.pending[:n] {
		r.Bytes += s
	}
	r.Bytes += (n - 1) * p.sep
	p.bytes -= r.Bytes - p.envelope
	if n < len(p.pending) {
		p.bytes -= p.sep
	}
	p.pending = p.pending[:copy(p.pending, p.pending[n:])]
	p.grouped = max(0, p.grouped-n)
	return r
}

// Group marks the items pending so far as whole groups: a Flush forced by
// the limit sends them, together, before it splits the items added after.
func (p *Packer) Group() { p.grouped = len(p.pending) }

// Pending is the number of items not yet handed back; Grouped how many of
// them, the oldest, are whole groups.
func (p *Packer) Pending() int { return len(p.pending) }

// Grouped: see Pending.
func (p *Packer) Grouped() int { return p.grouped }

// Truncate forgets every pending item but the oldest n (they will not be
// sent: the caller dropped them from its slice). The next item added takes
// the number of the first one forgotten.
func (p *Packer) Truncate(n int) {
	if n >= len(p.pending) {
		return
	}
	p.next -= len(p.pending) - n
	for i := len(p.pending) - 1; i >= n; i-- {
		p.bytes -= p.pending[i]
		if i > 0 {
			p.bytes -= p.sep
		}
	}
	p.pending = p.pending[:n]
	p.grouped = min(p.grouped, n)
}

// Bisect sends r with send. When send fails with a *workers.Error of class
// ClassTooLarge (the receiver answered 413), r is cut in two at split(r)
// (the middle item when split is nil; it must return a cut strictly inside
// r) and each half is sent the same way, the first half first, so items
// reach the receiver in order. An item refused alone goes to alone; its
// error (nil to go on) ends the bisection. Any other error of send ends it
// and is returned.
func Bisect(r Range, send func(Range) error, split func(Range) int, alone func(item int, tooLarge *workers.Error) error) error {
	if r.Len() <= 0 {
		return nil
	}
	err := send(r)
	var we *workers.Error
	if err == nil || !errors.As(err, &we) || we.Class != workers.ClassTooLarge {
		return err
	}
	if r.Len() == 1 {
		return alone(r.From, we)
	}
	mid := r.From + r.Len()/2
	if split != nil {
		mid = split(r)
	}
	if err := Bisect(Range{From: r.From, To: mid}, send, split, alone); err != nil {
		return err
	}
	return Bisect(Range{From: mid, To: r.To}, send, split, alone)
}
