package input

import (
	"bufio"
	"bytes"
	"encoding/csv"
	"errors"
	"io"
	"math"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/usagefleet/usagefleet/messages"
)

// A CSV file is read in parallel: one goroutine (the splitter) cuts the
// byte stream into chunks of whole records, GOMAXPROCS workers parse,
// check and build the records of a chunk each, and the caller's goroutine
// takes the chunks' rows and problems in file order. Parsing, not reading,
// is the cost, and this spreads it over the cores; the rows and problems
// are exactly those of reading the file in one pass (the tests compare).
//
// Where a record ends depends on the quotes: a newline inside a quoted
// field is data. The splitter cuts only at a newline after an even number
// of quotes since the last cut, which is where records end in any file
// whose quotes are well formed. Where they are not (a bare quote, a quoted
// field never closed), a chunk's parse meets a quote error, or the
// splitter finds no such newline within csvChunkMax; from that chunk on the
// file is read in one pass, as it always was, so a malformed file gets the
// very same rows and errors, only not in parallel. The chunks before it
// were cut right: each parsed to its end without a quote error, starting
// where a record starts.
var (
	csvChunkTarget = 256 << 10 // a chunk is cut at the first good newline past this
	csvChunkMax    = 4 << 20   // no good newline in this much: read on in one pass
)

// csvChunk is a piece of a CSV input that starts where a record starts
// (unless raw), and what a worker made of it.
type csvChunk struct {
	data []byte
	line int   // the physical line data starts on
	raw  bool  // not cut where a record ends: only for the one-pass reader
	err  error // reading stopped after data with this (the last chunk)

	ready chan struct{} // closed when a worker is done (or skipped it)
	rows  []Row
	enc   *EncodedRows // the rows, when the reader encodes them
	c     collector
	clean bool // parsed to the end without a quote error
}

// csvSplit runs the splitter and the workers of one CSV input.
type csvSplit struct {
	r       io.Reader
	file    string
	order   chan *csvChunk // every chunk, in file order
	jobs    chan *csvChunk // chunks for the workers
	start   chan bool      // after the first chunk: parse in parallel?
	stop    chan struct{}  // closed by the reader when it returns
	seq     atomic.Bool    // reading in one pass from here: no more jobs
	free    chan []byte
	freeRow chan []Row
	freeEnc chan *EncodedRows
	wg      sync.WaitGroup

	cols     []column
	headerOK bool
	fields   int
	ext      []string                 // the header's extension names, sorted
	enc      func(*EncodedRows) error // set: rows are encoded (ReadEncoded)
}

func readCSV(c *collector, r io.Reader, lim *LimitReader, fn func(Row) error) error {
	workers := runtime.GOMAXPROCS(0)
	s := &csvSplit{
		r: r, file: c.file,
		order:   make(chan *csvChunk, workers+1),
		jobs:    make(chan *csvChunk, workers),
		start:   make(chan bool, 1),
		stop:    make(chan struct{}),
		free:    make(chan []byte, 2*workers+4),
		freeRow: make(chan []Row, 2*workers+4),
		freeEnc: make(chan *EncodedRows, 2*workers+4),
	}
	s.wg.Add(1)
	go s.split()
	// Nothing may read r once readCSV returns (the caller reads on, to
	// hash the rest): stop the splitter and wait for it and the workers.
	defer func() {
		close(s.stop)
		s.wg.Wait()
	}()
	first := <-s.order
	if first.raw {
		s.start <- false
		return s.onePass(c, first, true, fn)
	}
	cr := csv.NewReader(bytes.NewReader(first.data))
	cr.ReuseRecord = true
	header, err := cr.Read()
	if err != nil {
		// No header in the first chunk, or a bad one: the one-pass reader
		// says which as it always did.
		s.start <- false
		return s.onePass(c, first, true, fn)
	}
	headerLine, _ := cr.FieldPos(0)
	s.cols, s.headerOK = parseHeader(c, headerLine, header)
	s.fields = len(header)
	if ext, ok := encodedExt(s.cols); ok && c.enc != nil {
		s.ext, s.enc = ext, c.enc
	}
	cr.FieldsPerRecord = s.fields
	// The rest of the first chunk is read here while the workers start
	// on the next ones.
	s.start <- true
	for range workers {
		s.wg.Add(1)
		go s.work()
	}
	off := int(cr.InputOffset())
	rest := &csvChunk{data: first.data[off:], line: first.line + bytes.Count(first.data[:off], []byte{'\n'}), err: first.err, c: collector{file: c.file}}
	var rows []Row
	sink := rowSink{rows: &rows}
	if s.enc != nil {
		rest.enc = s.newEncoded(len(rest.data))
		sink = rowSink{enc: rest.enc}
	}
	rest.clean, err = csvRecords(&rest.c, cr, s.cols, s.headerOK, s.fields, first.line-1, true, nil, sink)
	if err != nil {
		return err
	}
	if !rest.clean {
		// The header was read from where the file starts: the rest
		// starts where a record does.
		s.seq.Store(true)
		return s.onePass(c, rest, false, fn)
	}
	c.merge(&rest.c)
	if err := s.deliver(rest, rows, fn); err != nil {
		return err
	}
	if first.err != nil {
		return first.err
	}
	for ch := range s.order {
		if !ch.raw {
			<-ch.ready
		}
		if ch.raw || !ch.clean {
			s.seq.Store(true)
			return s.onePass(c, ch, false, fn)
		}
		c.merge(&ch.c)
		if err := s.deliver(ch, ch.rows, fn); err != nil {
			return err
		}
		if ch.err != nil {
			return ch.err
		}
		s.recycle(ch)
	}
	return nil
}

