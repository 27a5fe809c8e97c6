package cloudcruiser

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/shopspring/decimal"
)

// kind is the value type of a documented field.
type kind uint8

const (
	kString       kind = iota // JSON string
	kProviderType             // JSON string, "Public" or "Private"
	kTime                     // JSON string in a documented date/time format
	kDecimal                  // exact decimal, kept (Quantity, Rate, Cost)
	kFloat                    // number, checked and dropped
	kInt                      // integer, checked and dropped
)

type fieldSpec struct {
	name     string
	kind     kind
	required bool
}

// Field names, exactly as documented (case-sensitive).
const (
	fUsageStart = "Usage Start"
	fUsageEnd   = "Usage End"
	fAccountID  = "Account ID"
	fMeterID    = "Meter ID"
	fQuantity   = "Quantity"
	fCost       = "Cost"
)

// fields lists every documented field in the documented order: the eleven
// required ones, then the optional ones (Rate and Cost come from the HPE
// copy of the page, the rest from the seed).
var fields = []fieldSpec{
	{fUsageStart, kTime, true},
	{fUsageEnd, kTime, true},
	{fAccountID, kString, true},
	{"Account Name", kString, true},
	{"Provider", kString, true},
	{"Provider Type", kProviderType, true},
	{"Product", kString, true},
	{fMeterID, kString, true},
	{"Meter Name", kString, true},
	{fQuantity, kDecimal, true},
	{"Units", kString, true},

	{"Account Owner ID", kString, false},
	{"Account Owner", kString, false},
	{"Provider Region", kString, false},
	{"Provider Zone", kString, false},
	{"Service Category", kString, false},
	{"Resource ID", kString, false},
	{"Resource Name", kString, false},
	{"Resource Type", kString, false},
	{"Rate", kDecimal, false},
	{fCost, kDecimal, false},
	{"VM Provider Type", kString, false},
	{"VM Provider Series", kString, false},
	{"Operating System", kString, false},
	{"CPU Utilization", kFloat, false},
	{"Network In MB", kFloat, false},
	{"Network Out MB", kFloat, false},
	{"Storage Read Bytes", kInt, false},
	{"Storage Write Bytes", kInt, false},
	{"Read Throughput", kInt, false},
	{"Write Throughput", kInt, false},
	{"VM Max Num Disk", kInt, false},
}

var (
	fieldIndex = map[string]int{}    // exact name -> index in fields
	foldIndex  = map[string]string{} // lower-case name -> documented name
	idxStart   = -1
	idxAccount = -1
	idxMeter   = -1
	idxQty     = -1
	idxCost    = -1
	required   uint64 // bit i set: fields[i] is required
)

func init() {
	if len(fields) > 64 {
		panic("cloudcruiser: too many fields for the presence mask")
	}
	for i, f := range fields {
		fieldIndex[f.name] = i
		foldIndex[strings.ToLower(f.name)] = f.name
		if f.required {
			required |= 1 << i
		}
	}
	idxStart = fieldIndex[fUsageStart]
	idxAccount, idxMeter = fieldIndex[fAccountID], fieldIndex[fMeterID]
	idxQty, idxCost = fieldIndex[fQuantity], fieldIndex[fCost]
}

// Decimal bounds: a value needs at most maxFraction fractional digits and
// maxInteger integer digits. They keep a hostile "1e9999" from turning the
// running sums into megabytes of digits; no billing figure comes close.
const (
	maxFraction = 64
	maxInteger  = 64
	// maxNumberLen caps the text of any number before it is parsed (big.Int
	// parsing is superlinear); it leaves room for the digits above, a sign,
	// a point and an exponent.
	maxNumberLen = 160
)

