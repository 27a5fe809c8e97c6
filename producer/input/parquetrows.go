package input

import (
	"errors"
	"fmt"
	"io"
	"runtime"
	"sync"

	"github.com/parquet-go/parquet-go"

	"github.com/usagefleet/usagefleet/messages"
)

// A Parquet file is read in parallel, as a CSV file is (csv.go), but
// without a goroutine of its own for the reading: each of GOMAXPROCS
// workers reads the next batch of rows (the reading is one worker at a
// time, in file order), then checks and builds that batch's rows while
// another worker reads the next; the caller's goroutine takes the
// batches' rows and problems in file order. A row group is read column by
// column (the values of pqBatchRows rows of each column the file has a
// use for), not row by row: assembling parquet.Rows was the reading's own
// cost, and a worker needs a row's cells, not a Row.
//
// Memory is the batches in flight, not the file: no worker reads a batch
// once the caller is pqWindow batches behind. A batch's byte arrays point
// into their pages (or a column chunk's dictionary): it holds those pages
// (parquet.Retain) until it is recycled, so their strings stay as they
// were until then (the encoded rows copy what they keep; records take
// copies of their own), and a page then goes back to parquet-go's pools.
// (Copying the byte arrays out instead was a fifth of the reading.)

// pqBatchRows is the rows of a batch (fewer at a row group's end): few
// enough that a batch's values (24 bytes a cell) stay in the cache of the
// core that read them while its rows are built; at 512, loading them was
// a tenth of the profile.
const pqBatchRows = 256

// pqBatch is pqBatchRows rows (or fewer) of a row group, as their columns'
// values, and what a worker made of them.
type pqBatch struct {
	line int // the file row before its first (rows are numbered from 1)
	n    int
	vals [][]parquet.Value // per leaf read: its values
	// starts, for a repeated leaf (a map's key and value), is where each
	// row's values start in vals (n+1 of them); nil for the others,
	// which have one value a row.
	starts [][]int32
	pages  []parquet.Page // the pages vals point into, held for it
	err    error          // reading stopped before these rows with err
	encErr error          // encoding a row failed (the reading stops there)

	ready chan struct{} // closed when a worker is done with it
	c     collector
	rows  []Row        // the good rows (records)
	enc   *EncodedRows // the good rows, encoded (ReadEncoded)
}

// reset empties b for another batch, keeping its buffers.
func (b *pqBatch) reset() {
	for i := range b.vals {
		clear(b.vals[i])
		b.vals[i] = b.vals[i][:0]
	}
	for i := range b.starts {
		if b.starts[i] != nil {
			b.starts[i] = b.starts[i][:0]
		}
	}
	for _, pg := range b.pages {
		parquet.Release(pg)
	}
	clear(b.pages)
	b.pages = b.pages[:0]
	clear(b.rows)
	b.line, b.n, b.err, b.encErr, b.rows, b.enc = 0, 0, nil, nil, b.rows[:0], nil
}

// pqLeaf reads one leaf column of a row group.
type pqLeaf struct {
	pages parquet.Pages
	page  parquet.Page
	vr    parquet.ValueReader
	buf   []parquet.Value // of a repeated leaf: read, not yet taken (from off)
	off   int
	from  parquet.Page // the page buf's values are in (held until taken)
}

// next makes the leaf's next page current; io.EOF after its last.
func (l *pqLeaf) next() error {
	l.release()
	p, err := l.pages.ReadPage()
	if err != nil {
		return err
	}
	l.page, l.vr = p, p.Values()
	return nil
}

func (l *pqLeaf) release() {
	if l.page != nil {
		parquet.Release(l.page)
		l.page, l.vr = nil, nil
	}
}

func (l *pqLeaf) close() {
	l.release()
	if l.from != nil {
		parquet.Release(l.from)
		l.from = nil
	}
	if l.pages != nil {
		l.pages.Close()
		l.pages = nil
	}
}

