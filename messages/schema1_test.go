package messages

// The schema-1 writer and the msgpack-library codec: test-only. Schema 1 is
// read (the fast decoder in fastdecode.go; producers may still have old
// parts in the stream) but no longer written, so its writer lives here, to
// make the golden files and the decoders' tests; the library encoder and
// decoder are the references the hand-written ones are held to (byte for
// byte, and by FuzzFastDecoderMatchesLibrary). Keeping them out of the
// package keeps github.com/vmihailenco/msgpack/v5 out of every binary.

import (
	"bytes"
	"errors"
	"fmt"
	"sync"

	"github.com/vmihailenco/msgpack/v5"
)

var encPool = sync.Pool{New: func() any {
	var b bytes.Buffer
	e := msgpack.NewEncoder(&b)
	return &encoder{buf: &b, enc: e}
}}

type encoder struct {
	buf *bytes.Buffer
	enc *msgpack.Encoder
}

// encodeRecordsV1 appends the schema-1 payload of recs (kept so that tests
// can write what older producers stored).
func encodeRecordsV1(dst []byte, recs []UsageRecord) []byte {
	dst = appendArrayLen(dst, len(recs))
	for i := range recs {
		dst = appendRecordV1(dst, &recs[i])
	}
	return dst
}

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

// encodeRecordsLib encodes schema 1 with the msgpack library: the
// reference appendRecordV1 is tested against.
func encodeRecordsLib(dst []byte, recs []UsageRecord) ([]byte, error) {
	e := encPool.Get().(*encoder)
	defer encPool.Put(e)
	e.buf.Reset()
	if err := e.enc.EncodeArrayLen(len(recs)); err != nil {
		return dst, err
	}
	for i := range recs {
		if err := encodeRecord(e.enc, &recs[i]); err != nil {
			return dst, fmt.Errorf("record %d: %w", i, err)
		}
	}
	return append(dst, e.buf.Bytes()...), nil
}

