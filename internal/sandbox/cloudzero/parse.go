package cloudzero

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/shopspring/decimal"
)

// Operations of a billing drop [DOC].
const (
	OpReplaceDrop   = "replace_drop"
	OpReplaceHourly = "replace_hourly"
	OpSum           = "sum"
)

// Error types in 400 bodies. The real API's values are not documented
// [NOT FOUND]; these name the failure for whoever reads the sandbox's answer.
const (
	errTypeRequest = "invalid_request"
	errTypeRow     = "invalid_row"
	errTypeLimit   = "limit_exceeded"
	errTypeIdemKey = "idempotency_key_reuse"
	colUsageStart  = "time/usage_start"
	colCost        = "cost/cost"
	colResourceID  = "resource/id"
	tagPrefix      = "resource/tag:"
)

// colKind is how a column's value is checked in strict mode.
type colKind int

const (
	kindText colKind = iota
	kindDatetime
	kindAmount
	kindLineItemType
)

// columns are the typed properties of the API schema's row object, plus
// lineitem/cloud_provider from the CBF docs page. resource/tag:<key> is
// handled apart.
var columns = map[string]colKind{
	"lineitem/id": kindText, "lineitem/type": kindLineItemType, "lineitem/description": kindText,
	"lineitem/cloud_provider": kindText,
	"time/usage_start":        kindDatetime, "time/usage_end": kindDatetime,
	"resource/id": kindText, "resource/service": kindText, "resource/account": kindText,
	"resource/region": kindText, "resource/usage_family": kindText,
	"action/operation": kindText, "action/usage_type": kindText, "action/region": kindText, "action/account": kindText,
	"usage/amount": kindAmount, "usage/units": kindText,
	"cost/cost": kindAmount, "cost/discounted_cost": kindAmount, "cost/amortized_cost": kindAmount,
	"cost/discounted_amortized_cost": kindAmount, "cost/on_demand_cost": kindAmount,
	"bill/invoice_id": kindText,
	"k8s/cluster":     kindText, "k8s/namespace": kindText, "k8s/deployment": kindText, "k8s/labels": kindText,
}

// lineItemTypes is the API schema's enum plus the two the CBF page adds.
var lineItemTypes = []string{
	"Usage", "Tax", "Support", "Purchase", "CommittedUsePurchase", "CommittedUseVacancy",
	"CommittedUseRecurringFee", "Discount", "Credit", "Fee", "Adjustment",
}

// badRequest is a 400 answer.
type badRequest struct{ msg, typ string }

func (e *badRequest) Error() string { return e.msg }

func requestError(format string, a ...any) *badRequest {
	return &badRequest{msg: fmt.Sprintf(format, a...), typ: errTypeRequest}
}

// colError is a problem with one column of one row; col is "" for the row itself.
type colError struct{ col, msg string }

func (e *colError) at(row int) *badRequest {
	if e.col == "" {
		return &badRequest{msg: fmt.Sprintf("data[%d]: %s", row, e.msg), typ: errTypeRow}
	}
	return &badRequest{msg: fmt.Sprintf("data[%d][%q]: %s", row, e.col, e.msg), typ: errTypeRow}
}

// drop is a validated request body, its rows grouped by UTC hour.
type drop struct {
	op    string
	month time.Time // first instant of the month, UTC
	hours map[time.Time]*hourData
	rows  int
	bytes int64 // sum of the rows' JSON sizes, what counts against MaxBytesPerMonth
}

// parseOptions say how thoroughly a body is checked.
type parseOptions struct {
	refuse   map[string]bool // Config.RefuseResourceIDs
	noRowIdx bool            // Config.NoRowIndex
	strict   bool            // check every column and value, not only the two the emulator needs
	keepRows bool            // keep the row values (not in Counting mode)
	negative bool            // allow a leading minus in amounts
}