// deliver gives a merged chunk's good rows: rows to fn, or its encoded
// rows (the receiver's to keep) to s.enc.
func (s *csvSplit) deliver(ch *csvChunk, rows []Row, fn func(Row) error) error {
	if ch.enc != nil {
		if len(ch.enc.Rows) == 0 {
			return nil
		}
		e := ch.enc
		ch.enc = nil
		return s.enc(e)
	}
	for i := range rows {
		if err := fn(rows[i]); err != nil {
			return err
		}
	}
	return nil
}

// csvOnePassHook, when set (by a test), is told the line the one-pass
// reader starts on.
var csvOnePassHook func(line int)

// recycle gives a merged chunk's buffers back.
func (s *csvSplit) recycle(ch *csvChunk) {
	clear(ch.rows)
	select {
	case s.freeRow <- ch.rows[:0]:
	default:
	}
	select {
	case s.free <- ch.data[:0]:
	default:
	}
}

// onePass reads from chunk from on in one pass (with the header first when
// header is set), as a CSV file was read before the splitter: the record
// limit, the line numbers and the errors of malformed quotes are its.
func (s *csvSplit) onePass(c *collector, from *csvChunk, header bool, fn func(Row) error) error {
	if csvOnePassHook != nil {
		csvOnePassHook(from.line)
	}
	ch := &chainReader{s: s, cur: from.data, err: from.err, last: from.err != nil}
	lim := NewLimitReader(ch, math.MaxInt64, "")
	lim.lines = from.line - 1
	cr := csv.NewReader(bufio.NewReaderSize(lim, 64<<10))
	cr.ReuseRecord = true
	off := from.line - 1
	cols, headerOK := s.cols, s.headerOK
	next := func() ([]string, error) {
		lim.Record(MaxRecordBytes+slack, "a CSV record longer than 16 MiB (MaxRecordBytes)")
		rec, err := cr.Read()
		lim.Record(-1, "")
		return rec, err
	}
	if header {
		rec, err := next()
		if errors.Is(err, io.EOF) {
			c.add(1, "", "no header row")
			return nil
		}
		if err != nil {
			var pe *csv.ParseError
			if errors.As(err, &pe) {
				c.add(pe.StartLine+off, "", "header: %v", pe.Err)
				return nil
			}
			return err
		}
		headerLine, _ := cr.FieldPos(0)
		cols, headerOK = parseHeader(c, headerLine+off, rec)
		if ext, ok := encodedExt(cols); ok && c.enc != nil {
			s.ext, s.enc = ext, c.enc
		}
	} else {
		cr.FieldsPerRecord = s.fields
	}
	sink := rowSink{fn: fn}
	if s.enc != nil {
		sink = rowSink{enc: s.newEncoded(0), flush: s.enc, next: s.newEncoded}
	}
	_, err := csvRecords(c, cr, cols, headerOK, len(cols), off, false, next, sink)
	return err
}

