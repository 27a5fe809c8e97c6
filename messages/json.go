package messages

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// The JSON form of a UsageRecord is a flat object keyed by FOCUS column
// names: times in RFC 3339 UTC, decimals as strings in plain notation, Tags
// an object of strings, extension columns as "x_<Name>" (a JSON string, an
// integer, or for decimals a string: see UnmarshalJSON). Unset fields are
// left out. It is what NDJSON and JSON-array input files hold and what the
// webhook destination sends.

// AppendJSON appends the JSON object of r to dst without reflection.
func (r *UsageRecord) AppendJSON(dst []byte) []byte {
	// No closure over dst and no allocation per record: the webhook
	// encodes every record it sends here (a closure appending to a
	// captured dst was a third of the time).
	dst = r.appendJSONHead(dst)
	var kb [16]string
	if len(r.Tags) > 0 {
		dst = append(appendKey(dst, "Tags"), '{')
		for i, k := range sortedKeysInto(kb[:0], r.Tags) {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = AppendJSONString(dst, k)
			dst = append(dst, ':')
			dst = appendTagValue(dst, r.Tags[k], r.TagTypes[k])
		}
		dst = append(dst, '}')
	}
	dst = r.appendJSONDetail(dst)
	for _, k := range sortedKeysInto(kb[:0], r.Ext) {
		dst = appendJSONExt(dst, k, r.Ext[k])
	}
	return append(dst, '}')
}

// appendJSONHead appends '{' and the record's columns up to its Tags.
func (r *UsageRecord) appendJSONHead(dst []byte) []byte {
	dst = append(dst, '{')
	if !r.ChargePeriodStart.IsZero() {
		dst = appendTime(appendKey(dst, "ChargePeriodStart"), r.ChargePeriodStart)
	}
	if !r.ChargePeriodEnd.IsZero() {
		dst = appendTime(appendKey(dst, "ChargePeriodEnd"), r.ChargePeriodEnd)
	}
	for _, f := range strFields {
		if v := *f.get(r); v != "" {
			dst = AppendJSONString(appendKey(dst, f.name), v)
		}
	}
	for _, f := range decFields {
		if v := f.get(r); v.IsSet() {
			dst = appendQuoted(appendKey(dst, f.name), v.s)
		}
	}
	return dst
}

// appendJSONDetail appends the columns of r's Detail (after its Tags).
func (r *UsageRecord) appendJSONDetail(dst []byte) []byte {
	d := r.Detail
	if d == nil {
		return dst
	}
	for _, f := range detailTimes {
		if t := *f.get(d); !t.IsZero() {
			dst = appendTime(appendKey(dst, f.info.Name), t)
		}
	}
	for _, f := range detailStrs {
		if v := *f.get(d); v != "" {
			dst = appendKey(dst, f.info.Name)
			if f.info.Kind == ColJSON && json.Valid([]byte(v)) {
				dst = append(dst, v...) // JSON text, as read
			} else {
				dst = AppendJSONString(dst, v)
			}
		}
	}
	for _, f := range detailDecs {
		if v := f.get(d); v.IsSet() {
			dst = appendQuoted(appendKey(dst, f.info.Name), v.s)
		}
	}
	return dst
}

// appendJSONExt appends the extension column x_<k> with its value v.
func appendJSONExt(dst []byte, k string, v ExtValue) []byte {
	if dst[len(dst)-1] != '{' {
		dst = append(dst, ',')
	}
	dst = append(dst, `"x_`...)
	dst = append(dst, k...)
	dst = append(dst, '"', ':')
	switch v.Kind {
	case ExtInt:
		return strconv.AppendInt(dst, v.Int, 10)
	case ExtDecimal:
		return appendQuoted(dst, v.Dec.s)
	}
	return AppendJSONString(dst, v.Str)
}

// appendKey appends "k": after a comma, unless it is the object's first
// key (the object's '{' is the last byte: no value ends in '{').
func appendKey(dst []byte, k string) []byte {
	if dst[len(dst)-1] != '{' {
		dst = append(dst, ',')
	}
	dst = append(dst, '"')
	dst = append(dst, k...)
	return append(dst, '"', ':')
}

// appendQuoted appends s (plain text: a decimal) in quotes.
func appendQuoted(dst []byte, s string) []byte {
	dst = append(dst, '"')
	dst = append(dst, s...)
	return append(dst, '"')
}

