package cloudzero

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"

	"github.com/usagefleet/usagefleet/messages"
)

// fastCount reads a body for Config.FastCount: the envelope (month and
// operation) is decoded, but the rows are not walked value by value. Each
// row's two required values are found by scanning for their keys, which
// JSON escaping guarantees cannot occur inside a string value: a row count,
// the hour of each row and the exact cost per hour. It checks what a
// benchmark needs to trust the fleet's output (auth, size, one month per
// body, every row with a start and a cost, exact sums) and leaves out
// everything else, including JSON validity: the strict mode is the
// emulator; this is a counting endpoint. Per-hour byte totals (used only by
// the 70 MB monthly cap) are the body's row bytes shared out by row count.
func fastCount(body []byte) (*drop, *badRequest) {
	di := bytes.Index(body, []byte(`"data":[`))
	if di < 0 {
		return nil, requestError("data: required (fast count mode expects \"data\":[ ... ] last)")
	}
	var env struct {
		Month     string `json:"month"`
		Operation string `json:"operation"`
	}
	end := bytes.LastIndexByte(body, ']')
	if end < di {
		return nil, requestError("data: the array is not closed")
	}
	// The envelope without the rows: what precedes and follows the array.
	envBody := append(append(append([]byte(nil), body[:di]...), `"data":[]`...), body[end+1:]...)
	if err := json.Unmarshal(envBody, &env); err != nil {
		return nil, requestError("envelope: %v", err)
	}
	d := &drop{op: OpReplaceDrop, hours: map[time.Time]*hourData{}}
	switch env.Operation {
	case "":
	case OpReplaceDrop, OpReplaceHourly, OpSum:
		d.op = env.Operation
	default:
		return nil, requestError("operation: %q is not one of %q, %q, %q", env.Operation, OpReplaceDrop, OpReplaceHourly, OpSum)
	}
	monthGiven := env.Month != ""
	if monthGiven {
		m, ok := parseMonth(env.Month)
		if !ok {
			return nil, requestError("month: %q is neither YYYY-MM nor an ISO 8601 datetime", env.Month)
		}
		d.month = m
	}
	rows := body[di+len(`"data":[`) : end]
	c := counter{d: d, monthGiven: monthGiven}
	for i, pos := 0, 0; ; i++ {
		open := bytes.IndexByte(rows[pos:], '{')
		if open < 0 {
			break
		}
		rowStart := pos + open
		rowEnd, ok := rowEndAt(rows, rowStart)
		if !ok {
			return nil, (&colError{"", "the row object is not closed"}).at(i)
		}
		if bad := c.row(rows[rowStart:rowEnd], i); bad != nil {
			return nil, bad
		}
		pos = rowEnd
	}
	if d.rows == 0 && !monthGiven {
		return nil, requestError("month: required when data is empty")
	}
	per := int64(0)
	if d.rows > 0 {
		per = int64(len(rows)) / int64(d.rows)
	}
	for hour, h := range d.hours {
		h.cost = c.sums[hour].Big()
		h.bytes = per * int64(h.count)
		d.bytes += h.bytes
	}
	return d, nil
}

// rowEndAt finds the end (just after its '}') of the row object starting
// at rows[start]. The first '}' closes the row unless it is inside a
// string: then the row's quotes before it are odd. Rows with a backslash
// (escapes) or nested braces are walked byte by byte.
func rowEndAt(rows []byte, start int) (int, bool) {
	from := start + 1
	for {
		k := bytes.IndexByte(rows[from:], '}')
		if k < 0 {
			return 0, false
		}
		end := from + k + 1
		seg := rows[start:end]
		if bytes.IndexByte(seg, '\\') >= 0 || bytes.IndexByte(seg[1:], '{') >= 0 {
			return walkRow(rows, start)
		}
		if bytes.Count(seg, quote)%2 == 0 {
			return end, true
		}
		from = end // that '}' was inside a string value
	}
}

var quote = []byte{'"'}

// walkRow is rowEndAt for rows with escapes or nesting: a byte-by-byte
// walk that knows strings and depth.
func walkRow(rows []byte, start int) (int, bool) {
	depth, inStr := 0, false
	for i := start; i < len(rows); i++ {
		c := rows[i]
		switch {
		case inStr && c == '\\':
			i++
		case c == '"':
			inStr = !inStr
		case inStr:
		case c == '{' || c == '[':
			depth++
		case c == '}' || c == ']':
			depth--
			if depth == 0 {
				return i + 1, true
			}
		}
	}
	return 0, false
}

