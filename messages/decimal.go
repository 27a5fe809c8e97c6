package messages

import (
	"errors"
	"fmt"
	"math"
	"math/bits"
	"strings"
	"unsafe"

	"github.com/shopspring/decimal"
)

// Decimal is an exact decimal number held in plain notation ("12.50",
// "-0.0003"), the way it travels on the wire and in every billing API's JSON.
// The zero value is "not set", which differs from zero: a record without a
// cost is not a record that cost nothing. Arithmetic goes through Big.
//
// ParseDecimal accepts exponent form and other spellings and normalises them,
// so a Decimal never holds an exponent, a leading '+', needless leading
// zeros, or "-0". Trailing fraction zeros are kept: they are the publisher's
// stated precision.
type Decimal struct{ s string }

// maxDecimalLen bounds a decimal's text as written.
const maxDecimalLen = 1024

// MaxDecimalExponent bounds the exponent of a decimal in E notation, a bomb
// guard: "1E1000000000" would otherwise expand to a billion digits in plain
// notation. FOCUS's numeric format allows any integer exponent
// (specification/attributes/numeric_format.md); no money or quantity needs
// more than a thousand digits either side of the point.
const MaxDecimalExponent = 1000

// ErrNotDecimal is wrapped by every parse failure.
var ErrNotDecimal = errors.New("not a decimal number")

// ParseDecimal parses s. It accepts an optional sign, digits with an optional
// fraction, and an optional exponent; it rejects blanks, NaN and Inf.
func ParseDecimal(s string) (Decimal, error) {
	if isCanonical(s) {
		return Decimal{s}, nil
	}
	t := strings.TrimPrefix(s, "+")
	if len(s) > maxDecimalLen {
		return Decimal{}, fmt.Errorf("%s: longer than %d bytes: %w", quoteClip(s), maxDecimalLen, ErrNotDecimal)
	}
	if t == "" {
		return Decimal{}, fmt.Errorf("%s: %w", quoteClip(s), ErrNotDecimal)
	}
	// Validate the grammar ourselves: shopspring accepts forms we do not want.
	i := 0
	if t[0] == '-' {
		i++
	}
	digits := 0
	for i < len(t) && t[i] >= '0' && t[i] <= '9' {
		i++
		digits++
	}
	if i < len(t) && t[i] == '.' {
		i++
		for i < len(t) && t[i] >= '0' && t[i] <= '9' {
			i++
			digits++
		}
	}
	if digits == 0 {
		return Decimal{}, fmt.Errorf("%s: %w", quoteClip(s), ErrNotDecimal)
	}
	if i < len(t) && (t[i] == 'e' || t[i] == 'E') {
		i++
		if i < len(t) && (t[i] == '+' || t[i] == '-') {
			i++
		}
		start := i
		for i < len(t) && t[i] >= '0' && t[i] <= '9' {
			i++
		}
		if i == start {
			return Decimal{}, fmt.Errorf("%s: exponent missing: %w", quoteClip(s), ErrNotDecimal)
		}
		exp := strings.TrimLeft(t[start:i], "0")
		if len(exp) > 4 || (len(exp) == 4 && exp > "1000") {
			return Decimal{}, fmt.Errorf("%s: exponent beyond ±%d: %w", quoteClip(s), MaxDecimalExponent, ErrNotDecimal)
		}
	}
	if i != len(t) {
		return Decimal{}, fmt.Errorf("%s: %w", quoteClip(s), ErrNotDecimal)
	}
	d, err := decimal.NewFromString(t)
	if err != nil {
		return Decimal{}, fmt.Errorf("%s: %w", quoteClip(s), ErrNotDecimal)
	}
	return FromBig(d), nil
}

// MustDecimal is ParseDecimal for constants; it panics on a bad literal.
func MustDecimal(s string) Decimal {
	d, err := ParseDecimal(s)
	if err != nil {
		panic(err)
	}
	return d
}

// FromBig converts an arbitrary-precision decimal to plain notation.
func FromBig(d decimal.Decimal) Decimal {
	s := d.String()
	if d.Exponent() < 0 {
		// Keep the scale the value carries ("1.50" stays "1.50").
		s = d.StringFixed(-d.Exponent())
	}
	if s == "-0" {
		s = "0"
	}
	return Decimal{s}
}

// DecimalFromInt returns the integer i.
func DecimalFromInt(i int64) Decimal { return FromBig(decimal.NewFromInt(i)) }

// IsSet reports whether the value is present.
func (d Decimal) IsSet() bool { return d.s != "" }

// String returns plain notation, or "" when not set.
func (d Decimal) String() string { return d.s }

// Big returns the value as an arbitrary-precision decimal (zero when unset).
func (d Decimal) Big() decimal.Decimal {
	if d.s == "" {
		return decimal.Zero
	}
	v, err := decimal.NewFromString(d.s)
	if err != nil { // cannot happen: d.s was validated
		panic(fmt.Sprintf("messages: invalid Decimal %q", d.s))
	}
	return v
}

// IsNegative reports whether the value is below zero.
func (d Decimal) IsNegative() bool { return strings.HasPrefix(d.s, "-") }

// Equal compares numerically ("1.50" equals "1.5").
func (d Decimal) Equal(o Decimal) bool {
	if d.s == o.s {
		return true
	}
	return d.IsSet() == o.IsSet() && d.Big().Equal(o.Big())
}

// MarshalText implements encoding.TextMarshaler (JSON strings, YAML).
func (d Decimal) MarshalText() ([]byte, error) { return []byte(d.s), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *Decimal) UnmarshalText(b []byte) error {
	if len(b) == 0 {
		*d = Decimal{}
		return nil
	}
	v, err := ParseDecimal(string(b))
	if err != nil {
		return err
	}
	*d = v
	return nil
}

