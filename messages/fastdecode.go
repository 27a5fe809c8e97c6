package messages

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"sync"
	"time"
)

// The fast decoder reads schema-1 payloads straight from the bytes: keys are
// looked up without allocating, and repeated string values (service names,
// regions, units, tag values) are interned per decoder, so a record costs a
// handful of allocations instead of one per field. decodeRecordsLib (the
// msgpack library, in schema1_test.go) is the reference it is fuzzed against.

type fastDecoder struct {
	b        []byte
	i        int
	intern   map[string]string // schema 1
	s        string            // schema 2: the payload copy strings are cut from
	columnar bool              // reading schema 2
	cols     []column          // schema 2: the part's columns
	// reuse: the Tags and Ext maps of the records being overwritten are
	// cleared and reused (DecodeRecordsReusing); tags and ext hold the
	// current record's.
	reuse bool
	tags  map[string]string
	types map[string]TagType // the record's TagTypes, to reuse
	det   *Detail            // the record's Detail, to reuse
	exts  map[string]ExtValue
	// spareExts: Ext maps of overwritten records whose new record had no
	// extension column, for the next record that has one (a part where a
	// quarter of the records have extensions made a new map for most of
	// them: a fifth of a drain's allocation). Reusing only.
	spareExts []map[string]ExtValue
	// skinny (PartReader): a record's tags and extension values are
	// collected into tagKV and extKV instead of its maps.
	skinny bool
	tagKV  []Tag
	extKV  []extKV
}

// maxSpareExts bounds the Ext maps a decoder keeps aside.
const maxSpareExts = 256

const (
	internMaxLen     = 64
	internMaxEntries = 1 << 14
)

var fastPool = sync.Pool{New: func() any { return &fastDecoder{intern: make(map[string]string, 256)} }}

var errShort = errors.New("unexpected end of payload")

func (d *fastDecoder) byte1() (byte, error) {
	if d.i >= len(d.b) {
		return 0, errShort
	}
	c := d.b[d.i]
	d.i++
	return c, nil
}

func (d *fastDecoder) take(n int) ([]byte, error) {
	if n < 0 || len(d.b)-d.i < n {
		return nil, errShort
	}
	s := d.b[d.i : d.i+n]
	d.i += n
	return s, nil
}

func (d *fastDecoder) uint(n int) (uint64, error) {
	b, err := d.take(n)
	if err != nil {
		return 0, err
	}
	switch n {
	case 1:
		return uint64(b[0]), nil
	case 2:
		return uint64(binary.BigEndian.Uint16(b)), nil
	case 4:
		return uint64(binary.BigEndian.Uint32(b)), nil
	}
	return binary.BigEndian.Uint64(b), nil
}

func (d *fastDecoder) arrayLen() (int, error) {
	c, err := d.byte1()
	if err != nil {
		return 0, err
	}
	switch {
	case c >= 0x90 && c <= 0x9f:
		return int(c & 0x0f), nil
	case c == 0xdc:
		n, err := d.uint(2)
		return int(n), err
	case c == 0xdd:
		n, err := d.uint(4)
		return int(n), err
	}
	return 0, fmt.Errorf("want an array, got code 0x%02x", c)
}

// mapLen returns -1 for nil.
func (d *fastDecoder) mapLen() (int, error) {
	c, err := d.byte1()
	if err != nil {
		return 0, err
	}
	switch {
	case c >= 0x80 && c <= 0x8f:
		return int(c & 0x0f), nil
	case c == 0xde:
		n, err := d.uint(2)
		return int(n), err
	case c == 0xdf:
		n, err := d.uint(4)
		return int(n), err
	case c == 0xc0:
		return -1, nil
	}
	return 0, fmt.Errorf("want a map, got code 0x%02x", c)
}

// strBytes reads a str or bin (nil reads as empty) without copying.
func (d *fastDecoder) strBytes() ([]byte, error) {
	c, err := d.byte1()
	if err != nil {
		return nil, err
	}
	var n uint64
	switch {
	case c >= 0xa0 && c <= 0xbf:
		n = uint64(c & 0x1f)
	case c == 0xd9 || c == 0xc4:
		n, err = d.uint(1)
	case c == 0xda || c == 0xc5:
		n, err = d.uint(2)
	case c == 0xdb || c == 0xc6:
		n, err = d.uint(4)
	case c == 0xc0:
		return nil, nil
	default:
		return nil, fmt.Errorf("want a string, got code 0x%02x", c)
	}
	if err != nil {
		return nil, err
	}
	return d.take(int(n))
}

