package input

import (
	"fmt"
	"math/big"
	"os"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"github.com/usagefleet/usagefleet/messages"
)

// testdata/focus/arrow-rs-focus-1.2.parquet was written by another Parquet
// implementation than the one this package reads with: arrow-rs, the Rust
// Arrow crates (through parquet-wasm; testdata/arrow/gen.js writes it, run
// with node). Spark, DataFusion and Arrow-based exporters lay files out as
// it does: ZSTD pages, dictionary-encoded strings, data page v2, a MAP
// column as map<entries<key, value>>, row groups of 300 rows, nulls in the
// optional columns, a null map and an empty one. Every value is a function
// of the row number; this test computes them and compares every record.
func arrowRSFixture(t testing.TB) []byte {
	t.Helper()
	data, err := os.ReadFile("testdata/focus/arrow-rs-focus-1.2.parquet")
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// arrowRSWant is what gen.js wrote in row i, as this package reads it.
type arrowRSWant struct {
	start, end    time.Time
	billed        string
	effective     string // "": null
	quantity      string // "": null
	unit          string
	resource      string
	service       string
	category      string
	account       string
	tags          map[string]string // nil: null or empty
	usageAmount   string
	correctionRow bool
}

func arrowRSRow(i int) arrowRSWant {
	t0 := time.Date(2024, 9, 1, 0, 0, 0, 0, time.UTC)
	w := arrowRSWant{
		start:       t0.Add(time.Duration(i%720) * time.Hour),
		end:         t0.Add(time.Duration(i%720+1) * time.Hour),
		unit:        "Hours",
		service:     "Amazon Elastic Compute Cloud",
		category:    "Usage",
		account:     "11112222333" + strconv.Itoa(i%3),
		usageAmount: strconv.FormatFloat(float64(i)*0.1, 'g', -1, 64),
	}
	// DECIMAL(18,10), unscaled i*1234567+1, negative every 97th row.
	unscaled := big.NewInt(int64(i)*1234567 + 1)
	if i%97 == 96 {
		unscaled.Neg(unscaled)
	}
	w.billed = messages.FromBig(decimal.NewFromBigInt(unscaled, -10)).String()
	if i%10 != 9 {
		w.effective = strconv.FormatFloat(float64(i)/8, 'g', -1, 64)
	}
	if i%7 != 6 {
		w.quantity = strconv.FormatFloat(float64(i)*0.1, 'g', -1, 64)
	} else {
		w.unit = ""
	}
	if i%3 != 2 {
		w.resource = fmt.Sprintf("i-%08x", i)
	}
	if i%7 == 0 {
		w.service = `Amazon "S3", Standard – été`
	}
	if i%50 == 49 {
		w.category, w.correctionRow = "Purchase", true
	}
	if i%11 != 0 && i%13 != 0 {
		w.tags = map[string]string{"user:team": "team-" + strconv.Itoa(i%4)}
		if i%2 == 0 {
			w.tags["user:env"] = map[bool]string{true: "prod", false: "dev"}[i%3 == 0]
		}
		if i%5 == 0 {
			w.tags["user:cost center"] = `Zürich, "ops"`
		}
	}
	return w
}

func TestParquetWrittenByArrowRS(t *testing.T) {
	data := arrowRSFixture(t)
	for _, procs := range []int{1, 2} {
		t.Run(fmt.Sprintf("procs=%d", procs), func(t *testing.T) {
			defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(procs))
			rows, res := readFixture(t, "arrow-rs-focus-1.2.parquet", data, Options{})
			if len(res.Errors) > 0 || len(res.Warnings) > 0 {
				t.Fatalf("errors %v, warnings %v", res.Errors, res.Warnings)
			}
			if len(rows) != 1000 {
				t.Fatalf("%d rows, want 1000", len(rows))
			}
			var sum messages.Sum
			for i, row := range rows {
				r, w := row.Record, arrowRSRow(i)
				if row.Line != i+1 {
					t.Fatalf("row %d: line %d", i, row.Line)
				}
				str := func(d messages.Decimal) string {
					if !d.IsSet() {
						return ""
					}
					return d.String()
				}
				switch {
				case !r.ChargePeriodStart.Equal(w.start) || !r.ChargePeriodEnd.Equal(w.end):
					t.Fatalf("row %d: period %s..%s, want %s..%s", i, r.ChargePeriodStart, r.ChargePeriodEnd, w.start, w.end)
				case str(r.BilledCost) != w.billed || str(r.EffectiveCost) != w.effective:
					t.Fatalf("row %d: BilledCost %q EffectiveCost %q, want %q %q", i, str(r.BilledCost), str(r.EffectiveCost), w.billed, w.effective)
				case str(r.ConsumedQuantity) != w.quantity || r.ConsumedUnit != w.unit:
					t.Fatalf("row %d: ConsumedQuantity %q %q, want %q %q", i, str(r.ConsumedQuantity), r.ConsumedUnit, w.quantity, w.unit)
				case r.ResourceId != w.resource || r.ServiceName != w.service || r.ChargeCategory != w.category || r.BillingAccountId != w.account:
					t.Fatalf("row %d: %q %q %q %q, want %q %q %q %q", i, r.ResourceId, r.ServiceName, r.ChargeCategory, r.BillingAccountId, w.resource, w.service, w.category, w.account)
				case r.BillingCurrency != "USD" || r.ProviderName != "AWS" || r.InvoiceId != "EUINGB24-123":
					t.Fatalf("row %d: %q %q %q", i, r.BillingCurrency, r.ProviderName, r.InvoiceId)
				case len(r.Tags) != len(w.tags):
					t.Fatalf("row %d: tags %v, want %v", i, r.Tags, w.tags)
				case r.Ext["ServiceCode"].Str != "AmazonEC2" || r.Ext["UsageAmount"].Dec.String() != w.usageAmount:
					t.Fatalf("row %d: ext %v, want UsageAmount %s", i, r.Ext, w.usageAmount)
				case (r.Detail.ChargeClass == "Correction") != w.correctionRow:
					t.Fatalf("row %d: ChargeClass %q", i, r.Detail.ChargeClass)
				}
				for k, v := range w.tags {
					if r.Tags[k] != v {
						t.Fatalf("row %d: tag %q = %q, want %q", i, k, r.Tags[k], v)
					}
				}
				sum.Add(r.BilledCost)
			}
			// The exact total of the unscaled values over 10^10.
			want := new(big.Int)
			for i := range 1000 {
				v := big.NewInt(int64(i)*1234567 + 1)
				if i%97 == 96 {
					v.Neg(v)
				}
				want.Add(want, v)
			}
			if got, w := sum.Decimal().String(), messages.FromBig(decimal.NewFromBigInt(want, -10)).String(); got != w {
				t.Errorf("BilledCost total %s, want %s", got, w)
			}
		})
	}
}
