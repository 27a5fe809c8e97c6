package messages

import (
	"encoding/hex"
	"encoding/json"
	"os"
	"reflect"
	"testing"
	"time"
)

// focusRecord sets every Detail column and a tag of each JSON type.
func focusRecord() UsageRecord {
	r := sampleRecord()
	r.Tags = map[string]string{"team": "billing", "count": "1.5E-100", "on": "true", "off": "false", "gone": ""}
	r.TagTypes = map[string]TagType{"count": TagNumber, "on": TagBool, "off": TagBool, "gone": TagNull}
	d := &Detail{
		BillingPeriodStart: time.Date(2024, 8, 1, 0, 0, 0, 0, time.UTC),
		BillingPeriodEnd:   time.Date(2024, 9, 1, 0, 0, 0, 0, time.UTC),
	}
	for _, f := range detailStrs {
		*f.get(d) = "v-" + f.info.Name
		if f.info.Allowed != nil {
			*f.get(d) = f.info.Allowed[len(f.info.Allowed)-1]
		}
		if f.info.Kind == ColJSON {
			*f.get(d) = `{"k":"` + f.info.Name + `","n":2,"b":true,"z":null}`
		}
	}
	d.PricingCurrency = "EUR"
	for i, f := range detailDecs {
		*f.get(d) = DecimalFromInt(int64(i + 1))
	}
	r.Detail = d
	return r
}

func TestFocusRecordValidates(t *testing.T) {
	r := focusRecord()
	if errs := r.Validate(); len(errs) > 0 {
		t.Fatal(errs)
	}
}

func TestGoldenSchema3(t *testing.T) {
	recs := []UsageRecord{focusRecord(), goldenRecords()[1]}
	var e PartEncoder
	for i := range recs {
		e.Use(&recs[i])
	}
	if e.Schema() != 3 {
		t.Fatalf("Schema() = %d with Detail columns", e.Schema())
	}
	got, _ := EncodeRecords(nil, recs)
	const path = "testdata/records.v3.hex"
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
		t.Fatalf("schema-3 encoding changed:\n%s", hex.Dump(got))
	}
	for _, reuse := range []bool{false, true} {
		back, err := decodeWith(nil, got, 3, reuse)
		if err != nil {
			t.Fatal(err)
		}
		c := back[0].Clone() // a clone equals too
		if !reflect.DeepEqual(back, recs) || !reflect.DeepEqual(c, recs[0]) {
			t.Fatalf("reuse %v: round trip:\n got %+v %+v\nwant %+v %+v", reuse, back[0], back[0].Detail, recs[0], recs[0].Detail)
		}
	}
	// A part without them is schema 2, as before.
	var e2 PartEncoder
	g := goldenRecords()
	for i := range g {
		e2.Use(&g[i])
	}
	if e2.Schema() != 2 {
		t.Fatalf("plain records need schema %d", e2.Schema())
	}
}

// The JSON form carries every Detail column and keeps tag types.
func TestFocusRecordJSONRoundTrip(t *testing.T) {
	r := focusRecord()
	b := r.AppendJSON(nil)
	var back UsageRecord
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatalf("%v\n%s", err, b)
	}
	if !reflect.DeepEqual(back.Detail, r.Detail) || !reflect.DeepEqual(back.Tags, r.Tags) || !reflect.DeepEqual(back.TagTypes, r.TagTypes) {
		t.Fatalf("JSON round trip:\n got %+v %v %v\nwant %+v %v %v\n%s", back.Detail, back.Tags, back.TagTypes, r.Detail, r.Tags, r.TagTypes, b)
	}
}