// sortedKeysInto is m's keys sorted, in buf's space when they fit.
func sortedKeysInto[V any](buf []string, m map[string]V) []string {
	for k := range m {
		buf = append(buf, k)
	}
	slices.Sort(buf)
	return buf
}

func appendTime(dst []byte, t time.Time) []byte {
	dst = append(dst, '"')
	dst = t.UTC().AppendFormat(dst, time.RFC3339Nano)
	return append(dst, '"')
}

// MarshalJSON implements json.Marshaler.
func (r UsageRecord) MarshalJSON() ([]byte, error) { return r.AppendJSON(nil), nil }

// UnmarshalJSON implements json.Unmarshaler. Unknown columns are errors (a
// misspelt "BilledCosts" must not vanish). A decimal extension column is
// written as a string and read back as a string column: JSON cannot tell
// them apart, so x_ strings that are decimals stay strings; integers become
// ExtInt, and non-integral numbers become ExtDecimal.
func (r *UsageRecord) UnmarshalJSON(b []byte) error {
	var raw map[string]json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if err := dec.Decode(&raw); err != nil {
		return err
	}
	*r = UsageRecord{}
	for _, k := range sortedKeys(raw) {
		if err := r.SetJSONField(k, raw[k]); err != nil {
			return &FieldError{Index: -1, Field: k, Problem: err.Error()}
		}
	}
	return nil
}

// SetJSONField sets one column from its JSON value. Null is null: JSON
// null, and the strings "", "NULL" and "null" (how exports write null)
// leave the column unset. Invalid UTF-8 is an error (encoding/json would
// turn it into U+FFFD, and two ids would become one).
//
// It is one switch on the column's type on purpose (issue 11 leaves it
// whole): it runs for every field of every JSON record read, and each
// case is the whole of that type's handling.
func (r *UsageRecord) SetJSONField(k string, v json.RawMessage) error {
	if isNullJSON(v) {
		return nil
	}
	if !utf8.Valid(v) {
		return fmt.Errorf("invalid UTF-8")
	}
	switch ColumnOf(k) {
	case ColString:
		var s string
		if err := json.Unmarshal(v, &s); err != nil {
			return fmt.Errorf("want a string, got %s", clip(v))
		}
		r.SetString(k, s)
	case ColJSON:
		if v[0] == '"' { // a JSON column written as a string holding JSON
			var s string
			if err := json.Unmarshal(v, &s); err != nil {
				return err
			}
			r.SetString(k, s)
			return nil
		}
		var buf bytes.Buffer
		if err := json.Compact(&buf, v); err != nil {
			return fmt.Errorf("invalid JSON %s", clip(v))
		}
		r.SetString(k, buf.String())
	case ColDecimal:
		var s string
		if len(v) > 0 && v[0] == '"' {
			if err := json.Unmarshal(v, &s); err != nil {
				return err
			}
		} else {
			s = string(v) // a JSON number: its literal text, never float64
		}
		if s == "" {
			return nil
		}
		d, err := ParseDecimal(s)
		if err != nil {
			return err
		}
		r.SetDecimal(k, d)
	case ColTime:
		var s string
		if err := json.Unmarshal(v, &s); err != nil {
			return fmt.Errorf("want an RFC 3339 time string, got %s", clip(v))
		}
		if s == "" {
			return nil
		}
		t, err := ParseTime(s)
		if err != nil {
			return err
		}
		r.SetTime(k, t)
	case ColTags:
		if v[0] == '"' { // the object written as a string (CSV-minded exporters)
			var s string
			if err := json.Unmarshal(v, &s); err != nil {
				return err
			}
			if isNullText(s) {
				return nil
			}
			v = json.RawMessage(s)
		}
		m, types, err := ParseKeyValue(v)
		if err != nil {
			return err
		}
		if len(m) > 0 {
			r.Tags, r.TagTypes = m, types
		}
	case ColExt:
		name := k[2:]
		var ev ExtValue
		switch {
		case v[0] == '"':
			var s string
			if err := json.Unmarshal(v, &s); err != nil {
				return err
			}
			ev = ExtStr(s)
		case v[0] == '{' || v[0] == '[' || string(v) == "true" || string(v) == "false":
			// A provider column holding an object, an array or a boolean
			// (AWS's x_CostCategories, x_Discounts) is kept as its JSON text.
			var buf bytes.Buffer
			if err := json.Compact(&buf, v); err != nil {
				return fmt.Errorf("invalid JSON %s", clip(v))
			}
			ev = ExtStr(buf.String())
		default:
			lit := string(v)
			if i, err := strconv.ParseInt(lit, 10, 64); err == nil {
				ev = ExtI(i)
			} else if d, err := ParseDecimal(lit); err == nil {
				ev = ExtDec(d)
			} else {
				return fmt.Errorf("want a string or a number, got %s", clip(v))
			}
		}
		if r.Ext == nil {
			r.Ext = map[string]ExtValue{}
		}
		r.Ext[name] = ev
	default:
		return fmt.Errorf("unknown column (FOCUS names are case-sensitive; extension columns start with x_)")
	}
	return nil
}

