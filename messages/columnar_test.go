package messages

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"
	"github.com/vmihailenco/msgpack/v5/msgpcode"
)

// isColumnar: the first element of the outer array is an array.
func isColumnar(data []byte) bool {
	d := msgpack.NewDecoder(bytes.NewReader(data))
	n, err := d.DecodeArrayLen()
	if err != nil || n < 1 {
		return false
	}
	c, err := d.PeekCode()
	return err == nil && msgpcode.IsFixedArray(c) || c == msgpcode.Array16 || c == msgpcode.Array32
}

func columnNames(t *testing.T, payload []byte) []string {
	t.Helper()
	d := msgpack.NewDecoder(bytes.NewReader(payload))
	if _, err := d.DecodeArrayLen(); err != nil {
		t.Fatal(err)
	}
	var cols []string
	if err := d.Decode(&cols); err != nil {
		t.Fatal(err)
	}
	return cols
}

// decodeRecordsLibV2 reads a schema-2 payload with the msgpack library:
// the reference the fast decoder is fuzzed against.
func decodeRecordsLibV2(dst []UsageRecord, data []byte) ([]UsageRecord, error) {
	d := msgpack.NewDecoder(bytes.NewReader(data))
	outer, err := d.DecodeArrayLen()
	if err != nil {
		return dst, err
	}
	if outer < 1 || outer > len(data) {
		return dst, fmt.Errorf("bad length %d", outer)
	}
	ncols, err := d.DecodeArrayLen()
	if err != nil {
		return dst, err
	}
	if ncols < 0 || ncols > len(data) {
		return dst, fmt.Errorf("bad column count %d", ncols)
	}
	names := make([]string, ncols)
	seen := map[string]bool{}
	for i := range names {
		if names[i], err = d.DecodeString(); err != nil {
			return dst, err
		}
		n := names[i]
		if seen[n] {
			return dst, fmt.Errorf("column %q twice", n)
		}
		seen[n] = true
		if !(len(n) > 2 && strings.HasPrefix(n, "x_")) && fixedColumn(n) < 0 {
			return dst, fmt.Errorf("unknown column %q", n)
		}
	}
	for k := 1; k < outer; k++ {
		n, err := d.DecodeArrayLen()
		if err != nil {
			return dst, err
		}
		if n != ncols {
			return dst, fmt.Errorf("record %d: %d values for %d columns", k-1, n, ncols)
		}
		var r UsageRecord
		for _, name := range names {
			c, err := d.PeekCode()
			if err != nil {
				return dst, err
			}
			if c == msgpcode.Nil {
				_ = d.Skip()
				continue
			}
			if strings.HasPrefix(name, "x_") {
				if err := decodeExt(d, &r, name[2:]); err != nil {
					return dst, err
				}
				continue
			}
			if err := decodeField(d, &r, name); err != nil {
				return dst, err
			}
		}
		if r.Tags != nil && len(r.Tags) == 0 {
			r.Tags = nil // an empty map reads as no tags
		}
		dst = append(dst, r)
	}
	if _, err := d.PeekCode(); err == nil {
		return dst, errors.New("trailing bytes")
	}
	return dst, nil
}

// The fast decoder and the library agree on encoder output for varied
// records: every column kind, nils, long strings, many tags, extension
// columns on some records only.
func TestColumnarMatchesLibrary(t *testing.T) {
	recs := variedRecords()
	payload, _ := EncodeRecords(nil, recs)
	fast, err := DecodeRecords(nil, payload)
	if err != nil {
		t.Fatal(err)
	}
	lib, err := decodeRecordsLibV2(nil, payload)
	if err != nil {
		t.Fatal(err)
	}
	if len(fast) != len(recs) || len(lib) != len(recs) {
		t.Fatalf("%d records: fast %d, library %d", len(recs), len(fast), len(lib))
	}
	for i := range recs {
		if !recordsEqual(&fast[i], &recs[i]) {
			t.Fatalf("record %d: fast read\n%+v\nwant\n%+v", i, fast[i], recs[i])
		}
		if !recordsEqual(&lib[i], &recs[i]) {
			t.Fatalf("record %d: library read\n%+v\nwant\n%+v", i, lib[i], recs[i])
		}
	}
	// Encoding is deterministic (tag order, extension order).
	again, _ := EncodeRecords(nil, fast)
	if !bytes.Equal(again, payload) {
		t.Fatal("re-encoding the decoded records gave other bytes")
	}
}