// parseDrop decodes and validates a billing drop body. Every check runs before
// anything is stored, so a 400 changes nothing.
func parseDrop(body []byte, o parseOptions) (*drop, *badRequest) {
	top, bad := splitTop(body)
	if bad != nil {
		return nil, bad
	}
	for _, k := range slices.Sorted(maps.Keys(top)) {
		if k != "month" && k != "operation" && k != "data" {
			return nil, requestError("unknown top-level field %q: the body has only month, operation and data", k)
		}
	}
	d := &drop{op: OpReplaceDrop, hours: map[time.Time]*hourData{}}
	if raw, ok := top["operation"]; ok {
		op, isStr := jsonString(raw)
		if !isStr || (op != OpReplaceDrop && op != OpReplaceHourly && op != OpSum) {
			return nil, requestError("operation: %s is not one of %q, %q, %q", raw, OpReplaceDrop, OpReplaceHourly, OpSum)
		}
		d.op = op
	}
	monthGiven := false
	if raw, ok := top["month"]; ok {
		m, isStr := jsonString(raw)
		if !isStr {
			return nil, requestError("month: %s is not a string", raw)
		}
		t, ok := parseMonth(m)
		if !ok {
			return nil, requestError("month: %q is neither YYYY-MM nor an ISO 8601 datetime", m)
		}
		d.month, monthGiven = t, true
	}
	rawData, ok := top["data"]
	if !ok {
		return nil, requestError("data: required")
	}
	rows, isArray := splitArray(rawData)
	if !isArray {
		return nil, requestError("data: must be an array of row objects")
	}
	if len(rows) == 0 && !monthGiven {
		return nil, requestError("month: required when data is empty")
	}
	for i, raw := range rows {
		r, cerr := parseRow(raw, o)
		if cerr == nil && o.refuse[r.values[colResourceID]] && r.values != nil {
			cerr = &colError{colResourceID, fmt.Sprintf("%q is refused (Config.RefuseResourceIDs)", r.values[colResourceID])}
		}
		if cerr != nil {
			if o.noRowIdx {
				return nil, &badRequest{msg: "invalid row: " + cerr.msg, typ: errTypeRow}
			}
			return nil, cerr.at(i)
		}
		m := monthOf(r.start)
		switch {
		case i == 0 && !monthGiven:
			d.month = m
		case !m.Equal(d.month) && monthGiven:
			return nil, (&colError{colUsageStart, fmt.Sprintf("%q is not in month %s, the body's month", r.startText, d.month.Format("2006-01"))}).at(i)
		case !m.Equal(d.month):
			return nil, (&colError{colUsageStart, fmt.Sprintf("%q is in %s but data[0] is in %s: all rows of a body must be from the same month",
				r.startText, m.Format("2006-01"), d.month.Format("2006-01"))}).at(i)
		}
		hour := r.start.Truncate(time.Hour)
		h := d.hours[hour]
		if h == nil {
			h = &hourData{cost: decimal.Zero}
			d.hours[hour] = h
		}
		h.count++
		h.cost = h.cost.Add(r.cost)
		h.bytes += int64(len(raw))
		if o.keepRows {
			h.rows = append(h.rows, storedRow{seq: uint64(i), values: r.values})
		}
		d.rows++
		d.bytes += int64(len(raw))
	}
	return d, nil
}

// splitTop checks that body is valid JSON and splits the top-level object
// into its members' raw values, without copying. Walking the bytes once the
// whole body is known to be valid is several times cheaper than decoding it
// with encoding/json twice (object, then array of rows).
func splitTop(body []byte) (map[string][]byte, *badRequest) {
	if !json.Valid(body) {
		var v any
		err := json.Unmarshal(body, &v)
		return nil, requestError("request body is not valid JSON: %v", err)
	}
	i := skipSpace(body, 0)
	if body[i] != '{' {
		return nil, requestError("request body must be a JSON object")
	}
	top := map[string][]byte{}
	i = skipSpace(body, i+1)
	for body[i] != '}' {
		key, next := readString(body, i)
		i = skipSpace(body, next) // at ':'
		i = skipSpace(body, i+1)  // at the value
		end := skipValue(body, i)
		top[string(key)] = body[i:end]
		i = skipSpace(body, end)
		if body[i] == ',' {
			i = skipSpace(body, i+1)
		}
	}
	return top, nil
}

// splitArray splits a valid JSON array into its elements' raw values.
func splitArray(raw []byte) ([][]byte, bool) {
	if len(raw) == 0 || raw[0] != '[' {
		return nil, false
	}
	elems := [][]byte{}
	i := skipSpace(raw, 1)
	for raw[i] != ']' {
		end := skipValue(raw, i)
		elems = append(elems, raw[i:end])
		i = skipSpace(raw, end)
		if raw[i] == ',' {
			i = skipSpace(raw, i+1)
		}
	}
	return elems, true
}

// skipValue returns the index after the valid JSON value starting at b[i].
func skipValue(b []byte, i int) int {
	switch b[i] {
	case '"':
		_, end := readString(b, i)
		return end
	case '{', '[':
		depth := 0
		for ; i < len(b); i++ {
			switch b[i] {
			case '"':
				_, end := readString(b, i)
				i = end - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1
				}
			}
		}
		return i
	}
	for i < len(b) && !strings.ContainsRune(",}] \t\n\r", rune(b[i])) {
		i++
	}
	return i
}

// jsonString decodes raw if it is a JSON string.
func jsonString(raw []byte) (string, bool) {
	if len(raw) == 0 || raw[0] != '"' {
		return "", false
	}
	s, _ := readString(raw, 0)
	return string(s), true
}

// row is what the emulator keeps of a valid row.
type row struct {
	start     time.Time
	startText string
	cost      decimal.Decimal
	values    map[string]string
}

