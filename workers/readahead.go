package workers

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/usagefleet/usagefleet/messages"
)

// EncodedRecords: see Job. The rows are made by a read-ahead that walks
// the job's units in order, from the first one asked for: while the
// destination uploads one body, the parts of the next units are read,
// decoded and encoded. A unit asked for out of that order restarts the
// read-ahead there.
func (j *job) EncodedRecords(ctx context.Context, u Unit, fn func(ref RecordRef, r *messages.UsageRecord, row []byte, err error) error) error {
	re, ok := j.p.dest.(RowEncoder)
	if !ok {
		return fmt.Errorf("destination %s does not encode rows (RowEncoder)", j.destName())
	}
	enc := partEncoding{row: rowEncoding(re)}
	if pe, ok := re.(PartRowEncoder); ok {
		enc.part = pe
	}
	if j.part != nil && j.part.enc != nil { // encoded in its slot (appendrows.go)
		stats := map[uint64]*seqStat{}
		j.stats[""] = stats
		return j.part.enc.emit(u, stats, false, fn) // finishAppend sums the cost, once
	}
	if j.part != nil {
		return EncodeEach(ctx, j.Records, u, func(dst []byte, r *messages.UsageRecord) ([]byte, error) {
			dst, w, err := enc.row(dst, r)
			if st := j.stats[""][j.part.seq]; st != nil && err == nil {
				st.warnings += w
			}
			return dst, err
		}, fn)
	}
	stats := map[uint64]*seqStat{}
	j.stats[u.Key] = stats // a re-read starts the unit's count afresh
	if j.ra == nil || !j.ra.at(u) {
		j.stopReadAhead()
		units := []Unit{u}
		for i, x := range j.units {
			if x.Key == u.Key {
				units = j.units[i:]
				break
			}
		}
		j.ra = j.startReadAhead(ctx, units, enc)
	}
	return j.ra.take(u, stats, fn)
}

// PartRowEncoder is implemented by a RowEncoder that can write the row of
// a record read from a schema-2 part without its maps: r holds every value
// but Tags, TagTypes and Ext, which p gives (PartReader.Tags, ExtString).
// ok true says the row appended is byte for byte what EncodeRow (and
// EncodeRowWarnings, with no warning) writes for the whole record, and
// that the destination has no use for the maps of r (its EncodedRecords
// fn gets r as it is); ok false (dst unchanged) has the pool decode the
// whole record and encode it with EncodeRow(Warnings). A drain's read-ahead
// so builds no map per record.
type PartRowEncoder interface {
	EncodePartRow(dst []byte, r *messages.UsageRecord, p *messages.PartReader) (row []byte, ok bool)
}

// partEncoding is how the read-ahead encodes rows: row (rowEncoding), and
// part when the destination is a PartRowEncoder.
type partEncoding struct {
	row  func([]byte, *messages.UsageRecord) ([]byte, int, error)
	part PartRowEncoder
}

// stopReadAhead ends the read-ahead, if any, and takes over what it
// learnt (undecodable and included parts). The pool calls it once Deliver
// has returned.
func (j *job) stopReadAhead() {
	ra := j.ra
	if ra == nil {
		return
	}
	j.ra = nil
	ra.stop()
	for b := range ra.full { // unblock it: it ends at its next step
		ra.release(b.size)
		ra.free <- b
	}
	<-ra.done
	for range ahead {
		b := <-ra.free
		b.recs = b.recs[:0] // their maps stay, for reuse
		encodedParts.Put(b)
	}
	for seq, why := range ra.dead {
		j.dead[seq] = why
	}
	for seq, why := range ra.undecodable {
		j.dead[seq] = why
	}
	for seq := range ra.included {
		j.included[seq] = true
	}
}

// readAheadEncoders is how many parts are decoded and encoded at once:
// one per core the runtime uses (decoding and encoding are most of a
// drain's CPU, and one goroutine left the second core idle).
func readAheadEncoders() int { return max(1, runtime.GOMAXPROCS(0)) }

// The read-ahead holds at most readAheadBytes of parts (their payload and
// encoded rows) decoded and encoded ahead of the destination, and at most
// ahead parts: what bounds its memory. The bytes are what a destination
// with 5 MB bodies needs to have the next body ready while it sends one.
const (
	ahead          = 16
	readAheadBytes = 12 << 20
)

