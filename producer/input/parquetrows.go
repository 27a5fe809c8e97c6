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

// A Parquet file is read as a CSV file is (csv.go): one goroutine (the
// reader) decodes the columns a batch of rows at a time, GOMAXPROCS
// workers check and build the rows of a batch each, and the caller's
// goroutine takes the batches' rows and problems in file order. A row
// group is read column by column (the values of pqBatchRows rows of each
// column the file has a use for), not row by row: assembling rows was
// the reader's own cost, and a worker needs a row's cells, not a Row.
//
// Memory is the batches in flight, not the file: the reader waits once
// the caller is pqWindow batches behind. A batch owns its values: byte
// arrays are copied out of their page into the batch's own blocks, so a
// page goes back to parquet-go's pools once read, and the batch's
// strings stay as they were until it is recycled (the encoded rows copy
// what they keep; records take copies of their own).
const (
	pqBatchRows = 512     // rows a batch holds (fewer at a row group's end)
	pqBlock     = 1 << 16 // bytes of a batch's byte-array block
)

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
	blocks [][]byte // where the byte arrays of vals are
	err    error    // reading stopped before these rows with err
	encErr error    // encoding a row failed (the reading stops there)

	ready chan struct{} // closed when a worker is done with it
	c     collector
	rows  []Row        // the good rows (records)
	enc   *EncodedRows // the good rows, encoded (ReadEncoded)
}

// keep copies p into the batch's blocks and says where it is now.
func (b *pqBatch) keep(p []byte) []byte {
	if len(p) > pqBlock/4 {
		return append(make([]byte, 0, len(p)), p...) // big: a block of its own
	}
	i := len(b.blocks) - 1
	if i < 0 || cap(b.blocks[i])-len(b.blocks[i]) < len(p) {
		// The next block: one a batch before had, or a new one.
		i++
		if i < cap(b.blocks) {
			b.blocks = b.blocks[:i+1]
		} else {
			b.blocks = append(b.blocks, nil)
		}
		if cap(b.blocks[i]) < pqBlock {
			b.blocks[i] = make([]byte, 0, pqBlock)
		}
		b.blocks[i] = b.blocks[i][:0]
	}
	at := len(b.blocks[i])
	b.blocks[i] = append(b.blocks[i], p...)
	return b.blocks[i][at:len(b.blocks[i]):len(b.blocks[i])]
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
	for i := range b.blocks {
		b.blocks[i] = b.blocks[i][:0]
	}
	b.blocks = b.blocks[:0]
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
		keepBytes(b, dst[len(dst):len(dst)+k])
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
		keepBytes(b, dst[len(dst)-1:])
	}
	return dst, append(starts, int32(len(dst))), nil
}

// keepBytes moves the byte arrays of vs into b's blocks.
func keepBytes(b *pqBatch, vs []parquet.Value) {
	for i, v := range vs {
		if v.IsNull() {
			continue
		}
		switch v.Kind() {
		case parquet.ByteArray:
			vs[i] = parquet.ByteArrayValue(b.keep(v.ByteArray())).Level(v.RepetitionLevel(), v.DefinitionLevel(), v.Column())
		case parquet.FixedLenByteArray:
			vs[i] = parquet.FixedLenByteArrayValue(b.keep(v.ByteArray())).Level(v.RepetitionLevel(), v.DefinitionLevel(), v.Column())
		}
	}
}

// pqRead runs the reader and the workers of one Parquet file.
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
	jobs  chan *pqBatch
	stop  chan struct{}
	free  chan *pqBatch
	wg    sync.WaitGroup

	ext     []string // set: rows are encoded (ReadEncoded)
	encode  bool
	freeEnc chan *EncodedRows
}

// pqWindow is how many batches may be read ahead of the caller.
func pqWindow(workers int) int { return 2*workers + 2 }

