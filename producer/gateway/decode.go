package gateway

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"
	"unsafe"

	"github.com/usagefleet/usagefleet/messages"
	"github.com/usagefleet/usagefleet/producer/input"
)

// recordDecoder reads records from JSON objects. The request's body is
// copied into one string (src) and every plain string value is a substring
// of it: no allocation and no hashing per value. The records keep the body
// alive only as long as they live themselves, that is until the request
// is answered. Members are matched to columns by their position in the
// previous record first (the records of one request almost always list the
// same keys in the same order), by a map lookup otherwise; a column of
// messages.Columns() is set through its field's offset.
type recordDecoder struct {
	order    []*column // the column of the member at each position of the last record
	extra    map[string]*column
	lastTime string
	lastT    time.Time
	seenExt  []string
	// start, when not zero, is the ChargePeriodStart of a record without
	// one (a CloudEvent's time), set before the record is validated, so
	// the record is validated once, as it is published; filled says it was.
	start  time.Time
	filled bool
}

// column is a column a record may carry: its name (shared, not allocated
// per record) and kind, and for the core columns (messages.Columns) a bit
// in the repeated-key set and its field's offset in messages.UsageRecord.
type column struct {
	key  string // the member's name in the body
	name string // the column: key, or x_<key repaired> for a key neither FOCUS nor x_
	kind messages.ColumnKind
	// A key neither FOCUS nor x_ is kept as an extension with a warning,
	// as the producer keeps it (input.ExtensionKey), or refused (problem).
	warning, problem string
	bit              uint64
	off              uintptr
	fast             bool // off is the field of a string, Decimal or time.Time column
}

var columns = func() map[string]*column {
	m := map[string]*column{}
	rt := reflect.TypeFor[messages.UsageRecord]()
	for i, c := range messages.Columns() {
		col := &column{key: c, name: c, kind: messages.ColumnOf(c)}
		if i < 64 {
			col.bit = 1 << i
		}
		if f, ok := rt.FieldByName(c); ok && len(f.Index) == 1 {
			switch {
			case col.kind == messages.ColString && f.Type == reflect.TypeFor[string](),
				col.kind == messages.ColDecimal && f.Type == reflect.TypeFor[messages.Decimal](),
				col.kind == messages.ColTime && f.Type == reflect.TypeFor[time.Time]():
				col.off, col.fast = f.Offset, true
			}
		}
		m[c] = col
	}
	return m
}()

// column finds the column of the member at position n named key.
func (d *recordDecoder) column(n int, key []byte) *column {
	if n < len(d.order) {
		if c := d.order[n]; c != nil && c.key == string(key) {
			return c
		}
	}
	c, ok := columns[string(key)]
	if !ok {
		if c, ok = d.extra[string(key)]; !ok {
			k := string(key)
			c = &column{key: k, name: k, kind: messages.ColumnOf(k)}
			if c.kind == messages.ColUnknown {
				if ext, warn, prob := input.ExtensionKey(k); prob != "" {
					c.problem = prob
				} else {
					c.name, c.kind, c.warning = ext, messages.ColumnOf(ext), warn
				}
			}
			if d.extra == nil {
				d.extra = map[string]*column{}
			}
			if len(d.extra) < 1024 {
				d.extra[k] = c
			}
		}
	}
	for len(d.order) <= n {
		d.order = append(d.order, nil)
	}
	d.order[n] = c
	return c
}

// where names a record in problems: base[idx]sub, or base+sub when idx < 0
// ("records[3]", "events[2].data", "data"). Rendered only for a problem.
type where struct {
	base string
	idx  int
	sub  string
}

func (w where) String() string {
	if w.idx < 0 {
		return w.base + w.sub
	}
	return w.base + "[" + strconv.Itoa(w.idx) + "]" + w.sub
}

func at(base string, idx int) where { return where{base: base, idx: idx} }

// problems collects field errors for one record, and the warnings: what
// was kept but repaired (each said once per request, as the producer says
// it once per file).
type problems struct {
	list   []ProblemError
	extra  int
	warns  []ProblemError
	warned map[string]bool
}

