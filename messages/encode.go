package messages

import (
	"encoding/binary"
	"time"
)

// The msgpack primitives the schema-2 writer (columnar.go) is made of,
// written by hand: the msgpack library is only the tests' reference.

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