// readAhead reads, decodes and encodes the parts of units in order, on a
// goroutine of its own, handing them over through full. After the parts
// of each unit comes a part with last set.
type readAhead struct {
	units    []Unit
	next     int // the unit take serves next
	free     chan *encodedPart
	full     chan *encodedPart
	stop     context.CancelFunc
	done     chan struct{}
	err      error             // the scan's, once full is closed
	dead     map[uint64]string // the scan's refusals
	included map[uint64]bool   // forward's
	// undecodable: parts forward found undecodable.
	undecodable map[uint64]string

	// The scan passes each part to work (the encoders) and to order
	// (forward), which hands them over to full in the scan's order.
	work  chan *encodedPart
	order chan *encodedPart

	mu   sync.Mutex
	cond *sync.Cond
	held int // bytes of the parts handed over and not yet taken

	gets *getAhead // direct gets of the parts of units held whole, or nil
}

// At most getsAhead direct gets, of at most getsAheadBytes of payload
// (always one), are in flight or waiting to be taken ahead of the scan.
// Sixteen kept a drain's read-ahead fed where four left it waiting for
// the server (usage-worker bench: ~615k -> ~680k records/s).
const (
	getsAhead      = 16
	getsAheadBytes = 4 << 20
)

// getAhead fetches stored messages by sequence, a few ahead of the one
// taken, in order.
type getAhead struct {
	seqs    []uint64
	sizes   []int
	results []chan getResult
	i       int // the next to take

	mu    sync.Mutex
	cond  *sync.Cond
	n     int // gets issued and not yet taken
	bytes int // their payload
}

type getResult struct {
	raw *jetstream.RawStreamMsg
	err error
}

func newGetAhead(ctx context.Context, st jetstream.Stream, seqs []uint64, sizes []int) *getAhead {
	g := &getAhead{seqs: seqs, sizes: sizes, results: make([]chan getResult, len(seqs))}
	g.cond = sync.NewCond(&g.mu)
	for i := range g.results {
		g.results[i] = make(chan getResult, 1)
	}
	stop := context.AfterFunc(ctx, func() {
		g.mu.Lock()
		g.cond.Broadcast()
		g.mu.Unlock()
	})
	go func() {
		defer stop()
		for i, seq := range seqs {
			g.mu.Lock()
			for g.n > 0 && (g.n >= getsAhead || g.bytes+sizes[i] > getsAheadBytes) && ctx.Err() == nil {
				g.cond.Wait()
			}
			g.n++
			g.bytes += sizes[i]
			g.mu.Unlock()
			if ctx.Err() != nil {
				return
			}
			go func() {
				raw, err := st.GetMsg(ctx, seq)
				g.results[i] <- getResult{raw, err}
			}()
		}
	}()
	return g
}

// done releases the slot of get i, taken.
func (g *getAhead) done(i int) {
	g.mu.Lock()
	g.n--
	g.bytes -= g.sizes[i]
	g.cond.Broadcast()
	g.mu.Unlock()
}

// next is the sequence take returns next, or 0 when none is left.
func (g *getAhead) next() uint64 {
	if g.i >= len(g.seqs) {
		return 0
	}
	return g.seqs[g.i]
}

// skipTo drops the gets before seq: a unit whose parts were not all read
// (its fn failed) leaves its rest behind.
func (g *getAhead) skipTo(seq uint64) {
	for g.i < len(g.seqs) && g.seqs[g.i] != seq {
		found := false
		for _, s := range g.seqs[g.i:] {
			if s == seq {
				found = true
				break
			}
		}
		if !found {
			return
		}
		<-g.results[g.i]
		g.done(g.i)
		g.results[g.i] = nil
		g.i++
	}
}

