package cloudzero

import (
	"time"
	"unicode"
)

// The value syntax of the published schema, written out by hand: the
// emulator checks every value of every row, and a regexp per value would make
// it the slowest part of a benchmark. values_test.go checks that these agree
// with the schema's patterns.
const (
	// isoPattern is the schema's datetime pattern, for `month` and the
	// time/* columns.
	isoPattern = `^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(([+-]\d\d:\d\d)|Z)?$`
	// amountPattern is the schema's cost and usage/amount pattern with the
	// minus sign the CBF docs need for Discount and Credit rows.
	amountPattern = `^-?\d+(\.\d+)?$`
)

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if !isDigit(s[i]) {
			return false
		}
	}
	return true
}

// parseISO parses a value matching isoPattern and returns it in UTC. A value
// without a zone is UTC, as the CBF docs say every datetime is. ok is false
// for a value that does not match the pattern or names no real instant
// (month 13, February 30, hour 24).
func parseISO(s string) (t time.Time, ok bool) {
	// dddd-dd-ddTdd:dd:dd
	if len(s) < 19 || !allDigits(s[0:4]) || s[4] != '-' || !allDigits(s[5:7]) || s[7] != '-' ||
		!allDigits(s[8:10]) || s[10] != 'T' || !allDigits(s[11:13]) || s[13] != ':' ||
		!allDigits(s[14:16]) || s[16] != ':' || !allDigits(s[17:19]) {
		return time.Time{}, false
	}
	rest := s[19:]
	if len(rest) > 0 && rest[0] == '.' {
		n := 1
		for n < len(rest) && isDigit(rest[n]) {
			n++
		}
		if n == 1 {
			return time.Time{}, false
		}
		rest = rest[n:]
	}
	layout := "2006-01-02T15:04:05Z07:00"
	switch {
	case rest == "":
		layout = "2006-01-02T15:04:05"
	case rest == "Z":
	case len(rest) == 6 && (rest[0] == '+' || rest[0] == '-') && allDigits(rest[1:3]) && rest[3] == ':' && allDigits(rest[4:6]):
	default:
		return time.Time{}, false
	}
	t, err := time.Parse(layout, s)
	if err != nil {
		return time.Time{}, false
	}
	return t.UTC(), true
}

// parseMonth parses the top-level `month`: the docs page's "YYYY-MM" or the
// schema's ISO datetime, converted to UTC [INFER]. It returns the first
// instant of the month.
func parseMonth(s string) (time.Time, bool) {
	if len(s) == 7 {
		if !allDigits(s[0:4]) || s[4] != '-' || !allDigits(s[5:7]) {
			return time.Time{}, false
		}
		t, err := time.Parse("2006-01", s)
		return t, err == nil
	}
	t, ok := parseISO(s)
	if !ok {
		return time.Time{}, false
	}
	return monthOf(t), true
}

// monthOf returns the first instant of t's UTC month.
func monthOf(t time.Time) time.Time {
	t = t.UTC()
	return time.Date(t.Year(), t.Month(), 1, 0, 0, 0, 0, time.UTC)
}

// isAmount reports whether s matches amountPattern, with the minus sign only
// when negative is allowed.
func isAmount(s string, negative bool) bool {
	if negative && len(s) > 0 && s[0] == '-' {
		s = s[1:]
	}
	intPart, frac, hasDot := cut(s, '.')
	if intPart == "" || !allDigits(intPart) {
		return false
	}
	return !hasDot || (frac != "" && allDigits(frac))
}

func cut(s string, sep byte) (before, after string, found bool) {
	for i := 0; i < len(s); i++ {
		if s[i] == sep {
			return s[:i], s[i+1:], true
		}
	}
	return s, "", false
}

// validTagKey reports whether k is a tag key the CBF docs allow: letters,
// digits and _ . : / = + - @, nothing else (so no whitespace). "Letters"
// includes non-ASCII letters [INFER].
func validTagKey(k string) bool {
	if k == "" {
		return false
	}
	for _, r := range k {
		switch {
		case unicode.IsLetter(r), unicode.IsDigit(r):
		case r == '_', r == '.', r == ':', r == '/', r == '=', r == '+', r == '-', r == '@':
		default:
			return false
		}
	}
	return true
}