// readParquetRows reads f's rows: good rows to fn, or encoded to c.enc
// (see ReadEncoded); problems to c.
func readParquetRows(c *collector, f *parquet.File, pcols []parquetCol, headerOK bool, fn func(Row) error) error {
	workers := runtime.GOMAXPROCS(0)
	p := &pqRead{
		f: f, file: c.file, pcols: pcols, headerOK: headerOK,
		order: make(chan *pqBatch, pqWindow(workers)),
		jobs:  make(chan *pqBatch, pqWindow(workers)),
		stop:  make(chan struct{}),
		free:  make(chan *pqBatch, pqWindow(workers)+workers+2),
	}
	for _, pc := range pcols {
		p.cols = append(p.cols, pc.col)
	}
	if c.enc != nil && headerOK {
		if ext, ok := encodedExt(p.cols); ok {
			p.ext, p.encode = ext, true
			p.freeEnc = make(chan *EncodedRows, pqWindow(workers)+workers+2)
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

	p.wg.Add(1 + workers)
	go p.read()
	for range workers {
		go p.work()
	}
	// Nothing may read the file once readParquetRows returns: stop the
	// reader and wait for it and the workers.
	defer func() {
		close(p.stop)
		p.wg.Wait()
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
	}
	return nil
}

// newBatch is an empty batch, one recycled if any.
func (p *pqRead) newBatch() *pqBatch {
	var b *pqBatch
	select {
	case b = <-p.free:
	default:
		b = &pqBatch{vals: make([][]parquet.Value, len(p.leaves)), starts: make([][]int32, len(p.leaves))}
	}
	b.ready = make(chan struct{})
	return b
}

// read reads the row groups' batches and sends them to p.order and
// p.jobs, until the file ends, a read fails, or p.stop.
func (p *pqRead) read() {
	defer p.wg.Done()
	defer close(p.order)
	defer close(p.jobs)
	line := 0
	send := func(b *pqBatch) bool {
		select {
		case p.order <- b:
		case <-p.stop:
			return false
		}
		select {
		case p.jobs <- b:
			return true
		case <-p.stop:
			return false
		}
	}
	leaves := make([]pqLeaf, len(p.leaves))
	closeAll := func() {
		for i := range leaves {
			leaves[i].close()
		}
	}
	defer closeAll()
	for _, rg := range p.f.RowGroups() {
		chunks := rg.ColumnChunks()
		for i, leaf := range p.leaves {
			leaves[i] = pqLeaf{pages: chunks[leaf].Pages(), buf: leaves[i].buf[:0]}
		}
		for left := rg.NumRows(); left > 0; {
			n := int(min(left, pqBatchRows))
			b := p.newBatch()
			b.line = line
			if err := p.fill(b, leaves, n); err != nil {
				b.reset()
				b.line, b.err = line, err
				send(b)
				return
			}
			b.n = n
			line += n
			left -= int64(n)
			if !send(b) {
				return
			}
		}
		closeAll()
	}
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

// work checks and builds the rows of batches until there are no more.
func (p *pqRead) work() {
	defer p.wg.Done()
	var (
		rsc    recordScratch
		reused messages.UsageRecord
		w      messages.RowWriter
		text   []byte
	)
	for b := range p.jobs {
		select {
		case <-p.stop:
			close(b.ready)
			continue
		default:
		}
		b.c = collector{file: p.file}
		if p.encode {
			b.enc = newEncodedRows(p.freeEnc, p.ext, 0)
		}
		for i := range b.n {
			line := b.line + i + 1
			rec := &reused
			if p.encode {
				rsc.reset(rec)
			} else {
				b.rows = append(b.rows, Row{Line: line})
				rec = &b.rows[len(b.rows)-1].Record
			}
			b.c.beginRow()
			text = p.row(&b.c, b, i, line, rec, text, &rsc)
			good := b.c.endRow(line, rec, true) && p.headerOK
			switch {
			case !p.encode && !good:
				b.rows[len(b.rows)-1] = Row{}
				b.rows = b.rows[:len(b.rows)-1]
			case p.encode && good:
				if err := b.enc.add(&w, rec); err != nil && b.encErr == nil {
					b.encErr = err // the caller's error, after the rows before
				}
			}
		}
		close(b.ready)
	}
}

// row sets the cells of row i of b on rec. Encoded, the cells' strings
// are views of b's blocks and of text (appended to, and given back for
// the next row); as records, strings of their own.
func (p *pqRead) row(c *collector, b *pqBatch, i, line int, rec *messages.UsageRecord, text []byte, rsc *recordScratch) []byte {
	text = text[:0]
	sc := rsc
	if !p.encode {
		sc = nil
	}
	var tagCols map[string]string
	for k, pc := range p.pcols {
		s := p.slot[k]
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