func (d *fastDecoder) str() (string, error) {
	b, err := d.strBytes()
	if err != nil {
		return "", err
	}
	return d.internBytes(b), nil
}

func (d *fastDecoder) internBytes(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	if len(b) > internMaxLen {
		return string(b)
	}
	if s, ok := d.intern[string(b)]; ok {
		return s
	}
	s := string(b)
	if len(d.intern) < internMaxEntries {
		d.intern[s] = s
	}
	return s
}

func (d *fastDecoder) int64() (int64, error) {
	c, err := d.byte1()
	if err != nil {
		return 0, err
	}
	switch {
	case c <= 0x7f:
		return int64(c), nil
	case c >= 0xe0:
		return int64(int8(c)), nil
	}
	switch c {
	case 0xcc, 0xcd, 0xce, 0xcf:
		n, err := d.uint(1 << (c - 0xcc))
		if err != nil {
			return 0, err
		}
		if n > math.MaxInt64 {
			return 0, errors.New("integer overflows int64")
		}
		return int64(n), nil
	case 0xd0:
		n, err := d.uint(1)
		return int64(int8(n)), err
	case 0xd1:
		n, err := d.uint(2)
		return int64(int16(n)), err
	case 0xd2:
		n, err := d.uint(4)
		return int64(int32(n)), err
	case 0xd3:
		n, err := d.uint(8)
		return int64(n), err
	}
	return 0, fmt.Errorf("want an integer, got code 0x%02x", c)
}

// extHeader reads an ext header; ok is false (and nothing consumed) if the
// next value is not an ext.
func (d *fastDecoder) extHeader() (typ int8, n int, ok bool, err error) {
	if d.i >= len(d.b) {
		return 0, 0, false, errShort
	}
	c := d.b[d.i]
	switch c {
	case 0xd4, 0xd5, 0xd6, 0xd7, 0xd8:
		d.i++
		n = 1 << (c - 0xd4)
	case 0xc7, 0xc8, 0xc9:
		d.i++
		l, e := d.uint(1 << (c - 0xc7))
		if e != nil {
			return 0, 0, true, e
		}
		n = int(l)
	default:
		return 0, 0, false, nil
	}
	t, e := d.byte1()
	return int8(t), n, true, e
}

func (d *fastDecoder) time() (time.Time, error) {
	if d.i < len(d.b) && d.b[d.i] == 0xc0 {
		d.i++
		return time.Time{}, nil
	}
	typ, n, ok, err := d.extHeader()
	if err != nil {
		return time.Time{}, err
	}
	if !ok || typ != -1 {
		return time.Time{}, errors.New("want a msgpack timestamp")
	}
	b, err := d.take(n)
	if err != nil {
		return time.Time{}, err
	}
	switch n {
	case 4:
		return time.Unix(int64(binary.BigEndian.Uint32(b)), 0).UTC(), nil
	case 8:
		v := binary.BigEndian.Uint64(b)
		return time.Unix(int64(v&0x3ffffffff), int64(v>>34)).UTC(), nil
	case 12:
		ns := binary.BigEndian.Uint32(b)
		return time.Unix(int64(binary.BigEndian.Uint64(b[4:])), int64(ns)).UTC(), nil
	}
	return time.Time{}, fmt.Errorf("timestamp of %d bytes", n)
}

// decodeRecordsFast is DecodeRecords' implementation: schema 0 tells the
// layout from the payload (schema 2's first element is an array, schema
// 1's a map); 1, or 2 and 3 (columnar), requires that layout.
func decodeRecordsFast(dst []UsageRecord, data []byte, schema int) ([]UsageRecord, error) {
	return decodeWith(dst, data, schema, false)
}

