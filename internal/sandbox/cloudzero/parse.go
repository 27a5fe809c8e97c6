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
	strict   bool // check every column and value, not only the two the emulator needs
	keepRows bool // keep the row values (not in Counting mode)
	negative bool // allow a leading minus in amounts
}

// parseDrop decodes and validates a billing drop body. Every check runs before
// anything is stored, so a 400 changes nothing.
func parseDrop(body []byte, o parseOptions) (*drop, *badRequest) {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(body, &top); err != nil {
		if _, ok := err.(*json.UnmarshalTypeError); ok {
			return nil, requestError("request body must be a JSON object")
		}
		return nil, requestError("request body is not valid JSON: %v", err)
	}
	if top == nil {
		return nil, requestError("request body must be a JSON object")
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
	var rows []json.RawMessage
	if err := json.Unmarshal(rawData, &rows); err != nil || rows == nil {
		return nil, requestError("data: must be an array of row objects")
	}
	if len(rows) == 0 && !monthGiven {
		return nil, requestError("month: required when data is empty")
	}
	for i, raw := range rows {
		r, cerr := parseRow(raw, o)
		if cerr != nil {
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

// jsonString decodes raw if it is a JSON string.
func jsonString(raw json.RawMessage) (string, bool) {
	if len(raw) == 0 || raw[0] != '"' {
		return "", false
	}
	var s string
	return s, json.Unmarshal(raw, &s) == nil
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
	err := scanRow(raw, func(k, v string) *colError {
		if r.values != nil {
			if _, dup := r.values[k]; dup {
				return &colError{k, "column appears twice"}
			}
			r.values[k] = v
		}
		switch k {
		case colUsageStart:
			t, ok := parseISO(v)
			if !ok {
				return &colError{k, fmt.Sprintf("%q is not an ISO 8601 datetime", v)}
			}
			r.start, r.startText, hasStart = t, v, true
			return nil
		case colCost:
			if !isAmount(v, o.negative) {
				return amountError(k, v, o.negative)
			}
			c, err := decimal.NewFromString(v)
			if err != nil {
				return amountError(k, v, o.negative)
			}
			r.cost, hasCost = c, true
			return nil
		}
		if !o.strict {
			return nil
		}
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
// json.Unmarshal has already checked is valid JSON. Reading the pairs by hand
// instead of decoding a map keeps Counting mode cheap, and finds a value that
// is not a string without decoding it.
func scanRow(raw []byte, fn func(key, val string) *colError) *colError {
	i := skipSpace(raw, 0)
	if i >= len(raw) || raw[i] != '{' {
		return &colError{"", "is not a JSON object"}
	}
	i = skipSpace(raw, i+1)
	if i < len(raw) && raw[i] == '}' {
		return nil
	}
	for i < len(raw) {
		key, next, ok := readString(raw, i)
		if !ok {
			return &colError{"", "is not a JSON object"}
		}
		i = skipSpace(raw, next)
		if i >= len(raw) || raw[i] != ':' {
			return &colError{"", "is not a JSON object"}
		}
		i = skipSpace(raw, i+1)
		if i >= len(raw) {
			return &colError{"", "is not a JSON object"}
		}
		if raw[i] != '"' {
			return &colError{key, fmt.Sprintf("got a JSON %s, want a string: every value is a string", jsonKind(raw[i]))}
		}
		val, next, ok := readString(raw, i)
		if !ok {
			return &colError{"", "is not a JSON object"}
		}
		if err := fn(key, val); err != nil {
			return err
		}
		i = skipSpace(raw, next)
		if i < len(raw) && raw[i] == ',' {
			i = skipSpace(raw, i+1)
			continue
		}
		if i < len(raw) && raw[i] == '}' {
			return nil
		}
		break
	}
	return &colError{"", "is not a JSON object"}
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

// readString reads the JSON string starting at b[i] and returns its value
// and the index after its closing quote.
func readString(b []byte, i int) (string, int, bool) {
	if i >= len(b) || b[i] != '"' {
		return "", i, false
	}
	escaped := false
	j := i + 1
	for ; j < len(b) && b[j] != '"'; j++ {
		if b[j] == '\\' {
			escaped = true
			j++
		}
	}
	if j >= len(b) {
		return "", j, false
	}
	body := b[i+1 : j]
	if !escaped && utf8.Valid(body) {
		return string(body), j + 1, true
	}
	var s string
	if err := json.Unmarshal(b[i:j+1], &s); err != nil {
		return "", j, false
	}
	return s, j + 1, true
}
