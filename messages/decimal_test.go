package messages

import (
	"errors"
	"math/rand"
	"strconv"
	"strings"
	"testing"

	"github.com/shopspring/decimal"
)

func TestParseDecimal(t *testing.T) {
	tests := []struct {
		in, want string
		bad      bool
	}{
		{in: "12", want: "12"},
		{in: "12.50", want: "12.50"},
		{in: "-0.0003", want: "-0.0003"},
		{in: "0", want: "0"},
		{in: "+7", want: "7"},
		{in: "007.5", want: "7.5"},
		{in: "-0", want: "0"},
		{in: "-0.00", want: "0.00"},
		{in: ".5", want: "0.5"},
		{in: "1.", want: "1"},
		{in: "1e3", want: "1000"},
		{in: "1.5E-3", want: "0.0015"},
		{in: "-2.50e1", want: "-25.0"},
		{in: "", bad: true},
		{in: "-", bad: true},
		{in: ".", bad: true},
		{in: "NaN", bad: true},
		{in: "Inf", bad: true},
		{in: "1,5", bad: true},
		{in: " 1", bad: true},
		{in: "1e", bad: true},
		{in: "1e1001", bad: true},
		{in: "0x10", bad: true},
		{in: "1_000", bad: true},
	}
	for _, tt := range tests {
		got, err := ParseDecimal(tt.in)
		if tt.bad {
			if err == nil || !errors.Is(err, ErrNotDecimal) {
				t.Errorf("ParseDecimal(%q) = %q, %v; want ErrNotDecimal", tt.in, got, err)
			}
			continue
		}
		if err != nil || got.String() != tt.want {
			t.Errorf("ParseDecimal(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}

func TestDecimalUnsetDiffersFromZero(t *testing.T) {
	var unset Decimal
	zero := MustDecimal("0")
	if unset.IsSet() || !zero.IsSet() {
		t.Fatal("unset and zero must differ")
	}
	if unset.Equal(zero) {
		t.Fatal("unset must not equal zero")
	}
	if !MustDecimal("1.50").Equal(MustDecimal("1.5")) {
		t.Fatal("1.50 must equal 1.5 numerically")
	}
}

// TestSumMatchesBigDecimal checks the int64 fast path against shopspring on
// random money, including values that overflow int64 and force the fallback.
func TestSumMatchesBigDecimal(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	for round := 0; round < 200; round++ {
		var s Sum
		want := decimal.Zero
		n := rng.Intn(500)
		for i := 0; i < n; i++ {
			var lit string
			switch rng.Intn(5) {
			case 0: // huge: forces the big path
				lit = strconv.FormatInt(rng.Int63(), 10) + strconv.FormatInt(rng.Int63(), 10) + "." + strconv.Itoa(rng.Intn(1000))
			case 1:
				lit = "-" + strconv.Itoa(rng.Intn(100000)) + "." + strconv.Itoa(rng.Intn(1e6))
			default:
				lit = strconv.Itoa(rng.Intn(1000)) + "." + strconv.Itoa(rng.Intn(1e9))
			}
			d := MustDecimal(lit)
			s.Add(d)
			want = want.Add(decimal.RequireFromString(lit))
		}
		if !s.Big().Equal(want) {
			t.Fatalf("round %d: sum %s, want %s", round, s.Decimal(), want)
		}
	}
}

func TestSumKeepsScale(t *testing.T) {
	var s Sum
	s.Add(MustDecimal("1.50"))
	s.Add(MustDecimal("2"))
	s.Add(Decimal{})
	if got := s.Decimal().String(); got != "3.50" {
		t.Fatalf("sum = %s, want 3.50", got)
	}
	var empty Sum
	if got := empty.Decimal().String(); got != "0" {
		t.Fatalf("empty sum = %q, want 0", got)
	}
}

// AddPlain totals the same as Add of the parsed decimals, canonical or not.
func TestSumAddPlain(t *testing.T) {
	var a, b Sum
	for _, s := range []string{"1.50", "-0.25", "007", "12345678901234567890.1", "0", "1e2", "-0.0001"} {
		if err := a.AddPlain([]byte(s)); err != nil {
			t.Fatalf("%q: %v", s, err)
		}
		b.Add(MustDecimal(s))
	}
	if !a.Decimal().Equal(b.Decimal()) {
		t.Fatalf("AddPlain %s, Add %s", a.Decimal(), b.Decimal())
	}
	if err := a.AddPlain([]byte("1.2.3")); err == nil {
		t.Fatal("1.2.3 accepted")
	}
}

// The eight-at-a-time digit check agrees with the plain one for every
// byte in every position, and isCanonical's fast path with the slow one.
func TestCanonicalFastPathAgrees(t *testing.T) {
	for pos := 0; pos < 8; pos++ {
		for c := 0; c < 256; c++ {
			b := []byte("12345678")
			b[pos] = byte(c)
			want := true
			for _, x := range b {
				want = want && x >= '0' && x <= '9'
			}
			if got := allDigitsSWAR(string(b)); got != want {
				t.Fatalf("%q: got %v", b, got)
			}
		}
	}
	for _, s := range []string{"1.5", "12.345678901234", "9.0", "1.", ".5", "01.5", "1.5.5", "1a.5", "1.5a", "1234567890123456", "1.23456789012345678", "-1.5", "0.5", "12.3456789012345", "10.00000000000000", "7.7/"} {
		if got, want := isCanonical(s), isCanonicalSlow(s); got != want {
			t.Errorf("isCanonical(%q) = %v, slow path %v", s, got, want)
		}
	}
}

// Any exponent the grammar allows is exact, up to the bomb guard.
func TestParseDecimalExponents(t *testing.T) {
	for in, want := range map[string]string{
		"1.5E-100": "0." + strings.Repeat("0", 99) + "15",
		"35.2E-7":  "0.00000352",
		"2E+3":     "2000",
		"1e1000":   "1" + strings.Repeat("0", 1000),
		"-7E-0003": "-0.007",
		"0E-5":     "0.00000",
	} {
		got, err := ParseDecimal(in)
		if err != nil || got.String() != want {
			t.Errorf("ParseDecimal(%q) = %s, %v; want %s", in, got, err, want)
		}
	}
	for _, in := range []string{"1e1001", "1e-99999", "1E1000000000", "1e", strings.Repeat("1", 1025)} {
		_, err := ParseDecimal(in)
		if err == nil || len(err.Error()) > 200 {
			t.Errorf("ParseDecimal(%.20q...) = %v: want a short error", in, err)
		}
	}
}