// checkName rejects a field name that is empty or differs from a documented
// field only in letter case (it would otherwise become a silent extra field).
func checkName(name string) string {
	if strings.TrimSpace(name) == "" {
		return "empty field name"
	}
	if _, ok := fieldIndex[name]; ok {
		return ""
	}
	if doc, ok := foldIndex[strings.ToLower(name)]; ok {
		return fmt.Sprintf("field %s differs from the documented field %q only in letter case (field names are case-sensitive)", quote(name), doc)
	}
	return ""
}

// setField validates one value and keeps what the store needs.
func (p *parser) setField(key string, v json.Token) *uploadError {
	n := p.res.records
	if d, ok := v.(json.Delim); ok {
		return badRequest("record index %d: field %s: want a string or number, found %s (records are flat)", n, quote(key), describe(d))
	}
	i, known := fieldIndex[key]
	if v == nil && p.opt.layout == LayoutHeaderRow && (!known || !fields[i].required) {
		return nil // an empty cell of an optional column
	}
	if !known {
		return p.setExtraField(key, v)
	}
	f := fields[i]
	if p.st.have&(1<<i) != 0 {
		return badRequest("record index %d: field %q appears twice", n, f.name)
	}
	p.st.have |= 1 << i
	fail := func(format string, args ...any) *uploadError {
		return badRequest("record index %d: field %q: %s", n, f.name, fmt.Sprintf(format, args...))
	}
	switch f.kind {
	case kString, kProviderType, kTime:
		s, ok := v.(string)
		if !ok {
			return fail("want a string, found %s", describe(v))
		}
		switch f.kind {
		case kString:
			if f.required && strings.TrimSpace(s) == "" {
				return fail("must not be empty")
			}
			switch i {
			case idxAccount:
				p.st.accountID = s
			case idxMeter:
				p.st.meterID = s
			}
		case kProviderType:
			if s != "Public" && s != "Private" {
				return fail("%s is neither \"Public\" nor \"Private\"", quote(s))
			}
		case kTime:
			t, err := parseUsageTime(s, p.opt.loc)
			if err != nil {
				return fail("%v", err)
			}
			if i == idxStart {
				p.st.start, p.st.startRaw = t, s
			} else {
				p.st.end = t
			}
		}
	case kDecimal, kFloat:
		lex, err := p.numberLexeme(v)
		if err != "" {
			return fail("%s", err)
		}
		if f.kind == kFloat {
			return nil
		}
		d, derr := decimal.NewFromString(lex)
		if derr != nil {
			return fail("%s is not a decimal", quote(lex))
		}
		if d.Exponent() < -maxFraction || int(d.Exponent())+d.NumDigits() > maxInteger {
			return fail("%s is out of range (at most %d integer and %d fractional digits)", quote(lex), maxInteger, maxFraction)
		}
		switch i {
		case idxQty:
			p.st.quantity = d
		case idxCost:
			p.st.cost = d
		}
	case kInt:
		lex, err := p.numberLexeme(v)
		if err != "" {
			return fail("%s", err)
		}
		if !isJSONInteger(lex) {
			return fail("%s is not an integer", quote(lex))
		}
		if _, err := strconv.ParseInt(lex, 10, 64); err != nil {
			return fail("%s is out of the 64-bit integer range", quote(lex))
		}
	}
	return nil
}

// setExtraField validates the value of a field that is not a documented
// one: an extra field of the collection.
func (p *parser) setExtraField(key string, v json.Token) *uploadError {
	n := p.res.records
	if msg := checkName(key); msg != "" {
		return badRequest("record index %d: %s", n, msg)
	}
	if _, dup := p.st.extras[key]; dup {
		return badRequest("record index %d: field %s appears twice", n, quote(key))
	}
	p.st.extras[key] = struct{}{}
	if typ, ok := p.opt.extraTypes[key]; ok {
		return p.checkTyped(key, typ, v)
	}
	if p.opt.declaredOnly {
		return badRequest("record index %d: extra field %s is not declared among the collection's extraTypedFields (FLOAT, INT or STRING)", n, quote(key))
	}
	switch v.(type) {
	case string, json.Number:
		return nil
	}
	return badRequest("record index %d: extra field %s: want a string or number, found %s", n, quote(key), describe(v))
}