// rowSink is where csvRecords puts good rows: appended to rows (built in
// place: a record built on its own escaped to the heap, 700 bytes a row
// for the GC), encoded into enc (the record reused for the next row; with
// flush set, enc goes to flush every encodedBatch rows and at the end), or
// given to fn.
type rowSink struct {
	rows  *[]Row
	enc   *EncodedRows
	flush func(*EncodedRows) error
	next  func(size int) *EncodedRows // the batch after one flushed
	fn    func(Row) error
}

// put writes a good record into the sink's encoded rows, and hands the
// batch on (with flush set) once it holds encodedBatch rows.
func (s *rowSink) put(w *messages.RowWriter, r *messages.UsageRecord) error {
	if err := s.enc.add(w, r); err != nil {
		return err
	}
	if s.flush == nil || len(s.enc.Rows) < encodedBatch {
		return nil
	}
	if err := s.flush(s.enc); err != nil {
		return err
	}
	s.enc = s.next(0)
	return nil
}

// end hands on the last encoded rows (with flush set).
func (s *rowSink) end() error {
	if s.flush != nil && s.enc != nil && len(s.enc.Rows) > 0 {
		return s.flush(s.enc)
	}
	return nil
}

// newEncoded is an empty batch of encoded rows, one given back if any
// (Release), with room for about size bytes of CSV.
func (s *csvSplit) newEncoded(size int) *EncodedRows {
	return newEncodedRows(s.freeEnc, s.ext, size)
}

// newEncodedRows is an empty batch of encoded rows against the extension
// names ext: one given back to free if any, else a new one (with room for
// about size bytes) that Release gives back to free.
func newEncodedRows(free chan *EncodedRows, ext []string, size int) *EncodedRows {
	select {
	case e := <-free:
		return e
	default:
	}
	return &EncodedRows{Ext: ext, Vals: make([]byte, 0, size), free: free}
}

// encodedBatch is how many rows the one-pass reader encodes before it
// hands them on.
const encodedBatch = 512

// csvRecords reads cr's records to its end: good rows to fn, problems to c,
// at cr's line plus off. With stopAtQuote it stops at the first quote
// error and reports false (the chunk may be cut inside a quoted field).
// next, when set, reads a record (the one-pass reader's, with its limit).
//
// Good rows go to sink.
func csvRecords(c *collector, cr *csv.Reader, cols []column, headerOK bool, nfields, off int, stopAtQuote bool, next func() ([]string, error), sink rowSink) (bool, error) {
	t := newRowTaker(c, cols, headerOK, sink)
	return t.records(cr, nfields, off, stopAtQuote, next)
}

// rowTaker checks records (as their fields) and gives the good ones to
// its sink, row after row.
type rowTaker struct {
	c        *collector
	cols     []column
	headerOK bool
	sink     rowSink
	scratch  Row
	sc       *recordScratch // set when the record is reused (encoded rows)
	w        messages.RowWriter
}

func newRowTaker(c *collector, cols []column, headerOK bool, sink rowSink) *rowTaker {
	t := &rowTaker{c: c, cols: cols, headerOK: headerOK, sink: sink}
	if sink.enc != nil {
		t.sc = &recordScratch{}
	}
	return t
}

// records reads cr's records to its end (see csvRecords).
func (t *rowTaker) records(cr *csv.Reader, nfields, off int, stopAtQuote bool, next func() ([]string, error)) (bool, error) {
	if next == nil {
		next = cr.Read
	}
	for {
		eof, clean, err := t.one(cr, nfields, off, stopAtQuote, next)
		switch {
		case err != nil:
			return true, err
		case !clean:
			return false, nil
		case eof:
			return true, t.end()
		}
	}
}

