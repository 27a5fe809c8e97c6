package messages

import (
	"encoding/binary"
	"math/bits"
)

// Rows encoded ahead of their part. A part's columns are the union of its
// records' (PartEncoder.Use), so a record cannot be written as a row of
// its part until every record of the part is known: a reader that hands
// records to a spool had to keep each record whole (maps, Detail, strings)
// until its hour was cut. RowWriter.Append writes a record's values on
// their own instead, as soon as it is checked, and PartEncoder.AppendRow
// later makes them the very row AppendRecord would have written, putting
// nil in the part's columns the record leaves unset. The record can be
// reused at once; only its bytes wait.

// RowUse says which columns a record written by RowWriter.Append uses.
// Ext has a bit for each extension name, by its index in the sorted list
// of names given to RowWriter.Append.
type RowUse struct {
	Mask  uint32 // fixed columns
	DMask uint64 // Detail columns
	Ext   uint64 // extension columns, by index in the sorted names
	Typed bool   // a tag value is not a string (schema 3)
}

// EncodedLen is the bytes of a row with values vals, used as u says, in a
// part of its own columns alone: what AppendRecord writes for the record
// it was (its array header and its values).
func (u RowUse) EncodedLen(vals []byte) int {
	n := bits.OnesCount32(u.Mask) + bits.OnesCount64(u.DMask) + bits.OnesCount64(u.Ext)
	return arrayHeaderLen(n) + len(vals)
}

// MaxRowExt is the most extension names RowWriter.Append can take.
const MaxRowExt = 64

// A RowWriter writes records as their row values, ahead of their part
// (see above). The zero value is ready; it reuses its memory from call to
// call (one writer per goroutine).
type RowWriter struct {
	e PartEncoder
}

// Append appends the values of the columns r uses, in column order, with
// no array header and no nil for the columns it leaves unset, and says
// which those are. ext is the sorted list of every extension name r may
// use (at most MaxRowExt); ok is false when r has one outside it.
func (w *RowWriter) Append(dst []byte, r *UsageRecord, ext []string) (_ []byte, u RowUse, ok bool) {
	u.Mask = usedMask(r)
	if r.Detail != nil {
		u.DMask = r.Detail.mask()
	}
	u.Typed = len(r.TagTypes) > 0
	n := 0
	for i, k := range ext {
		if _, set := r.Ext[k]; set {
			u.Ext |= 1 << i
			n++
		}
	}
	if n != len(r.Ext) || len(ext) > MaxRowExt {
		return dst, u, false
	}
	// The encoder of the record's own columns writes no nil: its values
	// are the row but its array header.
	e := &w.e
	e.mask, e.dmask = u.Mask, u.DMask
	e.ext = e.ext[:0]
	for i, k := range ext {
		if u.Ext&(1<<i) != 0 {
			e.ext = append(e.ext, k) // ext is sorted: so is e.ext
		}
	}
	e.sealed, e.ncols = true, e.columnCount()
	return e.appendValues(dst, r), u, true
}

// UseRow widens the columns to cover a record written by RowWriter.Append
// with use u against the extension names ext.
func (e *PartEncoder) UseRow(u RowUse, ext []string) {
	if e.sealed {
		panic("messages: PartEncoder.UseRow after encoding began")
	}
	e.mask |= u.Mask
	e.dmask |= u.DMask
	e.typed = e.typed || u.Typed
	for m := u.Ext; m != 0; m &= m - 1 {
		k := ext[bits.TrailingZeros64(m)]
		if !e.extSet[k] {
			if e.extSet == nil {
				e.extSet = map[string]bool{}
			}
			e.extSet[k] = true
			e.ext = append(e.ext, k)
		}
	}
}

// AppendRow appends, as one row, the values vals that RowWriter.Append
// wrote with use u (against the same extension names the part's UseRow
// calls had): the bytes AppendRecord writes for the record. Every column
// u names must have been covered by UseRow.
func (e *PartEncoder) AppendRow(dst []byte, u RowUse, vals []byte, ext []string) []byte {
	e.seal()
	dst = appendArrayLen(dst, e.ncols)
	if u.Mask == e.mask && u.DMask == e.dmask && bits.OnesCount64(u.Ext) == len(e.ext) {
		return append(dst, vals...) // the record uses every column of the part
	}
	for m := e.mask; m != 0; m &= m - 1 {
		c := bits.TrailingZeros32(m)
		if u.Mask&(1<<c) == 0 {
			dst = append(dst, 0xc0)
			continue
		}
		n := valueLen(vals)
		dst, vals = append(dst, vals[:n]...), vals[n:]
	}
	for m := e.dmask; m != 0; m &= m - 1 {
		c := bits.TrailingZeros64(m)
		if u.DMask&(1<<c) == 0 {
			dst = append(dst, 0xc0)
			continue
		}
		n := valueLen(vals)
		dst, vals = append(dst, vals[:n]...), vals[n:]
	}
	// e.ext is sorted (sealed) and ext is sorted: walk both.
	j := 0
	for _, k := range e.ext {
		for j < len(ext) && ext[j] < k {
			j++
		}
		if j == len(ext) || ext[j] != k || u.Ext&(1<<j) == 0 {
			dst = append(dst, 0xc0)
			continue
		}
		n := valueLen(vals)
		dst, vals = append(dst, vals[:n]...), vals[n:]
	}
	return dst
}

// valueLen is the length of the msgpack value b starts with (one this
// package wrote: b is never short).
func valueLen(b []byte) int {
	c := b[0]
	switch {
	case c <= 0x7f, c >= 0xe0, c == 0xc0, c == 0xc2, c == 0xc3:
		return 1
	case c&0xe0 == 0xa0: // fixstr
		return 1 + int(c&0x1f)
	case c&0xf0 == 0x80: // fixmap
		return 1 + elemsLen(b[1:], 2*int(c&0x0f))
	case c&0xf0 == 0x90: // fixarray
		return 1 + elemsLen(b[1:], int(c&0x0f))
	}
	switch c {
	case 0xcc, 0xd0:
		return 2
	case 0xcd, 0xd1:
		return 3
	case 0xce, 0xd2, 0xca:
		return 5
	case 0xcf, 0xd3, 0xcb:
		return 9
	case 0xd9, 0xc4: // str8, bin8
		return 2 + int(b[1])
	case 0xda, 0xc5:
		return 3 + int(binary.BigEndian.Uint16(b[1:]))
	case 0xdb, 0xc6:
		return 5 + int(binary.BigEndian.Uint32(b[1:]))
	case 0xd4:
		return 3
	case 0xd5:
		return 4
	case 0xd6:
		return 6
	case 0xd7:
		return 10
	case 0xd8:
		return 18
	case 0xc7: // ext8
		return 3 + int(b[1])
	case 0xc8:
		return 4 + int(binary.BigEndian.Uint16(b[1:]))
	case 0xc9:
		return 6 + int(binary.BigEndian.Uint32(b[1:]))
	case 0xde:
		return 3 + elemsLen(b[3:], 2*int(binary.BigEndian.Uint16(b[1:])))
	case 0xdf:
		return 5 + elemsLen(b[5:], 2*int(binary.BigEndian.Uint32(b[1:])))
	case 0xdc:
		return 3 + elemsLen(b[3:], int(binary.BigEndian.Uint16(b[1:])))
	case 0xdd:
		return 5 + elemsLen(b[5:], int(binary.BigEndian.Uint32(b[1:])))
	}
	panic("messages: valueLen of a value this package does not write")
}

func elemsLen(b []byte, n int) int {
	off := 0
	for range n {
		off += valueLen(b[off:])
	}
	return off
}