// checkTyped checks an extra typed field's value against its declared
// type: STRING a JSON string, FLOAT a number, INT an integer (as the
// documented FLOAT and INT fields are read).
func (p *parser) checkTyped(key, typ string, v json.Token) *uploadError {
	n := p.res.records
	fail := func(format string, args ...any) *uploadError {
		return badRequest("record index %d: extra field %s (%s): %s", n, quote(key), typ, fmt.Sprintf(format, args...))
	}
	if typ == "STRING" {
		if _, ok := v.(string); !ok {
			return fail("want a string, found %s", describe(v))
		}
		return nil
	}
	lex, err := p.numberLexeme(v)
	if err != "" {
		return fail("%s", err)
	}
	if typ == "INT" {
		if !isJSONInteger(lex) {
			return fail("%s is not an integer", quote(lex))
		}
		if _, err := strconv.ParseInt(lex, 10, 64); err != nil {
			return fail("%s is out of the 64-bit integer range", quote(lex))
		}
	}
	return nil
}

// numberLexeme returns the text of a numeric value given as a JSON number
// or, if the configured DecimalForm allows, as a string in JSON number
// grammar.
func (p *parser) numberLexeme(v json.Token) (string, string) {
	if x, ok := v.(json.Number); ok && len(x) > maxNumberLen {
		return "", fmt.Sprintf("number of %d characters is too long (at most %d)", len(x), maxNumberLen)
	}
	if x, ok := v.(string); ok && len(x) > maxNumberLen {
		return "", fmt.Sprintf("string of %d characters is too long for a number (at most %d)", len(x), maxNumberLen)
	}
	switch x := v.(type) {
	case json.Number:
		if p.opt.decimals == DecimalString {
			return "", fmt.Sprintf("want a decimal string such as \"1.5\", found the number %s", x)
		}
		return string(x), ""
	case string:
		if p.opt.decimals == DecimalNumber {
			return "", fmt.Sprintf("want a JSON number, found the string %s", quote(x))
		}
		if !isJSONNumber(x) {
			return "", fmt.Sprintf("%s is not a number (want JSON number syntax, such as \"-12.5\" or \"1e-3\")", quote(x))
		}
		return x, ""
	}
	return "", fmt.Sprintf("want a number, found %s", describe(v))
}

// isJSONNumber reports whether s follows the JSON number grammar:
// -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func isJSONNumber(s string) bool {
	i := 0
	if i < len(s) && s[i] == '-' {
		i++
	}
	switch {
	case i < len(s) && s[i] == '0':
		i++
	case i < len(s) && s[i] >= '1' && s[i] <= '9':
		for i < len(s) && isDigit(s[i]) {
			i++
		}
	default:
		return false
	}
	if i < len(s) && s[i] == '.' {
		i++
		start := i
		for i < len(s) && isDigit(s[i]) {
			i++
		}
		if i == start {
			return false
		}
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		start := i
		for i < len(s) && isDigit(s[i]) {
			i++
		}
		if i == start {
			return false
		}
	}
	return i == len(s)
}

// isJSONInteger reports whether s is -?(0|[1-9][0-9]*).
func isJSONInteger(s string) bool {
	return isJSONNumber(s) && !strings.ContainsAny(s, ".eE")
}

// describe names a JSON token for an error message.
func describe(t json.Token) string {
	switch x := t.(type) {
	case nil:
		return "null"
	case bool:
		return "a boolean"
	case json.Delim:
		switch x {
		case '{':
			return "an object"
		case '[':
			return "an array"
		}
		return fmt.Sprintf("%q", string(x))
	case string:
		return "the string " + quote(x)
	case json.Number:
		return "the number " + string(x)
	}
	return fmt.Sprintf("%v", t)
}
