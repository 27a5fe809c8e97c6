package input

import (
	"bytes"
	"fmt"
	"math/big"
	"math/rand/v2"
	"reflect"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/deprecated"
	"github.com/shopspring/decimal"

	"github.com/usagefleet/usagefleet/internal/usagegen"
	"github.com/usagefleet/usagefleet/messages"
)

// pqMixedRow has a column of every kind the reader turns into text, and
// rows that are bad in the ways a Parquet row can be.
type pqMixedRow struct {
	BillingAccountId   string             `parquet:"BillingAccountId"`
	BillingCurrency    *string            `parquet:"BillingCurrency,optional"`
	ChargePeriodStart  time.Time          `parquet:"ChargePeriodStart,timestamp(microsecond)"`
	ChargePeriodEnd    *time.Time         `parquet:"ChargePeriodEnd,optional,timestamp(nanosecond)"`
	BillingPeriodStart int32              `parquet:"BillingPeriodStart,date"`
	BillingPeriodEnd   deprecated.Int96   `parquet:"BillingPeriodEnd"`
	BilledCost         *int64             `parquet:"BilledCost,optional,decimal(4:18)"`
	EffectiveCost      [13]byte           `parquet:"EffectiveCost,decimal(6:30)"`
	ListCost           int32              `parquet:"ListCost,decimal(2:9)"`
	ContractedCost     [8]byte            `parquet:"ContractedCost,decimal(3:18)"`
	PricingQuantity    float32            `parquet:"PricingQuantity"`
	PricingUnit        string             `parquet:"PricingUnit"`
	ConsumedUnit       *string            `parquet:"ConsumedUnit,optional"`
	ConsumedQuantity   *float64           `parquet:"ConsumedQuantity,optional"`
	ChargeCategory     string             `parquet:"ChargeCategory"`
	ServiceName        *string            `parquet:"ServiceName,optional"`
	Tags               map[string]string  `parquet:"Tags,optional"`
	Env                *string            `parquet:"tag:env,optional"`
	XLabels            map[string]int64   `parquet:"x_Labels,optional"`
	XFlag              bool               `parquet:"x_Flag"`
	XCount             int64              `parquet:"x_Count"`
	XNote              *string            `parquet:"x_Note,optional"`
	XAmount            string             `parquet:"x_Amount:decimal"`
	Nested             struct{ A string } `parquet:"Nested"`
}