func (g *getAhead) take(ctx context.Context) (*jetstream.RawStreamMsg, error) {
	select {
	case r := <-g.results[g.i]:
		g.results[g.i] = nil
		g.done(g.i)
		g.i++
		return r.raw, r.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// take passes the parts of u (the unit the read-ahead is at) to fn. When
// fn fails, the rest of u is skipped and the read-ahead goes on to the
// next unit.
func (ra *readAhead) take(u Unit, stats map[uint64]*seqStat, fn func(RecordRef, *messages.UsageRecord, []byte, error) error) error {
	var ferr error
	for b := range ra.full {
		last := b.last
		if !last && ferr == nil {
			ferr = b.emit(u, stats, true, fn)
		}
		ra.release(b.size)
		ra.free <- b
		if last {
			ra.next++
			return ferr
		}
	}
	// The scan failed (or was stopped) within u.
	ra.next = len(ra.units)
	if ferr != nil {
		return ferr
	}
	if ra.err != nil {
		return ra.err
	}
	return Transient(fmt.Errorf("rebuild %s: the read-ahead stopped", u.Key))
}

// reserve waits until n more bytes fit in the budget (one part always
// fits), or ctx ends.
func (ra *readAhead) reserve(ctx context.Context, n int) error {
	ra.mu.Lock()
	defer ra.mu.Unlock()
	for ra.held > 0 && ra.held+n > readAheadBytes {
		if err := ctx.Err(); err != nil {
			return err
		}
		ra.cond.Wait()
	}
	ra.held += n
	return nil
}

// adjust corrects the bytes held by n (an estimate replaced by the
// figure), without waiting.
func (ra *readAhead) adjust(n int) {
	ra.mu.Lock()
	ra.held += n
	ra.cond.Broadcast()
	ra.mu.Unlock()
}

// rowsPerPayloadByte estimates the bytes of rows a byte of schema-2
// payload makes (CBF rows: about 2; an estimate, corrected once encoded).
const rowsPerPayloadByte = 2

func (ra *readAhead) release(n int) {
	ra.mu.Lock()
	ra.held -= n
	ra.cond.Broadcast()
	ra.mu.Unlock()
}

func (j *job) startReadAhead(ctx context.Context, units []Unit, enc partEncoding) *readAhead {
	ctx, cancel := context.WithCancel(ctx)
	// The parts of the units this worker holds whole are fetched by direct
	// gets, a few at a time: one get after another left the read-ahead
	// waiting on the server's round trip for a third of a drain.
	var seqs []uint64
	for _, u := range units {
		if _, expected := j.unitSubjects(u); expected > 0 {
			if local := j.p.localSeqs(u.Key, j.covered); uint64(len(local)) == expected {
				seqs = append(seqs, local...)
			}
		}
	}
	sizes := j.p.payloadSizes(seqs)
	ra := &readAhead{
		units: units, free: make(chan *encodedPart, ahead), full: make(chan *encodedPart, ahead),
		work: make(chan *encodedPart, ahead), order: make(chan *encodedPart, ahead),
		done: make(chan struct{}), dead: map[uint64]string{}, included: map[uint64]bool{}, undecodable: map[uint64]string{},
	}
	ra.cond = sync.NewCond(&ra.mu)
	ra.stop = func() {
		cancel()
		ra.mu.Lock()
		ra.cond.Broadcast() // a reserve waiting for room sees the end
		ra.mu.Unlock()
	}
	for range ahead {
		b := encodedParts.Get().(*encodedPart)
		if b.ready == nil {
			b.ready = make(chan struct{}, 1)
		}
		ra.free <- b
	}
	if len(seqs) > 0 {
		ra.gets = newGetAhead(ctx, j.p.usage, seqs, sizes)
	}
	for range readAheadEncoders() {
		go ra.encodeParts(ctx, enc)
	}
	go ra.forward(ctx)
	go func() {
		defer close(ra.order)
		defer close(ra.work)
		for _, u := range units {
			if err := j.readUnit(ctx, ra, u); err != nil {
				ra.err = err
				return
			}
		}
	}()
	return ra
}

// at reports whether u is the unit the read-ahead serves next.
func (ra *readAhead) at(u Unit) bool {
	return ra.next < len(ra.units) && ra.units[ra.next].Key == u.Key
}

// send hands b over, or gives it back when the read-ahead is stopped.
func (ra *readAhead) send(ctx context.Context, b *encodedPart) error {
	select {
	case ra.full <- b:
		return nil
	case <-ctx.Done():
		ra.free <- b // never blocks: free has room for every part
		return ctx.Err()
	}
}

func (j *job) readUnit(ctx context.Context, ra *readAhead, u Unit) error {
	ctx, span := j.p.metrics.tracer.Start(ctx, "rebuild "+u.Key, trace.WithAttributes(attribute.Int64("usagefleet.covered_seq", int64(j.covered))))
	defer span.End()
	err := j.scan(ctx, u, ra.gets, ra.dead, ra.included, func(seq uint64, h nats.Header, data []byte, meta messages.PartMeta) error {
		var b *encodedPart
		select {
		case b = <-ra.free:
		case <-ctx.Done():
			return ctx.Err()
		}
		// A part counts against the budget from here: while it is
		// encoded as what its payload will likely make, then (forward) as
		// what it made. Counting it only once encoded let the parts
		// waiting for the encoders, and their payloads, grow the heap.
		est := len(data) * (1 + rowsPerPayloadByte)
		if err := ra.reserve(ctx, est); err != nil {
			ra.free <- b
			return err
		}
		b.seq, b.last, b.unit, b.h, b.data, b.meta, b.err, b.size = seq, false, u, h, data, meta, nil, est
		// Neither blocks: each holds at most the ahead parts there are.
		ra.work <- b
		ra.order <- b
		return nil
	})
	if err != nil {
		return err
	}
	var b *encodedPart
	select {
	case b = <-ra.free:
	case <-ctx.Done():
		return ctx.Err()
	}
	b.seq, b.last, b.size, b.recs, b.ends, b.err = 0, true, 0, b.recs[:0], b.ends[:0], nil
	b.ready <- struct{}{}
	ra.order <- b
	return nil
}

// encodeParts decodes and encodes the parts of work, each on its own,
// until work closes: readAheadEncoders of them run at once, so a drain
// decodes on every core, and forward puts the parts back in order.
func (ra *readAhead) encodeParts(ctx context.Context, enc partEncoding) {
	var pr *messages.PartReader
	if enc.part != nil {
		pr = partReaders.Get().(*messages.PartReader)
		defer func() { pr.Release(); partReaders.Put(pr) }()
	}
	for b := range ra.work {
		if ctx.Err() == nil {
			if pr == nil || !b.encodePart(enc, pr) {
				b.encode(enc.row)
			}
		}
		b.ready <- struct{}{}
	}
}

var partReaders = sync.Pool{New: func() any { return new(messages.PartReader) }}

// encodePart is encode for a schema-2 part and a PartRowEncoder: each
// record is decoded without its maps and its row written from the part;
// a record the encoder leaves is decoded whole and encoded as encode
// does. ok is false, and b to be encoded by encode, when the part is of
// another schema or does not decode, which encode then reports as it
// always has.
func (b *encodedPart) encodePart(enc partEncoding, pr *messages.PartReader) (ok bool) {
	if !pr.Reset(b.data, b.meta.Schema) || pr.Len() != b.meta.Records {
		return false
	}
	n := pr.Len()
	if cap(b.recs) < n {
		recs := make([]messages.UsageRecord, n)
		copy(recs, b.recs[:cap(b.recs)]) // their maps, for reuse
		b.recs = recs
	}
	b.recs = b.recs[:n]
	b.rows, b.ends, b.errs, b.warnings = b.rows[:0], b.ends[:0], b.errs[:0], 0
	if want := len(b.data) * rowsPerPayloadByte; cap(b.rows) < want {
		b.rows = make([]byte, 0, want) // the rows at once, not grown in steps
	}
	for i := range b.recs {
		r := &b.recs[i]
		if pr.Next(r) != nil {
			return false
		}
		if h := r.ChargePeriodStart.Truncate(time.Hour); !h.Equal(b.meta.Hour) {
			return false // decodeInto's error
		}
		if !b.unit.Contains(r.ChargePeriodStart) {
			b.ends = append(b.ends, skipped)
			continue
		}
		var ok bool
		if b.rows, ok = enc.part.EncodePartRow(b.rows, r, pr); ok {
			b.ends = append(b.ends, int32(len(b.rows)))
			continue
		}
		if pr.Full(r) != nil {
			return false
		}
		b.encodeRecord(enc.row, i)
	}
	return pr.Done()
}

// encode decodes b's payload and encodes the records of its unit.
func (b *encodedPart) encode(enc func([]byte, *messages.UsageRecord) ([]byte, int, error)) {
	var err error
	b.recs, err = decodeInto(b.recs[:0], b.h, b.data, b.meta)
	if err != nil {
		b.err = err
		return
	}
	b.rows, b.ends, b.errs, b.warnings = b.rows[:0], b.ends[:0], b.errs[:0], 0
	for i := range b.recs {
		r := &b.recs[i]
		if !b.unit.Contains(r.ChargePeriodStart) {
			b.ends = append(b.ends, skipped)
			continue
		}
		b.encodeRecord(enc, i)
	}
}

// encodeRecord encodes record i of b, in its unit, with enc.
func (b *encodedPart) encodeRecord(enc func([]byte, *messages.UsageRecord) ([]byte, int, error), i int) {
	start := len(b.rows)
	rows, w, err := enc(b.rows, &b.recs[i])
	if err != nil {
		b.rows = rows[:start]
		b.errs = append(b.errs, encodeErr{i, err})
		b.ends = append(b.ends, refused)
		return
	}
	b.rows = rows
	b.ends = append(b.ends, int32(len(b.rows)))
	b.warnings += w
}

// forward hands the parts over in the order the scan read them, each once
// it is encoded, until order closes; then it closes full. A part that
// cannot be decoded is dead (undecodable) and goes back. Once ctx ends
// every part goes back to free.
func (ra *readAhead) forward(ctx context.Context) {
	defer close(ra.done)
	defer close(ra.full)
	for b := range ra.order {
		<-b.ready
		if b.last {
			b.h, b.data = nil, nil
			ra.send(ctx, b)
			continue
		}
		est := b.size
		b.size = len(b.data) + len(b.rows)
		b.h, b.data = nil, nil
		if ctx.Err() != nil || b.err != nil {
			if ctx.Err() == nil {
				ra.undecodable[b.seq] = b.err.Error()
			}
			ra.release(est)
			ra.free <- b
			continue
		}
		ra.included[b.seq] = true
		ra.adjust(b.size - est) // what it made instead of the estimate
		if ra.send(ctx, b) != nil {
			ra.release(b.size)
		}
	}
}

// The end offset of a record not in the unit, or refused by the encoder.
const (
	skipped = -1
	refused = -2
)

// encodedParts keeps the buffers of EncodedRecords between rebuilds: a
// drain rebuilds unit after unit, and growing them anew each time was a
// quarter of its CPU.
var encodedParts = sync.Pool{New: func() any { return &encodedPart{} }}

// encodedPart is one part decoded and encoded ahead of EncodedRecords' fn,
// or (last) the end of a unit.
type encodedPart struct {
	seq  uint64
	last bool
	// What the scan read, for an encoder: the part's unit, headers,
	// payload and what its headers say; err is the decoding's.
	unit  Unit
	h     nats.Header
	data  []byte
	meta  messages.PartMeta
	err   error
	ready chan struct{} // an encoder is done with it (capacity 1)
	size  int           // payload and rows bytes, against readAheadBytes
	recs  []messages.UsageRecord
	rows  []byte
	ends  []int32 // per record: end of its encoding in rows, or skipped/refused
	errs  []encodeErr
	// warnings of the records encoded (RowWarner)
	warnings int
}

type encodeErr struct {
	index int
	err   error
}

// emit hands b's records and rows to fn, counting them (and with cost
// their cost) in stats.
func (b *encodedPart) emit(u Unit, stats map[uint64]*seqStat, cost bool, fn func(RecordRef, *messages.UsageRecord, []byte, error) error) error {
	st := &seqStat{warnings: b.warnings}
	run := costRun{sums: &st.cost}
	defer func() {
		run.flush()
		if st.records > 0 {
			stats[b.seq] = st
		}
	}()
	start, ei := 0, 0
	for i, end := range b.ends {
		if end == skipped {
			continue
		}
		r := &b.recs[i]
		st.records++
		if cost {
			run.add(r)
		}
		var err error
		if end == refused {
			err = b.errs[ei].err
			ei++
			if err := fn(RecordRef{Seq: b.seq, Index: i}, r, nil, err); err != nil {
				return err
			}
			continue
		}
		if err := fn(RecordRef{Seq: b.seq, Index: i}, r, b.rows[start:end], nil); err != nil {
			return err
		}
		start = int(end)
	}
	return nil
}