// read appends the values of the leaf's next n rows (one each) to dst.
func (l *pqLeaf) read(b *pqBatch, dst []parquet.Value, n int) ([]parquet.Value, error) {
	start := len(dst)
	dst = append(dst, make([]parquet.Value, n)...)[:start]
	for len(dst)-start < n {
		if l.vr == nil {
			if err := l.next(); err != nil {
				return dst, err
			}
		}
		k, err := l.vr.ReadValues(dst[len(dst) : start+n])
		if k > 0 {
			l.hold(b)
		}
		dst = dst[:len(dst)+k]
		switch {
		case errors.Is(err, io.EOF):
			l.release()
		case err != nil:
			return dst, err
		case k == 0:
			return dst, io.ErrNoProgress
		}
	}
	return dst, nil
}

// readRepeated appends the values of the leaf's next n rows to dst (a row
// starts at a value of repetition level 0), and where each row starts to
// starts, then where the last one ends.
func (l *pqLeaf) readRepeated(b *pqBatch, dst []parquet.Value, starts []int32, n int) ([]parquet.Value, []int32, error) {
	rows := 0
	for {
		if l.off == len(l.buf) {
			if l.from != nil {
				parquet.Release(l.from)
				l.from = nil
			}
			if l.vr == nil {
				err := l.next()
				if errors.Is(err, io.EOF) && rows == n {
					break // the row group's last row ends here
				}
				if err != nil {
					return dst, starts, err
				}
			}
			if cap(l.buf) == 0 {
				l.buf = make([]parquet.Value, pqBatchRows)
			}
			k, err := l.vr.ReadValues(l.buf[:cap(l.buf)])
			l.buf, l.off = l.buf[:k], 0
			if k > 0 {
				l.from = l.page
				parquet.Retain(l.from) // until its values are taken
			}
			switch {
			case errors.Is(err, io.EOF):
				l.release()
			case err != nil:
				return dst, starts, err
			case k == 0:
				return dst, starts, io.ErrNoProgress
			}
			continue
		}
		v := l.buf[l.off]
		if v.RepetitionLevel() == 0 {
			if rows == n {
				break // the next batch's first row
			}
			starts = append(starts, int32(len(dst)))
			rows++
		}
		l.buf[l.off] = parquet.Value{}
		l.off++
		dst = append(dst, v)
		if n := len(b.pages); n == 0 || b.pages[n-1] != l.from {
			parquet.Retain(l.from)
			b.pages = append(b.pages, l.from)
		}
	}
	return dst, append(starts, int32(len(dst))), nil
}

// hold keeps the leaf's current page from parquet-go's pools until b is
// recycled: b's values point into it.
func (l *pqLeaf) hold(b *pqBatch) {
	if n := len(b.pages); n > 0 && b.pages[n-1] == l.page {
		return
	}
	parquet.Retain(l.page)
	b.pages = append(b.pages, l.page)
}

// pqRead runs the workers of one Parquet file.
type pqRead struct {
	f        *parquet.File
	file     string
	pcols    []parquetCol
	cols     []column // the pcols' columns
	slot     [][2]int // per pcol: the indexes of its leaves in leaves
	leaves   []int    // the leaf columns read (their column indexes)
	repeated []bool   // per leaf read
	types    []leafType
	headerOK bool

	order chan *pqBatch // every batch, in file order
	slots chan struct{} // one per batch from its reading to its recycling
	stop  chan struct{} // closed when the caller returns
	free  chan *pqBatch
	wg    sync.WaitGroup

	ext     []string // set: rows are encoded (ReadEncoded)
	encode  bool
	freeEnc chan *EncodedRows

	mu   sync.Mutex // the reading, one worker at a time:
	rg   int        // the row group being read (its leaves open)
	left int64      // its rows not read yet
	line int        // the rows read before
	lf   []pqLeaf   // its leaves
	done bool       // the reading is over: order is closed
	made int        // batches allocated (the rest were recycled)
}

// parquetBatchesHook, when set (by a test), is told how many batches a
// Parquet file's reading allocated.
var parquetBatchesHook func(made int)

// pqWindow is how many batches may be read ahead of the caller.
func pqWindow(workers int) int { return 2*workers + 2 }