// one reads one record with next and takes it, or reports its problem.
// It says whether cr was at its end, and (with stopAtQuote) false for
// clean at a quote error.
func (t *rowTaker) one(cr *csv.Reader, nfields, off int, stopAtQuote bool, next func() ([]string, error)) (eof, clean bool, err error) {
	rec, err := next()
	if errors.Is(err, io.EOF) {
		return true, true, nil
	}
	if err != nil {
		var pe *csv.ParseError
		if !errors.As(err, &pe) {
			return false, true, err
		}
		switch {
		case errors.Is(pe.Err, csv.ErrFieldCount):
			t.c.add(pe.StartLine+off, "", "row has %d fields, the header has %d", len(rec), nfields)
		case stopAtQuote && (errors.Is(pe.Err, csv.ErrQuote) || errors.Is(pe.Err, csv.ErrBareQuote)):
			return false, false, nil
		default:
			t.c.add(pe.StartLine+off, "", "%v", pe.Err)
		}
		return false, true, nil
	}
	line, _ := cr.FieldPos(0)
	return false, true, t.take(rec, line+off)
}

// end hands on the last encoded rows of a one-pass read.
func (t *rowTaker) end() error {
	return t.sink.end()
}

// take checks one record, its fields in rec, starting on line.
func (t *rowTaker) take(rec []string, line int) error {
	c, sink, rows, sc := t.c, &t.sink, t.sink.rows, t.sc
	row := &t.scratch
	switch {
	case rows != nil:
		*rows = append(*rows, Row{})
		row = &(*rows)[len(*rows)-1]
	case sc != nil:
		sc.reset(&t.scratch.Record)
	default:
		t.scratch = Row{}
	}
	row.Line = line
	ur := &row.Record
	c.beginRow()
	var tagCols map[string]string
	for i, col := range t.cols {
		setCell(c, line, col, rec[i], ur, &tagCols, sc)
	}
	mergeTagCols(c, line, t.cols, tagCols, ur)
	good := c.endRow(line, ur, true) && t.headerOK
	switch {
	case rows != nil && !good:
		*row = Row{}
		*rows = (*rows)[:len(*rows)-1]
	case rows != nil:
	case sc != nil && good:
		if err := sink.put(&t.w, ur); err != nil {
			return err
		}
	case sc == nil && good:
		if err := sink.fn(*row); err != nil {
			return err
		}
	}
	return nil
}

// work parses chunks until there are no more.
func (s *csvSplit) work() {
	defer s.wg.Done()
	for ch := range s.jobs {
		if s.seq.Load() {
			close(ch.ready)
			continue
		}
		ch.c = collector{file: s.file}
		sink := rowSink{rows: &ch.rows}
		if s.enc != nil {
			ch.enc = s.newEncoded(len(ch.data))
			sink = rowSink{enc: ch.enc}
		} else {
			select {
			case ch.rows = <-s.freeRow:
			default:
			}
		}
		t := newRowTaker(&ch.c, s.cols, s.headerOK, sink)
		if s.enc != nil {
			ch.clean = s.fastChunk(t, ch)
			close(ch.ready)
			continue
		}
		cr := csv.NewReader(bytes.NewReader(ch.data))
		cr.ReuseRecord = true
		cr.FieldsPerRecord = s.fields
		ch.clean, _ = t.records(cr, s.fields, ch.line-1, true, nil)
		close(ch.ready)
	}
}

// fastChunk reads a chunk's plain records with fastRecords and each other
// record (with the blank lines before it) with encoding/csv, and says
// whether the chunk was clean (no quote error).
func (s *csvSplit) fastChunk(t *rowTaker, ch *csvChunk) bool {
	data, off, line := ch.data, 0, ch.line
	for off < len(data) {
		var err error
		if off, line, err = fastRecords(t, data, off, s.fields, line); err != nil {
			// Only an encoded row's own error (none is expected): the
			// one-pass reader meets it again and stops the reading.
			return false
		}
		if off == len(data) {
			break
		}
		cr := csv.NewReader(bytes.NewReader(data[off:]))
		cr.ReuseRecord = true
		cr.FieldsPerRecord = s.fields
		_, clean, err := t.one(cr, s.fields, line-1, true, cr.Read)
		if !clean || err != nil {
			return false
		}
		n := int(cr.InputOffset())
		if n <= 0 {
			return false // no progress: the one-pass reader takes it
		}
		line += bytes.Count(data[off:off+n], []byte{'\n'})
		off += n
	}
	return true
}