const maxWarnings = 100

func (p *problems) warn(key, pointer, detail string) {
	if p.warned[key] || len(p.warns) >= maxWarnings {
		return
	}
	if p.warned == nil {
		p.warned = map[string]bool{}
	}
	p.warned[key] = true
	p.warns = append(p.warns, ProblemError{Pointer: pointer, Detail: detail})
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

// record decodes the object b into r, which must be zero; src is b as a
// string (a substring of the body), which the record's strings share.
// Field problems go to errs under w; it returns false when b is not an
// object at all (or breaks JSON), reported the same way.
func (d *recordDecoder) record(b []byte, src string, r *messages.UsageRecord, w where, errs *problems) bool {
	d.seenExt = d.seenExt[:0]
	var seen uint64
	bad := map[string]bool(nil)
	n := 0
	end, err := scanObject(b, 0, func(key, val []byte, _, off int, plain bool) error {
		col := d.column(n, key)
		n++
		k := col.name
		repeated := false
		if col.bit != 0 {
			repeated = seen&col.bit != 0
			seen |= col.bit
		} else {
			repeated = slices.Contains(d.seenExt, k)
			d.seenExt = append(d.seenExt, k)
		}
		if repeated {
			errs.add(w.String()+"."+col.key, "repeated key")
			return nil
		}
		if col.problem != "" {
			errs.add(w.String()+"."+clip(col.key), col.problem)
			return nil
		}
		if col.warning != "" {
			errs.warn(col.key, w.String()+"."+clip(col.key), col.warning)
		}
		if err := d.field(r, col, val, src[off:off+len(val)], plain); err != nil {
			errs.add(w.String()+"."+k, err.Error())
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
		errs.add(w.String(), err.Error())
		return false
	}
	d.filled = false
	if r.ChargePeriodStart.IsZero() && !d.start.IsZero() && !bad["ChargePeriodStart"] {
		r.ChargePeriodStart, d.filled = d.start, true
	}
	for _, fe := range r.Validate() {
		if !bad[fe.Field] {
			errs.add(w.String()+"."+fe.Field, fe.Problem)
		}
	}
	return true
}

// field sets one column from its raw value val (sval is the same bytes as
// a substring of the body): a plain string value (plain: scanString's
// word) takes the fast path;
// anything else goes through SetJSONField, so both read a value exactly as
// the producer's NDJSON reader does.
func (d *recordDecoder) field(r *messages.UsageRecord, col *column, val []byte, sval string, plain bool) error {
	k := col.name
	{
		if plain {
			s := sval[1 : len(sval)-1]
			switch col.kind {
			case messages.ColString:
				if col.fast {
					*(*string)(unsafe.Add(unsafe.Pointer(r), col.off)) = s
				} else {
					r.SetString(k, s)
				}
				return nil
			case messages.ColDecimal:
				if len(s) == 0 {
					return nil
				}
				dec, err := messages.ParseDecimal(s)
				if err != nil {
					return err
				}
				if col.fast {
					*(*messages.Decimal)(unsafe.Add(unsafe.Pointer(r), col.off)) = dec
				} else {
					r.SetDecimal(k, dec)
				}
				return nil
			case messages.ColTime:
				if len(s) == 0 {
					return nil
				}
				if s != d.lastTime {
					t, err := messages.ParseTime(s)
					if err != nil {
						return err
					}
					d.lastTime, d.lastT = s, t
				}
				if col.fast {
					*(*time.Time)(unsafe.Add(unsafe.Pointer(r), col.off)) = d.lastT
				} else {
					r.SetTime(k, d.lastT)
				}
				return nil
			}
		}
	}
	if len(val) > 0 && val[0] == '{' && col.kind == messages.ColTags {
		if m, ok := d.tags(val, sval); ok {
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
func (d *recordDecoder) tags(val []byte, sval string) (map[string]string, bool) {
	m := make(map[string]string, 4)
	end, err := scanObject(val, 0, func(k, v []byte, kat, off int, plain bool) error {
		if !plain {
			return errNotPlain
		}
		ks := string(k) // a key with escapes, decoded
		if kat >= 0 {
			ks = sval[kat : kat+len(k)]
		}
		m[ks] = sval[off+1 : off+len(v)-1]
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
	src := string(b) // the records' strings are substrings of it
	recs := getRecords(min(estimate(b), max))
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
			d.record(b[i:end], src[i:end], &recs[n], at("records", n), errs)
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
	src := string(b) // the records' strings are substrings of it
	recs := getRecords(min(bytes.Count(b, []byte{'\n'})+1, max))
	for pos := 0; pos < len(b); {
		lineEnd := len(b)
		next := len(b)
		if j := bytes.IndexByte(b[pos:], '\n'); j >= 0 {
			lineEnd, next = pos+j, pos+j+1
		}
		i, j := pos, lineEnd
		pos = next
		for i < j && isSpace(b[i]) {
			i++
		}
		for j > i && isSpace(b[j-1]) {
			j--
		}
		if i < j && (b[i] >= utf8.RuneSelf || b[j-1] >= utf8.RuneSelf) {
			// Unicode blanks: trimmed as bytes.TrimSpace does.
			l := bytes.TrimLeftFunc(b[i:j], unicode.IsSpace)
			i = j - len(l)
			j = i + len(bytes.TrimRightFunc(l, unicode.IsSpace))
		}
		if i == j {
			continue
		}
		if len(recs) >= max {
			return nil, errTooMany
		}
		n := len(recs)
		recs = append(recs, messages.UsageRecord{})
		d.record(b[i:j], src[i:j], &recs[n], at("records", n), errs)
	}
	return recs, nil
}

// decodeCSV reads FOCUS CSV with the producer's reader (producer/input):
// its errors carry file lines, which are mapped to record indexes (a
// record's index is the number of records, good or bad, before it).
func decodeCSV(b []byte, max int, errs *problems) ([]messages.UsageRecord, error) {
	var rows []input.Row
	res, err := input.ReadWith("body", bytes.NewReader(b), input.Options{Format: input.CSV}, func(r input.Row) error {
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
	for _, w := range res.Warnings {
		ptr := "header"
		if w.Field != "" {
			ptr += "." + w.Field
		}
		errs.warn("\x00"+ptr+w.Problem, ptr, fmt.Sprintf("line %d: %s", w.Line, w.Problem))
	}
	ierrs := res.Errors
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

// A request's records are reused by the next request once its batch is
// stored (putRecords): a 1,000-record slice is over a megabyte, and
// allocating one per request kept the GC and the scavenger busy.
var recordsPool sync.Pool

const poolRecordsMax = 10000 // larger slices are left to the GC

func getRecords(n int) []messages.UsageRecord {
	if n <= poolRecordsMax {
		if p, ok := recordsPool.Get().(*[]messages.UsageRecord); ok && cap(*p) >= n {
			return (*p)[:0]
		}
		n = max(n, 1024)
	}
	return make([]messages.UsageRecord, 0, n)
}

// putRecords hands recs back; nothing may use them after. They are
// cleared, so the pool keeps no body alive.
func putRecords(recs []messages.UsageRecord) {
	if cap(recs) == 0 || cap(recs) > poolRecordsMax {
		return
	}
	clear(recs[:cap(recs)])
	recs = recs[:0]
	recordsPool.Put(&recs)
}

// isSpace is bytes.TrimSpace's ASCII set.
func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'
}

// estimate guesses a record count from the body size (for the slice).
func estimate(b []byte) int { return len(b)/300 + 1 }

// clip keeps a key in a pointer short and valid UTF-8.
func clip(k string) string {
	if len(k) > 80 {
		return strings.ToValidUTF8(k[:80], "?") + "…"
	}
	return strings.ToValidUTF8(k, "?")
}

func jsonUnmarshalString(b []byte, s *string) error { return json.Unmarshal(b, s) }