func decodeWith(dst []UsageRecord, data []byte, schema int, reuse bool) ([]UsageRecord, error) {
	d := fastPool.Get().(*fastDecoder)
	defer func() { d.b, d.s, d.tags, d.exts, d.types, d.det = nil, "", nil, nil, nil, nil; fastPool.Put(d) }()
	d.b, d.i, d.reuse, d.columnar = data, 0, reuse, false
	n, err := d.arrayLen()
	if err != nil {
		return dst, fmt.Errorf("payload: %w", err)
	}
	if n > len(data) {
		return dst, fmt.Errorf("payload: bad record count %d", n)
	}
	columnar := n > 0 && d.i < len(d.b) && isArrayCode(d.b[d.i])
	switch {
	case schema >= 2 || (schema == 0 && columnar):
		if !columnar {
			return dst, fmt.Errorf("payload: %w (want a column list first)", errNotColumnar)
		}
		return d.decodeColumnar(dst, n)
	case columnar:
		return dst, errors.New("payload: a schema-2 layout in a schema-1 part")
	}
	base := len(dst)
	if cap(dst)-base < n {
		nd := make([]UsageRecord, base, base+n)
		copy(nd, dst)
		dst = nd
	}
	dst = dst[:base+n]
	for k := 0; k < n; k++ {
		r := &dst[base+k]
		*r = UsageRecord{}
		if err := d.record(r); err != nil {
			var de *DecodeError
			if errors.As(err, &de) {
				de.Record = k
				return dst[:base], de
			}
			return dst[:base], &DecodeError{Record: k, Err: err}
		}
	}
	if d.i != len(d.b) {
		return dst[:base], fmt.Errorf("payload: trailing bytes after %d records", n)
	}
	return dst, nil
}

func isArrayCode(c byte) bool { return (c >= 0x90 && c <= 0x9f) || c == 0xdc || c == 0xdd }

func (d *fastDecoder) record(r *UsageRecord) error {
	n, err := d.mapLen()
	if err != nil {
		return err
	}
	if n < 0 {
		return errors.New("record is nil, want a map")
	}
	for j := 0; j < n; j++ {
		kb, err := d.strBytes()
		if err != nil {
			return fmt.Errorf("key: %w", err)
		}
		if err := d.field(r, kb); err != nil {
			return &DecodeError{Field: string(kb), Err: err}
		}
	}
	return nil
}

func (d *fastDecoder) field(r *UsageRecord, key []byte) error {
	if len(key) > 2 && key[0] == 'x' && key[1] == '_' {
		return d.ext(r, d.internBytes(key[2:]))
	}
	idx, ok := columnIndex[string(key)]
	if !ok {
		return errors.New("unknown field")
	}
	switch {
	case idx < 1000:
		s, err := d.str()
		if err != nil {
			return err
		}
		*strFields[idx].get(r) = s
	case idx < 2000:
		b, err := d.strBytes()
		if err != nil {
			return err
		}
		v, err := parseDecimalBytes(b)
		if err != nil {
			return err
		}
		*decFields[idx-1000].get(r) = v
	case idx == 2000 || idx == 2001:
		t, err := d.time()
		if err != nil {
			return err
		}
		if idx == 2000 {
			r.ChargePeriodStart = t
		} else {
			r.ChargePeriodEnd = t
		}
	case idx == 3000:
		m, err := d.mapLen()
		if err != nil {
			return err
		}
		if m < 0 {
			return nil
		}
		return d.readTags(r, m)
	}
	return nil
}

