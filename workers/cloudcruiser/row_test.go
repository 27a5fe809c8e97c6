package cloudcruiser

import (
	"bytes"
	"encoding/json"
	"flag"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/usagefleet/usagefleet/messages"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

var tRow = time.Date(2024, 8, 16, 20, 0, 0, 0, time.UTC) // 13:00 at -07:00

// mappingRecords covers every row of the mapping table.
func mappingRecords() []messages.UsageRecord {
	dec := messages.MustDecimal
	return []messages.UsageRecord{
		{ // a rated line item with everything
			ChargePeriodStart: tRow.Add(1500 * time.Millisecond), ChargePeriodEnd: tRow.Add(time.Hour),
			BillingAccountId: "acct-1000", BillingAccountName: "Example Corp", SubAccountId: "sub-007", SubAccountName: "project 7",
			ProviderName: "Example Cloud", PublisherName: "Vendor", ServiceName: "Compute", ServiceCategory: "Compute",
			ChargeCategory: "Usage", ChargeDescription: "not sent", SkuId: "SKU-Com-01", SkuPriceId: "price-1", SkuMeter: "vCPU Hours",
			ResourceId: "i-0abc", ResourceName: "web <1> & \"two\"", ResourceType: "VM", RegionId: "us-west-2", RegionName: "Oregon", AvailabilityZone: "us-west-2a",
			ConsumedQuantity: dec("12.500000"), ConsumedUnit: "Hours", PricingQuantity: dec("1"), PricingUnit: "h",
			BilledCost: dec("-0.0000000001"), EffectiveCost: dec("3"), BillingCurrency: "USD",
			Tags: map[string]string{"team": "billing", "env": "prod", "cost center": "42"},
			Ext:  map[string]messages.ExtValue{"Project": messages.ExtStr("apollo"), "Cores": messages.ExtI(-64), "Ratio": messages.ExtDec(dec("0.333333333333333333333333"))},
		},
		{ // a raw metered event: billing account only, no end, pricing quantity, no cost
			ChargePeriodStart: tRow.Add(-7 * time.Hour), BillingAccountId: "acct-2", ProviderName: "P", ServiceName: "S",
			SkuPriceId: "price-only", PricingQuantity: dec("100000000000000000000000000000.1"), PricingUnit: "Requests",
		},
		{ // sub-account equal to the billing account: no owner; blank names fall back
			ChargePeriodStart: tRow, BillingAccountId: "same", SubAccountId: "same", SubAccountName: "  ",
			ProviderName: "P", ServiceName: "S", SkuId: "sku", ConsumedQuantity: dec("0"), ConsumedUnit: "GB", BilledCost: dec("0.00"),
		},
	}
}

func TestMappingGolden(t *testing.T) {
	d := testDest(t, Settings{ZoneOffset: "-07:00"})
	b := rowBuilder{m: &d.m}
	var out bytes.Buffer
	out.WriteString("[\n")
	for i, r := range mappingRecords() {
		row, err := b.appendRow(nil, &r)
		if err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
		if !json.Valid(row) {
			t.Fatalf("record %d: invalid JSON %s", i, row)
		}
		if i > 0 {
			out.WriteString(",\n")
		}
		out.Write(row)
	}
	out.WriteString("\n]\n")
	golden := filepath.Join("testdata", "rows.golden.json")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(golden, out.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if !bytes.Equal(out.Bytes(), want) {
		t.Fatalf("rows differ from %s (rerun with -update if the change is meant):\n%s", golden, out.Bytes())
	}
}

// The decimals travel as JSON numbers holding exactly the published text.
func TestMappingExactNumbers(t *testing.T) {
	d := testDest(t, Settings{})
	b := rowBuilder{m: &d.m}
	r := mappingRecords()[0]
	row, rerr := b.appendRow(nil, &r)
	if rerr != nil {
		t.Fatal(rerr)
	}
	dec := json.NewDecoder(bytes.NewReader(row))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]string{"Quantity": "12.500000", "Cost": "-0.0000000001", "x_Cores": "-64", "x_Ratio": "0.333333333333333333333333"} {
		if n, ok := m[k].(json.Number); !ok || string(n) != want {
			t.Errorf("%s = %#v, want the JSON number %s", k, m[k], want)
		}
	}
	for k, want := range map[string]string{
		"Usage Start": "2024-08-16T20:00:01Z", "Usage End": "2024-08-16T20:59:00Z", "Account ID": "sub-007", "Account Name": "project 7",
		"Account Owner ID": "acct-1000", "Account Owner": "Example Corp", "Provider Type": "Public", "Meter ID": "SKU-Com-01",
		"Meter Name": "vCPU Hours", "Units": "Hours", "Provider Region": "us-west-2", "x_Project": "apollo", "tag:cost center": "42",
	} {
		if m[k] != want {
			t.Errorf("%s = %#v, want %q", k, m[k], want)
		}
	}
	for _, k := range []string{"Rate", "ChargeCategory", "Currency"} {
		if _, ok := m[k]; ok {
			t.Errorf("%s is sent", k)
		}
	}
}

// Issue 17.7: times follow the seed's forms: an offset like "+03" (not
// "+03:00", never with seconds in a time value) and a daily row ending
// at 23:59 of its date, not at the next midnight.
func TestMappingTimes(t *testing.T) {
	at := time.Date(2024, 8, 16, 7, 0, 0, 999_999_999, time.UTC)
	for zone, want := range map[string]string{
		"":          `"2024-08-16T07:00:00Z"`,
		"-07:00":    `"2024-08-16T00:00:00-07"`,
		"+03":       `"2024-08-16T10:00:00+03"`,
		"+05:30":    `"2024-08-16T12:30:00+05:30"`,
		"-07:01:30": `"2024-08-15T23:58:30"`, // no documented form: read in the zoneOffset sent
	} {
		d := testDest(t, Settings{ZoneOffset: zone})
		if got := string(d.m.appendTime(nil, at)); got != want {
			t.Errorf("zone %q: %s, want %s", zone, got, want)
		}
	}
	day := time.Date(2024, 8, 16, 0, 0, 0, 0, time.FixedZone("", 3*3600))
	for _, c := range []struct {
		start, end time.Time
		want       time.Time
	}{
		{day, day.AddDate(0, 0, 1), day.Add(24*time.Hour - time.Minute)},                          // a daily row: 23:59
		{day, day.Add(time.Hour), day.Add(59 * time.Minute)},                                      // an hour: 00:59
		{day, day.Add(30 * time.Second), day.Add(30 * time.Second)},                               // under a minute: as it is
		{day, day.Add(90*time.Minute + 15*time.Second), day.Add(90*time.Minute + 15*time.Second)}, // not on a minute
		{day.Add(time.Minute), day.Add(time.Minute), day.Add(time.Minute)},                        // no duration
	} {
		if got := inclusiveEnd(c.start, c.end); !got.Equal(c.want) {
			t.Errorf("inclusiveEnd(%s, %s) = %s, want %s", c.start, c.end, got, c.want)
		}
	}
	d := testDest(t, Settings{ZoneOffset: "+03"})
	b := rowBuilder{m: &d.m}
	r := messages.UsageRecord{ChargePeriodStart: day, ChargePeriodEnd: day.AddDate(0, 0, 1), BillingAccountId: "a", ProviderName: "p",
		ServiceName: "s", SkuId: "m", ConsumedQuantity: messages.MustDecimal("1"), ConsumedUnit: "u"}
	row, err := b.appendRow(nil, &r)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(row), `"Usage Start":"2024-08-16T00:00:00+03","Usage End":"2024-08-16T23:59:00+03"`) {
		t.Fatalf("daily row %s, want it to end at 23:59 of its date with offset +03", row)
	}
}

