package input

import (
	"bytes"
	"compress/gzip"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"

	"github.com/usagefleet/usagefleet/messages"
)

var updateFixtures = flag.Bool("update-fixtures", false, "rewrite testdata/focus/aws-focus-1.2.parquet")

// Fixture is one FOCUS export as a provider writes it (testdata/focus),
// with what a reader must find in it, written by hand from the file.
type Fixture struct {
	File     string
	Format   Format
	Version  string
	Records  int
	Cost     map[string]string // exact BilledCost per currency
	Warnings []string          // the fields warned about, once each
}

// Fixtures are shared with the publish end-to-end test (via FixtureTable).
var Fixtures = []Fixture{
	{File: "aws-focus-1.0.csv", Format: CSV, Version: "1.0", Records: 5, Cost: map[string]string{"USD": "75.5146"}},
	{File: "azure-focus-1.2.csv", Format: CSV, Version: "1.2", Records: 4, Cost: map[string]string{"EUR": "130.1259"}},
	{File: "gcp-focus-1.1.ndjson", Format: NDJSON, Version: "1.1", Records: 4, Cost: map[string]string{"USD": "12.345678" + strings.Repeat("0", 93) + "15", "JPY": "1500"}, Warnings: []string{"gcp_location_type"}},
	{File: "oci-focus-1.0.csv", Format: CSV, Version: "1.0", Records: 3, Cost: map[string]string{"GBP": "103.214"},
		Warnings: []string{"ChargeSubcategory", "ChargeType", "oci_ReferenceNumber", "oci_CompartmentId", "oci_CompartmentName", "oci_OverageFlag", "oci_UnitPriceOverage", "oci_BilledQuantityOverage", "oci_CostOverage", "oci_AttributedUsage", "oci_AttributedCost", "oci_BackReferenceNumber"}},
	{File: "focus-1.3.csv", Format: CSV, Version: "1.3", Records: 2, Cost: map[string]string{"USD": "100.00"}, Warnings: []string{"Owner Team"}},
	{File: "aws-focus-1.2.parquet", Format: Parquet, Version: "1.2", Records: 3, Cost: map[string]string{"USD": "112.8456789012"}},
	// Written by arrow-rs, not by the library this package reads with
	// (parquet_arrow_test.go).
	{File: "arrow-rs-focus-1.2.parquet", Format: Parquet, Version: "1.2", Records: 1000, Cost: map[string]string{"USD": "60.3518078930"}},
}

func readFixture(t *testing.T, name string, data []byte, opt Options) ([]Row, Result) {
	t.Helper()
	var rows []Row
	res, err := ReadWith(name, bytes.NewReader(data), opt, func(r Row) error {
		rows = append(rows, r)
		return nil
	})
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return rows, res
}

func costs(rows []Row) map[string]string {
	sums := map[string]*messages.Sum{}
	for _, r := range rows {
		if !r.Record.BilledCost.IsSet() {
			continue
		}
		s := sums[r.Record.BillingCurrency]
		if s == nil {
			s = &messages.Sum{}
			sums[r.Record.BillingCurrency] = s
		}
		s.Add(r.Record.BilledCost)
	}
	out := map[string]string{}
	for c, s := range sums {
		out[c] = s.Decimal().String()
	}
	return out
}

func TestFixtures(t *testing.T) {
	for _, fx := range Fixtures {
		t.Run(fx.File, func(t *testing.T) {
			data, err := os.ReadFile(filepath.Join("testdata/focus", fx.File))
			if err != nil {
				t.Fatal(err)
			}
			var gz bytes.Buffer
			zw := gzip.NewWriter(&gz)
			zw.Write(data)
			zw.Close()
			// As named, under a name that says nothing, and gzipped: the
			// content decides.
			for _, v := range []struct {
				name string
				data []byte
			}{{fx.File, data}, {"export.bin", data}, {"export.gz", gz.Bytes()}} {
				rows, res := readFixture(t, v.name, v.data, Options{Format: FormatOf(v.name)})
				if len(res.Errors) > 0 {
					t.Fatalf("%s: errors %v", v.name, res.Errors)
				}
				if len(rows) != fx.Records || res.Format != fx.Format || res.Version != fx.Version {
					t.Fatalf("%s: %d rows, format %v, version %q; want %d, %v, %q", v.name, len(rows), res.Format, res.Version, fx.Records, fx.Format, fx.Version)
				}
				if got := costs(rows); !reflect.DeepEqual(got, fx.Cost) {
					t.Errorf("%s: BilledCost %v, want %v", v.name, got, fx.Cost)
				}
				var warned []string
				for _, w := range res.Warnings {
					warned = append(warned, w.Field)
				}
				if !reflect.DeepEqual(sorted(warned), sorted(fx.Warnings)) {
					t.Errorf("%s: warnings about %v, want %v", v.name, warned, fx.Warnings)
				}
			}
			// --strict refuses a file with a column that is neither FOCUS
			// nor x_ (in JSON, where each record has its own keys, the
			// records that have it).
			rows, res := readFixture(t, fx.File, data, Options{Strict: true})
			if len(fx.Warnings) > 0 && (len(rows) >= fx.Records || len(res.Errors) == 0 || fx.Format == CSV && len(rows) > 0) {
				t.Errorf("strict: %d rows, errors %v", len(rows), res.Errors)
			}
		})
	}
}