// Malformed schema-2 payloads are refused with a reason that names the
// record and column where there is one.
func TestColumnarErrors(t *testing.T) {
	hdr := func(cols ...string) []byte {
		b := appendArrayLen(nil, len(cols))
		for _, c := range cols {
			b = appendStr(b, c)
		}
		return b
	}
	row := func(vals ...[]byte) []byte {
		b := appendArrayLen(nil, len(vals))
		for _, v := range vals {
			b = append(b, v...)
		}
		return b
	}
	payload := func(parts ...[]byte) []byte {
		b := appendArrayLen(nil, len(parts))
		for _, p := range parts {
			b = append(b, p...)
		}
		return b
	}
	str := func(s string) []byte { return appendStr(nil, s) }
	ts := appendMsgpackTime(nil, time.Unix(100, 0))
	for _, tc := range []struct {
		name, want string
		data       []byte
	}{
		{"unknown column", `unknown column "Colour"`, payload(hdr("ChargePeriodStart", "Colour"))},
		{"duplicate column", `"SkuId" appears twice`, payload(hdr("SkuId", "SkuId"))},
		{"duplicate ext", `"x_A" appears twice`, payload(hdr("x_A", "x_A"))},
		{"short row", "record 0: record has 1 values for 2 columns", payload(hdr("ChargePeriodStart", "SkuId"), row(ts))},
		{"bad decimal", "record 1: BilledCost", payload(hdr("ChargePeriodStart", "BilledCost"), row(ts, str("1.5")), row(ts, str("1.5x")))},
		{"time as string", "record 0: ChargePeriodStart: want a msgpack timestamp", payload(hdr("ChargePeriodStart"), row(str("now")))},
		{"string as int", "record 0: SkuId: want a string", payload(hdr("ChargePeriodStart", "SkuId"), row(ts, []byte{0x05}))},
		{"trailing", "trailing bytes", append(payload(hdr("ChargePeriodStart"), row(ts)), 0xc0)},
		{"truncated", "unexpected end", payload(hdr("ChargePeriodStart"), row(ts))[:8]},
		{"bad ext type", "record 0: x_A: unknown extension type 7", payload(hdr("x_A"), row([]byte{0xd4, 7, 0}))},
	} {
		_, err := DecodeRecords(nil, tc.data)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err %v, want it to contain %q", tc.name, err, tc.want)
		}
	}
}

// Decoded strings do not alias the caller's buffer: changing it afterwards
// changes no record.
func TestColumnarStringsOwnTheirBytes(t *testing.T) {
	payload, _ := EncodeRecords(nil, []UsageRecord{sampleRecord()})
	recs, err := DecodeRecords(nil, payload)
	if err != nil {
		t.Fatal(err)
	}
	for i := range payload {
		payload[i] = 'Z'
	}
	if recs[0].ResourceId != "vm/i-123" || recs[0].Tags["team"] != "billing" || recs[0].BilledCost.String() != "12.345678901234567890123" {
		t.Fatalf("a decoded record changed with the buffer: %+v", recs[0])
	}
}

// strFieldOf and decFieldOf name the fields the tables do.
func TestFieldSwitchesMatchTables(t *testing.T) {
	var r UsageRecord
	for i, f := range strFields {
		if strFieldOf(&r, i) != f.get(&r) {
			t.Errorf("strFieldOf(%d) is not %s", i, f.name)
		}
	}
	for i, f := range decFields {
		if decFieldOf(&r, i) != f.get(&r) {
			t.Errorf("decFieldOf(%d) is not %s", i, f.name)
		}
	}
}

// Reusing decodes give the same records as fresh ones, part after part,
// and leave no tag or extension of an earlier record behind.
func TestDecodeRecordsReusing(t *testing.T) {
	a := sampleRecord()
	b := UsageRecord{ChargePeriodStart: time.Unix(5, 0).UTC(), Tags: map[string]string{"only": "b"}}
	c := UsageRecord{ChargePeriodStart: time.Unix(6, 0).UTC()}
	// e has extension columns where the record it overwrites had none:
	// it gets a map an earlier record left (a's), which must be emptied.
	e := UsageRecord{ChargePeriodStart: time.Unix(7, 0).UTC(), Ext: map[string]ExtValue{"Other": ExtStr("x")}}
	p1, _ := EncodeRecords(nil, []UsageRecord{a, a})
	p2, _ := EncodeRecords(nil, []UsageRecord{b, c})
	p3, _ := EncodeRecords(nil, []UsageRecord{c, e})
	var buf []UsageRecord
	for round := 0; round < 3; round++ {
		for _, p := range []struct {
			data []byte
			want []UsageRecord
		}{{p1, []UsageRecord{a, a}}, {p2, []UsageRecord{b, c}}, {p3, []UsageRecord{c, e}}} {
			var err error
			buf, err = DecodeRecordsReusing(buf[:0], p.data, 2)
			if err != nil {
				t.Fatal(err)
			}
			for i := range p.want {
				if !recordsEqual(&buf[i], &p.want[i]) {
					t.Fatalf("round %d record %d:\n got %+v\nwant %+v", round, i, buf[i], p.want[i])
				}
			}
		}
	}
}

// A clone of a record decoded with DecodeRecordsReusing survives the
// buffer changing under it.
func TestCloneOutlivesItsBuffer(t *testing.T) {
	want := sampleRecord()
	payload, _ := EncodeRecords(nil, []UsageRecord{want})
	recs, err := DecodeRecordsReusing(nil, payload, 2)
	if err != nil {
		t.Fatal(err)
	}
	c := recs[0].Clone()
	for i := range payload {
		payload[i] = 'Z'
	}
	if !recordsEqual(&c, &want) {
		t.Fatalf("the clone changed with the buffer:\n got %+v\nwant %+v", c, want)
	}
	if recs[0].ResourceId == want.ResourceId {
		t.Fatal("DecodeRecordsReusing copied its strings: the test proves nothing")
	}
}