func mixedParquet(t testing.TB, n int) []byte {
	t.Helper()
	rng := rand.New(rand.NewPCG(7, 13))
	str := func(s string) *string { return &s }
	rows := make([]pqMixedRow, n)
	start := time.Date(2024, 9, 1, 0, 0, 0, 0, time.UTC)
	for i := range rows {
		r := &rows[i]
		r.BillingAccountId = fmt.Sprintf("acct-%d", i%7)
		if i%97 != 5 {
			r.BillingCurrency = str([]string{"USD", "EUR", "JPY"}[i%3])
		}
		r.ChargePeriodStart = start.Add(time.Duration(rng.IntN(720*3600)) * time.Second).Add(time.Duration(rng.IntN(1000)) * time.Microsecond)
		if i%89 != 3 {
			end := r.ChargePeriodStart.Add(time.Hour + time.Duration(rng.IntN(1e9)))
			if i%211 == 17 {
				end = r.ChargePeriodStart.Add(-time.Hour) // ends before it starts
			}
			r.ChargePeriodEnd = &end
		}
		r.BillingPeriodStart = int32(start.Unix() / 86400)
		day := uint32(2440588 + start.Unix()/86400 + 30)
		nanos := uint64(rng.IntN(86400)) * 1e9
		r.BillingPeriodEnd = deprecated.Int96{uint32(nanos), uint32(nanos >> 32), day}
		if i%13 != 0 {
			v := rng.Int64N(2e12) - 1e12
			if i%29 == 1 {
				v = -rng.Int64N(100) // small, negative: -0.00dd
			}
			r.BilledCost = &v
		}
		big := new(big.Int).Lsh(big.NewInt(rng.Int64N(1<<40)), uint(rng.IntN(50)))
		if i%3 == 0 {
			big.Neg(big)
		}
		putTwos(r.EffectiveCost[:], big)
		r.ListCost = rng.Int32() - 1<<30
		putTwos(r.ContractedCost[:], big.SetInt64(rng.Int64()-1<<62))
		r.PricingQuantity = rng.Float32() * 1000
		r.PricingUnit = "Hours"
		if i%5 != 0 {
			q := rng.NormFloat64() * 1e6
			r.ConsumedQuantity = &q
			if i%101 != 9 {
				r.ConsumedUnit = str("GB-Hours")
			}
		}
		r.ChargeCategory = []string{"Usage", "Purchase", "Tax", "Credit", "Adjustment"}[i%5]
		switch {
		case i%53 == 7:
			r.ServiceName = str("NULL")
		case i%7 != 0:
			r.ServiceName = str(strings.Repeat("Service ", 1+i%4))
		}
		if k := rng.IntN(12); k > 0 || i%2 == 0 {
			r.Tags = map[string]string{}
			for j := range k {
				r.Tags[fmt.Sprintf("key%d", j)] = fmt.Sprintf("v\"%d\\\n%s", j, strings.Repeat("é", j))
			}
		}
		if i%11 == 0 {
			r.Env = str("prod")
			if i%22 == 0 && r.Tags != nil {
				r.Tags["env"] = "dev" // conflicts with tag:env
			}
		}
		if k := rng.IntN(4); k > 0 {
			r.XLabels = map[string]int64{}
			for j := range k {
				r.XLabels[fmt.Sprintf("l%d", j)] = rng.Int64() - 1<<62
			}
		}
		r.XFlag = i%2 == 0
		r.XCount = rng.Int64()
		if i%4 != 0 {
			r.XNote = str(strings.Repeat("note ", rng.IntN(40)))
		}
		r.XAmount = fmt.Sprintf("%d.%03d", rng.IntN(1000), rng.IntN(1000))
		switch i % 37 {
		case 0:
			r.XAmount = "12,5" // not a decimal
		case 1:
			r.XAmount = "NULL"
		}
		if i == 1500 {
			big := strings.Repeat("x", MaxCellBytes+1) // over the cell limit
			r.XNote = &big
		}
		r.Nested.A = "not read"
	}
	var buf bytes.Buffer
	w := parquet.NewGenericWriter[pqMixedRow](&buf, parquet.MaxRowsPerRowGroup(700), parquet.PageBufferSize(2048))
	if _, err := w.Write(rows); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// putTwos writes n as big-endian two's complement into b.
func putTwos(b []byte, n *big.Int) {
	m := new(big.Int).Set(n)
	if m.Sign() < 0 {
		m.Add(m, new(big.Int).Lsh(big.NewInt(1), uint(len(b)*8)))
	}
	m.FillBytes(b)
}

// The reader reads a batch of rows column by column on several cores; it
// must give what reading row by row gave (oldReadParquet): the same
// records, at the same rows, and the same problems, whatever GOMAXPROCS.
func TestParquetReadsAsRowByRow(t *testing.T) {
	var gen bytes.Buffer
	if _, err := usagegen.WriteFocusCSV(&gen, 3000, usagegen.Options{Seed: 3}); err != nil {
		t.Fatal(err)
	}
	var focus bytes.Buffer
	if err := usagegen.CSVToParquet(&focus, bytes.NewReader(gen.Bytes())); err != nil {
		t.Fatal(err)
	}
	files := []struct {
		name string
		data []byte
	}{
		{"mixed.parquet", mixedParquet(t, 3000)},
		{"generated.parquet", focus.Bytes()},
		{"fixture.parquet", awsParquet(t)},
		{"arrow-rs.parquet", arrowRSFixture(t)}, // another writer: see parquet_arrow_test.go
	}
	for _, f := range files {
		var want []Row
		old := &collector{file: f.name}
		pf, err := parquet.OpenFile(bytes.NewReader(f.data), int64(len(f.data)))
		if err != nil {
			t.Fatal(err)
		}
		if err := oldReadParquet(old, pf, func(r Row) error { want = append(want, r); return nil }); err != nil {
			t.Fatal(err)
		}
		if len(want) == 0 {
			t.Fatalf("%s: no good rows: %d errors", f.name, len(old.list()))
		}
		if f.name == "mixed.parquet" && (len(old.list()) == 0 || len(old.warns) == 0) {
			t.Fatalf("%s: made with bad rows and a nested column: %d errors, warnings %v", f.name, len(old.list()), old.warns)
		}
		for _, procs := range []int{1, 2, 5} {
			t.Run(fmt.Sprintf("%s/procs=%d", f.name, procs), func(t *testing.T) {
				defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(procs))
				var got []Row
				res, err := ReadWith(f.name, bytes.NewReader(f.data), Options{}, func(r Row) error {
					got = append(got, r)
					return nil
				})
				if err != nil {
					t.Fatal(err)
				}
				if !reflect.DeepEqual(res.Errors, old.list()) {
					t.Errorf("errors:\n got %v\nwant %v", res.Errors, old.list())
				}
				if !reflect.DeepEqual(res.Warnings, old.warns) {
					t.Errorf("warnings:\n got %v\nwant %v", res.Warnings, old.warns)
				}
				if len(got) != len(want) {
					t.Fatalf("%d rows, want %d", len(got), len(want))
				}
				for i := range got {
					if !reflect.DeepEqual(got[i], want[i]) {
						t.Fatalf("row %d:\n got %+v\nwant %+v", i, got[i], want[i])
					}
				}
			})
		}
	}
}

