package collect

import (
	"bufio"
	"compress/gzip"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"strings"
)

// CSV reads a report file row by row, by header name: gzip is detected by
// its magic bytes (1f 8b) whatever the Content-Type or Content-Encoding
// said, a header label "Org ID (realmId)" is known by the name in its
// last parentheses (bare names work too), and every row keeps its line
// number in the file (the header is line 1).
type CSV struct {
	r      *csv.Reader
	gz     *gzip.Reader
	cols   map[string]int
	header []string
	rec    []string
	line   int
	rows   int
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
	c.r = csv.NewReader(src)
	c.r.FieldsPerRecord = -1 // checked per row, so a short row is rejected alone
	c.r.ReuseRecord = true
	h, err := c.r.Read()
	if errors.Is(err, io.EOF) {
		return nil, errors.New("the file is empty (no header)")
	}
	if err != nil {
		return nil, fmt.Errorf("header: %w", err)
	}
	c.header = append([]string(nil), h...)
	c.cols = make(map[string]int, len(h))
	for i, label := range c.header {
		name := FieldName(label)
		if _, dup := c.cols[name]; dup {
			return nil, fmt.Errorf("header: column %q appears twice", name)
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
		return fmt.Errorf("header: required column(s) %s missing (header: %s)", strings.Join(missing, ", "), strings.Join(c.header, ", "))
	}
	return nil
}

// Next reads the next row. It returns io.EOF at the end; a row that is
// not valid CSV or has the wrong number of fields returns a *RowError and
// the reading can go on.
func (c *CSV) Next() error {
	rec, err := c.r.Read()
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