// isCanonical is the allocation-free fast path: -?(0|[1-9]\d*)(\.\d+)? and
// not a negative zero.
func isCanonical(s string) bool {
	// Fast path for the common shape, a positive "int.frac" of at most 16
	// bytes: every byte a digit but one dot, checked eight at a time.
	if n := len(s); n >= 3 && n <= 16 && s[0] >= '1' && s[0] <= '9' {
		if dot := strings.IndexByte(s, '.'); dot > 0 && dot < n-1 && allDigitsSWAR(s[:dot]) && allDigitsSWAR(s[dot+1:]) {
			return true
		}
	}
	return isCanonicalSlow(s)
}

// allDigitsSWAR reports whether s (at most 16 bytes) is all ASCII digits.
func allDigitsSWAR(s string) bool {
	for len(s) >= 8 {
		if !digits8(uint64(s[0]) | uint64(s[1])<<8 | uint64(s[2])<<16 | uint64(s[3])<<24 |
			uint64(s[4])<<32 | uint64(s[5])<<40 | uint64(s[6])<<48 | uint64(s[7])<<56) {
			return false
		}
		s = s[8:]
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// digits8 reports whether the eight bytes of x are all in '0'..'9': adding
// 0x46 to each byte carries into its high bit from 0x3a up, subtracting
// 0x30 borrows from below 0x30.
func digits8(x uint64) bool {
	const lo, hi, hb = 0x3030303030303030, 0x4646464646464646, 0x8080808080808080
	return ((x+hi)|(x-lo))&hb == 0 && x&hb == 0
}

func isCanonicalSlow(s string) bool {
	if s == "" || len(s) > maxDecimalLen {
		return false
	}
	i := 0
	neg := s[0] == '-'
	if neg {
		i++
	}
	if i >= len(s) {
		return false
	}
	nonzero := false
	if s[i] == '0' {
		i++
	} else {
		start := i
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
		if i == start {
			return false
		}
		nonzero = true
	}
	if i < len(s) {
		if s[i] != '.' {
			return false
		}
		i++
		start := i
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			if s[i] != '0' {
				nonzero = true
			}
			i++
		}
		if i == start || i != len(s) {
			return false
		}
	}
	return !neg || nonzero
}

// Sum adds decimals exactly. It keeps an int64 mantissa while the values fit
// (the common case for money) and falls back to arbitrary precision when they
// do not, so summing a million costs does not allocate a million big.Ints.
// The zero value is an empty sum (0).
type Sum struct {
	mant  int64
	scale int32
	big   *decimal.Decimal
}

// Add adds d (an unset d adds nothing).
func (s *Sum) Add(d Decimal) {
	if d.s == "" {
		return
	}
	if s.big == nil {
		if m, sc, ok := smallParse(d.s); ok && s.addSmall(m, sc) {
			return
		}
		b := s.bigValue()
		s.big = &b
	}
	v := s.big.Add(d.Big())
	s.big = &v
}

// AddPlain adds the decimal written in b (as ParseDecimal reads it),
// without allocating when b is canonical plain notation: for readers that
// total amounts straight from a body's bytes.
func (s *Sum) AddPlain(b []byte) error {
	// The string is only read during the call, never kept.
	if t := unsafe.String(unsafe.SliceData(b), len(b)); isCanonical(t) {
		s.Add(Decimal{t})
		return nil
	}
	d, err := ParseDecimal(string(b))
	if err != nil {
		return err
	}
	s.Add(d)
	return nil
}

// AddSum adds another sum.
func (s *Sum) AddSum(o Sum) { s.Add(o.Decimal()) }

func (s *Sum) addSmall(m int64, sc int32) bool {
	a, as := s.mant, s.scale
	// Bring both to the larger scale.
	for as < sc {
		if !mulOK(&a, 10) {
			return false
		}
		as++
	}
	for sc < as {
		if !mulOK(&m, 10) {
			return false
		}
		sc++
	}
	r := a + m
	if (a > 0 && m > 0 && r < 0) || (a < 0 && m < 0 && r >= 0) {
		return false
	}
	s.mant, s.scale = r, as
	return true
}

func mulOK(v *int64, k int64) bool {
	x := *v
	neg := x < 0
	if neg {
		if x == math.MinInt64 {
			return false
		}
		x = -x
	}
	hi, lo := bits.Mul64(uint64(x), uint64(k))
	if hi != 0 || lo > math.MaxInt64 {
		return false
	}
	if neg {
		*v = -int64(lo)
	} else {
		*v = int64(lo)
	}
	return true
}

// smallParse reads a canonical decimal with at most 18 digits.
func smallParse(s string) (int64, int32, bool) {
	var m int64
	var sc int32
	neg := false
	i := 0
	if s[0] == '-' {
		neg = true
		i++
	}
	digits := 0
	frac := false
	for ; i < len(s); i++ {
		c := s[i]
		if c == '.' {
			frac = true
			continue
		}
		digits++
		if digits > 18 {
			return 0, 0, false
		}
		m = m*10 + int64(c-'0')
		if frac {
			sc++
		}
	}
	if neg {
		m = -m
	}
	return m, sc, true
}

func (s *Sum) bigValue() decimal.Decimal {
	if s.big != nil {
		return *s.big
	}
	return decimal.New(s.mant, -s.scale)
}

// Decimal returns the total.
func (s Sum) Decimal() Decimal { return FromBig(s.bigValue()) }

// Big returns the total as an arbitrary-precision decimal.
func (s Sum) Big() decimal.Decimal { return s.bigValue() }
