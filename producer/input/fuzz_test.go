package input

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/usagefleet/usagefleet/messages"
)

// fuzzRead reads data in format and holds what every reading must: no
// panic, short errors, and every delivered record valid and carried by
// the wire codec unchanged.
func fuzzRead(t *testing.T, data []byte, format Format, strict bool) {
	var recs []messages.UsageRecord
	res, err := ReadWith("fuzz", bytes.NewReader(data), Options{Format: format, Strict: strict, MaxBytes: 1 << 20}, func(r Row) error {
		recs = append(recs, r.Record)
		return nil
	})
	if err != nil && len(err.Error()) > 1000 {
		t.Fatalf("a %d-byte error", len(err.Error()))
	}
	for _, e := range append(res.Errors, res.Warnings...) {
		if len(e.Error()) > 1000 {
			t.Fatalf("a %d-byte error: %.200s", len(e.Error()), e.Error())
		}
	}
	for i := range recs {
		if errs := recs[i].Validate(); len(errs) > 0 {
			t.Fatalf("a delivered record is invalid: %v", errs)
		}
	}
	if len(recs) == 0 {
		return
	}
	payload, err := messages.EncodeRecords(nil, recs)
	if err != nil {
		t.Fatal(err)
	}
	back, err := messages.DecodeRecords(nil, payload)
	if err != nil {
		t.Fatalf("decoding what was encoded: %v", err)
	}
	for i := range recs {
		if a, b := recs[i].AppendJSON(nil), back[i].AppendJSON(nil); !bytes.Equal(a, b) {
			t.Fatalf("record %d changed on the wire:\n%s\n%s", i, a, b)
		}
	}
}

func addFixtureSeeds(f *testing.F, ext string) {
	paths, _ := filepath.Glob("testdata/focus/*" + ext)
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, false)
	}
}

func FuzzReadCSV(f *testing.F) {
	addFixtureSeeds(f, ".csv")
	f.Add([]byte("\ufeffChargePeriodStart,BilledCost,BillingCurrency,Tags\r\n2024-05-01T10:00:00Z,1.5E-100,USD,\"{\"\"a\"\":1,\"\"b\"\":null}\"\r\n"), false)
	f.Add([]byte("ChargePeriodStart,Weird Col,x_N:int\n2024-05-01,NULL,12\n2024-05-01,\"a\nb\",x\n"), true)
	f.Fuzz(func(t *testing.T, data []byte, strict bool) { fuzzRead(t, data, CSV, strict) })
}

func FuzzReadNDJSON(f *testing.F) {
	addFixtureSeeds(f, ".ndjson")
	f.Add([]byte(`{"ChargePeriodStart":"2024-05-01T10:00:00Z","Tags":{"a":true,"b":1e3,"c":null},"BilledCost":1E-7,"BillingCurrency":"EUR"}`+"\n[1]\n{\"x\":\"NULL\"}\n"), false)
	f.Add([]byte(`{"ChargePeriodStart":"2024-05-01","SkuPriceDetails":{"k":[1]},"Other":1}`), true)
	f.Fuzz(func(t *testing.T, data []byte, strict bool) { fuzzRead(t, data, NDJSON, strict) })
}
