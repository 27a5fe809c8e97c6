package messages

import (
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

var update = flag.Bool("update", false, "rewrite golden files")

func sampleRecord() UsageRecord {
	start := time.Date(2024, 8, 16, 13, 0, 0, 0, time.UTC)
	return UsageRecord{
		ChargePeriodStart: start,
		ChargePeriodEnd:   start.Add(time.Hour),
		BillingAccountId:  "acct-1",
		SubAccountId:      "sub-9",
		ProviderName:      "Acme Cloud",
		ServiceName:       "Compute",
		ChargeCategory:    "Usage",
		SkuId:             "SKU-1",
		ResourceId:        "vm/i-123",
		RegionId:          "eu-west-1",
		ConsumedQuantity:  MustDecimal("3.000001"),
		ConsumedUnit:      "Hours",
		BilledCost:        MustDecimal("12.345678901234567890123"),
		EffectiveCost:     MustDecimal("-0.5"),
		BillingCurrency:   "USD",
		Tags:              map[string]string{"team": "billing", "env": "prod"},
		Ext: map[string]ExtValue{
			"Project": ExtStr("apollo"),
			"Cores":   ExtI(8),
			"Rate":    ExtDec(MustDecimal("0.000125")),
		},
	}
}

func goldenRecords() []UsageRecord {
	return []UsageRecord{sampleRecord(), {ChargePeriodStart: time.Date(2024, 8, 16, 13, 5, 0, 0, time.UTC), BilledCost: MustDecimal("0"), BillingCurrency: "EUR"}}
}

func TestGoldenEncoding(t *testing.T) {
	recs := goldenRecords()
	got, err := EncodeRecords(nil, recs)
	if err != nil {
		t.Fatal(err)
	}
	// Records without Detail columns or typed tags are still written
	// byte for byte as schema 2 wrote them (columnar_focus_test.go holds
	// the schema-3 golden part).
	path := fmt.Sprintf("testdata/records.v%d.hex", 2)
	if *update {
		if err := os.WriteFile(path, []byte(hex.Dump(got)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./messages -update to create it)", err)
	}
	if hex.Dump(got) != string(want) {
		t.Fatalf("encoding changed: a change to schema %d breaks readers; bump SchemaVersion instead.\ngot:\n%s", SchemaVersion, hex.Dump(got))
	}
	// The golden bytes must decode back to the same records.
	back, err := DecodeRecords(nil, got)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, recs) {
		t.Fatalf("round trip:\n got %+v\nwant %+v", back, recs)
	}
}

// What producers of schema 1 stored is still read, byte for byte as they
// wrote it, and the schema-1 writer the tests use still writes it.
func TestGoldenSchema1StillDecodes(t *testing.T) {
	dump, err := os.ReadFile("testdata/records.v1.hex")
	if err != nil {
		t.Fatal(err)
	}
	v1 := undump(t, string(dump))
	recs := goldenRecords()
	if got := encodeRecordsV1(nil, recs); string(got) != string(v1) {
		t.Fatalf("encodeRecordsV1 no longer writes the schema-1 golden bytes:\n%s", hex.Dump(got))
	}
	for _, schema := range []int{0, 1} {
		back, err := decodeRecordsFast(nil, v1, schema)
		if err != nil {
			t.Fatalf("schema %d: %v", schema, err)
		}
		if !reflect.DeepEqual(back, recs) {
			t.Fatalf("schema %d:\n got %+v\nwant %+v", schema, back, recs)
		}
	}
	m := PartMeta{Schema: 1, BatchID: "b", Part: 1, Feed: "f", Source: "s", Kind: KindAppend, Hour: time.Date(2024, 8, 16, 13, 0, 0, 0, time.UTC), Records: 2}
	if p, err := DecodePart(m.Header(), v1); err != nil || len(p.Records) != 2 {
		t.Fatalf("DecodePart of a schema-1 part: %v, %v", p, err)
	}
}

// undump reads hex.Dump output back into bytes.
func undump(t *testing.T, dump string) []byte {
	t.Helper()
	var out []byte
	for _, line := range strings.Split(dump, "\n") {
		if len(line) < 10 {
			continue
		}
		hexPart := line[10:min(len(line), 58)]
		b, err := hex.DecodeString(strings.ReplaceAll(hexPart, " ", ""))
		if err != nil {
			t.Fatalf("hex dump line %q: %v", line, err)
		}
		out = append(out, b...)
	}
	return out
}

// A payload whose layout is not the schema its header says is refused.
func TestDecodeRecordsAsChecksLayout(t *testing.T) {
	recs := goldenRecords()
	v2, _ := EncodeRecords(nil, recs)
	v1 := encodeRecordsV1(nil, recs)
	if _, err := DecodeRecordsAs(nil, v2, 1); err == nil || !strings.Contains(err.Error(), "schema-2 layout in a schema-1 part") {
		t.Fatalf("v2 bytes as schema 1: %v", err)
	}
	if _, err := DecodeRecordsAs(nil, v1, 2); err == nil || !errors.Is(err, errNotColumnar) {
		t.Fatalf("v1 bytes as schema 2: %v", err)
	}
	if _, err := DecodeRecordsAs(nil, v2, SchemaVersion+1); !errors.Is(err, ErrNewerSchema) {
		t.Fatalf("schema %d: %v", SchemaVersion+1, err)
	}
	for _, schema := range []int{1, 2} {
		data := map[int][]byte{1: v1, 2: v2}[schema]
		got, err := DecodeRecordsAs(nil, data, schema)
		if err != nil || !reflect.DeepEqual(got, recs) {
			t.Fatalf("schema %d: %v", schema, err)
		}
	}
}

// The header length PartEncoder reports is what it writes, at every
// boundary of the array header's size.
func TestPartEncoderHeaderLen(t *testing.T) {
	var e PartEncoder
	r := sampleRecord()
	e.Use(&r)
	for _, n := range []int{0, 14, 15, 16, 65534, 65535, 65536} {
		if got := len(e.AppendHeader(nil, n)); got != e.HeaderLen(n) || got > e.MaxHeaderLen() {
			t.Errorf("n=%d: header %d bytes, HeaderLen %d, MaxHeaderLen %d", n, got, e.HeaderLen(n), e.MaxHeaderLen())
		}
	}
	// Columns are those used, in Columns() order, then x_ names sorted.
	var e2 PartEncoder
	a := UsageRecord{ChargePeriodStart: time.Unix(10, 0).UTC(), BilledCost: MustDecimal("1"), BillingCurrency: "USD", Ext: map[string]ExtValue{"Zeta": ExtI(1)}}
	b := UsageRecord{ChargePeriodStart: time.Unix(20, 0).UTC(), SubAccountId: "s", Ext: map[string]ExtValue{"Alpha": ExtStr("x")}}
	e2.Use(&a)
	e2.Use(&b)
	payload := e2.AppendRecord(e2.AppendRecord(e2.AppendHeader(nil, 2), &a), &b)
	lib, err := decodeRecordsLibV2(nil, payload)
	if err != nil {
		t.Fatal(err)
	}
	if !recordsEqual(&lib[0], &a) || !recordsEqual(&lib[1], &b) {
		t.Fatalf("library read %+v", lib)
	}
	cols := columnNames(t, payload)
	want := []string{"ChargePeriodStart", "SubAccountId", "BillingCurrency", "BilledCost", "x_Alpha", "x_Zeta"}
	if !reflect.DeepEqual(cols, want) {
		t.Fatalf("columns %q, want %q", cols, want)
	}
}

// Schema 2 is less than half of schema 1 for typical FOCUS records.
func TestSchema2IsCompact(t *testing.T) {
	recs := make([]UsageRecord, 100)
	for i := range recs {
		recs[i] = sampleRecord()
		recs[i].ResourceId = fmt.Sprintf("vm/i-%06d", i)
	}
	v2, _ := EncodeRecords(nil, recs)
	v1 := encodeRecordsV1(nil, recs)
	if len(v2)*2 > len(v1) {
		t.Fatalf("schema 2 is %d bytes, schema 1 %d", len(v2), len(v1))
	}
	t.Logf("100 records: schema 1 %d bytes, schema 2 %d bytes", len(v1), len(v2))
}

func TestPartHeadersRoundTrip(t *testing.T) {
	hour := time.Date(2024, 8, 16, 13, 0, 0, 0, time.UTC)
	period := Period{Start: hour.Add(-13 * time.Hour), End: hour.Add(11 * time.Hour)}
	metas := []PartMeta{
		{Schema: 1, BatchID: "b-1", Part: 3, Feed: "cloud", Source: "svc", Kind: KindAppend, Hour: hour, Records: 2},
		{Schema: 1, BatchID: "b-2", Part: 1, Feed: "cloud", Source: "acronis", Kind: KindSnapshot, Hour: hour, Period: period, Generation: 7, Records: 2},
		{Schema: 1, BatchID: "b-2", Feed: "cloud", Source: "acronis", Kind: KindSnapshotEnd, Hour: hour, Period: period, Generation: 7, Parts: 4},
	}
	for _, m := range metas {
		got, err := ParseMeta(m.Header())
		if err != nil {
			t.Fatalf("%s: %v", m.Kind, err)
		}
		if got != m {
			t.Fatalf("%s:\n got %+v\nwant %+v", m.Kind, got, m)
		}
	}
	// Ids are scoped by source and feed; a "/" in a batch id cannot make
	// one batch's part look like another's marker.
	for _, tc := range []struct {
		m    PartMeta
		want string
	}{
		{metas[0], "svc/cloud/b-1/3"},
		{metas[2], "acronis/cloud/b-2/end/2024081613"},
		{PartMeta{BatchID: "b-2/end", Part: 2024081613, Feed: "cloud", Source: "acronis", Kind: KindSnapshot}, "acronis/cloud/b-2%2Fend/2024081613"},
	} {
		if got := tc.m.MsgID(); got != tc.want {
			t.Errorf("msg id %q, want %q", got, tc.want)
		}
	}
	a, b := metas[0], metas[0]
	b.Source = "other"
	if a.MsgID() == b.MsgID() {
		t.Fatal("two sources' batch b-1 share a message id")
	}
}

func TestParseMetaErrors(t *testing.T) {
	good := PartMeta{BatchID: "b", Part: 1, Feed: "f", Source: "s", Kind: KindAppend, Hour: time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC), Records: 1}.Header()
	tests := []struct {
		name, key, value, want string
		newer                  bool
	}{
		{"no schema", HdrSchema, "", "Usage-Schema missing", false},
		{"newer schema", HdrSchema, "4", "version 4, this reader knows up to 3", true},
		{"bad schema", HdrSchema, "x", "is not a schema version", false},
		{"bad part", HdrPart, "0", "Usage-Part", false},
		{"bad kind", HdrKind, "delta", "unknown kind", false},
		{"bad source", HdrSource, "a.b", "not a valid source", false},
		{"bad hour", HdrHour, "yesterday", "Usage-Hour", false},
	}
	for _, tt := range tests {
		h := nats.Header{}
		for k, v := range good {
			h[k] = append([]string(nil), v...)
		}
		if tt.value == "" {
			h.Del(tt.key)
		} else {
			h.Set(tt.key, tt.value)
		}
		_, err := ParseMeta(h)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: err %v, want it to contain %q", tt.name, err, tt.want)
		}
		if errors.Is(err, ErrNewerSchema) != tt.newer {
			t.Errorf("%s: errors.Is(ErrNewerSchema) = %v", tt.name, !tt.newer)
		}
	}
}