// readParquetRows reads f's rows (see above): good rows to fn, or
// encoded to c.enc (see ReadEncoded); problems to c.
func readParquetRows(c *collector, f *parquet.File, pcols []parquetCol, headerOK bool, fn func(Row) error) error {
	workers := runtime.GOMAXPROCS(0)
	p := &pqRead{
		f: f, file: c.file, pcols: pcols, headerOK: headerOK,
		order: make(chan *pqBatch, pqWindow(workers)),
		slots: make(chan struct{}, pqWindow(workers)),
		stop:  make(chan struct{}),
		free:  make(chan *pqBatch, pqWindow(workers)),
		rg:    -1,
	}
	for _, pc := range pcols {
		p.cols = append(p.cols, pc.col)
	}
	if c.enc != nil && headerOK {
		if ext, ok := encodedExt(p.cols); ok {
			p.ext, p.encode = ext, true
			p.freeEnc = make(chan *EncodedRows, pqWindow(workers))
		}
	}
	leafAt := map[int]int{}
	for _, pc := range pcols {
		var s [2]int
		for j, leaf := range pc.leaves {
			k, seen := leafAt[leaf]
			if !seen {
				k = len(p.leaves)
				leafAt[leaf] = k
				p.leaves = append(p.leaves, leaf)
				p.repeated = append(p.repeated, pc.isMap)
				p.types = append(p.types, leafTypeOf(pc.typ[j]))
			}
			s[j] = k
		}
		p.slot = append(p.slot, s)
	}
	p.lf = make([]pqLeaf, len(p.leaves))

	p.wg.Add(workers)
	for range workers {
		go p.work()
	}
	// Nothing may read the file once readParquetRows returns: stop the
	// workers and wait for them.
	defer func() {
		close(p.stop)
		p.wg.Wait()
		p.closeLeaves()
		if parquetBatchesHook != nil {
			parquetBatchesHook(p.made)
		}
	}()
	for b := range p.order {
		<-b.ready
		c.merge(&b.c)
		if p.encode {
			if b.enc != nil && len(b.enc.Rows) > 0 {
				e := b.enc
				b.enc = nil
				if err := c.enc(e); err != nil {
					return err
				}
			}
		} else {
			for i := range b.rows {
				if err := fn(b.rows[i]); err != nil {
					return err
				}
			}
		}
		if b.encErr != nil {
			return b.encErr
		}
		if b.err != nil {
			return fmt.Errorf("row %d: %w", b.line+1, b.err)
		}
		if b.enc != nil {
			b.enc.Release()
		}
		b.reset()
		select {
		case p.free <- b:
		default:
		}
		<-p.slots
	}
	return nil
}

// newBatch is an empty batch, one recycled if any (with p.mu held).
func (p *pqRead) newBatch() *pqBatch {
	var b *pqBatch
	select {
	case b = <-p.free:
	default:
		b = &pqBatch{vals: make([][]parquet.Value, len(p.leaves)), starts: make([][]int32, len(p.leaves))}
		p.made++
	}
	b.ready = make(chan struct{})
	return b
}

func (p *pqRead) closeLeaves() {
	for i := range p.lf {
		p.lf[i].close()
	}
}

// next reads the next batch and puts it in p.order, or ends the reading
// (nil) at the file's end. A batch that could not be read says why (err)
// and ends the reading too.
func (p *pqRead) next() *pqBatch {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.done {
		return nil
	}
	rgs := p.f.RowGroups()
	for p.left == 0 {
		p.closeLeaves()
		if p.rg++; p.rg == len(rgs) {
			p.done = true
			close(p.order)
			return nil
		}
		chunks := rgs[p.rg].ColumnChunks()
		for i, leaf := range p.leaves {
			p.lf[i] = pqLeaf{pages: chunks[leaf].Pages(), buf: p.lf[i].buf[:0]}
		}
		p.left = rgs[p.rg].NumRows()
	}
	n := int(min(p.left, pqBatchRows))
	b := p.newBatch()
	b.line = p.line
	if err := p.fill(b, p.lf, n); err != nil {
		b.reset()
		b.line, b.err = p.line, err
		p.done = true
		p.order <- b
		close(p.order)
		return b
	}
	b.n = n
	p.line += n
	p.left -= int64(n)
	p.order <- b // never waits: a batch has a slot, order has room for all
	return b
}