// ParseTime reads an RFC 3339 time (with or without fraction) and returns
// it in UTC. It also accepts "2006-01-02 15:04:05" and a bare date, both
// taken as UTC, because FOCUS exports use them.
func ParseTime(s string) (time.Time, error) {
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02 15:04:05", "2006-01-02T15:04:05", "2006-01-02"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, fmt.Errorf("%s is not an RFC 3339 time", quoteClip(s))
}

// isNullJSON: JSON null, or a string "", "NULL" or "null".
func isNullJSON(v json.RawMessage) bool {
	switch string(v) {
	case "null", `""`, `"NULL"`, `"null"`:
		return true
	}
	return false
}

// isNullText is the text form of null in exports: "", "NULL", "null".
func isNullText(s string) bool { return s == "" || s == "NULL" || s == "null" }

// IsNullText reports whether s is how exports write null: empty, NULL or
// null (FOCUS null_handling: a column without a value is null).
func IsNullText(s string) bool { return isNullText(s) }

func clip(b []byte) string {
	if len(b) > 40 {
		return strings.ToValidUTF8(string(b[:40]), "?") + "…"
	}
	return strings.ToValidUTF8(string(b), "?")
}

const hexDigits = "0123456789abcdef"

// jsonPlain says which bytes AppendJSONString copies as they are: ASCII
// but control characters, the quote, the backslash and < > & (escaped as
// encoding/json does). One table load per byte instead of six compares.
var jsonPlain = func() (t [256]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\' && c != '<' && c != '>' && c != '&'
	}
	return t
}()

// SWAR constants: a byte-wise broadcast and the high bits.
const (
	ones = 0x0101010101010101
	high = 0x8080808080808080
)

// plain8 reports whether the eight bytes of x are all jsonPlain: ASCII
// (high bit clear), at least 0x20, and none of " \ < > &. A byte b of
// v has its high bit set in (v - ones) &^ v exactly when b is 0, when no
// byte below it borrowed; a borrow only follows a byte that is 0 itself,
// so the test is exact about whether any byte is.
func plain8(x uint64) bool {
	hasZero := func(v uint64) bool { return (v-ones)&^v&high != 0 }
	if x&high != 0 || (x-0x20*ones)&^x&high != 0 {
		return false // a non-ASCII or a control byte
	}
	return !hasZero(x^('"'*ones)) && !hasZero(x^('\\'*ones)) && !hasZero(x^('<'*ones)) &&
		!hasZero(x^('>'*ones)) && !hasZero(x^('&'*ones))
}

// AppendJSONString appends s as a JSON string. Invalid UTF-8 becomes U+FFFD.
func AppendJSONString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	// Fast path: skip eight plain bytes at a time, then one at a time; a
	// string with nothing to escape (nearly all) is appended whole.
	i := 0
	for i+8 <= len(s) && plain8(uint64(s[i])|uint64(s[i+1])<<8|uint64(s[i+2])<<16|uint64(s[i+3])<<24|
		uint64(s[i+4])<<32|uint64(s[i+5])<<40|uint64(s[i+6])<<48|uint64(s[i+7])<<56) {
		i += 8
	}
	for i < len(s) && jsonPlain[s[i]] {
		i++
	}
	if i == len(s) {
		dst = append(dst, s...)
		return append(dst, '"')
	}
	start := 0
	for i < len(s) {
		c := s[i]
		if jsonPlain[c] {
			i++
			continue
		}
		if c < utf8.RuneSelf {
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

func sortedKeys[V any](m map[string]V) []string {
	if len(m) == 0 {
		return nil
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