// counter adds up the rows of one body.
type counter struct {
	d          *drop
	monthGiven bool
	sums       map[time.Time]*messages.Sum
	lastKey    int64 // yyyymmddhh of the last row's hour, to skip the map
	lastHour   *hourData
	lastSum    *messages.Sum
	costHint   int // where the last row's cost key began
}

var (
	startKey = []byte(`"time/usage_start":"`)
	costKey  = []byte(`"cost/cost":"`)
)

// row counts one row object: its start and cost are found by their keys
// (JSON escaping guarantees a key cannot occur inside a string value).
// A row spaced or escaped unusually is read with encoding/json instead.
func (c *counter) row(row []byte, i int) *badRequest {
	startText, ok1 := valueOf(row, startKey, 0)
	costText, ok2 := valueOf(row, costKey, c.costHint)
	if ok2 {
		// Rows of one body are alike: the next row's cost is looked for
		// near where this one's was.
		c.costHint = int(cap(row) - cap(costText) - len(costKey))
	}
	if !ok1 || !ok2 {
		var v map[string]any
		if err := json.Unmarshal(row, &v); err != nil {
			return (&colError{"", "not a JSON object: " + err.Error()}).at(i)
		}
		s, _ := v[colUsageStart].(string)
		k, _ := v[colCost].(string)
		if _, ok := v[colUsageStart]; !ok {
			return (&colError{colUsageStart, "required"}).at(i)
		}
		if _, ok := v[colCost]; !ok {
			return (&colError{colCost, "required"}).at(i)
		}
		startText, costText = []byte(s), []byte(k)
	}
	if !plainDecimal(costText) {
		return (&colError{colCost, "\"" + string(costText) + "\" is not a decimal string (digits, an optional minus and fraction, no exponent)"}).at(i)
	}
	d := c.d
	// The same hour as the row before (the fleet sends hours whole) needs
	// no time built: its key is enough, once the text is known to be a
	// valid time of that hour.
	if c.lastHour == nil || !sameHour(startText, c.lastKey) {
		key, start, ok := hourKey(startText)
		if !ok {
			return (&colError{colUsageStart, fmt.Sprintf("%q is not an ISO 8601 datetime", startText)}).at(i)
		}
		m := monthOf(start)
		switch {
		case d.rows == 0 && !c.monthGiven:
			d.month = m
		case !m.Equal(d.month):
			return (&colError{colUsageStart, "not in the body's month " + d.month.Format("2006-01")}).at(i)
		}
		hour := start.Truncate(time.Hour)
		h := d.hours[hour]
		if h == nil {
			if c.sums == nil {
				c.sums = map[time.Time]*messages.Sum{}
			}
			h = &hourData{}
			d.hours[hour] = h
			c.sums[hour] = &messages.Sum{}
		}
		c.lastKey, c.lastHour, c.lastSum = key, h, c.sums[hour]
	}
	if err := c.lastSum.AddPlain(costText); err != nil {
		return (&colError{colCost, err.Error()}).at(i)
	}
	c.lastHour.count++
	d.rows++
	return nil
}

// valueOf returns the string value of key (`"name":"`) in row, when it is
// written without spaces and its value has no escapes. The key is searched
// for without its opening quote: quotes are the commonest byte of a row,
// and a search that starts on every one of them is several times slower.
//
// hint is where the key probably begins: the search starts a little before
// it, and only if the key is not there does it look at the row's start
// (JSON keys are unique in a row, so a key found is the key).
func valueOf(row, key []byte, hint int) ([]byte, bool) {
	if bytes.HasPrefix(row[1:], key) { // the fleet writes time/usage_start first
		return valueAt(row[1+len(key):])
	}
	bare := key[1:]
	if from := hint - 48; from > 1 && from < len(row) {
		if v, ok := findBare(row, bare, from, len(row)); ok {
			return v, true
		}
		return findBare(row, bare, 1, min(len(row), from+len(bare)))
	}
	return findBare(row, bare, 1, len(row))
}

