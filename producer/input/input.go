// Package input reads usage files into messages.UsageRecord values, and
// says exactly where every bad row is.
//
// # Formats
//
//   - FOCUS CSV (.csv): a header row, then one record per row. See below.
//   - NDJSON (.ndjson, .jsonl): one JSON object per line, in the JSON form of
//     messages.UsageRecord (FOCUS column names as keys). Blank lines are
//     skipped. A line is at most MaxLineBytes long.
//   - JSON array (.json): an array of such objects, streamed element by
//     element with json.Decoder, so only one element is held at a time.
//     A .json file whose first character is '{' is read as NDJSON.
//
// A ".gz" suffix is not needed: gzip input is recognised by its magic bytes
// and decompressed transparently; FormatOf looks through ".gz" for the
// format. A leading UTF-8 byte order mark is skipped. With Auto (an unknown
// extension) the format is sniffed from the first non-blank byte: '[' is a
// JSON array, '{' is NDJSON, anything else is CSV.
//
// # CSV
//
// The header names columns exactly as the messages package does (FOCUS names
// are case-sensitive; surrounding spaces are trimmed and a BOM is ignored):
//
//   - FOCUS columns (ChargePeriodStart, BilledCost, ...): strings are taken
//     verbatim; decimals and times are trimmed of surrounding spaces and parsed
//     exactly (messages.ParseDecimal: never through float64; messages.ParseTime).
//   - "Tags": a JSON object of strings, as FOCUS exports write it.
//   - "Tags.<key>" and "tag:<key>": one tag per column (both spellings are
//     accepted, the first is the FOCUS-flavoured one, the second what
//     many cost exports write). A key given both by such a column and by the
//     Tags object must agree, or the row is an error.
//   - "x_<Name>": an extension column, a string by default. A type suffix
//     declares another type: "x_<Name>:int", "x_<Name>:decimal"
//     ("x_<Name>:string" is the default spelled out). CSV cannot tell the
//     string "00123" from the number 123, so nothing is guessed.
//
// An empty cell means "unset" for every column (a tag column with an empty
// cell adds no tag). An unknown or repeated column is an error at the header
// line naming the column; then no row of the file is delivered (they would
// lose that column's data), but every row is still checked so that all
// problems are reported in one pass.
//
// # Errors
//
// Every problem is an Error "file:line: field: problem", where line is the
// physical line of the file (1-based): for CSV the line where the record
// starts, for NDJSON the line itself, for a JSON array the line where the
// element starts. Each record is also checked with UsageRecord.Validate and
// its problems are reported the same way (a field that failed to parse is
// not reported again as missing). A row with any problem is not delivered;
// all problems are collected, up to MaxErrors, after which one final Error
// says how many more there were. A syntax error in a JSON array ends the
// reading there (the decoder cannot find the next element) and is reported
// at the line of the bad byte; NDJSON and CSV go on with the next line.
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
	}
	return fmt.Sprintf("Format(%d)", int(f))
}

// ParseFormat reads a format name: auto, csv, ndjson (or jsonl), json.
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
	}
	return Auto, fmt.Errorf("unknown format %q: want auto, csv, ndjson, jsonl or json", s)
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

// MaxLineBytes bounds one NDJSON line.
const MaxLineBytes = 16 << 20

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

// Read reads r (named name in errors) in format (Auto: sniff) and calls fn
// for every good row, in file order. It returns every problem found. The
// error is for I/O failures, undecodable compression or an invalid format
// value, prefixed with name; or it is the first error fn returns, as it is
// (which stops the reading).
func Read(name string, r io.Reader, format Format, fn func(Row) error) ([]Error, error) {
	var fnErr error
	deliver := func(row Row) error {
		fnErr = fn(row)
		return fnErr
	}
	c := &collector{file: name}
	err := readFormat(c, r, format, deliver)
	if err != nil && err != fnErr { // fn's own error goes back as it is
		err = fmt.Errorf("%s: %w", name, err)
	}
	return c.list(), err
}

func readFormat(c *collector, r io.Reader, format Format, fn func(Row) error) error {
	br := bufio.NewReaderSize(r, 64<<10)
	if magic, _ := br.Peek(2); len(magic) == 2 && magic[0] == 0x1f && magic[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return fmt.Errorf("gzip: %w", err)
		}
		defer zr.Close()
		br = bufio.NewReaderSize(zr, 64<<10)
	}
	if bom, _ := br.Peek(3); bytes.Equal(bom, []byte("\xef\xbb\xbf")) {
		br.Discard(3)
	}
	if format == Auto || format == JSONArray {
		sniffed, err := sniff(br)
		if err != nil {
			return err
		}
		if format == Auto || sniffed == NDJSON {
			format = sniffed
		}
	}
	switch format {
	case CSV:
		return readCSV(c, br, fn)
	case NDJSON:
		return readNDJSON(c, br, fn)
	case JSONArray:
		return readJSONArray(c, br, fn)
	}
	return fmt.Errorf("invalid format %v", format)
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

// collector gathers errors up to MaxErrors and counts the rest. It also
// tracks the errors of the row being read.
type collector struct {
	file  string
	errs  []Error
	extra int

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
