package input

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"strings"

	"github.com/usagefleet/usagefleet/messages"
)

func readNDJSON(c *collector, r io.Reader, fn func(Row) error) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), MaxLineBytes)
	line := 0
	for sc.Scan() {
		line++
		b := bytes.TrimSpace(sc.Bytes())
		if len(b) == 0 {
			continue
		}
		var ur messages.UsageRecord
		c.beginRow()
		readable := jsonRecord(c, line, b, &ur)
		if c.endRow(line, &ur, readable) {
			if err := fn(Row{Line: line, Record: ur}); err != nil {
				return err
			}
		}
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			c.add(line+1, "", "line longer than %d bytes; reading stopped here", MaxLineBytes)
			return nil
		}
		return err
	}
	return nil
}

// jsonRecord fills ur from one JSON object, reporting every bad key. It
// returns false when the object could not be read at all (a syntax error,
// not an object): that is one problem, and the record is not checked
// further.
func jsonRecord(c *collector, line int, b []byte, ur *messages.UsageRecord) bool {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil {
		c.add(line, "", "%s", jsonProblem(err))
		return false
	}
	if d, isDelim := tok.(json.Delim); !isDelim || d != '{' {
		c.add(line, "", "want a JSON object, got %s", clipJSON(b))
		return false
	}
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			c.add(line, "", "%s", jsonProblem(err))
			return false
		}
		key := tok.(string) // object keys are always strings
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			c.add(line, key, "%s", jsonProblem(err))
			return false
		}
		if seen[key] {
			c.add(line, key, "repeated key")
			continue
		}
		seen[key] = true
		c.sawKey(key)
		if messages.ColumnOf(key) == messages.ColUnknown {
			col, problem := unknownColumn(c, line, key)
			if problem != "" {
				c.add(line, clipField(key), "%s", problem)
				continue
			}
			key = "x_" + col.name
			if seen[key] {
				c.add(line, clipField(col.header), "same column as %s", key)
				continue
			}
			seen[key] = true
		}
		if err := ur.SetJSONField(key, raw); err != nil {
			c.add(line, clipField(key), "%v", err)
		}
	}
	if _, err := dec.Token(); err != nil { // the closing '}'
		c.add(line, "", "%s", jsonProblem(err))
		return false
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		c.add(line, "", "invalid JSON: more than one value on the line")
		return false
	}
	return true
}

// sawKey notes a JSON key, for the file's FOCUS version.
func (c *collector) sawKey(k string) {
	if c.keys == nil {
		c.keys = map[string]bool{}
	}
	if !c.keys[k] && len(c.keys) < 1024 {
		c.keys[k] = true
		if v := messages.FocusVersion([]string{k}); v > c.version {
			c.version = v
		}
	}
}

func clipJSON(b []byte) string {
	s := string(b[:min(len(b), 40)])
	if len(b) > 40 {
		s += "…"
	}
	return strings.ToValidUTF8(s, "\ufffd")
}

// readJSONArray streams the elements of a top-level array. A syntax error
// ends the reading (the decoder cannot resynchronise); every element read
// before it is delivered or reported as usual.
func readJSONArray(c *collector, r io.Reader, lim *LimitReader, fn func(Row) error) error {
	lc := &lineCounter{r: r}
	dec := json.NewDecoder(lc)
	dec.UseNumber()
	syntax := func(err error) error {
		if lc.err != nil {
			return err // an I/O failure, not the content
		}
		c.add(lc.lineAt(syntaxOffset(dec, lc, err)), "", "%s", jsonProblem(err))
		return nil
	}
	tok, err := dec.Token()
	if errors.Is(err, io.EOF) {
		c.add(1, "", "empty file: want a JSON array of records")
		return nil
	}
	if err != nil {
		return syntax(err)
	}
	if d, isDelim := tok.(json.Delim); !isDelim || d != '[' {
		c.add(lc.lineAt(dec.InputOffset()-1), "", "want a JSON array of records")
		return nil
	}
	for {
		lim.Record(MaxRecordBytes+slack, "a JSON array element longer than 16 MiB (MaxRecordBytes)")
		more := dec.More()
		var raw json.RawMessage
		var err error
		if more {
			err = dec.Decode(&raw)
		}
		lim.Record(-1, "")
		if !more {
			break
		}
		if lim.Err() != nil {
			return lim.Err()
		}
		if err != nil {
			return syntax(err)
		}
		// The raw value holds no leading space and the decoder has read
		// exactly to its end, so it starts len(raw) bytes back.
		line := lc.lineAt(dec.InputOffset() - int64(len(raw)))
		var ur messages.UsageRecord
		c.beginRow()
		readable := jsonRecord(c, line, raw, &ur)
		if c.endRow(line, &ur, readable) {
			if err := fn(Row{Line: line, Record: ur}); err != nil {
				return err
			}
		}
	}
	if _, err := dec.Token(); err != nil { // the closing ']'
		return syntax(err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		if err != nil {
			return syntax(err)
		}
		c.add(lc.lineAt(dec.InputOffset()), "", "invalid JSON: data after the closing ]")
	}
	return nil
}

// syntaxOffset finds the offset of the byte a decoder error is about.
// SyntaxError.Offset is unreliable from a Decoder that has decoded values
// before (it counts from an earlier point), so the value that failed is
// scanned again on its own from the decoder's position.
func syntaxOffset(dec *json.Decoder, lc *lineCounter, err error) int64 {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return max(lc.off-1, 0) // the last byte of the input
	}
	off := dec.InputOffset()
	var raw json.RawMessage
	var se *json.SyntaxError
	if errors.As(json.NewDecoder(dec.Buffered()).Decode(&raw), &se) && se.Offset > 0 {
		off += se.Offset - 1
	}
	return off
}

// jsonProblem words a decoding error.
func jsonProblem(err error) string {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return "invalid JSON: unexpected end of input"
	}
	return "invalid JSON: " + err.Error()
}

// lineCounter tells the line of a byte offset already read. Offsets asked
// for never decrease, so it keeps only the newlines of the decoder's
// read-ahead, not of the whole file.
type lineCounter struct {
	r    io.Reader
	off  int64   // bytes read so far
	nl   []int64 // offsets of newlines not yet passed
	line int     // newlines passed
	err  error   // the first read error other than EOF
}

func (lc *lineCounter) Read(p []byte) (int, error) {
	n, err := lc.r.Read(p)
	for i := 0; i < n; {
		j := bytes.IndexByte(p[i:n], '\n')
		if j < 0 {
			break
		}
		lc.nl = append(lc.nl, lc.off+int64(i+j))
		i += j + 1
	}
	lc.off += int64(n)
	if err != nil && !errors.Is(err, io.EOF) && lc.err == nil {
		lc.err = err
	}
	return n, err
}

// lineAt returns the 1-based line of offset off.
func (lc *lineCounter) lineAt(off int64) int {
	k := 0
	for k < len(lc.nl) && lc.nl[k] < off {
		k++
	}
	lc.line += k
	lc.nl = lc.nl[k:]
	return lc.line + 1
}
