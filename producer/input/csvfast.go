package input

import (
	"bytes"
	"unsafe"
)

// fastRecords reads the plain records of a chunk without encoding/csv:
// records on one line each (no newline in a quoted field, no carriage
// return, no blank line) whose quotes are well formed and whose field
// count is the header's. For those, encoding/csv gives these same fields
// at these same lines. It stops at the first record that is not plain and
// says where (the offset in data and its line): encoding/csv reads that
// one, and says what it makes of it. It starts at data[off:], on line.
//
// encoding/csv made each record one string (the line, 700 bytes of a
// FOCUS row) and was an eighth of the publish profile. Here a field is a
// view of data (or, with doubled quotes, of a scratch buffer): it is only
// for a taker that reuses its record and copies what it keeps (the
// encoded rows' taker), never for Rows handed out, and data must not
// change while t.take runs.
func fastRecords(t *rowTaker, data []byte, off, nfields, line int) (at, atLine int, err error) {
	fields := make([]string, 0, nfields)
	var esc []byte
	for off < len(data) {
		rest := data[off:]
		ln, next := rest, len(rest)
		if j := bytes.IndexByte(rest, '\n'); j >= 0 {
			ln, next = rest[:j], j+1
		}
		if len(ln) == 0 || bytes.IndexByte(ln, '\r') >= 0 {
			return off, line, nil
		}
		fields, esc = fields[:0], esc[:0]
		ok := true
		if bytes.IndexByte(ln, '"') < 0 {
			for {
				k := bytes.IndexByte(ln, ',')
				if k < 0 {
					fields = append(fields, view(ln))
					break
				}
				fields = append(fields, view(ln[:k]))
				ln = ln[k+1:]
			}
		} else {
			fields, esc, ok = splitQuoted(ln, fields, esc)
		}
		if !ok || len(fields) != nfields {
			return off, line, nil
		}
		if err := t.take(fields, line); err != nil {
			return off, line, err
		}
		off += next
		line++
	}
	return off, line, nil
}

// splitQuoted splits a line with quotes in it into fields, as encoding/csv
// does; ok is false where encoding/csv would give an error or read on to
// the next line (a quoted field not closed on this one).
func splitQuoted(ln []byte, fields []string, esc []byte) (_ []string, _ []byte, ok bool) {
	i := 0
	for {
		if i == len(ln) { // after a comma: an empty last field
			return append(fields, ""), esc, true
		}
		if ln[i] != '"' {
			f := ln[i:]
			k := bytes.IndexByte(f, ',')
			if k >= 0 {
				f = f[:k]
			}
			if bytes.IndexByte(f, '"') >= 0 {
				return fields, esc, false // a bare quote
			}
			fields = append(fields, view(f))
			if k < 0 {
				return fields, esc, true
			}
			i += k + 1
			continue
		}
		i++
		start, from := i, -1 // from: where the field starts in esc, once a quote is doubled
		for {
			k := bytes.IndexByte(ln[i:], '"')
			if k < 0 {
				return fields, esc, false // not closed on this line
			}
			i += k
			if i+1 < len(ln) && ln[i+1] == '"' {
				if from < 0 {
					from = len(esc)
				}
				esc = append(esc, ln[start:i+1]...)
				i += 2
				start = i
				continue
			}
			if from < 0 {
				fields = append(fields, view(ln[start:i]))
			} else {
				esc = append(esc, ln[start:i]...)
				fields = append(fields, view(esc[from:]))
			}
			i++
			break
		}
		if i == len(ln) {
			return fields, esc, true
		}
		if ln[i] != ',' {
			return fields, esc, false // a character after the closing quote
		}
		i++
	}
}

// view is b as a string without a copy (see fastRecords).
func view(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}
