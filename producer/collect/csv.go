package collect

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/usagefleet/usagefleet/producer/input"
)

// CSV reads a report file row by row, by header name: gzip is detected by
// its magic bytes (1f 8b) whatever the Content-Type or Content-Encoding
// said, a header label "Org ID (realmId)" is known by the name in its
// last parentheses (bare names work too), and every row keeps its line
// number in the file (the header is line 1) and its raw bytes (Row), so a
// rejected row can be kept as the file held it.
//
// Limits (bomb guards, as producer/input's): a record (all its lines, the
// header too) is at most MaxRecordBytes, a cell at most MaxCellBytes, and
// the whole file, decompressed, at most MaxReportBytes. A cell over its
// limit rejects its row; a record or a file over its limit ends the
// reading with a permanent error (ErrTooLarge) that names the limit and
// the line, since the same file downloaded again holds the same bytes.
// Values quoted in errors are clipped (Quote).
type CSV struct {
	r      *csv.Reader
	gz     *gzip.Reader
	lim    *input.LimitReader
	tee    *rawTee
	cols   map[string]int
	header []string
	rawHdr []byte
	rec    []string
	raw    []byte
	off    int64 // input offset of the end of the current row
	lines  int   // line ends in the input before off
	line   int
	rows   int
}

// Size limits of a report file (see CSV).
const (
	MaxRecordBytes = 16 << 20 // one CSV record, all its lines (the header too)
	MaxCellBytes   = 1 << 20  // one cell
	MaxReportBytes = 4 << 30  // the whole file, decompressed
)

// maxReportBytes is MaxReportBytes; tests lower it.
var maxReportBytes int64 = MaxReportBytes

// ErrTooLarge is wrapped by the error of a record or a file over its
// limit (input.ErrTooLarge: the limits are input.LimitReader's).
var ErrTooLarge = input.ErrTooLarge

// csvSlack is what the CSV reader's own buffer may read past the record
// it is on (bufio's default size), counted in the record's budget.
const csvSlack = 4 << 10

// read reads the next record within its budget. A limit crossed comes
// back as a permanent error naming the line where the record starts.
func (c *CSV) read() ([]string, error) {
	start := c.off
	c.lim.Record(MaxRecordBytes+csvSlack, fmt.Sprintf("a CSV record longer than %d bytes (MaxRecordBytes)", MaxRecordBytes))
	rec, err := c.r.Read()
	c.lim.Record(-1, "")
	var le *input.LimitError
	if errors.As(err, &le) {
		// The line the record starts on (the reader's is where reading
		// stopped, read-ahead and all).
		held := c.tee.buf // the input from start on: the record, cut short
		blank := len(held) - len(bytes.TrimLeft(held, "\r\n"))
		e := *le
		e.Line = c.lines + 1 + bytes.Count(held[:blank], []byte{'\n'})
		return nil, Permanent(&e)
	}
	c.off = c.r.InputOffset()
	c.lines += bytes.Count(c.tee.bytes(start, c.off), []byte{'\n'})
	return rec, err
}

// overCell is the index of the first cell of rec longer than
// MaxCellBytes, or -1.
func overCell(rec []string) int {
	for i, v := range rec {
		if len(v) > MaxCellBytes {
			return i
		}
	}
	return -1
}

// Quote is v quoted for an error message, clipped to 64 bytes (a cell may
// hold a megabyte).
func Quote(v string) string {
	const max = 64
	if len(v) <= max {
		return fmt.Sprintf("%q", v)
	}
	return fmt.Sprintf("%q… (%d bytes)", strings.ToValidUTF8(v[:max], ""), len(v))
}

// Row is one data row of a report file, as a Sink receives it.
type Row struct {
	Line int // its line in the file (the header is line 1)
	// Raw is the row as the file holds it (after gzip), without its line
	// end; Header is the file's header line, raw. Both are valid only
	// during the Sink call: copy what you keep.
	Raw    []byte
	Header []byte
}

// NewCSV reads the header of a (possibly gzipped) CSV stream.
func NewCSV(body io.Reader) (*CSV, error) {
	br := bufio.NewReaderSize(body, 64<<10)
	c := &CSV{}
	var src io.Reader = br
	if magic, _ := br.Peek(2); len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		gz, err := gzip.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("gzip: %w", err)
		}
		gz.Multistream(true)
		c.gz, src = gz, gz
	}
	c.lim = input.NewLimitReader(src, maxReportBytes, fmt.Sprintf("the file is larger than %d bytes decompressed (MaxReportBytes)", maxReportBytes))
	c.tee = &rawTee{r: c.lim}
	c.r = csv.NewReader(c.tee)
	c.r.FieldsPerRecord = -1 // checked per row, so a short row is rejected alone
	c.r.ReuseRecord = true
	h, err := c.read()
	if errors.Is(err, io.EOF) {
		return nil, errors.New("the file is empty (no header)")
	}
	if err != nil {
		return nil, fmt.Errorf("header: %w", err)
	}
	if i := overCell(h); i >= 0 {
		return nil, Permanent(fmt.Errorf("header: line 1: column %d is %d bytes, more than the %d-byte cell limit (MaxCellBytes): %w", i+1, len(h[i]), MaxCellBytes, ErrTooLarge))
	}
	c.rawHdr = bytes.Clone(trimLine(c.tee.bytes(0, c.off)))
	c.header = append([]string(nil), h...)
	c.cols = make(map[string]int, len(h))
	for i, label := range c.header {
		name := FieldName(label)
		if _, dup := c.cols[name]; dup {
			return nil, fmt.Errorf("header: column %s appears twice", Quote(name))
		}
		c.cols[name] = i
	}
	return c, nil
}