// split reads s.r and sends it as chunks, to s.order and (once the
// header is known and good) to s.jobs.
func (s *csvSplit) split() {
	defer s.wg.Done()
	defer close(s.order)
	defer close(s.jobs)
	parallel := false
	sent := 0
	send := func(ch *csvChunk) bool {
		ch.ready = make(chan struct{})
		select {
		case s.order <- ch:
		case <-s.stop:
			return false
		}
		if sent == 0 {
			select {
			case parallel = <-s.start:
			case <-s.stop:
				return false
			}
		}
		sent++
		if sent == 1 || !parallel || ch.raw || s.seq.Load() {
			close(ch.ready)
			return true
		}
		select {
		case s.jobs <- ch:
			return true
		case <-s.stop:
			return false
		}
	}
	newBuf := func(n int) []byte {
		select {
		case b := <-s.free:
			if cap(b) >= n {
				return b
			}
		default:
		}
		return make([]byte, 0, max(n, min(csvChunkTarget, 1<<20)+64<<10))
	}
	var (
		buf  = newBuf(0)
		pos  int // buf[:pos] is scanned for cuts
		q    int // the parity of the quotes in buf[:pos]
		good int // buf[:good] ends at a good newline (0: none)
		raw  bool
		line = 1
		rerr error
	)
	emit := func(cut int) bool {
		ch := &csvChunk{data: buf[:cut], line: line, raw: raw}
		line += bytes.Count(ch.data, []byte{'\n'})
		nb := newBuf(len(buf) - cut)
		buf = append(nb, buf[cut:]...)
		pos, good, q = 0, 0, 0
		return send(ch)
	}
	for {
		for !raw {
			// Scan to the first good newline past the target.
			for good < csvChunkTarget {
				i := bytes.IndexByte(buf[pos:], '\n')
				if i < 0 {
					break
				}
				q ^= bytes.Count(buf[pos:pos+i], []byte{'"'}) & 1
				pos += i + 1
				if q == 0 {
					good = pos
				}
			}
			cut := 0
			switch {
			case good >= csvChunkTarget:
				cut = good
			case len(buf) >= csvChunkMax && good > 0:
				cut = good
			case len(buf) >= csvChunkMax:
				// No record ends in this much: the quotes are not well
				// formed (or a record is huge). The one-pass reader takes
				// it from here.
				raw = true
			}
			if cut == 0 {
				break
			}
			if !emit(cut) {
				return
			}
		}
		if raw && len(buf) >= csvChunkTarget {
			if !emit(len(buf)) {
				return
			}
		}
		if rerr != nil {
			if errors.Is(rerr, io.EOF) {
				rerr = nil
			}
			send(&csvChunk{data: buf, line: line, raw: raw, err: rerr})
			return
		}
		if len(buf) == cap(buf) {
			nb := newBuf(2 * cap(buf))
			buf = append(nb[:0], buf...)
		}
		var n int
		n, rerr = s.r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
	}
}

// chainReader reads the chunks' data in order, from one chunk on.
type chainReader struct {
	s    *csvSplit
	cur  []byte
	err  error
	last bool // cur is the last chunk's
}

func (c *chainReader) Read(p []byte) (int, error) {
	for len(c.cur) == 0 {
		if c.last {
			if c.err != nil {
				return 0, c.err
			}
			return 0, io.EOF
		}
		ch, ok := <-c.s.order
		if !ok {
			c.last = true
			continue
		}
		c.cur, c.err, c.last = ch.data, ch.err, ch.err != nil
	}
	n := copy(p, c.cur)
	c.cur = c.cur[n:]
	return n, nil
}

// merge adds o's problems after c's, as if c had met them.
func (c *collector) merge(o *collector) {
	for _, e := range o.errs {
		if len(c.errs) < MaxErrors {
			c.errs = append(c.errs, e)
		} else {
			c.extra++
		}
	}
	c.extra += o.extra
}