// A reader that stops taking rows (fn's error) gets that error back, at
// the row it stopped, with the reading goroutines gone.
func TestParquetStopsAtFnError(t *testing.T) {
	data := mixedParquet(t, 3000)
	stop := fmt.Errorf("enough")
	n := 0
	_, err := ReadWith("m.parquet", bytes.NewReader(data), Options{}, func(r Row) error {
		n++
		if n == 1000 {
			return stop
		}
		return nil
	})
	if err != stop || n != 1000 {
		t.Fatalf("err %v after %d rows", err, n)
	}
}

// appendDecimal writes what messages.FromBig(decimal.New(n, -scale))
// did, without math/big.
func TestAppendDecimal(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	ns := []int64{0, 1, -1, 5, -5, 9, 10, -10, 99, 100, 12345, -12345, 1 << 62, -1 << 63, 1<<63 - 1}
	for range 2000 {
		ns = append(ns, rng.Int64()>>rng.IntN(63), -(rng.Int64() >> rng.IntN(63)))
	}
	for _, n := range ns {
		for _, scale := range []int32{-3, -1, 0, 1, 2, 3, 6, 18, 19, 20, 25} {
			want := messages.FromBig(decimal.New(n, -scale)).String()
			if got := string(appendDecimal(nil, n, scale)); got != want {
				t.Fatalf("appendDecimal(%d, %d) = %q, want %q", n, scale, got, want)
			}
		}
	}
}

// What a Parquet file's reading holds is its window of batches, not the
// file: with a caller slower than the workers, no more batches are ever
// made than the window has slots, however many the file has.
func TestParquetMemoryIsTheWindow(t *testing.T) {
	data := mixedParquet(t, 3000) // 15 batches
	for _, procs := range []int{1, 2, 4} {
		t.Run(fmt.Sprintf("procs=%d", procs), func(t *testing.T) {
			defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(procs))
			made := -1
			parquetBatchesHook = func(n int) { made = n }
			defer func() { parquetBatchesHook = nil }()
			rows := 0
			_, err := ReadWith("m.parquet", bytes.NewReader(data), Options{}, func(Row) error {
				if rows++; rows%100 == 0 {
					time.Sleep(time.Millisecond) // the workers get ahead
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if made < 1 || made > pqWindow(procs) {
				t.Fatalf("%d batches made for %d rows, the window is %d", made, rows, pqWindow(procs))
			}
		})
	}
}
