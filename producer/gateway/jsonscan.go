package gateway

import (
	"encoding/json"
	"fmt"
	"strconv"
	"unicode/utf8"
)

// A small JSON scanner for the request bodies: it finds object members and
// value extents without building a tree, and hands each FOCUS column's
// value to the messages package (UsageRecord.SetJSONField, or its
// SetString/SetDecimal/SetTime for a plain string), so a column added to
// messages.UsageRecord is read here with no change. Measured as the bulk of
// the gateway's CPU with encoding/json's Token API (the input package's
// reader, which also keeps line numbers the gateway does not need).

type syntaxError struct {
	off int
	msg string
}

func (e *syntaxError) Error() string { return fmt.Sprintf("invalid JSON at byte %d: %s", e.off, e.msg) }

func synErr(off int, format string, args ...any) error {
	return &syntaxError{off: off, msg: fmt.Sprintf(format, args...)}
}

func skipWS(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// scanString scans the string starting at b[i] == '"'. It returns the index
// after the closing quote and whether the content is plain: no escape, no
// control byte, valid UTF-8 (then b[i+1:end-1] is the value as it is).
func scanString(b []byte, i int) (end int, plain bool, err error) {
	if i >= len(b) || b[i] != '"' {
		return i, false, synErr(i, "want a string")
	}
	plain = true
	ascii := true
	for j := i + 1; j < len(b); j++ {
		c := b[j]
		if strPlain[c] {
			continue
		}
		switch {
		case c == '"':
			if !ascii && !utf8.Valid(b[i+1:j]) {
				plain = false
			}
			return j + 1, plain, nil
		case c == '\\':
			plain = false
			j++ // the escaped byte; its validity is checked by encoding/json
		case c < 0x20:
			return j, false, synErr(j, "control character in a string")
		default:
			ascii = false
		}
	}
	return len(b), false, synErr(len(b), "unterminated string")
}

// strPlain marks the bytes a string's scan passes over: printable ASCII
// other than '"' and '\\'.
var strPlain = func() (t [256]bool) {
	for c := 0x20; c < 0x80; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// scanValue returns the end of the value starting at b[i]. Nested objects
// and arrays are matched by depth (their content is checked by whoever
// decodes them); literals and numbers are checked here.
func scanValue(b []byte, i int) (int, error) {
	end, _, err := scanValuePlain(b, i)
	return end, err
}

// scanValuePlain is scanValue that also says whether a string value is
// plain (see scanString).
func scanValuePlain(b []byte, i int) (int, bool, error) {
	if i >= len(b) {
		return i, false, synErr(i, "unexpected end of input")
	}
	if b[i] == '"' {
		return scanString(b, i)
	}
	end, err := scanOther(b, i)
	return end, false, err
}

func scanOther(b []byte, i int) (int, error) {
	switch c := b[i]; {
	case c == '{' || c == '[':
		depth := 0
		for j := i; j < len(b); j++ {
			switch b[j] {
			case '"':
				end, _, err := scanString(b, j)
				if err != nil {
					return end, err
				}
				j = end - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					if !json.Valid(b[i : j+1]) {
						return j, synErr(i, "malformed nested value")
					}
					return j + 1, nil
				}
			}
		}
		return len(b), synErr(len(b), "unexpected end of input")
	case c == 't' || c == 'f' || c == 'n':
		for _, lit := range []string{"true", "false", "null"} {
			if len(b)-i >= len(lit) && string(b[i:i+len(lit)]) == lit {
				return i + len(lit), nil
			}
		}
		return i, synErr(i, "invalid literal")
	case c == '-' || (c >= '0' && c <= '9'):
		j := i
		for j < len(b) && (b[j] == '-' || b[j] == '+' || b[j] == '.' || b[j] == 'e' || b[j] == 'E' || (b[j] >= '0' && b[j] <= '9')) {
			j++
		}
		var n json.Number
		if json.Unmarshal(b[i:j], &n) != nil {
			return j, synErr(i, "invalid number %s", strconv.Quote(string(b[i:j])))
		}
		return j, nil
	}
	return i, synErr(i, "unexpected character %q", b[i])
}

// scanObject calls fn for every member of the object starting at b[i]
// (after blanks) with the key (plain bytes, or decoded), the value's raw
// bytes, where they start in b (kat: -1 for a decoded key), and whether
// the value is a plain string (scanString), and returns the index after
// the closing brace. A syntax error stops it; fn's error is returned as it
// is.
func scanObject(b []byte, i int, fn func(key, val []byte, kat, vat int, plain bool) error) (int, error) {
	i = skipWS(b, i)
	if i >= len(b) || b[i] != '{' {
		if i >= len(b) {
			return i, synErr(i, "unexpected end of input: want an object")
		}
		return i, synErr(i, "want a JSON object, got %q", b[i])
	}
	i = skipWS(b, i+1)
	if i < len(b) && b[i] == '}' {
		return i + 1, nil
	}
	for {
		i = skipWS(b, i)
		kend, plain, err := scanString(b, i)
		if err != nil {
			return kend, err
		}
		key, kat := b[i+1:kend-1], i+1
		if !plain {
			kat = -1
			var s string
			if err := json.Unmarshal(b[i:kend], &s); err != nil {
				return i, synErr(i, "invalid key: %v", err)
			}
			key = []byte(s)
		}
		i = skipWS(b, kend)
		if i >= len(b) || b[i] != ':' {
			return i, synErr(i, "want ':' after a key")
		}
		i = skipWS(b, i+1)
		vend, vplain, err := scanValuePlain(b, i)
		if err != nil {
			return vend, err
		}
		if err := fn(key, b[i:vend], kat, i, vplain); err != nil {
			return vend, err
		}
		i = skipWS(b, vend)
		if i >= len(b) {
			return i, synErr(i, "unexpected end of input in an object")
		}
		switch b[i] {
		case ',':
			i++
		case '}':
			return i + 1, nil
		default:
			return i, synErr(i, "want ',' or '}' after a value")
		}
	}
}
