// Package input reads usage files into messages.UsageRecord values, and
// says exactly where every bad row is. It reads FOCUS exports (1.0 to 1.3)
// as the clouds write them.
//
// # Formats
//
//   - FOCUS CSV: a header row, then one record per row (RFC 4180: quoted
//     fields may hold commas, quotes and newlines; CRLF or LF; with or
//     without a UTF-8 byte order mark). See below.
//   - NDJSON (.ndjson, .jsonl): one JSON object per line, in the JSON form of
//     messages.UsageRecord (FOCUS column names as keys). Blank lines are
//     skipped.
//   - JSON array (.json): an array of such objects, streamed element by
//     element with json.Decoder, so only one element is held at a time.
//   - Parquet (.parquet): what AWS Data Exports and Azure Cost Management
//     write FOCUS as; read with github.com/parquet-go/parquet-go (pure Go),
//     column by FOCUS name like a CSV header (see parquet.go).
//
// The format is told by content, not only by name: gzip (magic 1f 8b, also
// concatenated members) is decompressed transparently, then "PAR1" is
// Parquet whatever the name; otherwise the first non-blank byte after an
// optional BOM decides for Auto (or a name that says nothing): '[' is a
// JSON array, '{' is NDJSON, anything else is CSV. A file named .csv that
// starts with '{' or '[' is read as JSON too (the name is wrong, the
// content is not). FormatOf looks through ".gz" for the format a name says.
//
// # Columns (CSV header, Parquet columns, JSON keys)
//
// Names are FOCUS column IDs, case-sensitive, surrounding spaces trimmed:
//
//   - Every column FOCUS 1.0 to 1.3 defines (messages.FocusColumns) is
//     known, typed as the specification types it: strings verbatim,
//     decimals exact (messages.ParseDecimal: never through float64, any
//     exponent up to ±1000), date/times (messages.ParseTime), and JSON
//     columns (Tags, SkuPriceDetails, ...) as JSON text. Tags values may be
//     strings, numbers, booleans or null, kept exactly.
//   - "Tags.<key>" and "tag:<key>": one tag per column. A key given both by
//     such a column and by the Tags object must agree, or the row is an
//     error.
//   - "x_<Name>": a provider extension column, kept; a string unless a
//     suffix declares "x_<Name>:int" or "x_<Name>:decimal" (CSV cannot tell
//     "00123" from 123, so nothing is guessed; Parquet's own types decide
//     there).
//   - Any other column (a provider's "oci_..." columns, a column no spec
//     names) is kept as an extension column too, under its name made valid
//     (letters, digits and _; "Cost Center" is x_Cost_Center), and reported
//     once as a warning naming it (and the FOCUS column it is a case away
//     from, if any). With Options.Strict it is an error instead, and no row
//     of the file is delivered.
//
// Null is null: an empty cell, NULL and null (how exports write it) leave
// the column unset, in every column type; JSON null too. The version of
// FOCUS a file follows is told from its columns (messages.FocusVersion) and
// returned in Result.Version.
//
// # Limits (bomb guards)
//
// Nothing in a file can make the reader hold more than a bounded amount:
// a CSV record or JSON-array element is at most MaxRecordBytes, an NDJSON
// line at most MaxLineBytes, one cell at most MaxCellBytes, and the whole
// input, decompressed, at most Options.MaxBytes (DefaultMaxBytes). Crossing
// one ends the reading with an error that says which limit and where;
// values quoted in errors are clipped to a few dozen bytes.
//
// # Errors
//
// Every problem is an Error "file:line: field: problem", where line is the
// physical line of the file (1-based): for CSV the line where the record
// starts, for NDJSON the line itself, for a JSON array the line where the
// element starts, for Parquet the row number (1-based). Each record is also
// checked with UsageRecord.Validate and its problems are reported the same
// way (a field that failed to parse is not reported again as missing). Only
// a problem in a value refuses a row; a row with any problem is not
// delivered; all problems are collected, up to MaxErrors, after which one
// final Error says how many more there were. A syntax error in a JSON array
// ends the reading there (the decoder cannot find the next element) and is
// reported at the line of the bad byte; NDJSON and CSV go on with the next
// line.
package input

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/usagefleet/usagefleet/messages"
)

// Format is an input file format.
type Format int

const (
	// Auto sniffs the format from the content.
	Auto Format = iota
	CSV
	NDJSON
	JSONArray
	Parquet
)

