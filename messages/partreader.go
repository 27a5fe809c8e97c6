package messages

import "unsafe"

// PartReader reads a schema-2 (or 3) part record by record for a
// destination that writes its own rows from the part (a CBF row, say)
// without the maps a UsageRecord carries: Next decodes a record's values
// as DecodeRecordsReusing does, except Tags, TagTypes and Ext, which stay
// nil; its tags and extension values are read from the reader (Tags,
// ExtString) until the next call. Full decodes the record Next read once
// more, maps and all, when the destination needs the whole record.
//
// Strings point into the payload, which must not change while the records
// are in use (as with DecodeRecordsReusing). A PartReader is not safe for
// concurrent use; reuse one per goroutine.
type PartReader struct {
	d     fastDecoder
	n, k  int // records, and the next one Next reads
	start int // the offset of the record Next read last
	// maps of the records Next overwrote, for Full to reuse
	tags  map[string]string
	types map[string]TagType
	exts  map[string]ExtValue
}

// Tag is one tag of a record, as its Tags map would hold it (a typed value
// as its text: "", "true", "false" or the number's JSON text), and the
// type its TagTypes map would hold (0 for a string).
type Tag struct {
	Key, Value string
	Type       TagType
}

type extKV struct {
	name string
	v    ExtValue
}

// Reset starts reading data, a part of the given schema. ok is false when
// data is not a columnar part of a schema this reader knows, or its column
// list does not decode: DecodeRecordsReusing then says what is wrong (the
// reader reports nothing itself, so a caller that falls back to it keeps
// its errors).
func (p *PartReader) Reset(data []byte, schema int) (ok bool) {
	d := &p.d
	*p = PartReader{d: fastDecoder{cols: d.cols[:0], tagKV: d.tagKV[:0], extKV: d.extKV[:0]}}
	d.b, d.reuse = data, true
	if schema < 2 || schema > SchemaVersion {
		return false
	}
	outer, err := d.arrayLen()
	if err != nil || outer < 1 || outer > len(data) || d.i >= len(d.b) || !isArrayCode(d.b[d.i]) {
		return false
	}
	if d.readColumns() != nil {
		return false
	}
	p.n = outer - 1
	if p.n > len(d.b) {
		return false
	}
	d.columnar = true
	d.s = unsafe.String(unsafe.SliceData(d.b), len(d.b))
	return true
}

// Len is the number of records the part says it holds.
func (p *PartReader) Len() int { return p.n }

// Next decodes the next record into r (reusing r's Detail); Tags,
// TagTypes and Ext are left nil. An error means the part does not decode:
// DecodeRecordsReusing says how.
func (p *PartReader) Next(r *UsageRecord) error {
	d := &p.d
	if p.k >= p.n {
		return errShort
	}
	p.start = d.i
	if r.Tags != nil {
		p.tags = r.Tags
	}
	if r.TagTypes != nil {
		p.types = r.TagTypes
	}
	if r.Ext != nil {
		p.exts = r.Ext
	}
	det := r.Detail
	*r = UsageRecord{}
	d.det, d.tags, d.types, d.exts = det, nil, nil, nil
	d.tagKV, d.extKV = d.tagKV[:0], d.extKV[:0]
	d.skinny = true
	err := d.row(r, d.cols)
	d.skinny = false
	d.det = nil
	if err != nil {
		return err
	}
	p.k++
	return nil
}

// Full decodes the record Next read last into r once more, as
// DecodeRecordsReusing would: with its Tags, TagTypes and Ext.
func (p *PartReader) Full(r *UsageRecord) error {
	d := &p.d
	end := d.i
	d.i = p.start
	d.det, d.tags, d.types, d.exts = r.Detail, p.tags, p.types, p.exts
	p.tags, p.types, p.exts = nil, nil, nil
	*r = UsageRecord{}
	err := d.row(r, d.cols)
	// What the record did not take stays for the next.
	p.tags, p.types, p.exts = d.tags, d.types, d.exts
	d.det, d.tags, d.types, d.exts = nil, nil, nil, nil
	if err == nil && d.i != end {
		err = errShort // cannot happen: the same bytes, read the same way
	}
	return err
}

// Done reports whether every record was read and nothing follows them.
func (p *PartReader) Done() bool { return p.k == p.n && p.d.i == len(p.d.b) }

// Tags are the tags of the record Next read last, in payload order (a key
// may repeat, where its map would hold the last value). They are valid
// until the next call.
func (p *PartReader) Tags() []Tag { return p.d.tagKV }

// ExtString is the record's extension column x_<name> when it is a string,
// else "" (as r.Ext[name] with Kind ExtString).
func (p *PartReader) ExtString(name string) string {
	for _, e := range p.d.extKV {
		if e.name == name {
			if e.v.Kind == ExtString {
				return e.v.Str
			}
			return ""
		}
	}
	return ""
}

// Release drops the reader's hold on the payload it read.
func (p *PartReader) Release() {
	d := &p.d
	d.b, d.s, d.det, d.tags, d.types, d.exts = nil, "", nil, nil, nil, nil
	p.tags, p.types, p.exts = nil, nil, nil
	clear(d.tagKV[:cap(d.tagKV)])
	clear(d.extKV[:cap(d.extKV)])
	d.tagKV, d.extKV = d.tagKV[:0], d.extKV[:0]
}