// ext reads an extension column's value (schema 1 and 2 alike).
func (d *fastDecoder) ext(r *UsageRecord, name string) error {
	if d.i >= len(d.b) {
		return errShort
	}
	var v ExtValue
	c := d.b[d.i]
	switch {
	case (c >= 0xa0 && c <= 0xbf) || c == 0xd9 || c == 0xda || c == 0xdb:
		s, err := d.text()
		if err != nil {
			return err
		}
		v = ExtStr(s)
	default:
		typ, n, ok, err := d.extHeader()
		if err != nil {
			return err
		}
		if ok {
			if typ != extDecimalType {
				return fmt.Errorf("unknown extension type %d", typ)
			}
			b, err := d.take(n)
			if err != nil {
				return err
			}
			var dec Decimal
			if d.columnar {
				dec, err = decimalOf(d.s[d.i-n : d.i])
			} else {
				dec, err = parseDecimalBytes(b)
			}
			if err != nil {
				return err
			}
			v = ExtDec(dec)
		} else {
			i, err := d.int64()
			if err != nil {
				return fmt.Errorf("want a string, integer or decimal: %w", err)
			}
			v = ExtI(i)
		}
	}
	if d.skinny {
		d.extKV = append(d.extKV, extKV{name, v})
		return nil
	}
	if r.Ext == nil {
		if d.exts != nil {
			clear(d.exts)
			r.Ext, d.exts = d.exts, nil
		} else if n := len(d.spareExts); n > 0 {
			r.Ext = d.spareExts[n-1]
			d.spareExts[n-1] = nil
			d.spareExts = d.spareExts[:n-1]
			clear(r.Ext)
		} else {
			r.Ext = make(map[string]ExtValue, 2)
		}
	}
	r.Ext[name] = v
	return nil
}

// tags reads the Tags map's m entries (schema 1 and 2 alike).
func (d *fastDecoder) readTags(r *UsageRecord, m int) error {
	if m > len(d.b)-d.i {
		return fmt.Errorf("bad tag count %d", m)
	}
	if d.skinny {
		// No map: the entries in payload order, for PartReader.Tags.
	} else if d.tags != nil {
		clear(d.tags)
		r.Tags, d.tags = d.tags, nil
	} else {
		r.Tags = make(map[string]string, m)
	}
	for k := 0; k < m; k++ {
		tk, err := d.text()
		if err != nil {
			return err
		}
		if d.i < len(d.b) {
			if t, v, ok, err := d.typedTag(); ok || err != nil {
				if err != nil {
					return fmt.Errorf("tag %q: %w", tk, err)
				}
				if d.skinny {
					d.tagKV = append(d.tagKV, Tag{tk, v, t})
					continue
				}
				r.Tags[tk] = v
				if r.TagTypes == nil {
					if d.types != nil {
						clear(d.types)
						r.TagTypes, d.types = d.types, nil
					} else {
						r.TagTypes = make(map[string]TagType, 1)
					}
				}
				r.TagTypes[tk] = t
				continue
			}
		}
		tv, err := d.text()
		if err != nil {
			return fmt.Errorf("tag %q: %w", tk, err)
		}
		if d.skinny {
			d.tagKV = append(d.tagKV, Tag{Key: tk, Value: tv})
			continue
		}
		r.Tags[tk] = tv
	}
	return nil
}

// typedTag reads a tag value that is not a string, if one is next: nil,
// a boolean, or a number's JSON text (extension type 2).
func (d *fastDecoder) typedTag() (TagType, string, bool, error) {
	switch c := d.b[d.i]; {
	case c == 0xc0:
		d.i++
		return TagNull, "", true, nil
	case c == 0xc2:
		d.i++
		return TagBool, "false", true, nil
	case c == 0xc3:
		d.i++
		return TagBool, "true", true, nil
	case c >= 0xd4 && c <= 0xd8, c >= 0xc7 && c <= 0xc9:
		typ, n, _, err := d.extHeader()
		if err != nil {
			return 0, "", true, err
		}
		if typ != extNumberType {
			return 0, "", true, fmt.Errorf("unknown extension type %d", typ)
		}
		b, err := d.take(n)
		if err != nil {
			return 0, "", true, err
		}
		if !isJSONNumber(string(b)) {
			return 0, "", true, fmt.Errorf("%q is not a JSON number", b)
		}
		if d.columnar {
			return TagNumber, d.s[d.i-n : d.i], true, nil
		}
		return TagNumber, string(b), true, nil
	}
	return 0, "", false, nil
}

// text reads a string: a substring of the payload (schema 2), else a copy,
// interned (schema 1).
func (d *fastDecoder) text() (string, error) {
	if d.columnar {
		return d.sub()
	}
	return d.str()
}

// parseDecimalBytes is ParseDecimal for bytes (one allocation, for the
// kept string).
func parseDecimalBytes(b []byte) (Decimal, error) {
	s := string(b)
	return ParseDecimal(s)
}