// parseRow checks one row. It always requires string values and valid
// time/usage_start and cost/cost; with o.strict it checks every column.
func parseRow(raw []byte, o parseOptions) (row, *colError) {
	var r row
	var hasStart, hasCost, hasTag, hasID bool
	if o.strict || o.keepRows {
		r.values = make(map[string]string, 8)
	}
	err := scanRow(raw, func(kb, vb []byte) *colError {
		if r.values != nil {
			k := string(kb)
			if _, dup := r.values[k]; dup {
				return &colError{k, "column appears twice"}
			}
			r.values[k] = string(vb)
		}
		switch string(kb) { // no allocation: the compiler aliases kb
		case colUsageStart:
			v := string(vb)
			t, ok := parseISO(v)
			if !ok {
				return &colError{colUsageStart, fmt.Sprintf("%q is not an ISO 8601 datetime", v)}
			}
			r.start, r.startText, hasStart = t, v, true
			return nil
		case colCost:
			v := string(vb)
			if !isAmount(v, o.negative) {
				return amountError(colCost, v, o.negative)
			}
			c, err := decimal.NewFromString(v)
			if err != nil {
				return amountError(colCost, v, o.negative)
			}
			r.cost, hasCost = c, true
			return nil
		}
		if !o.strict {
			return nil
		}
		k, v := string(kb), string(vb)
		if tag, ok := strings.CutPrefix(k, tagPrefix); ok {
			if !validTagKey(tag) {
				return &colError{k, fmt.Sprintf("tag key %q may hold only letters, digits and _ . : / = + - @", tag)}
			}
			hasTag = true
			return nil
		}
		kind, known := columns[k]
		if !known {
			return &colError{k, "unknown column"}
		}
		if v == "" {
			// The CBF docs give blank optional values a meaning (the cost
			// fallbacks), so a blank optional column is the column absent [INFER].
			return nil
		}
		switch kind {
		case kindDatetime:
			if _, ok := parseISO(v); !ok {
				return &colError{k, fmt.Sprintf("%q is not an ISO 8601 datetime", v)}
			}
		case kindAmount:
			if !isAmount(v, o.negative) {
				return amountError(k, v, o.negative)
			}
		case kindLineItemType:
			if !slices.Contains(lineItemTypes, v) {
				return &colError{k, fmt.Sprintf("%q is not one of %s", v, strings.Join(lineItemTypes, ", "))}
			}
		}
		if k == colResourceID {
			hasID = true
		}
		return nil
	})
	if err != nil {
		return row{}, err
	}
	switch {
	case !hasStart:
		return row{}, &colError{colUsageStart, "required column is missing"}
	case !hasCost:
		return row{}, &colError{colCost, "required column is missing"}
	case hasTag && !hasID:
		return row{}, &colError{colResourceID, "required when the row has a resource/tag column"}
	}
	return r, nil
}

func amountError(col, v string, negative bool) *colError {
	if !negative && strings.HasPrefix(v, "-") {
		return &colError{col, fmt.Sprintf("%q is not a decimal string: negative amounts are rejected (RejectNegative)", v)}
	}
	return &colError{col, fmt.Sprintf("%q is not a decimal string", v)}
}

// scanRow calls fn with each key and value of the row object raw, which
// splitTop has already checked is valid JSON. Reading the pairs in place
// instead of decoding a map keeps Counting mode cheap, and finds a value that
// is not a string without decoding it. key and val alias raw unless they held
// escapes.
func scanRow(raw []byte, fn func(key, val []byte) *colError) *colError {
	if len(raw) == 0 || raw[0] != '{' {
		return &colError{"", "is not a JSON object"}
	}
	i := skipSpace(raw, 1)
	for raw[i] != '}' {
		key, next := readString(raw, i)
		i = skipSpace(raw, next) // at ':'
		i = skipSpace(raw, i+1)  // at the value
		if raw[i] != '"' {
			return &colError{string(key), fmt.Sprintf("got a JSON %s, want a string: every value is a string", jsonKind(raw[i]))}
		}
		val, next := readString(raw, i)
		if err := fn(key, val); err != nil {
			return err
		}
		i = skipSpace(raw, next)
		if raw[i] == ',' {
			i = skipSpace(raw, i+1)
		}
	}
	return nil
}

func jsonKind(c byte) string {
	switch c {
	case '{':
		return "object"
	case '[':
		return "array"
	case 't', 'f':
		return "boolean"
	case 'n':
		return "null"
	default:
		return "number"
	}
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// readString reads the valid JSON string starting at b[i] and returns its
// value and the index after its closing quote. The value aliases b unless
// the string held escapes or invalid UTF-8 (which encoding/json replaces).
func readString(b []byte, i int) ([]byte, int) {
	escaped, high := false, false
	j := i + 1
	for ; j < len(b) && b[j] != '"'; j++ {
		switch {
		case b[j] == '\\':
			escaped = true
			j++
		case b[j] >= utf8.RuneSelf:
			high = true
		}
	}
	if j >= len(b) { // unreachable for valid JSON
		return nil, len(b)
	}
	if !escaped && (!high || utf8.Valid(b[i+1:j])) {
		return b[i+1 : j], j + 1
	}
	var s string
	_ = json.Unmarshal(b[i:j+1], &s)
	return []byte(s), j + 1
}