func encodeRecord(e *msgpack.Encoder, r *UsageRecord) error {
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
	if err := e.EncodeMapLen(n); err != nil {
		return err
	}
	if !r.ChargePeriodStart.IsZero() {
		_ = e.EncodeString("ChargePeriodStart")
		if err := e.EncodeTime(r.ChargePeriodStart.UTC()); err != nil {
			return err
		}
	}
	if !r.ChargePeriodEnd.IsZero() {
		_ = e.EncodeString("ChargePeriodEnd")
		if err := e.EncodeTime(r.ChargePeriodEnd.UTC()); err != nil {
			return err
		}
	}
	for _, f := range strFields {
		if v := *f.get(r); v != "" {
			_ = e.EncodeString(f.name)
			if err := e.EncodeString(v); err != nil {
				return err
			}
		}
	}
	for _, f := range decFields {
		if v := f.get(r); v.IsSet() {
			_ = e.EncodeString(f.name)
			if err := e.EncodeString(v.s); err != nil {
				return err
			}
		}
	}
	if len(r.Tags) > 0 {
		_ = e.EncodeString("Tags")
		if err := e.EncodeMapLen(len(r.Tags)); err != nil {
			return err
		}
		for _, k := range sortedKeys(r.Tags) {
			_ = e.EncodeString(k)
			if err := e.EncodeString(r.Tags[k]); err != nil {
				return err
			}
		}
	}
	for _, k := range sortedKeys(r.Ext) {
		v := r.Ext[k]
		_ = e.EncodeString("x_" + k)
		var err error
		switch v.Kind {
		case ExtString:
			err = e.EncodeString(v.Str)
		case ExtInt:
			err = e.EncodeInt(v.Int)
		case ExtDecimal:
			err = e.EncodeExtHeader(extDecimalType, len(v.Dec.s))
			if err == nil {
				_, err = e.Writer().Write([]byte(v.Dec.s))
			}
		default:
			err = fmt.Errorf("x_%s: extension value has no kind", k)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// decodeRecordsLib decodes with the msgpack library: the reference the fast
// decoder is fuzzed against.
func decodeRecordsLib(dst []UsageRecord, data []byte) ([]UsageRecord, error) {
	pd := decPool.Get().(*pooledDecoder)
	defer decPool.Put(pd)
	pd.r.Reset(data)
	d := pd.d
	n, err := d.DecodeArrayLen()
	if err != nil {
		return dst, fmt.Errorf("payload: %w", err)
	}
	if n < 0 || n > len(data) {
		return dst, fmt.Errorf("payload: bad record count %d", n)
	}
	base := len(dst)
	if cap(dst)-base < n {
		nd := make([]UsageRecord, base, base+n)
		copy(nd, dst)
		dst = nd
	}
	dst = dst[:base+n]
	for i := 0; i < n; i++ {
		dst[base+i] = UsageRecord{}
		if err := decodeRecord(d, &dst[base+i]); err != nil {
			var de *DecodeError
			if errors.As(err, &de) {
				de.Record = i
				return dst[:base], de
			}
			return dst[:base], &DecodeError{Record: i, Err: err}
		}
	}
	if _, err := d.PeekCode(); err == nil {
		return dst[:base], fmt.Errorf("payload: trailing bytes after %d records", n)
	}
	return dst, nil
}

type pooledDecoder struct {
	r *bytes.Reader
	d *msgpack.Decoder
}

var decPool = sync.Pool{New: func() any {
	r := bytes.NewReader(nil)
	return &pooledDecoder{r: r, d: msgpack.NewDecoder(r)}
}}

func decodeRecord(d *msgpack.Decoder, r *UsageRecord) error {
	n, err := d.DecodeMapLen()
	if err != nil {
		return err
	}
	if n < 0 {
		return errors.New("record is nil, want a map")
	}
	for j := 0; j < n; j++ {
		key, err := d.DecodeString()
		if err != nil {
			return fmt.Errorf("key: %w", err)
		}
		if err := decodeField(d, r, key); err != nil {
			return &DecodeError{Field: key, Err: err}
		}
	}
	return nil
}

func decodeField(d *msgpack.Decoder, r *UsageRecord, key string) error {
	if len(key) > 2 && key[0] == 'x' && key[1] == '_' {
		return decodeExt(d, r, key[2:])
	}
	idx, ok := columnIndex[key]
	if !ok {
		return errors.New("unknown field")
	}
	switch {
	case idx < 1000:
		s, err := d.DecodeString()
		if err != nil {
			return err
		}
		*strFields[idx].get(r) = s
	case idx < 2000:
		s, err := d.DecodeString()
		if err != nil {
			return err
		}
		v, err := ParseDecimal(s)
		if err != nil {
			return err
		}
		*decFields[idx-1000].get(r) = v
	case idx == 2000 || idx == 2001:
		t, err := d.DecodeTime()
		if err != nil {
			return err
		}
		if idx == 2000 {
			r.ChargePeriodStart = t.UTC()
		} else {
			r.ChargePeriodEnd = t.UTC()
		}
	case idx == 3000:
		m, err := d.DecodeMapLen()
		if err != nil {
			return err
		}
		if m < 0 {
			return nil
		}
		r.Tags = make(map[string]string, m)
		for k := 0; k < m; k++ {
			tk, err := d.DecodeString()
			if err != nil {
				return err
			}
			tv, err := d.DecodeString()
			if err != nil {
				return fmt.Errorf("tag %q: %w", tk, err)
			}
			r.Tags[tk] = tv
		}
	}
	return nil
}

func decodeExt(d *msgpack.Decoder, r *UsageRecord, name string) error {
	code, err := d.PeekCode()
	if err != nil {
		return err
	}
	var v ExtValue
	switch {
	case isStringCode(code):
		s, err := d.DecodeString()
		if err != nil {
			return err
		}
		v = ExtStr(s)
	case isExtCode(code):
		typ, l, err := d.DecodeExtHeader()
		if err != nil {
			return err
		}
		if typ != extDecimalType {
			return fmt.Errorf("unknown extension type %d", typ)
		}
		b := make([]byte, l)
		if err := d.ReadFull(b); err != nil {
			return err
		}
		dec, err := ParseDecimal(string(b))
		if err != nil {
			return err
		}
		v = ExtDec(dec)
	default:
		i, err := d.DecodeInt64()
		if err != nil {
			return fmt.Errorf("want a string, integer or decimal: %w", err)
		}
		v = ExtI(i)
	}
	if r.Ext == nil {
		r.Ext = map[string]ExtValue{}
	}
	r.Ext[name] = v
	return nil
}

func isStringCode(c byte) bool {
	return (c >= 0xa0 && c <= 0xbf) || c == 0xd9 || c == 0xda || c == 0xdb
}

func isExtCode(c byte) bool {
	return (c >= 0xd4 && c <= 0xd8) || c == 0xc7 || c == 0xc8 || c == 0xc9
}
