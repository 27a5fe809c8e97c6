package input

import (
	"fmt"
	"math/big"
	"strconv"
	"time"

	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/format"
	"github.com/shopspring/decimal"

	"github.com/usagefleet/usagefleet/messages"
)

// leafType is what the text of a leaf column's values needs of its
// Parquet type, found once per file: t.LogicalType() builds its answer
// anew on every call, and it was called for every value.
type leafType struct {
	typ     parquet.Type
	decimal bool
	scale   int32
	stamp   time.Duration // a TIMESTAMP's unit (0: not a timestamp)
	date    bool
}

func leafTypeOf(t parquet.Type) leafType {
	lt := leafType{typ: t}
	l := t.LogicalType()
	if l == nil {
		return lt
	}
	switch v := l.Value.(type) {
	case *format.DecimalType:
		lt.decimal, lt.scale = true, v.Scale
	case *format.TimestampType:
		lt.stamp = time.Millisecond
		if v.Unit.Value != nil {
			lt.stamp = v.Unit.Value.Duration()
		}
	case *format.DateType:
		lt.date = true
	}
	return lt
}

// appendValueText appends the text of one value (nothing for null) to
// dst: the text a CSV cell would hold (see parquet.go). It is the same
// text, byte for byte, as it was when each value became a string of its
// own (the tests compare with that).
func appendValueText(dst []byte, v parquet.Value, t *leafType) ([]byte, error) {
	if v.IsNull() {
		return dst, nil
	}
	switch v.Kind() {
	case parquet.Boolean:
		return strconv.AppendBool(dst, v.Boolean()), nil
	case parquet.Int32, parquet.Int64:
		n := v.Int64()
		if v.Kind() == parquet.Int32 {
			n = int64(v.Int32())
		}
		switch {
		case t.decimal:
			return appendDecimal(dst, n, t.scale), nil
		case t.stamp != 0:
			return time.Unix(0, 0).Add(time.Duration(n)*t.stamp).UTC().AppendFormat(dst, time.RFC3339Nano), nil
		case t.date:
			return time.Unix(n*86400, 0).UTC().AppendFormat(dst, time.RFC3339), nil
		}
		return strconv.AppendInt(dst, n, 10), nil
	case parquet.Int96:
		// Legacy timestamps: nanoseconds of the day, then the Julian day.
		i := v.Int96()
		nanos := int64(uint64(i[1])<<32 | uint64(i[0]))
		day := int64(i[2]) - 2440588 // the Julian day of 1970-01-01
		return time.Unix(day*86400, nanos).UTC().AppendFormat(dst, time.RFC3339Nano), nil
	case parquet.Float:
		return strconv.AppendFloat(dst, float64(v.Float()), 'g', -1, 32), nil
	case parquet.Double:
		return strconv.AppendFloat(dst, v.Double(), 'g', -1, 64), nil
	case parquet.ByteArray, parquet.FixedLenByteArray:
		b := v.ByteArray()
		if t.decimal {
			if len(b) > 64 {
				return dst, fmt.Errorf("a decimal of %d bytes", len(b))
			}
			if len(b) <= 8 {
				// Two's complement, big-endian: an int64 once sign-extended.
				var n int64
				if len(b) > 0 && b[0]&0x80 != 0 {
					n = -1
				}
				for _, c := range b {
					n = n<<8 | int64(c)
				}
				return appendDecimal(dst, n, t.scale), nil
			}
			n := new(big.Int).SetBytes(b)
			if b[0]&0x80 != 0 { // two's complement
				n.Sub(n, new(big.Int).Lsh(big.NewInt(1), uint(len(b)*8)))
			}
			return append(dst, messages.FromBig(decimal.NewFromBigInt(n, -t.scale)).String()...), nil
		}
		if len(b) > MaxCellBytes {
			return dst, fmt.Errorf("a value of %d bytes, more than the %d-byte cell limit", len(b), MaxCellBytes)
		}
		return append(dst, b...), nil
	}
	return dst, fmt.Errorf("a Parquet %v value is not read", v.Kind())
}

// appendDecimal appends the unscaled n at scale as
// messages.FromBig(decimal.New(n, -scale)) writes it: every digit of the
// scale kept ("1.50" stays "1.50"), a zero before the point, no sign on
// zero. A scale below zero (not valid Parquet) goes through FromBig.
func appendDecimal(dst []byte, n int64, scale int32) []byte {
	if scale < 0 {
		return append(dst, messages.FromBig(decimal.New(n, -scale)).String()...)
	}
	u := uint64(n)
	if n < 0 {
		dst = append(dst, '-')
		u = -u
	}
	if scale == 0 {
		return strconv.AppendUint(dst, u, 10)
	}
	var digits [20]byte
	d := strconv.AppendUint(digits[:0], u, 10)
	if len(d) <= int(scale) { // |n| < 10^scale: 0.000ddd
		dst = append(dst, '0', '.')
		for range int(scale) - len(d) {
			dst = append(dst, '0')
		}
		return append(dst, d...)
	}
	point := len(d) - int(scale)
	dst = append(dst, d[:point]...)
	dst = append(dst, '.')
	return append(dst, d[point:]...)
}

// appendMapJSON appends a map column's entries as a JSON object (nothing
// for a null or empty map).
func appendMapJSON(dst []byte, keys, vals []parquet.Value, vt *leafType) []byte {
	if len(keys) == 0 || keys[0].IsNull() {
		return dst
	}
	dst = append(dst, '{')
	for i, k := range keys {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = messages.AppendJSONString(dst, view(k.ByteArray()))
		dst = append(dst, ':')
		var v parquet.Value
		if i < len(vals) {
			v = vals[i]
		}
		switch {
		case v.IsNull():
			dst = append(dst, "null"...)
		case v.Kind() == parquet.ByteArray || v.Kind() == parquet.FixedLenByteArray && !vt.decimal:
			if b := v.ByteArray(); len(b) <= MaxCellBytes {
				dst = messages.AppendJSONString(dst, view(b))
			} else {
				dst = append(dst, "null"...)
			}
		default:
			mark := len(dst)
			text, err := appendValueText(dst, v, vt)
			if err != nil {
				text = append(dst[:mark], "null"...)
			}
			dst = text
		}
	}
	return append(dst, '}')
}
