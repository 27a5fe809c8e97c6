package input

import (
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

// The whole-input and record limits below, at and over: at the limit is
// read whole (a file of exactly max bytes is allowed), one byte over is a
// LimitError naming the line reading stopped on.
func TestLimitReader(t *testing.T) {
	tests := []struct {
		name     string
		src      string
		max      int64
		budget   int64 // the record's, set before reading; < 0 none
		wantErr  string
		wantLine int
	}{
		{"input below", "a\nb\nc", 6, -1, "", 0},
		{"input at", "a\nb\ncd", 6, -1, "", 0},
		{"input over", "a\nb\ncde", 6, -1, "line 3: the input is over: reading stopped", 3},
		{"input over, no newline", "abcdefg", 6, -1, "line 1: the input is over: reading stopped", 1},
		{"input at, read byte by byte", "a\nb\ncd", 6, -1, "", 0},
		{"input over at a newline", "a\nb\nc\n\n", 6, -1, "line 4: the input is over: reading stopped", 4},
		{"record below", "a\nb\nc", 100, 6, "", 0},
		{"record at", "a\nb\ncd", 100, 6, "", 0},
		{"record over", "a\nb\ncde", 100, 6, "line 3: the record is over: reading stopped", 3},
		{"record over after a newline", "a\nb\nc\nd", 100, 6, "line 4: the record is over: reading stopped", 4},
	}
	for _, tt := range tests {
		for _, oneByte := range []bool{false, true} {
			var r io.Reader = strings.NewReader(tt.src)
			if oneByte {
				r = iotest.OneByteReader(r)
			}
			l := NewLimitReader(r, tt.max, "the input is over")
			l.Record(tt.budget, "the record is over")
			got, err := io.ReadAll(l)
			if tt.wantErr == "" {
				if err != nil || string(got) != tt.src {
					t.Errorf("%s (one byte %v): read %q, %v; want it all", tt.name, oneByte, got, err)
				}
				continue
			}
			var le *LimitError
			if !errors.As(err, &le) || !errors.Is(err, ErrTooLarge) || err.Error() != tt.wantErr || le.Line != tt.wantLine {
				t.Errorf("%s (one byte %v): err %v; want %q (a LimitError, ErrTooLarge)", tt.name, oneByte, err, tt.wantErr)
			}
			if _, again := l.Read(make([]byte, 8)); again != err || l.Err() != err {
				t.Errorf("%s: a read after the limit gave %v, Err %v; want the same error", tt.name, again, l.Err())
			}
		}
	}
}

// Options.MaxBytes: a CSV file of exactly that size is read whole (it
// was refused before LimitReader), one byte more is refused.
func TestMaxBytesAtTheLimit(t *testing.T) {
	file := "ChargePeriodStart,BilledCost,BillingCurrency\n2024-05-01T10:00:00Z,1.5,USD\n"
	for _, tt := range []struct {
		max   int64
		rows  int
		fails bool
	}{{int64(len(file)) + 1, 1, false}, {int64(len(file)), 1, false}, {int64(len(file)) - 1, 0, true}, {10, 0, true}} {
		rows := 0
		_, err := ReadWith("t.csv", strings.NewReader(file), Options{MaxBytes: tt.max}, func(Row) error { rows++; return nil })
		if (err != nil) != tt.fails || !tt.fails && rows != tt.rows || tt.fails && !errors.Is(err, ErrTooLarge) {
			t.Errorf("max %d for %d bytes: %d rows, err %v", tt.max, len(file), rows, err)
		}
	}
}
