package cloudcruiser

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// maxOffset is the largest UTC offset accepted, as in java.time.ZoneOffset.
const maxOffset = 18 * 3600

// usageTimeFormats is what error messages list as the accepted formats.
const usageTimeFormats = "yyyy-MM-dd HH:mm, yyyy-MM-dd HH:mm:ss, yyyy-MM-ddTHH:mm:ss, yyyy-MM-ddTHH:mm:ssZ (Z = Z, ±hh or ±hh:mm)"

// parseZoneOffset parses the zoneOffset query value: a sign followed by
// hours (1 or 2 digits), hh:mm or hh:mm:ss, at most 18 hours. It returns the
// offset in seconds east of UTC.
func parseZoneOffset(s string) (int, error) {
	if s == "" {
		return 0, errors.New("zoneOffset is empty")
	}
	switch s[0] {
	case '+', '-':
	case ' ':
		// url.ParseQuery turns an unencoded '+' into a space.
		return 0, fmt.Errorf("zoneOffset %q starts with a space: a '+' in a query string means a space, encode it as %%2B", s)
	default:
		return 0, fmt.Errorf("zoneOffset %q must start with '+' or '-' (formats ±h, ±hh, ±hh:mm, ±hh:mm:ss)", s)
	}
	rest := s[1:]
	if len(rest) == 1 && isDigit(rest[0]) {
		rest = "0" + rest // ±h
	}
	secs, ok := parseHMS(rest)
	if !ok {
		return 0, fmt.Errorf("zoneOffset %q: want ±h, ±hh, ±hh:mm or ±hh:mm:ss, at most ±18:00", s)
	}
	if s[0] == '-' {
		secs = -secs
	}
	return secs, nil
}

// parseHMS parses hh, hh:mm or hh:mm:ss (two digits each, minutes and
// seconds below 60, at most 18 hours) into seconds.
func parseHMS(s string) (int, bool) {
	var parts []string
	switch len(s) {
	case 2:
		parts = []string{s}
	case 5:
		if s[2] != ':' {
			return 0, false
		}
		parts = []string{s[0:2], s[3:5]}
	case 8:
		if s[2] != ':' || s[5] != ':' {
			return 0, false
		}
		parts = []string{s[0:2], s[3:5], s[6:8]}
	default:
		return 0, false
	}
	secs := 0
	for i, p := range parts {
		n, ok := twoDigits(p)
		if !ok || (i > 0 && n > 59) {
			return 0, false
		}
		secs = secs*60 + n
	}
	for range 3 - len(parts) {
		secs *= 60
	}
	return secs, secs <= maxOffset
}

// formatOffset renders an offset in seconds as ±hh:mm, or ±hh:mm:ss when
// it has seconds. UTC is "+00:00".
func formatOffset(secs int) string {
	sign := byte('+')
	if secs < 0 {
		sign, secs = '-', -secs
	}
	h, m, sec := secs/3600, secs/60%60, secs%60
	if sec != 0 {
		return fmt.Sprintf("%c%02d:%02d:%02d", sign, h, m, sec)
	}
	return fmt.Sprintf("%c%02d:%02d", sign, h, m)
}

// parseUsageTime parses a Usage Start or Usage End value in one of the
// documented formats. A value without an offset is in loc (the request's
// zoneOffset).
//
//	yyyy-MM-dd HH:mm
//	yyyy-MM-dd HH:mm:ss
//	yyyy-MM-ddTHH:mm:ss
//	yyyy-MM-ddTHH:mm:ssZ   Z is "Z", ±hh or ±hh:mm
func parseUsageTime(s string, loc *time.Location) (time.Time, error) {
	bad := func() (time.Time, error) {
		return time.Time{}, fmt.Errorf("%s is not a date/time in a documented format (%s)", quote(s), usageTimeFormats)
	}
	if len(s) < 16 || s[4] != '-' || s[7] != '-' || s[13] != ':' || (s[10] != ' ' && s[10] != 'T') {
		return bad()
	}
	year, ok1 := fourDigits(s[0:4])
	month, ok2 := twoDigits(s[5:7])
	day, ok3 := twoDigits(s[8:10])
	hour, ok4 := twoDigits(s[11:13])
	minute, ok5 := twoDigits(s[14:16])
	if !ok1 || !ok2 || !ok3 || !ok4 || !ok5 {
		return bad()
	}
	second := 0
	rest := s[16:]
	if strings.HasPrefix(rest, ":") {
		var ok bool
		if len(rest) < 3 {
			return bad()
		}
		if second, ok = twoDigits(rest[1:3]); !ok {
			return bad()
		}
		rest = rest[3:]
	} else if s[10] == 'T' {
		return bad() // yyyy-MM-ddTHH:mm is not documented
	}
	if rest != "" {
		// Only the T form with seconds carries an offset.
		if s[10] != 'T' || len(s) < 19 {
			return bad()
		}
		switch rest[0] {
		case 'Z':
			if rest != "Z" {
				return bad()
			}
			loc = time.UTC
		case '+', '-':
			// ±hh (the documented example, "+03") or ±hh:mm [INFER]; an
			// offset with seconds is documented for zoneOffset only.
			secs, ok := parseHMS(rest[1:])
			if !ok || len(rest) > 6 {
				return bad()
			}
			if rest[0] == '-' {
				secs = -secs
			}
			loc = time.FixedZone("", secs)
		default:
			return bad()
		}
	}
	if month < 1 || month > 12 || hour > 23 || minute > 59 || second > 59 {
		return time.Time{}, fmt.Errorf("%s is out of range", quote(s))
	}
	t := time.Date(year, time.Month(month), day, hour, minute, second, 0, loc)
	if t.Day() != day { // 2024-02-30 would roll over
		return time.Time{}, fmt.Errorf("%s is not a valid date", quote(s))
	}
	return t, nil
}

// parseDate parses the URL's accounting date, strictly YYYY-MM-DD.
func parseDate(s string) (year int, month time.Month, day int, err error) {
	t, err := time.Parse("2006-01-02", s)
	if err != nil || len(s) != 10 {
		return 0, 0, 0, fmt.Errorf("date %s is not a valid YYYY-MM-DD date", quote(s))
	}
	return t.Year(), t.Month(), t.Day(), nil
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func twoDigits(s string) (int, bool) {
	if len(s) != 2 || !isDigit(s[0]) || !isDigit(s[1]) {
		return 0, false
	}
	return int(s[0]-'0')*10 + int(s[1]-'0'), true
}

func fourDigits(s string) (int, bool) {
	a, ok1 := twoDigits(s[0:2])
	b, ok2 := twoDigits(s[2:4])
	return a*100 + b, ok1 && ok2 && len(s) == 4
}

// quote renders a client value for an error message, cut to a sane length.
func quote(s string) string {
	const max = 80
	if len(s) > max {
		return fmt.Sprintf("%q…", s[:max])
	}
	return fmt.Sprintf("%q", s)
}
