package gateway

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"time"

	"github.com/usagefleet/usagefleet/messages"
	"github.com/usagefleet/usagefleet/producer/input"
)

// recordDecoder reads records from JSON objects. It interns short strings
// (account ids, SKUs, units, currencies repeat across a batch) and
// remembers the last time it parsed, so a 1,000-record request allocates
// little more than its distinct values.
type recordDecoder struct {
	strs     map[string]string
	lastTime string
	lastT    time.Time
	seen     []string
}

// column is a known column: its name (shared, not allocated per record)
// and kind. Built once from messages.Columns, so new columns come with it.
type column struct {
	name string
	kind messages.ColumnKind
}

var columns = func() map[string]column {
	m := map[string]column{}
	for _, c := range messages.Columns() {
		m[c] = column{c, messages.ColumnOf(c)}
	}
	return m
}()

func (d *recordDecoder) column(key []byte) column {
	if c, ok := columns[string(key)]; ok {
		return c
	}
	k := d.intern(key)
	return column{k, messages.ColumnOf(k)}
}

func (d *recordDecoder) intern(b []byte) string {
	if len(b) > 48 {
		return string(b)
	}
	if s, ok := d.strs[string(b)]; ok {
		return s
	}
	s := string(b)
	if d.strs == nil {
		d.strs = make(map[string]string, 256)
	}
	if len(d.strs) < 4096 {
		d.strs[s] = s
	}
	return s
}

// problems collects field errors for one record.
type problems struct {
	list  []ProblemError
	extra int
}

const maxProblems = 1000

func (p *problems) add(pointer, detail string) {
	if len(p.list) >= maxProblems {
		p.extra++
		return
	}
	p.list = append(p.list, ProblemError{Pointer: pointer, Detail: detail})
}

func (p *problems) result() []ProblemError {
	if p.extra > 0 {
		return append(p.list, ProblemError{Pointer: "", Detail: fmt.Sprintf("and %d more problems", p.extra)})
	}
	return p.list
}

// record decodes the object b into r. Field problems go to errs under
// prefix ("records[3]"); it returns false when b is not an object at all
// (or breaks JSON), reported the same way.
func (d *recordDecoder) record(b []byte, r *messages.UsageRecord, prefix string, errs *problems) bool {
	*r = messages.UsageRecord{}
	d.seen = d.seen[:0]
	bad := map[string]bool(nil)
	end, err := scanObject(b, 0, func(key, val []byte) error {
		col := d.column(key)
		k := col.name
		for _, s := range d.seen {
			if s == k {
				errs.add(prefix+"."+k, "repeated key")
				return nil
			}
		}
		d.seen = append(d.seen, k)
		if err := d.field(r, col, val); err != nil {
			errs.add(prefix+"."+k, err.Error())
			if bad == nil {
				bad = map[string]bool{}
			}
			bad[k] = true
		}
		return nil
	})
	if err == nil {
		if i := skipWS(b, end); i < len(b) {
			err = synErr(i, "data after the object")
		}
	}
	if err != nil {
		errs.add(prefix, err.Error())
		return false
	}
	for _, fe := range r.Validate() {
		if !bad[fe.Field] {
			errs.add(prefix+"."+fe.Field, fe.Problem)
		}
	}
	return true
}

// field sets one column: a plain string value takes the fast path through
// the messages setters; anything else goes through SetJSONField, so both
// read a value exactly as the producer's NDJSON reader does.
func (d *recordDecoder) field(r *messages.UsageRecord, col column, val []byte) error {
	k := col.name
	if len(val) > 0 && val[0] == '"' {
		if _, plain, _ := scanString(val, 0); plain {
			s := val[1 : len(val)-1]
			switch col.kind {
			case messages.ColString:
				r.SetString(k, d.intern(s))
				return nil
			case messages.ColDecimal:
				if len(s) == 0 {
					return nil
				}
				dec, err := messages.ParseDecimal(string(s))
				if err != nil {
					return err
				}
				r.SetDecimal(k, dec)
				return nil
			case messages.ColTime:
				if len(s) == 0 {
					return nil
				}
				if string(s) != d.lastTime {
					t, err := messages.ParseTime(string(s))
					if err != nil {
						return err
					}
					d.lastTime, d.lastT = string(s), t
				}
				r.SetTime(k, d.lastT)
				return nil
			}
		}
	}
	if len(val) > 0 && val[0] == '{' && col.kind == messages.ColTags {
		if m, ok := d.tags(val); ok {
			if len(m) > 0 {
				r.Tags = m
			}
			return nil
		}
	}
	return r.SetJSONField(k, val)
}

var errNotPlain = errors.New("not plain")