func TestDecodePartChecksCount(t *testing.T) {
	recs := []UsageRecord{sampleRecord()}
	payload, _ := EncodeRecords(nil, recs)
	m := PartMeta{BatchID: "b", Part: 1, Feed: "f", Source: "s", Kind: KindAppend, Hour: time.Date(2024, 8, 16, 13, 0, 0, 0, time.UTC), Records: 2}
	if _, err := DecodePart(m.Header(), payload); err == nil || !strings.Contains(err.Error(), "header Usage-Records says 2") {
		t.Fatalf("err = %v", err)
	}
	m.Records = 1
	p, err := DecodePart(m.Header(), payload)
	if err != nil || len(p.Records) != 1 {
		t.Fatalf("DecodePart = %v, %v", p, err)
	}
}

func TestDecodeRecordsErrorsNameRecordAndField(t *testing.T) {
	recs := []UsageRecord{sampleRecord(), sampleRecord()}
	payload, _ := EncodeRecords(nil, recs)
	// Corrupt the second record's BilledCost value into a non-decimal.
	s := string(payload)
	i := strings.LastIndex(s, "12.345678901234567890123")
	bad := []byte(s[:i] + "12.34567890123456789012x" + s[i+24:])
	_, err := DecodeRecords(nil, bad)
	var de *DecodeError
	if !errors.As(err, &de) || de.Record != 1 || de.Field != "BilledCost" {
		t.Fatalf("err = %v, want record 1 field BilledCost", err)
	}
	if _, err := DecodeRecords(nil, append(payload, 0xc0)); err == nil {
		t.Fatal("trailing bytes accepted")
	}
}