func sorted(s []string) []string {
	s = append([]string{}, s...)
	sort.Strings(s)
	if len(s) == 0 {
		return nil
	}
	return s
}

// The values the files hold arrive typed and exact.
func TestFixtureValues(t *testing.T) {
	read := func(file string) []messages.UsageRecord {
		data, err := os.ReadFile(filepath.Join("testdata/focus", file))
		if err != nil {
			t.Fatal(err)
		}
		rows, res := readFixture(t, file, data, Options{})
		if len(res.Errors) > 0 {
			t.Fatal(res.Errors)
		}
		var out []messages.UsageRecord
		for _, r := range rows {
			out = append(out, r.Record)
		}
		return out
	}
	aws := read("aws-focus-1.0.csv")
	if aws[0].Tags["user:cost-center"] != "cc-42, shared" || aws[0].Detail.ContractedUnitPrice.String() != "0.0416" || aws[0].Ext["Operation"].Str != "RunInstances" {
		t.Errorf("aws[0]: %+v %+v", aws[0], aws[0].Detail)
	}
	if aws[0].Ext["Discounts"].Kind != 0 || aws[1].AvailabilityZone != "" || aws[2].Tags != nil || aws[2].RegionId != "" {
		t.Errorf("NULL is not null: %+v / %q / %v", aws[0].Ext["Discounts"], aws[1].AvailabilityZone, aws[2].Tags)
	}
	if aws[4].Detail.ChargeClass != "Correction" || aws[4].BilledCost.String() != "-5.00" || !aws[4].Detail.BillingPeriodStart.Equal(time.Date(2024, 9, 1, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("aws[4]: %+v", aws[4].Detail)
	}
	az := read("azure-focus-1.2.csv")
	if az[0].ChargeDescription != "D2s v5\nLinux, West Europe" || az[0].Tags["Cost department"] != "R&D, EMEA" || az[0].Tags[" org"] != "contoso" {
		t.Errorf("az[0]: %q %v", az[0].ChargeDescription, az[0].Tags)
	}
	wantTypes := map[string]messages.TagType{"replicas": messages.TagNumber, "critical": messages.TagBool, "expires": messages.TagNull}
	if !reflect.DeepEqual(az[0].TagTypes, wantTypes) || az[0].Tags["replicas"] != "3" || az[0].Tags["critical"] != "true" {
		t.Errorf("typed tags: %v %v", az[0].Tags, az[0].TagTypes)
	}
	if az[0].Detail.SkuPriceDetails != `{"CoreCount":2,"OperatingSystem":"Linux","Spot":false}` || az[0].Detail.PricingCurrencyListUnitPrice.String() != "0.141" || az[1].BilledCost.String() != "0.0025" {
		t.Errorf("az: %+v %s", az[0].Detail, az[1].BilledCost)
	}
	if d := az[2].Detail; d.CommitmentDiscountQuantity.String() != "730" || d.CapacityReservationStatus != "Unused" {
		t.Errorf("az[2]: %+v", d)
	}
	gcp := read("gcp-focus-1.1.ndjson")
	if gcp[0].Tags["ratio"] != "0.0015" || gcp[0].TagTypes["owner"] != messages.TagNull || gcp[0].Ext["ProjectNumber"].Int != 123456789012 || gcp[0].Ext["gcp_location_type"].Str != "zone" {
		t.Errorf("gcp[0]: %v %v %v", gcp[0].Tags, gcp[0].TagTypes, gcp[0].Ext)
	}
	if gcp[1].BilledCost.String() != "0."+strings.Repeat("0", 99)+"15" || gcp[1].ResourceId != "" || gcp[3].ResourceName != "" {
		t.Errorf("gcp[1]: %s %q", gcp[1].BilledCost, gcp[1].ResourceId)
	}
	oci := read("oci-focus-1.0.csv")
	if oci[1].ChargeDescription != "Object Storage - Requests, \"Standard\"\nper 10,000 requests" || oci[0].ResourceName != "" || oci[0].Ext["oci_ReferenceNumber"].Str != "1234567890" {
		t.Errorf("oci: %q %q %v", oci[1].ChargeDescription, oci[0].ResourceName, oci[0].Ext)
	}
	if _, kept := oci[0].Ext["oci_OverageFlag"]; kept {
		t.Errorf("an empty cell is null, not an empty string")
	}
	f13 := read("focus-1.3.csv")
	if d := f13[0].Detail; d.ServiceProviderName != "Datadog" || d.HostProviderName != "AWS" || d.AllocatedTags != `{"team":"payments","tier":1}` || f13[0].Ext["Owner_Team"].Str != "payments" || f13[1].Detail.ContractApplied != "" {
		t.Errorf("1.3: %+v %v", d, f13[0].Ext)
	}
	pq := read("aws-focus-1.2.parquet")
	if pq[0].BilledCost.String() != "12.3456789012" || pq[0].EffectiveCost.String() != "12.34" || pq[0].Tags["user:team"] != "platform" || pq[2].Tags != nil || pq[0].Ext["UsageAmount"].Dec.String() != "0.1" || pq[0].Detail.PricingCurrency != "USD" || pq[1].ResourceId != "" {
		t.Errorf("parquet: %+v %+v", pq[0], pq[0].Detail)
	}
}

// awsParquetRow is a FOCUS 1.2 row as AWS Data Exports writes Parquet:
// DECIMAL cost, DOUBLE quantities, millisecond timestamps, Tags a map.
type awsParquetRow struct {
	BillingAccountId   string            `parquet:"BillingAccountId"`
	BillingCurrency    string            `parquet:"BillingCurrency"`
	BillingPeriodStart time.Time         `parquet:"BillingPeriodStart,timestamp(millisecond)"`
	BillingPeriodEnd   time.Time         `parquet:"BillingPeriodEnd,timestamp(millisecond)"`
	ChargePeriodStart  time.Time         `parquet:"ChargePeriodStart,timestamp(millisecond)"`
	ChargePeriodEnd    time.Time         `parquet:"ChargePeriodEnd,timestamp(millisecond)"`
	ChargeCategory     string            `parquet:"ChargeCategory"`
	ChargeClass        *string           `parquet:"ChargeClass,optional"`
	BilledCost         int64             `parquet:"BilledCost,decimal(10:18)"`
	EffectiveCost      float64           `parquet:"EffectiveCost"`
	ConsumedQuantity   *float64          `parquet:"ConsumedQuantity,optional"`
	ConsumedUnit       *string           `parquet:"ConsumedUnit,optional"`
	InvoiceId          string            `parquet:"InvoiceId"`
	PricingCurrency    string            `parquet:"PricingCurrency"`
	ProviderName       string            `parquet:"ProviderName"`
	ResourceId         *string           `parquet:"ResourceId,optional"`
	ServiceName        string            `parquet:"ServiceName"`
	Tags               map[string]string `parquet:"Tags,optional"`
	XServiceCode       string            `parquet:"x_ServiceCode"`
	XUsageAmount       float64           `parquet:"x_UsageAmount"`
}

func awsParquet(t testing.TB) []byte {
	str := func(s string) *string { return &s }
	f := func(v float64) *float64 { return &v }
	day := time.Date(2024, 9, 14, 10, 0, 0, 0, time.UTC)
	base := awsParquetRow{BillingAccountId: "111122223333", BillingCurrency: "USD", BillingPeriodStart: time.Date(2024, 9, 1, 0, 0, 0, 0, time.UTC), BillingPeriodEnd: time.Date(2024, 10, 1, 0, 0, 0, 0, time.UTC),
		ChargePeriodStart: day, ChargePeriodEnd: day.Add(time.Hour), ChargeCategory: "Usage", InvoiceId: "EUINGB24-123", PricingCurrency: "USD", ProviderName: "AWS", ServiceName: "Amazon Elastic Compute Cloud", XServiceCode: "AmazonEC2"}
	rows := []awsParquetRow{base, base, base}
	rows[0].BilledCost, rows[0].EffectiveCost, rows[0].ConsumedQuantity, rows[0].ConsumedUnit = 123456789012, 12.34, f(0.1), str("Hours")
	rows[0].ResourceId, rows[0].Tags, rows[0].XUsageAmount = str("i-0abc"), map[string]string{"user:team": "platform", "user:env": "prod"}, 0.1
	rows[1].BilledCost, rows[1].EffectiveCost, rows[1].Tags = 5000000000, 0.5, map[string]string{"user:team": "data"}
	rows[2].BilledCost, rows[2].EffectiveCost, rows[2].ChargeCategory, rows[2].ChargeClass = 1000000000000, 100, "Purchase", str("Correction")
	var buf bytes.Buffer
	w := parquet.NewGenericWriter[awsParquetRow](&buf)
	if _, err := w.Write(rows); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// The committed Parquet fixture is what the library writes for these rows,
// and reading the bytes the library writes now gives the same records.
func TestParquetFixture(t *testing.T) {
	path := "testdata/focus/aws-focus-1.2.parquet"
	fresh := awsParquet(t)
	if *updateFixtures {
		if err := os.WriteFile(path, fresh, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	committed, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (go test ./producer/input -run ParquetFixture -update-fixtures writes it)", err)
	}
	a, ra := readFixture(t, "fresh.parquet", fresh, Options{})
	b, rb := readFixture(t, "committed.parquet", committed, Options{})
	if len(ra.Errors)+len(rb.Errors) > 0 || len(a) != 3 || !reflect.DeepEqual(costs(a), costs(b)) {
		t.Fatalf("fresh %d rows %v, committed %d rows %v", len(a), ra.Errors, len(b), rb.Errors)
	}
	for i := range a {
		if string(a[i].Record.AppendJSON(nil)) != string(b[i].Record.AppendJSON(nil)) {
			t.Errorf("row %d differs:\n%s\n%s", i, a[i].Record.AppendJSON(nil), b[i].Record.AppendJSON(nil))
		}
	}
}