// tags reads an object of plain strings (anything else: ok false, and
// SetJSONField reads it and words the problem).
func (d *recordDecoder) tags(val []byte) (map[string]string, bool) {
	m := make(map[string]string, 4)
	end, err := scanObject(val, 0, func(k, v []byte) error {
		if len(v) < 2 || v[0] != '"' {
			return errNotPlain
		}
		if _, plain, _ := scanString(v, 0); !plain {
			return errNotPlain
		}
		m[d.intern(k)] = d.intern(v[1 : len(v)-1])
		return nil
	})
	return m, err == nil && end == len(val)
}

var errTooMany = errors.New("too many records")

// decodeJSONArray reads a JSON array of records.
func decodeJSONArray(b []byte, max int, errs *problems) ([]messages.UsageRecord, error) {
	i := skipWS(b, 0)
	if i >= len(b) || b[i] != '[' {
		errs.add("", "want a JSON array of records")
		return nil, nil
	}
	var d recordDecoder
	recs := make([]messages.UsageRecord, 0, min(estimate(b), max))
	i = skipWS(b, i+1)
	if i < len(b) && b[i] == ']' {
		i++
	} else {
		for n := 0; ; n++ {
			i = skipWS(b, i)
			end, err := scanValue(b, i)
			if err != nil {
				errs.add(fmt.Sprintf("records[%d]", n), err.Error())
				return nil, nil
			}
			if len(recs) >= max {
				return nil, errTooMany
			}
			recs = append(recs, messages.UsageRecord{})
			d.record(b[i:end], &recs[n], "records["+strconv.Itoa(n)+"]", errs)
			i = skipWS(b, end)
			if i < len(b) && b[i] == ',' {
				i++
				continue
			}
			if i < len(b) && b[i] == ']' {
				i++
				break
			}
			errs.add("", synErr(i, "want ',' or ']' after a record").Error())
			return nil, nil
		}
	}
	if i = skipWS(b, i); i < len(b) {
		errs.add("", synErr(i, "data after the closing ]").Error())
	}
	return recs, nil
}

// decodeNDJSON reads one record per line; blank lines are skipped (the
// record index counts records, not lines).
func decodeNDJSON(b []byte, max int, errs *problems) ([]messages.UsageRecord, error) {
	var d recordDecoder
	recs := make([]messages.UsageRecord, 0, min(bytes.Count(b, []byte{'\n'})+1, max))
	for len(b) > 0 {
		line := b
		if j := bytes.IndexByte(b, '\n'); j >= 0 {
			line, b = b[:j], b[j+1:]
		} else {
			b = nil
		}
		line = bytes.TrimSpace(line)
		if len(line) == 0 {
			continue
		}
		if len(recs) >= max {
			return nil, errTooMany
		}
		n := len(recs)
		recs = append(recs, messages.UsageRecord{})
		d.record(line, &recs[n], "records["+strconv.Itoa(n)+"]", errs)
	}
	return recs, nil
}

// decodeCSV reads FOCUS CSV with the producer's reader (producer/input):
// its errors carry file lines, which are mapped to record indexes (a
// record's index is the number of records, good or bad, before it).
func decodeCSV(b []byte, max int, errs *problems) ([]messages.UsageRecord, error) {
	var rows []input.Row
	ierrs, err := input.Read("body", bytes.NewReader(b), input.CSV, func(r input.Row) error {
		if len(rows) >= max {
			return errTooMany
		}
		rows = append(rows, r)
		return nil
	})
	if errors.Is(err, errTooMany) {
		return nil, err
	}
	if err != nil {
		errs.add("", err.Error())
		return nil, nil
	}
	if len(ierrs) == 0 {
		recs := make([]messages.UsageRecord, len(rows))
		for i := range rows {
			recs[i] = rows[i].Record
		}
		return recs, nil
	}
	// The header is the first non-blank line; its problems are the
	// header's, every later line is a record.
	headerLine := 1 + bytes.Count(b[:len(b)-len(bytes.TrimLeft(b, "\r\n"))], []byte{'\n'})
	lines := map[int]bool{}
	for _, r := range rows {
		lines[r.Line] = true
	}
	for _, e := range ierrs {
		if e.Line > headerLine {
			lines[e.Line] = true
		}
	}
	sorted := make([]int, 0, len(lines))
	for l := range lines {
		sorted = append(sorted, l)
	}
	sort.Ints(sorted)
	index := map[int]int{}
	for i, l := range sorted {
		index[l] = i
	}
	for _, e := range ierrs {
		ptr := "header"
		if i, ok := index[e.Line]; ok {
			ptr = "records[" + strconv.Itoa(i) + "]"
		} else if e.Line == 0 {
			ptr = ""
		}
		if e.Field != "" {
			ptr += "." + e.Field
		}
		errs.add(ptr, fmt.Sprintf("line %d: %s", e.Line, e.Problem))
	}
	return nil, nil
}

// estimate guesses a record count from the body size (for the slice).
func estimate(b []byte) int { return len(b)/300 + 1 }

func jsonUnmarshalString(b []byte, s *string) error { return json.Unmarshal(b, s) }