func FuzzDecodeRecords(f *testing.F) {
	good, _ := EncodeRecords(nil, []UsageRecord{sampleRecord()})
	f.Add(good)
	f.Add([]byte{0x91, 0x80})
	f.Add([]byte{0xdd, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, data []byte) {
		recs, err := DecodeRecords(nil, data)
		if err != nil {
			return
		}
		// Whatever decodes must re-encode and decode to the same records.
		again, err := EncodeRecords(nil, recs)
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		back, err := DecodeRecords(nil, again)
		if err != nil {
			t.Fatalf("decode of re-encoded: %v", err)
		}
		if len(back) != len(recs) {
			t.Fatalf("%d records became %d", len(recs), len(back))
		}
		for i := range recs {
			if !recordsEqual(&recs[i], &back[i]) {
				t.Fatalf("record %d changed:\n%+v\n%+v", i, recs[i], back[i])
			}
		}
	})
}

func recordsEqual(a, b *UsageRecord) bool {
	if !a.ChargePeriodStart.Equal(b.ChargePeriodStart) || !a.ChargePeriodEnd.Equal(b.ChargePeriodEnd) {
		return false
	}
	ac, bc := *a, *b
	ac.ChargePeriodStart, bc.ChargePeriodStart = time.Time{}, time.Time{}
	ac.ChargePeriodEnd, bc.ChargePeriodEnd = time.Time{}, time.Time{}
	if len(ac.Tags) == 0 && len(bc.Tags) == 0 {
		ac.Tags, bc.Tags = nil, nil
	}
	return reflect.DeepEqual(ac, bc)
}