func (f Format) String() string {
	switch f {
	case Auto:
		return "auto"
	case CSV:
		return "csv"
	case NDJSON:
		return "ndjson"
	case JSONArray:
		return "json"
	case Parquet:
		return "parquet"
	}
	return fmt.Sprintf("Format(%d)", int(f))
}

// ParseFormat reads a format name: auto, csv, ndjson (or jsonl), json,
// parquet.
func ParseFormat(s string) (Format, error) {
	switch strings.ToLower(s) {
	case "", "auto":
		return Auto, nil
	case "csv":
		return CSV, nil
	case "ndjson", "jsonl":
		return NDJSON, nil
	case "json":
		return JSONArray, nil
	case "parquet":
		return Parquet, nil
	}
	return Auto, fmt.Errorf("unknown format %q: want auto, csv, ndjson, jsonl, json or parquet", s)
}

// FormatOf returns the format path's extension names (looking through a
// ".gz" suffix), or Auto when the extension says nothing.
func FormatOf(path string) Format {
	p := strings.ToLower(path)
	p = strings.TrimSuffix(p, ".gz")
	switch filepath.Ext(p) {
	case ".csv":
		return CSV
	case ".ndjson", ".jsonl":
		return NDJSON
	case ".json":
		return JSONArray
	case ".parquet":
		return Parquet
	}
	return Auto
}

// Row is one good record and the line it starts on.
type Row struct {
	Line   int
	Record messages.UsageRecord
}

// Error is one problem at one place of an input file. Line 0 is about the
// whole file; Field is empty when the problem is not about one column.
type Error struct {
	File    string
	Line    int
	Field   string
	Problem string
}

func (e Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
	}
	b.WriteString(": ")
	if e.Field != "" {
		b.WriteString(e.Field)
		b.WriteString(": ")
	}
	b.WriteString(e.Problem)
	return b.String()
}

// MaxErrors caps the errors Read returns; one more Error then counts the
// rest.
const MaxErrors = 1000

// Size limits (see "Limits" above).
const (
	MaxLineBytes    = 16 << 20 // one NDJSON line
	MaxRecordBytes  = 16 << 20 // one CSV record (all its lines) or JSON-array element
	MaxCellBytes    = 1 << 20  // one CSV or Parquet cell
	DefaultMaxBytes = 16 << 30 // the whole input, decompressed
)

// Options tune ReadWith.
type Options struct {
	Format Format // Auto: from the content
	// Strict refuses a column that is neither FOCUS nor x_ (an error at
	// the header; no row is delivered) instead of keeping it as an
	// extension column with a warning.
	Strict bool
	// MaxBytes bounds the input's decompressed size (0: DefaultMaxBytes).
	MaxBytes int64
}

// Result is what ReadWith found besides the rows.
type Result struct {
	Errors   []Error
	Warnings []Error // each said once per file (a kept unknown column, ...)
	Format   Format  // the format read
	Version  string  // the FOCUS version told from the columns ("" if none)
}

// ReadFile reads the file at path (format from FormatOf, else sniffed) and
// returns its good rows and every problem. The error is only for I/O
// failures and undecodable compression.
func ReadFile(path string) ([]Row, []Error, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	var rows []Row
	errs, err := Read(path, f, FormatOf(path), func(r Row) error {
		rows = append(rows, r)
		return nil
	})
	return rows, errs, err
}

// Read is ReadWith with default options but the format; it returns the
// problems only.
func Read(name string, r io.Reader, format Format, fn func(Row) error) ([]Error, error) {
	res, err := ReadWith(name, r, Options{Format: format}, fn)
	return res.Errors, err
}

// ReadWith reads r (named name in errors) and calls fn for every good row,
// in file order. It returns every problem and warning found. The error is
// for I/O failures, undecodable compression, a size limit crossed or an
// invalid format value, prefixed with name; or it is the first error fn
// returns, as it is (which stops the reading).
func ReadWith(name string, r io.Reader, opt Options, fn func(Row) error) (Result, error) {
	var fnErr error
	deliver := func(row Row) error {
		fnErr = fn(row)
		return fnErr
	}
	c := &collector{file: name, strict: opt.Strict}
	format, err := readFormat(c, r, opt, deliver)
	if err != nil && err != fnErr { // fn's own error goes back as it is
		err = fmt.Errorf("%s: %w", name, err)
	}
	return Result{Errors: c.list(), Warnings: c.warns, Format: format, Version: c.version}, err
}

// ErrTooLarge is wrapped by every size-limit error.
var ErrTooLarge = errors.New("input too large")

