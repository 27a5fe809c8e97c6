package cloudzero

import (
	"bytes"
	"encoding/json"
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
	startKey, costKey := []byte(`"time/usage_start":"`), []byte(`"cost/cost":"`)
	sums := map[time.Time]*messages.Sum{}
	pos, cpos := 0, 0
	nStart := 0
	for i := 0; ; i++ {
		k := bytes.Index(rows[pos:], startKey)
		if k < 0 {
			break
		}
		nStart++
		v := pos + k + len(startKey)
		q := bytes.IndexByte(rows[v:], '"')
		if q < 0 {
			return nil, (&colError{colUsageStart, "unterminated string"}).at(i)
		}
		start, err := time.Parse(time.RFC3339Nano, string(rows[v:v+q]))
		if err != nil {
			return nil, (&colError{colUsageStart, err.Error()}).at(i)
		}
		start = start.UTC()
		pos = v + q
		ck := bytes.Index(rows[cpos:], costKey)
		if ck < 0 {
			return nil, (&colError{colCost, "required"}).at(i)
		}
		cv := cpos + ck + len(costKey)
		cq := bytes.IndexByte(rows[cv:], '"')
		if cq < 0 {
			return nil, (&colError{colCost, "unterminated string"}).at(i)
		}
		raw := rows[cv : cv+cq]
		if !plainDecimal(raw) {
			return nil, (&colError{colCost, "\"" + string(raw) + "\" is not a decimal string (digits, an optional minus and fraction, no exponent)"}).at(i)
		}
		cost, err := messages.ParseDecimal(string(raw))
		if err != nil {
			return nil, (&colError{colCost, err.Error()}).at(i)
		}
		cpos = cv + cq
		m := monthOf(start)
		switch {
		case i == 0 && !monthGiven:
			d.month = m
		case !m.Equal(d.month):
			return nil, (&colError{colUsageStart, "not in the body's month " + d.month.Format("2006-01")}).at(i)
		}
		hour := start.Truncate(time.Hour)
		h := d.hours[hour]
		if h == nil {
			h = &hourData{}
			d.hours[hour] = h
			sums[hour] = &messages.Sum{}
		}
		h.count++
		sums[hour].Add(cost)
		d.rows++
	}
	if bytes.Contains(rows[cpos:], costKey) {
		return nil, requestError("data: more cost/cost values than time/usage_start values: every row needs both")
	}
	if nStart == 0 && !monthGiven {
		return nil, requestError("month: required when data is empty")
	}
	per := int64(0)
	if d.rows > 0 {
		per = int64(len(rows)) / int64(d.rows)
	}
	for hour, h := range d.hours {
		h.cost = sums[hour].Big()
		h.bytes = per * int64(h.count)
		d.bytes += h.bytes
	}
	return d, nil
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