// FuzzFastDecoderMatchesLibrary: whatever the fast decoder accepts, the
// msgpack library reads the same way.
func FuzzFastDecoderMatchesLibrary(f *testing.F) {
	two := []UsageRecord{sampleRecord(), {ChargePeriodStart: time.Unix(1, 5).UTC(), Tags: map[string]string{}}}
	good, _ := EncodeRecords(nil, two)
	f.Add(good)
	f.Add(encodeRecordsV1(nil, two))
	f.Add([]byte{0x91, 0x81, 0xa4, 'T', 'a', 'g', 's', 0xc0})
	f.Add([]byte{0x92, 0x91, 0xa4, 'T', 'a', 'g', 's', 0x91, 0xc0})
	f.Fuzz(func(t *testing.T, data []byte) {
		fast, ferr := decodeRecordsFast(nil, data, 0)
		if ferr != nil {
			return // the fast decoder may be stricter (no floats as integers)
		}
		// Only now ask the library: on some refused inputs it first tries
		// to read a length of gigabytes.
		lib, lerr := decodeRecordsLib(nil, data)
		if len(data) > 1 && data[0] != 0x90 && isColumnar(data) {
			lib, lerr = decodeRecordsLibV2(nil, data)
		}
		if lerr != nil {
			t.Fatalf("fast accepted what the library refuses: %v", lerr)
		}
		if len(fast) != len(lib) {
			t.Fatalf("%d vs %d records", len(fast), len(lib))
		}
		for i := range fast {
			if !recordsEqual(&fast[i], &lib[i]) {
				t.Fatalf("record %d differs:\nfast %+v\nlib  %+v", i, fast[i], lib[i])
			}
		}
	})
}