func TestMappingDefaults(t *testing.T) {
	d := testDest(t, Settings{Defaults: Defaults{AccountID: "acct-d", AccountName: "Default Name", Provider: "Prov", ProviderType: "Private",
		Product: "Prod", MeterID: "meter-d", MeterName: "Meter D", Units: "Units D"}, TagPrefix: "Tag ", OmitTags: false})
	b := rowBuilder{m: &d.m}
	r := messages.UsageRecord{ChargePeriodStart: tRow, ConsumedQuantity: messages.MustDecimal("1"), ConsumedUnit: " ", Tags: map[string]string{"a": "b"}}
	row, err := b.appendRow(nil, &r)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"Usage Start":"2024-08-16T20:00:00Z","Usage End":"2024-08-16T20:00:00Z","Account ID":"acct-d","Account Name":"Default Name",` +
		`"Provider":"Prov","Provider Type":"Private","Product":"Prod","Meter ID":"meter-d","Meter Name":"Meter D","Quantity":1,"Units":"Units D","Tag a":"b"}`
	if string(row) != want {
		t.Fatalf("row\n%s\nwant\n%s", row, want)
	}
	// A default name is not used for an account the record names: the
	// record's own name, else the default, else the id.
	r.SubAccountId = "sub-1"
	row, _ = b.appendRow(nil, &r)
	if !bytes.Contains(row, []byte(`"Account ID":"sub-1","Account Name":"Default Name"`)) {
		t.Fatalf("row %s", row)
	}
	d2 := testDest(t, Settings{OmitTags: true})
	b2 := rowBuilder{m: &d2.m}
	r = mappingRecords()[0]
	row, _ = b2.appendRow(nil, &r)
	if bytes.Contains(row, []byte("tag:")) {
		t.Fatalf("omit_tags sent tags: %s", row)
	}
}

// A record is refused only when what it bills cannot be carried: no
// quantity and no cost, or a figure beyond the decimal bounds (or an end
// before its start, which validation refuses at publish time).
func TestMappingRejects(t *testing.T) {
	d := testDest(t, Settings{TagPrefix: "Resource "})
	b := rowBuilder{m: &d.m}
	base := mappingRecords()[0]
	for name, c := range map[string]struct {
		edit   func(r *messages.UsageRecord)
		fields []string
		says   string
	}{
		"no quantity, no cost": {func(r *messages.UsageRecord) {
			r.ConsumedQuantity, r.PricingQuantity, r.BilledCost = messages.Decimal{}, messages.Decimal{}, messages.Decimal{}
		}, []string{FieldQuantity, FieldCost}, "nothing to bill: no Quantity (from ConsumedQuantity or PricingQuantity) and no Cost (from BilledCost)"},
		"huge cost": {func(r *messages.UsageRecord) { r.BilledCost = messages.MustDecimal("0." + strings.Repeat("1", 65)) },
			[]string{FieldCost}, "64 fractional digits"},
		"huge quantity": {func(r *messages.UsageRecord) {
			r.ConsumedQuantity = messages.MustDecimal("1" + strings.Repeat("0", 64))
		},
			[]string{FieldQuantity}, "64 integer"},
		"end before start": {func(r *messages.UsageRecord) { r.ChargePeriodEnd = r.ChargePeriodStart.Add(-time.Second) }, []string{FieldUsageEnd}, "before ChargePeriodStart"},
	} {
		r := base
		r.Tags = nil
		c.edit(&r)
		row, err := b.appendRow([]byte("prefix"), &r)
		if err == nil {
			t.Errorf("%s: mapped to %s", name, row)
			continue
		}
		if string(row) != "prefix" {
			t.Errorf("%s: wrote %q for a rejected record", name, row)
		}
		if strings.Join(err.Fields, ",") != strings.Join(c.fields, ",") || !strings.Contains(err.Error(), c.says) {
			t.Errorf("%s: %v (fields %v), want fields %v saying %q", name, err, err.Fields, c.fields, c.says)
		}
	}
}

// Metadata Cloud Cruiser cannot take is repaired or left out by the rules
// of the package doc; the record is sent, and what was repaired is said.
func TestMappingRepairs(t *testing.T) {
	d := testDest(t, Settings{TagPrefix: "Resource "})
	base := mappingRecords()[0]
	noQty := func(r *messages.UsageRecord) {
		r.ConsumedQuantity, r.PricingQuantity = messages.Decimal{}, messages.Decimal{}
	}
	for name, c := range map[string]struct {
		edit  func(r *messages.UsageRecord)
		rep   Repair
		has   []string // in the row
		hasnt []string // not in the row
	}{
		"no account": {func(r *messages.UsageRecord) { r.SubAccountId, r.BillingAccountId = "", " " }, RepairAccountID,
			[]string{`"Account ID":"Unassigned","Account Name":"Unassigned"`}, nil},
		"no provider: the publisher": {func(r *messages.UsageRecord) { r.ProviderName = "" }, RepairProvider, []string{`"Provider":"Vendor"`}, nil},
		"no provider, publisher or issuer": {func(r *messages.UsageRecord) { r.ProviderName, r.PublisherName = "", "" }, RepairProvider,
			[]string{`"Provider":"Unassigned"`}, nil},
		"no provider: the invoice issuer": {func(r *messages.UsageRecord) {
			r.ProviderName, r.PublisherName, r.Detail = "", "", &messages.Detail{InvoiceIssuerName: "Reseller"}
		}, RepairProvider, []string{`"Provider":"Reseller"`}, nil},
		"no product: the service category": {func(r *messages.UsageRecord) { r.ServiceName = "" }, RepairProduct, []string{`"Product":"Compute"`}, nil},
		"no product: the charge category": {func(r *messages.UsageRecord) { r.ServiceName, r.ServiceCategory = "", "" }, RepairProduct,
			[]string{`"Product":"Usage"`}, nil},
		"no SKU: the meter": {func(r *messages.UsageRecord) { r.SkuId, r.SkuPriceId = "", "" }, RepairMeterID,
			[]string{`"Meter ID":"vCPU Hours","Meter Name":"vCPU Hours"`}, nil},
		"a tax: category and service": {func(r *messages.UsageRecord) {
			r.SkuId, r.SkuPriceId, r.SkuMeter, r.ChargeCategory = "", "", "", "Tax"
			noQty(r)
		}, RepairMeterID | RepairQuantity, []string{`"Meter ID":"Tax:Compute","Meter Name":"Tax:Compute","Quantity":0,"Units":"N/A"`, `"Cost":-0.0000000001`}, nil},
		"a credit without a service": {func(r *messages.UsageRecord) {
			r.SkuId, r.SkuPriceId, r.SkuMeter, r.ChargeCategory, r.ServiceName = "", "", "", "Credit", ""
		}, RepairMeterID | RepairProduct, []string{`"Product":"Compute"`, `"Meter ID":"Credit"`}, nil},
		"nothing to derive a meter from": {func(r *messages.UsageRecord) { r.SkuId, r.SkuPriceId, r.SkuMeter, r.ChargeCategory = "", "", "", "" },
			RepairMeterID, []string{`"Meter ID":"Unassigned"`}, nil},
		"no quantity: 0 and the cost": {noQty, RepairQuantity, []string{`"Quantity":0,"Units":"N/A"`, `"Cost":-0.0000000001`}, nil},
		"a quantity without a unit":   {func(r *messages.UsageRecord) { r.ConsumedUnit = "\t" }, RepairUnits, []string{`"Quantity":12.500000,"Units":"N/A"`}, nil},
		"a tag named as a field": {func(r *messages.UsageRecord) { r.Tags = map[string]string{"id": "x", "team": "t"} }, RepairTagDropped,
			[]string{`"Resource team":"t"`}, []string{`"Resource id"`}},
		"a huge x_ decimal": {func(r *messages.UsageRecord) {
			r.Ext = map[string]messages.ExtValue{"Big": messages.ExtDec(messages.MustDecimal("0." + strings.Repeat("1", 65))), "Project": messages.ExtStr("apollo")}
		}, RepairExtDropped, []string{`"x_Project":"apollo"`}, []string{`x_Big`}},
		"a huge effective cost": {func(r *messages.UsageRecord) { r.EffectiveCost = messages.MustDecimal("1" + strings.Repeat("0", 70)) }, RepairCostDropped,
			[]string{`"Cost":-0.0000000001`}, []string{FieldEffectiveCost}},
		"nothing to repair": {func(r *messages.UsageRecord) {}, 0, []string{`"Meter ID":"SKU-Com-01"`}, nil},
	} {
		r := base
		r.Tags = nil
		c.edit(&r)
		row, w, err := d.EncodeRowWarnings([]byte("prefix"), &r)
		if err != nil {
			t.Errorf("%s: refused: %v", name, err)
			continue
		}
		b := rowBuilder{m: &d.m}
		_, rep, _ := b.appendRowRepaired(nil, &r)
		if rep != c.rep || w != min(int(rep), 1) {
			t.Errorf("%s: repairs %v (%d warnings), want %v", name, rep.Kinds(), w, c.rep.Kinds())
		}
		if !bytes.HasPrefix(row, []byte("prefix{")) || !json.Valid(row[len("prefix"):]) {
			t.Errorf("%s: row %s", name, row)
		}
		for _, s := range c.has {
			if !bytes.Contains(row, []byte(s)) {
				t.Errorf("%s: row lacks %s:\n%s", name, s, row)
			}
		}
		for _, s := range c.hasnt {
			if bytes.Contains(row, []byte(s)) {
				t.Errorf("%s: row holds %s:\n%s", name, s, row)
			}
		}
	}
}

func BenchmarkAppendRow(b *testing.B) {
	d := testDest(b, Settings{ZoneOffset: "-07:00"})
	rb := rowBuilder{m: &d.m}
	r := mappingRecords()[0]
	var row []byte
	b.ReportAllocs()
	for b.Loop() {
		row, _ = rb.appendRow(row[:0], &r)
	}
	b.SetBytes(int64(len(row)))
}

// The hand-written time writes what the general formatter wrote, in every
// kind of offset, on both sides of a date line and at the year's ends.
func TestAppendTimeMatchesFormat(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 13))
	for _, secs := range []int{0, -7 * 3600, 5*3600 + 1800, -(7*3600 + 90), 14 * 3600, -12 * 3600} {
		loc := time.FixedZone("z", secs)
		m := &mapper{loc: loc, suffix: offsetSuffix(secs), offset: secs}
		times := []time.Time{time.Date(2024, 12, 31, 23, 59, 59, 999, time.UTC), time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(1, 1, 2, 0, 0, 0, 0, time.UTC)}
		for range 1000 {
			times = append(times, time.Unix(rng.Int64N(4e9), rng.Int64N(1e9)))
		}
		for _, tt := range times {
			want := `"` + tt.Truncate(time.Second).In(loc).Format("2006-01-02T15:04:05") + offsetSuffix(secs) + `"`
			if got := string(m.appendTime(nil, tt)); got != want {
				t.Fatalf("offset %d, %v: got %s, want %s", secs, tt, got, want)
			}
		}
	}
}

// appendJoined writes a+b as one JSON string, escapes included.
func TestAppendJoined(t *testing.T) {
	for _, c := range [][2]string{{"tag:", "team"}, {"", "x"}, {"a\"b", "c\\d"}, {"é<", ">\n"}, {"p", ""}} {
		want := string(messages.AppendJSONString(nil, c[0]+c[1]))
		if got := string(appendJoined(nil, c[0], c[1])); got != want {
			t.Errorf("%q+%q: got %s, want %s", c[0], c[1], got, want)
		}
	}
}