// Every column the spec defines is known, with its type, and the version
// is told from the columns.
func TestFocusColumns(t *testing.T) {
	kinds := map[string]ColumnKind{}
	for _, c := range FocusColumns() {
		if _, dup := kinds[c.Name]; dup {
			t.Fatalf("%s twice", c.Name)
		}
		kinds[c.Name] = c.Kind
		if ColumnOf(c.Name) != c.Kind || c.Kind == ColUnknown {
			t.Errorf("%s: ColumnOf = %v, table %v", c.Name, ColumnOf(c.Name), c.Kind)
		}
	}
	// From FOCUS_Spec v1.2 specification/columns/*.md (Column ID, Data type).
	spec12 := map[string]ColumnKind{"AvailabilityZone": ColString, "BilledCost": ColDecimal, "BillingAccountId": ColString, "BillingAccountName": ColString, "BillingAccountType": ColString, "BillingCurrency": ColString, "BillingPeriodEnd": ColTime, "BillingPeriodStart": ColTime, "CapacityReservationId": ColString, "CapacityReservationStatus": ColString, "ChargeCategory": ColString, "ChargeClass": ColString, "ChargeDescription": ColString, "ChargeFrequency": ColString, "ChargePeriodEnd": ColTime, "ChargePeriodStart": ColTime, "CommitmentDiscountCategory": ColString, "CommitmentDiscountId": ColString, "CommitmentDiscountName": ColString, "CommitmentDiscountQuantity": ColDecimal, "CommitmentDiscountStatus": ColString, "CommitmentDiscountType": ColString, "CommitmentDiscountUnit": ColString, "ConsumedQuantity": ColDecimal, "ConsumedUnit": ColString, "ContractedCost": ColDecimal, "ContractedUnitPrice": ColDecimal, "EffectiveCost": ColDecimal, "InvoiceId": ColString, "InvoiceIssuerName": ColString, "ListCost": ColDecimal, "ListUnitPrice": ColDecimal, "PricingCategory": ColString, "PricingCurrency": ColString, "PricingCurrencyContractedUnitPrice": ColDecimal, "PricingCurrencyEffectiveCost": ColDecimal, "PricingCurrencyListUnitPrice": ColDecimal, "PricingQuantity": ColDecimal, "PricingUnit": ColString, "ProviderName": ColString, "PublisherName": ColString, "RegionId": ColString, "RegionName": ColString, "ResourceId": ColString, "ResourceName": ColString, "ResourceType": ColString, "ServiceCategory": ColString, "ServiceName": ColString, "ServiceSubcategory": ColString, "SkuId": ColString, "SkuMeter": ColString, "SkuPriceDetails": ColJSON, "SkuPriceId": ColString, "SubAccountId": ColString, "SubAccountName": ColString, "SubAccountType": ColString, "Tags": ColTags}
	for n, k := range spec12 {
		if kinds[n] != k {
			t.Errorf("%s: kind %v, the spec says %v", n, kinds[n], k)
		}
	}
	if len(kinds) != len(spec12)+8 { // + the eight 1.3 columns
		t.Errorf("%d columns, want %d", len(kinds), len(spec12)+8)
	}
	for names, want := range map[string]string{
		"BilledCost,ChargePeriodStart":        "1.0",
		"BilledCost,SkuPriceDetails":          "1.1",
		"BilledCost,PricingCurrency,SkuMeter": "1.2",
		"ServiceProviderName,BilledCost":      "1.3",
		"x_Foo,Bar":                           "",
	} {
		if got := FocusVersion(splitComma(names)); got != want {
			t.Errorf("FocusVersion(%s) = %q, want %q", names, got, want)
		}
	}
}

