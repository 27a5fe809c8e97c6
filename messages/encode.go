package messages

import (
	"encoding/binary"
	"time"
)

// appendRecordV1 appends the schema-1 msgpack encoding of r to dst, byte
// for byte what the msgpack library writes (a test holds both to the same
// bytes), without reflection or intermediate buffers. Schema 1 is no longer
// written; tests use this to store what older producers did.
func appendRecordV1(dst []byte, r *UsageRecord) []byte {
	n := 0
	if !r.ChargePeriodStart.IsZero() {
		n++
	}
	if !r.ChargePeriodEnd.IsZero() {
		n++
	}
	for _, f := range strFields {
		if *f.get(r) != "" {
			n++
		}
	}
	for _, f := range decFields {
		if f.get(r).IsSet() {
			n++
		}
	}
	if len(r.Tags) > 0 {
		n++
	}
	n += len(r.Ext)
	dst = appendMapLen(dst, n)
	if !r.ChargePeriodStart.IsZero() {
		dst = appendStr(dst, "ChargePeriodStart")
		dst = appendMsgpackTime(dst, r.ChargePeriodStart)
	}
	if !r.ChargePeriodEnd.IsZero() {
		dst = appendStr(dst, "ChargePeriodEnd")
		dst = appendMsgpackTime(dst, r.ChargePeriodEnd)
	}
	for _, f := range strFields {
		if v := *f.get(r); v != "" {
			dst = appendStr(dst, f.name)
			dst = appendStr(dst, v)
		}
	}
	for _, f := range decFields {
		if v := f.get(r); v.IsSet() {
			dst = appendStr(dst, f.name)
			dst = appendStr(dst, v.s)
		}
	}
	if len(r.Tags) > 0 {
		dst = appendStr(dst, "Tags")
		dst = appendMapLen(dst, len(r.Tags))
		if len(r.Tags) == 1 {
			for k, v := range r.Tags {
				dst = appendStr(dst, k)
				dst = appendStr(dst, v)
			}
		} else {
			for _, k := range sortedKeys(r.Tags) {
				dst = appendStr(dst, k)
				dst = appendStr(dst, r.Tags[k])
			}
		}
	}
	if len(r.Ext) > 0 {
		for _, k := range sortedKeys(r.Ext) {
			v := r.Ext[k]
			dst = appendStrLen(dst, len(k)+2)
			dst = append(dst, 'x', '_')
			dst = append(dst, k...)
			switch v.Kind {
			case ExtString:
				dst = appendStr(dst, v.Str)
			case ExtInt:
				dst = appendInt(dst, v.Int)
			case ExtDecimal:
				dst = appendExtHeader(dst, extDecimalType, len(v.Dec.s))
				dst = append(dst, v.Dec.s...)
			default:
				dst = append(dst, 0xc0) // unreachable for validated records
			}
		}
	}
	return dst
}

func appendMapLen(dst []byte, n int) []byte {
	switch {
	case n < 16:
		return append(dst, 0x80|byte(n))
	case n <= 0xffff:
		return append(dst, 0xde, byte(n>>8), byte(n))
	}
	return append(dst, 0xdf, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
}

func appendStrLen(dst []byte, n int) []byte {
	switch {
	case n < 32:
		return append(dst, 0xa0|byte(n))
	case n <= 0xff:
		return append(dst, 0xd9, byte(n))
	case n <= 0xffff:
		return append(dst, 0xda, byte(n>>8), byte(n))
	}
	return append(dst, 0xdb, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
}

func appendStr(dst []byte, s string) []byte {
	return append(appendStrLen(dst, len(s)), s...)
}

func appendInt(dst []byte, n int64) []byte {
	switch {
	case n >= 0 && n <= 0x7f:
		return append(dst, byte(n))
	case n >= 0 && n <= 0xff:
		return append(dst, 0xcc, byte(n))
	case n >= 0 && n <= 0xffff:
		return append(dst, 0xcd, byte(n>>8), byte(n))
	case n >= 0 && n <= 0xffffffff:
		return append(dst, 0xce, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	case n >= 0:
		return binary.BigEndian.AppendUint64(append(dst, 0xcf), uint64(n))
	case n >= -32:
		return append(dst, byte(n))
	case n >= -128:
		return append(dst, 0xd0, byte(n))
	case n >= -32768:
		return append(dst, 0xd1, byte(n>>8), byte(n))
	case n >= -2147483648:
		return append(dst, 0xd2, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
	}
	return binary.BigEndian.AppendUint64(append(dst, 0xd3), uint64(n))
}

func appendExtHeader(dst []byte, typ int8, n int) []byte {
	switch n {
	case 1:
		dst = append(dst, 0xd4)
	case 2:
		dst = append(dst, 0xd5)
	case 4:
		dst = append(dst, 0xd6)
	case 8:
		dst = append(dst, 0xd7)
	case 16:
		dst = append(dst, 0xd8)
	default:
		switch {
		case n <= 0xff:
			dst = append(dst, 0xc7, byte(n))
		case n <= 0xffff:
			dst = append(dst, 0xc8, byte(n>>8), byte(n))
		default:
			dst = append(dst, 0xc9, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
		}
	}
	return append(dst, byte(typ))
}

// appendMsgpackTime writes a msgpack timestamp (extension -1) the way the library
// does: 4 bytes when it fits, else 8, else 12.
func appendMsgpackTime(dst []byte, t time.Time) []byte {
	secs := uint64(t.Unix())
	if secs>>34 == 0 {
		data := uint64(t.Nanosecond())<<34 | secs
		if data&0xffffffff00000000 == 0 {
			return binary.BigEndian.AppendUint32(appendExtHeader(dst, -1, 4), uint32(data))
		}
		return binary.BigEndian.AppendUint64(appendExtHeader(dst, -1, 8), data)
	}
	dst = binary.BigEndian.AppendUint32(appendExtHeader(dst, -1, 12), uint32(t.Nanosecond()))
	return binary.BigEndian.AppendUint64(dst, secs)
}