// findBare looks for bare (a key without its opening quote) starting in
// row[from:to], preceded by a quote.
func findBare(row, bare []byte, from, to int) ([]byte, bool) {
	for {
		k := bytes.Index(row[from:min(len(row), to+len(bare))], bare)
		if k < 0 {
			return nil, false
		}
		k += from
		if row[k-1] == '"' {
			return valueAt(row[k+len(bare):])
		}
		from = k + 1
	}
}

func valueAt(v []byte) ([]byte, bool) {
	q := bytes.IndexByte(v, '"')
	if q < 0 {
		return nil, false
	}
	return v[:q], true
}

// hourKey reads an ISO 8601 datetime: yyyymmddhh of its UTC hour, and the
// time. "YYYY-MM-DDTHH:MM:SS[.f]Z" is read by hand; other forms (offsets,
// no zone) go through the strict mode's parser.
func hourKey(b []byte) (int64, time.Time, bool) {
	n := len(b)
	if n >= 20 && b[n-1] == 'Z' && b[4] == '-' && b[7] == '-' && b[10] == 'T' && b[13] == ':' && b[16] == ':' &&
		(n == 20 || (n > 21 && b[19] == '.')) {
		y, ok1 := digits(b[0:4])
		mo, ok2 := digits(b[5:7])
		dd, ok3 := digits(b[8:10])
		hh, ok4 := digits(b[11:13])
		mi, ok5 := digits(b[14:16])
		ss, ok6 := digits(b[17:19])
		frac := true
		for _, c := range b[min(20, n-1) : n-1] {
			frac = frac && isDigit(c)
		}
		if ok1 && ok2 && ok3 && ok4 && ok5 && ok6 && frac && mo >= 1 && mo <= 12 && dd >= 1 && dd <= 31 && hh <= 23 && mi <= 59 && ss <= 59 {
			t := time.Date(y, time.Month(mo), dd, hh, mi, ss, 0, time.UTC)
			if t.Day() == dd { // not 31 April
				return int64(y)*1_000_000 + int64(mo)*10_000 + int64(dd)*100 + int64(hh), t, true
			}
		}
		return 0, time.Time{}, false
	}
	t, ok := parseISO(string(b))
	if !ok {
		return 0, time.Time{}, false
	}
	return int64(t.Year())*1_000_000 + int64(t.Month())*10_000 + int64(t.Day())*100 + int64(t.Hour()), t, true
}

// sameHour reports whether b is "YYYY-MM-DDTHH:MM:SS[.f]Z" in the hour
// whose key is last, with valid minutes, seconds and fraction.
func sameHour(b []byte, last int64) bool {
	n := len(b)
	if last == 0 || n < 20 || b[n-1] != 'Z' || b[13] != ':' || b[16] != ':' || (n > 20 && (n == 21 || b[19] != '.')) {
		return false
	}
	y, m, d, h := last/1_000_000, last/10_000%100, last/100%100, last%100
	want := [13]byte{byte('0' + y/1000), byte('0' + y/100%10), byte('0' + y/10%10), byte('0' + y%10), '-',
		byte('0' + m/10), byte('0' + m%10), '-', byte('0' + d/10), byte('0' + d%10), 'T', byte('0' + h/10), byte('0' + h%10)}
	if string(b[:13]) != string(want[:]) {
		return false
	}
	mi, ok1 := digits(b[14:16])
	ss, ok2 := digits(b[17:19])
	if !ok1 || !ok2 || mi > 59 || ss > 59 {
		return false
	}
	for _, c := range b[min(20, n-1) : n-1] {
		if !isDigit(c) {
			return false
		}
	}
	return true
}

func digits(b []byte) (int, bool) {
	v := 0
	for _, c := range b {
		if !isDigit(c) {
			return 0, false
		}
		v = v*10 + int(c-'0')
	}
	return v, true
}

// plainDecimal is ^-?\d+(\.\d+)?$ without a regexp.
func plainDecimal(b []byte) bool {
	i := 0
	if i < len(b) && b[i] == '-' {
		i++
	}
	d := i
	for i < len(b) && b[i] >= '0' && b[i] <= '9' {
		i++
	}
	if i == d {
		return false
	}
	if i < len(b) && b[i] == '.' {
		i++
		f := i
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
		if i == f {
			return false
		}
	}
	return i == len(b)
}