// slack is what a reader's own buffer may read past the record it is on.
const slack = 64 << 10

func readFormat(c *collector, r io.Reader, opt Options, fn func(Row) error) (Format, error) {
	format := opt.Format
	br := bufio.NewReaderSize(r, 64<<10)
	if magic, _ := br.Peek(2); len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return format, fmt.Errorf("gzip: %w", err)
		}
		defer zr.Close()
		br = bufio.NewReaderSize(zr, 64<<10)
	}
	max := opt.MaxBytes
	if max <= 0 {
		max = DefaultMaxBytes
	}
	lim := NewLimitReader(br, max, fmt.Sprintf("the input is larger than %d bytes decompressed (the --max-bytes limit)", max))
	br = bufio.NewReaderSize(lim, 64<<10)
	if magic, _ := br.Peek(4); string(magic) == "PAR1" {
		return Parquet, readParquet(c, br, lim, fn)
	}
	if format == Parquet {
		return format, errors.New("not a Parquet file (no PAR1 magic)")
	}
	if bom, _ := br.Peek(3); bytes.Equal(bom, []byte("\xef\xbb\xbf")) {
		br.Discard(3)
	}
	sniffed, err := sniff(br)
	if err != nil {
		return format, err
	}
	switch {
	case format == Auto, sniffed != CSV && format == CSV:
		format = sniffed
	case format == JSONArray && sniffed == NDJSON:
		format = NDJSON
	}
	switch format {
	case CSV:
		return format, readCSV(c, br, lim, fn)
	case NDJSON:
		return format, readNDJSON(c, br, fn)
	case JSONArray:
		return format, readJSONArray(c, br, lim, fn)
	}
	return format, fmt.Errorf("invalid format %v", format)
}

// sniff looks at the first non-blank byte.
func sniff(br *bufio.Reader) (Format, error) {
	for n := 64; ; n *= 2 {
		b, err := br.Peek(n)
		for _, c := range b {
			switch c {
			case ' ', '\t', '\r', '\n':
				continue
			case '[':
				return JSONArray, nil
			case '{':
				return NDJSON, nil
			}
			return CSV, nil
		}
		if err != nil || n >= br.Size() {
			if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, bufio.ErrBufferFull) {
				return Auto, err
			}
			// Empty or all blank: CSV reports the missing header.
			return CSV, nil
		}
	}
}

// collector gathers errors up to MaxErrors and counts the rest, and the
// file's warnings. It also tracks the errors of the row being read.
type collector struct {
	file    string
	strict  bool
	errs    []Error
	extra   int
	warns   []Error
	warned  map[string]bool
	version string
	keys    map[string]bool          // JSON keys seen (bounded), for the version
	enc     func(*EncodedRows) error // set by ReadEncoded

	rowErrs   int             // errors since beginRow
	rowFields map[string]bool // fields with an error since beginRow
}

func (c *collector) add(line int, field, format string, args ...any) {
	c.rowErrs++
	if field != "" {
		if c.rowFields == nil {
			c.rowFields = map[string]bool{}
		}
		c.rowFields[field] = true
	}
	if len(c.errs) >= MaxErrors {
		c.extra++
		return
	}
	c.errs = append(c.errs, Error{File: c.file, Line: line, Field: field, Problem: fmt.Sprintf(format, args...)})
}

// warnOnce records a warning the first time key is seen in the file.
func (c *collector) warnOnce(key string, line int, field, format string, args ...any) {
	if c.warned[key] {
		return
	}
	if c.warned == nil {
		c.warned = map[string]bool{}
	}
	c.warned[key] = true
	if len(c.warns) < MaxErrors {
		c.warns = append(c.warns, Error{File: c.file, Line: line, Field: field, Problem: fmt.Sprintf(format, args...)})
	}
}

func (c *collector) list() []Error {
	if c.extra == 0 {
		return c.errs
	}
	return append(c.errs, Error{File: c.file, Problem: fmt.Sprintf("and %d more errors", c.extra)})
}

func (c *collector) beginRow() {
	c.rowErrs = 0
	clear(c.rowFields)
}

// endRow adds the record's own problems (from Validate; when readable, and
// leaving out fields already reported) and reports whether the row is good.
func (c *collector) endRow(line int, r *messages.UsageRecord, readable bool) bool {
	if readable {
		for _, fe := range r.Validate() {
			if !c.rowFields[fe.Field] {
				c.add(line, fe.Field, "%s", fe.Problem)
			}
		}
	}
	return c.rowErrs == 0
}