func BenchmarkDecodeRecords(b *testing.B) {
	recs := make([]UsageRecord, 1000)
	for i := range recs {
		recs[i] = sampleRecord()
		recs[i].ResourceId = fmt.Sprintf("vm/i-%06d", i)
		recs[i].BilledCost = MustDecimal(fmt.Sprintf("%d.%04d", i, i*7%10000))
	}
	v2, _ := EncodeRecords(nil, recs)
	v1 := encodeRecordsV1(nil, recs)
	for _, bc := range []struct {
		name    string
		payload []byte
		fn      func([]UsageRecord, []byte) ([]UsageRecord, error)
	}{
		{"schema2/fast", v2, DecodeRecords},
		{"schema2/library", v2, decodeRecordsLibV2},
		{"schema1/fast", v1, DecodeRecords},
		{"schema1/library", v1, decodeRecordsLib},
	} {
		payload := bc.payload
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			var dst []UsageRecord
			for i := 0; i < b.N; i++ {
				var err error
				dst, err = bc.fn(dst[:0], payload)
				if err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*len(recs))/b.Elapsed().Seconds(), "records/s")
		})
	}
}

// The hand-written schema-1 encoder writes exactly the library's bytes, for varied
// records (the golden file pins one sample; this covers many).
func TestAppendRecordMatchesLibrary(t *testing.T) {
	recs := variedRecords()
	got := encodeRecordsV1(nil, recs)
	want, err := encodeRecordsLib(nil, recs)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != string(want) {
		for i := range got {
			if i >= len(want) || got[i] != want[i] {
				t.Fatalf("encodings differ at byte %d of %d/%d", i, len(got), len(want))
			}
		}
		t.Fatalf("encodings differ in length: %d vs %d", len(got), len(want))
	}
}

// variedRecords are records that exercise every column kind: times at the
// edges of the timestamp encodings, every integer width, long strings, up
// to 19 tags, extension columns on some records only.
func variedRecords() []UsageRecord {
	recs := []UsageRecord{sampleRecord(), {ChargePeriodStart: time.Date(2300, 1, 1, 0, 0, 0, 1, time.UTC)}, {ChargePeriodStart: time.Unix(1, 999).UTC(), Ext: map[string]ExtValue{"A": ExtI(-1), "B": ExtI(-200), "C": ExtI(70000), "D": ExtI(-1 << 40), "E": ExtI(1 << 40), "F": ExtI(200), "G": ExtDec(MustDecimal("12345678901234567890.5"))}}}
	long := sampleRecord()
	long.ChargeDescription = strings.Repeat("x", 300)
	long.ResourceName = strings.Repeat("y", 70000)
	recs = append(recs, long)
	for i := 0; i < 50; i++ {
		r := sampleRecord()
		r.ResourceId = fmt.Sprintf("res-%d", i*7919)
		r.BilledCost = MustDecimal(fmt.Sprintf("%d.%d", i*31, i*17))
		r.Tags = map[string]string{}
		for k := 0; k < i%20; k++ {
			r.Tags[fmt.Sprintf("k%d", k)] = fmt.Sprintf("v%d", k*i)
		}
		if i%3 == 0 {
			r.Ext = nil
		}
		recs = append(recs, r)
	}
	return recs
}