// FieldName is the field a header label names: the text in its last
// parentheses ("Usage Amount (billableValue)" is billableValue), else the
// label itself, trimmed (and without a UTF-8 byte order mark).
func FieldName(label string) string {
	label = strings.TrimSpace(strings.TrimPrefix(label, "\ufeff"))
	if strings.HasSuffix(label, ")") {
		if i := strings.LastIndexByte(label, '('); i >= 0 {
			if f := strings.TrimSpace(label[i+1 : len(label)-1]); f != "" {
				return f
			}
		}
	}
	return label
}

// Has reports whether the header names field.
func (c *CSV) Has(field string) bool { _, ok := c.cols[field]; return ok }

// Require checks the header names every field.
func (c *CSV) Require(fields ...string) error {
	var missing []string
	for _, f := range fields {
		if !c.Has(f) {
			missing = append(missing, f)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("header: required column(s) %s missing (header: %s)", strings.Join(missing, ", "), clipHeader(c.header))
	}
	return nil
}

// clipHeader lists header labels for an error: each clipped, at most 50.
func clipHeader(h []string) string {
	var b strings.Builder
	for i, l := range h {
		if i == 50 {
			fmt.Fprintf(&b, ", … (%d columns)", len(h))
			break
		}
		if i > 0 {
			b.WriteString(", ")
		}
		if len(l) > 64 {
			l = strings.ToValidUTF8(l[:64], "") + "…"
		}
		b.WriteString(l)
	}
	return b.String()
}

// Next reads the next row. It returns io.EOF at the end; a row that is
// not valid CSV, has the wrong number of fields or a cell over
// MaxCellBytes returns a *RowError and the reading can go on. A record or
// file over its limit (ErrTooLarge) ends the reading.
func (c *CSV) Next() error {
	c.tee.drop(c.off) // the previous row's bytes are no longer needed
	start := c.off
	rec, err := c.read()
	if errors.Is(err, ErrTooLarge) {
		c.raw = nil
		return err
	}
	c.raw = trimLine(c.tee.bytes(start, c.off))
	if errors.Is(err, io.EOF) {
		if c.gz != nil {
			if cerr := c.gz.Close(); cerr != nil {
				return fmt.Errorf("gzip: %w", cerr)
			}
		}
		return io.EOF
	}
	c.rows++
	if err != nil {
		var pe *csv.ParseError
		if errors.As(err, &pe) && (errors.Is(pe.Err, csv.ErrQuote) || errors.Is(pe.Err, csv.ErrBareQuote)) {
			c.line = pe.StartLine
			return &RowError{Line: pe.StartLine, Reason: "not valid CSV: " + pe.Err.Error()}
		}
		return fmt.Errorf("after line %d: %w", c.line, err)
	}
	c.line, _ = c.r.FieldPos(0)
	c.rec = rec
	if len(rec) != len(c.header) {
		return &RowError{Line: c.line, Reason: fmt.Sprintf("%d fields, the header has %d", len(rec), len(c.header))}
	}
	if i := overCell(rec); i >= 0 {
		return &RowError{Line: c.line, Column: FieldName(c.header[i]), Reason: fmt.Sprintf("a cell of %d bytes, more than the %d-byte cell limit (MaxCellBytes)", len(rec[i]), MaxCellBytes)}
	}
	return nil
}

// Get returns field's value in the current row ("" when the header lacks
// the column).
func (c *CSV) Get(field string) string {
	i, ok := c.cols[field]
	if !ok || i >= len(c.rec) {
		return ""
	}
	return c.rec[i]
}

// Line is the current row's line in the file.
func (c *CSV) Line() int { return c.line }

// Row is the current row (also after Next returned a *RowError): its line
// and raw bytes, valid until the next call to Next.
func (c *CSV) Row() Row { return Row{Line: c.line, Raw: c.raw, Header: c.rawHdr} }

// Rows counts the data rows read so far, good or bad.
func (c *CSV) Rows() int { return c.rows }

// RowError is a row rejected: its line in the report file, the column at
// fault (if one) and why.
type RowError struct {
	Report string // report id
	Line   int
	Column string
	Reason string
}

func (e *RowError) Error() string {
	var b strings.Builder
	if e.Report != "" {
		b.WriteString("report " + e.Report + " ")
	}
	fmt.Fprintf(&b, "line %d: ", e.Line)
	if e.Column != "" {
		b.WriteString(e.Column + ": ")
	}
	b.WriteString(e.Reason)
	return b.String()
}

// rawTee keeps the bytes the CSV reader has read and not yet dropped, so
// a row's raw text can be cut out by the reader's input offsets. It holds
// the current row and the reader's read-ahead (a few kB), never the file.
type rawTee struct {
	r    io.Reader
	buf  []byte // the input from offset base on
	base int64
}

func (t *rawTee) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	t.buf = append(t.buf, p[:n]...)
	return n, err
}

// bytes returns the input between two offsets still held.
func (t *rawTee) bytes(from, to int64) []byte {
	if from < t.base || to < from || to-t.base > int64(len(t.buf)) {
		return nil
	}
	return t.buf[from-t.base : to-t.base]
}

// drop forgets the input before offset to. The held bytes are never
// written over: a later append moves them to a new array instead.
func (t *rawTee) drop(to int64) {
	if k := to - t.base; k > 0 && k <= int64(len(t.buf)) {
		t.buf = t.buf[k:]
		t.base = to
	}
}

// trimLine cuts the line end off a row and the empty lines the CSV reader
// skipped before it.
func trimLine(b []byte) []byte {
	return bytes.TrimRight(bytes.TrimLeft(b, "\r\n"), "\r\n")
}