func splitComma(s string) []string {
	var out []string
	start := 0
	for i := 0; i <= len(s); i++ {
		if i == len(s) || s[i] == ',' {
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	return out
}

func TestValidateFocusProblems(t *testing.T) {
	for name, tc := range map[string]struct {
		mut   func(*UsageRecord)
		field string
	}{
		"charge class": {func(r *UsageRecord) { r.Detail.ChargeClass = "correction" }, "ChargeClass"},
		"frequency":    {func(r *UsageRecord) { r.Detail.ChargeFrequency = "Monthly" }, "ChargeFrequency"},
		"pricing cur":  {func(r *UsageRecord) { r.Detail.PricingCurrency = "ZZZ" }, "PricingCurrency"},
		"currency":     {func(r *UsageRecord) { r.BillingCurrency = "ZZZ" }, "BillingCurrency"},
		"kv array":     {func(r *UsageRecord) { r.Detail.SkuPriceDetails = `{"a":[1]}` }, "SkuPriceDetails"},
		"year 1900":    {func(r *UsageRecord) { r.ChargePeriodStart = time.Date(1900, 1, 1, 0, 0, 0, 0, time.UTC) }, "ChargePeriodStart"},
		"year 9999":    {func(r *UsageRecord) { r.ChargePeriodEnd = time.Date(9999, 12, 31, 0, 0, 0, 0, time.UTC) }, "ChargePeriodEnd"},
		"billing 9999": {func(r *UsageRecord) { r.Detail.BillingPeriodEnd = time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC) }, "BillingPeriodEnd"},
		"utf8":         {func(r *UsageRecord) { r.ResourceId = "i-\xff" }, "ResourceId"},
		"utf8 detail":  {func(r *UsageRecord) { r.Detail.CommitmentDiscountId = "c\xc3" }, "CommitmentDiscountId"},
		"tag number":   {func(r *UsageRecord) { r.Tags["count"] = "1,5" }, "Tags.count"},
		"tag utf8":     {func(r *UsageRecord) { r.Tags["team"] = "\xff" }, "Tags.team"},
		"ext utf8":     {func(r *UsageRecord) { r.Ext["Project"] = ExtStr("\xfe") }, "x_Project"},
	} {
		r := focusRecord()
		tc.mut(&r)
		errs := r.Validate()
		if len(errs) != 1 || errs[0].Field != tc.field {
			t.Errorf("%s: %v, want one problem in %s", name, errs, tc.field)
		}
	}
}

// A part of 1,000 FOCUS records that set every Detail column and typed
// tags (schema 3): what a FOCUS export costs to encode and decode.
func BenchmarkFocusPart(b *testing.B) {
	recs := make([]UsageRecord, 1000)
	for i := range recs {
		recs[i] = focusRecord()
		recs[i].BilledCost = DecimalFromInt(int64(i))
	}
	payload, _ := EncodeRecords(nil, recs)
	b.Run("encode", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(payload)))
		buf := make([]byte, 0, len(payload))
		for i := 0; i < b.N; i++ {
			buf, _ = EncodeRecords(buf[:0], recs)
		}
	})
	b.Run("decode-reusing", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(payload)))
		var dst []UsageRecord
		for i := 0; i < b.N; i++ {
			var err error
			if dst, err = DecodeRecordsReusing(dst[:0], payload, SchemaVersion); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(len(payload))/1000, "B/record")
	})
}

// Decoding over records that had Detail and typed tags reuses them without
// leaking a value of the part read before.
func TestDecodeReusingFocusRecords(t *testing.T) {
	full := []UsageRecord{focusRecord(), focusRecord()}
	partial := goldenRecords()
	partial[0].Detail = &Detail{ChargeClass: "Correction"}
	partial[0].Tags, partial[0].TagTypes = map[string]string{"n": "7"}, map[string]TagType{"n": TagNumber}
	p1, _ := EncodeRecords(nil, full)
	p2, _ := EncodeRecords(nil, partial)
	dst, err := DecodeRecordsReusing(nil, p1, 3)
	if err != nil {
		t.Fatal(err)
	}
	dst, err = DecodeRecordsReusing(dst[:0], p2, 3)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(dst, partial) {
		t.Fatalf("reused records:\n got %+v %+v\nwant %+v %+v", dst[0], dst[0].Detail, partial[0], partial[0].Detail)
	}
}
