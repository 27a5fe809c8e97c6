package input

import (
	"unicode/utf8"

	"github.com/usagefleet/usagefleet/messages"
)

// fastKeyValue reads the usual Tags cell (a flat JSON object of plain
// strings, numbers, booleans and nulls, no escapes) without encoding/json,
// which took a quarter of the time of reading a FOCUS CSV. It gives what
// messages.ParseKeyValue gives for such an object; anything else
// (escapes, nesting, a repeated key, a syntax error) is not ok, and the
// caller takes ParseKeyValue's path and its exact error. Values are
// substrings of s.
//
// It is one scanner on purpose (issue 11 leaves it whole): it runs for
// every Tags cell of every CSV row, its position and maps shared by every
// step; steps in functions of their own would be calls on that path, to
// be split only with a paired BenchmarkReadFocusCSV (package producer)
// showing no cost.
//
// vals and types, when not nil, are cleared and filled instead of new maps
// (a reader that reuses its record reuses them too); the maps filled are
// returned when ok.
func fastKeyValue(s string, vals map[string]string, types map[string]messages.TagType) (map[string]string, map[string]messages.TagType, bool) {
	clear(vals)
	clear(types)
	if !utf8.ValidString(s) {
		return nil, nil, false
	}
	i := 0
	ws := func() {
		for i < len(s) && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r') {
			i++
		}
	}
	str := func() (string, bool) { // at '"'
		i++
		start := i
		for i < len(s) {
			c := s[i]
			if c == '"' {
				i++
				return s[start : i-1], true
			}
			if c == '\\' || c < 0x20 {
				return "", false
			}
			i++
		}
		return "", false
	}
	ws()
	if i >= len(s) || s[i] != '{' {
		return nil, nil, false
	}
	i++
	if vals == nil {
		vals = make(map[string]string, 8)
	}
	ws()
	if i < len(s) && s[i] == '}' {
		i++
		ws()
		return vals, nil, i == len(s)
	}
	for {
		ws()
		if i >= len(s) || s[i] != '"' {
			return nil, nil, false
		}
		k, ok := str()
		if !ok {
			return nil, nil, false
		}
		if _, dup := vals[k]; dup {
			return nil, nil, false
		}
		ws()
		if i >= len(s) || s[i] != ':' {
			return nil, nil, false
		}
		i++
		ws()
		if i >= len(s) {
			return nil, nil, false
		}
		var typ messages.TagType
		switch c := s[i]; {
		case c == '"':
			v, ok := str()
			if !ok {
				return nil, nil, false
			}
			vals[k] = v
		case c == 't' && len(s)-i >= 4 && s[i:i+4] == "true":
			vals[k], typ = "true", messages.TagBool
			i += 4
		case c == 'f' && len(s)-i >= 5 && s[i:i+5] == "false":
			vals[k], typ = "false", messages.TagBool
			i += 5
		case c == 'n' && len(s)-i >= 4 && s[i:i+4] == "null":
			vals[k], typ = "", messages.TagNull
			i += 4
		case c == '-' || (c >= '0' && c <= '9'):
			start := i
			for i < len(s) && (s[i] == '-' || s[i] == '+' || s[i] == '.' || s[i] == 'e' || s[i] == 'E' || (s[i] >= '0' && s[i] <= '9')) {
				i++
			}
			if !isJSONNumber(s[start:i]) {
				return nil, nil, false
			}
			vals[k], typ = s[start:i], messages.TagNumber
		default:
			return nil, nil, false
		}
		if typ != 0 {
			if types == nil {
				types = map[string]messages.TagType{}
			}
			types[k] = typ
		}
		ws()
		if i >= len(s) {
			return nil, nil, false
		}
		if s[i] == ',' {
			i++
			continue
		}
		if s[i] != '}' {
			return nil, nil, false
		}
		i++
		ws()
		return vals, types, i == len(s)
	}
}

// isJSONNumber is the JSON number grammar:
// -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func isJSONNumber(s string) bool {
	i := 0
	if i < len(s) && s[i] == '-' {
		i++
	}
	digits := func() int {
		n := 0
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
			n++
		}
		return n
	}
	switch {
	case i < len(s) && s[i] == '0':
		i++
	case digits() == 0:
		return false
	}
	if i < len(s) && s[i] == '.' {
		i++
		if digits() == 0 {
			return false
		}
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		if digits() == 0 {
			return false
		}
	}
	return i == len(s)
}