// fill reads n rows of every leaf into b.
func (p *pqRead) fill(b *pqBatch, leaves []pqLeaf, n int) error {
	for i := range leaves {
		var err error
		if p.repeated[i] {
			b.vals[i], b.starts[i], err = leaves[i].readRepeated(b, b.vals[i], b.starts[i][:0], n)
		} else {
			b.vals[i], err = leaves[i].read(b, b.vals[i], n)
		}
		if errors.Is(err, io.EOF) {
			err = fmt.Errorf("column %d ends before its row group does", p.leaves[i])
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// work reads batches and checks and builds their rows until the reading
// is over or the caller has returned.
func (p *pqRead) work() {
	defer p.wg.Done()
	var wk pqWorker
	for {
		select {
		case <-p.stop: // first: a free slot must not start another batch
			return
		default:
		}
		select {
		case p.slots <- struct{}{}:
		case <-p.stop:
			return
		}
		b := p.next()
		if b == nil {
			return
		}
		failed := b.err != nil
		if !failed {
			p.build(b, &wk)
		}
		close(b.ready) // b is the caller's from here
		if failed {
			return
		}
	}
}

// pqWorker is what a worker reuses from row to row.
type pqWorker struct {
	rsc    recordScratch
	reused messages.UsageRecord
	w      messages.RowWriter
	text   []byte
}

// build checks and builds the rows of b: problems to b.c, good rows to
// b.enc or b.rows.
func (p *pqRead) build(b *pqBatch, wk *pqWorker) {
	b.c = collector{file: p.file}
	if p.encode {
		b.enc = newEncodedRows(p.freeEnc, p.ext, 0)
	}
	for i := range b.n {
		line := b.line + i + 1
		rec := &wk.reused
		if p.encode {
			wk.rsc.reset(rec)
		} else {
			b.rows = append(b.rows, Row{Line: line})
			rec = &b.rows[len(b.rows)-1].Record
		}
		b.c.beginRow()
		wk.text = p.row(&b.c, b, i, line, rec, wk.text, &wk.rsc)
		good := b.c.endRow(line, rec, true) && p.headerOK
		switch {
		case !p.encode && !good:
			b.rows[len(b.rows)-1] = Row{}
			b.rows = b.rows[:len(b.rows)-1]
		case p.encode && good:
			if err := b.enc.add(&wk.w, rec); err != nil && b.encErr == nil {
				b.encErr = err // the caller's error, after the rows before
			}
		}
	}
}

// row sets the cells of row i of b on rec. Encoded, the cells' strings
// are views of b's pages and of text (appended to, and given back for
// the next row); as records, strings of their own.
func (p *pqRead) row(c *collector, b *pqBatch, i, line int, rec *messages.UsageRecord, text []byte, rsc *recordScratch) []byte {
	text = text[:0]
	sc := rsc
	if !p.encode {
		sc = nil
	}
	var tagCols map[string]string
	for k := range p.pcols {
		pc, s := &p.pcols[k], p.slot[k]
		var cell string
		if pc.isMap {
			keys := b.vals[s[0]][b.starts[s[0]][i]:b.starts[s[0]][i+1]]
			vals := b.vals[s[1]][b.starts[s[1]][i]:b.starts[s[1]][i+1]]
			mark := len(text)
			text = appendMapJSON(text, keys, vals, &p.types[s[1]])
			cell = p.str(text[mark:])
		} else {
			v, t := b.vals[s[0]][i], &p.types[s[0]]
			if k := v.Kind(); (k == parquet.ByteArray || k == parquet.FixedLenByteArray) && !t.decimal && !v.IsNull() {
				bs := v.ByteArray()
				if len(bs) > MaxCellBytes {
					c.add(line, pc.col.header, "a value of %d bytes, more than the %d-byte cell limit", len(bs), MaxCellBytes)
					continue
				}
				cell = p.str(bs)
			} else {
				mark := len(text)
				var err error
				if text, err = appendValueText(text, v, t); err != nil {
					c.add(line, pc.col.header, "%v", err)
					continue
				}
				cell = p.str(text[mark:])
			}
		}
		setCell(c, line, pc.col, cell, rec, &tagCols, sc)
	}
	mergeTagCols(c, line, p.cols, tagCols, rec)
	return text
}

// str is b as a cell: a view when the rows are encoded (see pqRead.row),
// else a copy.
func (p *pqRead) str(b []byte) string {
	if p.encode {
		return view(b)
	}
	return string(b)
}
