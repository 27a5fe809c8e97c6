package cloudzero

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/usagefleet/usagefleet/internal/usagegen"
	"github.com/usagefleet/usagefleet/messages"
	"github.com/usagefleet/usagefleet/producer/input"
)

// fixtureRecords are the records of every FOCUS export in the producer's
// fixtures (CSV, NDJSON, Parquet).
func fixtureRecords(t testing.TB) []messages.UsageRecord {
	t.Helper()
	dir := filepath.Join("..", "..", "producer", "input", "testdata", "focus")
	files, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var recs []messages.UsageRecord
	for _, f := range files {
		rows, errs, err := input.ReadFile(filepath.Join(dir, f.Name()))
		if err != nil || len(errs) > 0 {
			t.Fatalf("%s: %v %v", f.Name(), err, errs)
		}
		for _, r := range rows {
			recs = append(recs, r.Record)
		}
	}
	if len(recs) < 15 {
		t.Fatalf("%d fixture records", len(recs))
	}
	return recs
}

// unusualRecords are records the direct path must leave to
// EncodeRowWarnings (a refusal or a repair), and some it must write.
func unusualRecords() []messages.UsageRecord {
	base := fullRecord()
	var out []messages.UsageRecord
	add := func(f func(r *messages.UsageRecord)) {
		r := base.Clone()
		f(&r)
		out = append(out, r)
	}
	add(func(r *messages.UsageRecord) {})
	add(func(r *messages.UsageRecord) { r.ResourceId = "" })                       // tags dropped
	add(func(r *messages.UsageRecord) { r.Tags["bad key"] = "v" })                 // repaired
	add(func(r *messages.UsageRecord) { r.Tags = nil; r.ResourceId = "" })         // no tags, no resource
	add(func(r *messages.UsageRecord) { r.BilledCost = messages.Decimal{} })       // refused
	add(func(r *messages.UsageRecord) { r.ChargePeriodStart = time.Time{} })       // refused
	add(func(r *messages.UsageRecord) { r.ChargeCategory = "Bogus" })              // refused
	add(func(r *messages.UsageRecord) { r.ChargePeriodEnd = time.Time{} })         // fine
	add(func(r *messages.UsageRecord) { r.ChargeDescription = "tab\there \"q\"" }) // escapes
	add(func(r *messages.UsageRecord) { r.ChargeDescription = "ünïcødé \u2028 \x01" })
	add(func(r *messages.UsageRecord) {
		r.ChargePeriodEnd = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC) // refused
	})
	add(func(r *messages.UsageRecord) { r.BillingCurrency = "EUR" })
	add(func(r *messages.UsageRecord) {
		r.Tags = map[string]string{}
		for i := range 17 {
			r.Tags[fmt.Sprintf("k%02d", i)] = "v"
		}
	})
	add(func(r *messages.UsageRecord) {
		r.Tags = map[string]string{}
		for i := range 16 {
			r.Tags[fmt.Sprintf("k%02d", 15-i)] = fmt.Sprint(i)
		}
	})
	add(func(r *messages.UsageRecord) {
		r.Tags = map[string]string{"n": "1.5E-3", "t": "true", "f": "false", "z": "", "s": "x\"y"}
		r.TagTypes = map[string]messages.TagType{"n": messages.TagNumber, "t": messages.TagBool, "f": messages.TagBool, "z": messages.TagNull}
	})
	for _, cat := range []string{"", "Usage", "Purchase", "Credit", "Tax", "Adjustment"} {
		add(func(r *messages.UsageRecord) { r.ChargeCategory = cat })
		add(func(r *messages.UsageRecord) { r.ChargeCategory = cat; r.ResourceId = ""; r.Tags = nil })
		add(func(r *messages.UsageRecord) {
			r.ChargeCategory = cat
			r.Ext = map[string]messages.ExtValue{"ChargeClass": messages.ExtStr("Correction")}
		})
		add(func(r *messages.UsageRecord) {
			r.ChargeCategory = cat
			r.Ext = map[string]messages.ExtValue{"CommitmentDiscountId": messages.ExtStr("cd-1"), "Zed": messages.ExtI(3)}
		})
		add(func(r *messages.UsageRecord) {
			r.ChargeCategory = cat
			r.Ext = map[string]messages.ExtValue{"CommitmentDiscountCategory": messages.ExtI(1), "ChargeClass": messages.ExtDec(dec("1.5"))}
		})
		add(func(r *messages.UsageRecord) {
			r.ChargeCategory = cat
			r.Detail = &messages.Detail{CommitmentDiscountCategory: "Spend", ChargeClass: "Correction"}
		})
		add(func(r *messages.UsageRecord) {
			r.ChargeCategory = cat
			r.Detail = &messages.Detail{CommitmentDiscountId: "cd-2"}
			r.Ext = map[string]messages.ExtValue{"ChargeClass": messages.ExtStr("Correction")}
		})
		add(func(r *messages.UsageRecord) {
			r.ChargeCategory = cat
			r.EffectiveCost = messages.Decimal{}
			r.Ext = map[string]messages.ExtValue{"CommitmentDiscountId": messages.ExtStr("cd-3")}
		})
	}
	return out
}

// checkPartRows reads payload with a PartReader and checks, record by
// record, that every row EncodePartRow writes is byte for byte
// EncodeRowWarnings' row of the record decoded whole (no error, no
// warning), and that Full gives that record. It returns how many rows the
// direct path wrote.
func checkPartRows(t *testing.T, d *Destination, payload []byte) (direct, total int) {
	t.Helper()
	want, err := messages.DecodeRecordsAs(nil, payload, messages.SchemaVersion)
	if err != nil {
		t.Fatal(err)
	}
	var pr messages.PartReader
	if !pr.Reset(payload, messages.SchemaVersion) || pr.Len() != len(want) {
		t.Fatalf("Reset refused a part of %d records", len(want))
	}
	recs := make([]messages.UsageRecord, len(want))
	for i := range want {
		r := &recs[i]
		if err := pr.Next(r); err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
		row, ok := d.EncodePartRow([]byte("prefix"), r, &pr)
		wrow, w, werr := d.EncodeRowWarnings([]byte("prefix"), &want[i])
		if ok {
			direct++
			if werr != nil || w != 0 || !bytes.Equal(row, wrow) {
				t.Fatalf("record %d: direct row\n%s\nEncodeRowWarnings (%d warnings, %v)\n%s", i, row, w, werr, wrow)
			}
		} else if string(row) != "prefix" {
			t.Fatalf("record %d: declined, and dst changed: %s", i, row)
		}
		if err := pr.Full(r); err != nil {
			t.Fatalf("record %d: Full: %v", i, err)
		}
		frow, fw, ferr := d.EncodeRowWarnings(nil, r)
		wrow, w, werr = d.EncodeRowWarnings(nil, &want[i])
		if !bytes.Equal(frow, wrow) || fw != w || fmt.Sprint(ferr) != fmt.Sprint(werr) {
			t.Fatalf("record %d: Full's record encodes as\n%s\nnot\n%s", i, frow, wrow)
		}
	}
	if !pr.Done() {
		t.Fatal("not Done after every record")
	}
	return direct, len(want)
}

func partDestination(t testing.TB, currency string, maxBody int) *Destination {
	t.Helper()
	d, err := New("cz", Settings{BaseURL: "http://127.0.0.1:1", ConnectionID: testConn, APIKey: newSecret(), Currency: currency, MaxBodyBytes: maxBody})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// TestEncodePartRowIdentity: over every FOCUS fixture, generated parts as
// the bench publishes them, the varied records of the benchmarks and the
// unusual ones, the direct rows are AppendRowRepaired's bytes.
func TestEncodePartRowIdentity(t *testing.T) {
	sets := map[string][]messages.UsageRecord{
		"fixtures": fixtureRecords(t),
		"varied":   variedRecords(500),
		"unusual":  unusualRecords(),
	}
	for seed := range uint64(4) {
		sets[fmt.Sprintf("usagegen-%d", seed)] = usagegen.Generate(1000, usagegen.Options{Seed: seed, Hours: 1})
	}
	for name, recs := range sets {
		for _, cur := range []string{"", "USD"} {
			for _, maxBody := range []int{0, 1024} {
				t.Run(fmt.Sprintf("%s/%q/%d", name, cur, maxBody), func(t *testing.T) {
					payload, err := messages.EncodeRecords(nil, recs)
					if err != nil {
						t.Fatal(err)
					}
					d := partDestination(t, cur, maxBody)
					direct, total := checkPartRows(t, d, payload)
					t.Logf("%d of %d rows written directly", direct, total)
					// The common case takes the direct path (else this
					// test would pass with a path that never runs).
					if (name == "varied" || name[:3] == "usa") && cur == "" && maxBody == 0 && direct < total*9/10 {
						t.Errorf("only %d of %d rows written directly", direct, total)
					}
					if name == "fixtures" && cur == "" && maxBody == 0 && direct == 0 {
						t.Error("no fixture row written directly")
					}
				})
			}
		}
	}
}

// TestEncodePartRowDeclines: what must go the whole record's way does.
func TestEncodePartRowDeclines(t *testing.T) {
	d := partDestination(t, "USD", 0)
	for i, f := range []func(r *messages.UsageRecord){
		func(r *messages.UsageRecord) { r.ResourceId = "" },
		func(r *messages.UsageRecord) { r.Tags["bad key"] = "v" },
		func(r *messages.UsageRecord) { r.BilledCost = messages.Decimal{} },
		func(r *messages.UsageRecord) { r.ChargeCategory = "Bogus" },
		func(r *messages.UsageRecord) { r.BillingCurrency = "EUR" },
		func(r *messages.UsageRecord) { r.ChargeDescription = string(make([]byte, 5_000_000)) },
	} {
		r := fullRecord()
		f(&r)
		payload, err := messages.EncodeRecords(nil, []messages.UsageRecord{r})
		if err != nil {
			t.Fatal(err)
		}
		if direct, _ := checkPartRows(t, d, payload); direct != 0 {
			t.Errorf("case %d: written directly", i)
		}
	}
	// A tag key that repeats in the payload: the map keeps the last value.
	r := fullRecord()
	r.Tags = map[string]string{"aa": "first", "ab": "second"}
	payload, err := messages.EncodeRecords(nil, []messages.UsageRecord{r})
	if err != nil {
		t.Fatal(err)
	}
	dup := bytes.Replace(payload, []byte("\xa2ab"), []byte("\xa2aa"), 1)
	if bytes.Equal(dup, payload) {
		t.Fatal("no tag key to repeat")
	}
	if direct, _ := checkPartRows(t, d, dup); direct != 0 {
		t.Error("a repeated tag key written directly")
	}
}

// FuzzEncodePartRow: whatever the payload, a row the direct path writes is
// the whole record's row.
func FuzzEncodePartRow(f *testing.F) {
	for _, recs := range [][]messages.UsageRecord{unusualRecords(), variedRecords(20), usagegen.Generate(20, usagegen.Options{Seed: 9, Hours: 1})} {
		payload, err := messages.EncodeRecords(nil, recs)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(payload)
	}
	d := partDestination(f, "", 0)
	f.Fuzz(func(t *testing.T, payload []byte) { _ = checkAnyPart(t, d, payload) })
}

// checkAnyPart: whatever payload holds, a row EncodePartRow writes is the
// row EncodeRowWarnings writes for the record decoded whole. It returns
// how many direct rows of a part that decodes it compared.
func checkAnyPart(t *testing.T, d *Destination, payload []byte) (compared int) {
	t.Helper()
	want, werr := messages.DecodeRecordsAs(nil, payload, messages.SchemaVersion)
	var pr messages.PartReader
	if !pr.Reset(payload, messages.SchemaVersion) {
		return 0
	}
	var r messages.UsageRecord
	for i := 0; i < pr.Len(); i++ {
		if err := pr.Next(&r); err != nil {
			if werr == nil {
				t.Fatalf("record %d: Next: %v; DecodeRecordsAs read the part", i, err)
			}
			return compared
		}
		row, ok := d.EncodePartRow(nil, &r, &pr)
		if werr != nil {
			continue // the pool decodes the part whole, and refuses it
		}
		wrow, w, err := d.EncodeRowWarnings(nil, &want[i])
		if ok && (err != nil || w != 0 || !bytes.Equal(row, wrow)) {
			t.Fatalf("record %d: direct row\n%s\nEncodeRowWarnings (%d warnings, %v)\n%s", i, row, w, err, wrow)
		}
		if ok {
			compared++
		}
	}
	if werr == nil && !pr.Done() {
		t.Fatal("DecodeRecordsAs read the part, PartReader is not Done")
	}
	return compared
}

// TestEncodePartRowMutants is FuzzEncodePartRow over seeded random
// mutations of encoded parts (bytes flipped, set, cut), so every run
// checks thousands of malformed and odd payloads.
func TestEncodePartRowMutants(t *testing.T) {
	d := partDestination(t, "", 0)
	rng := rand.New(rand.NewPCG(13, 13))
	decoded, compared := 0, 0
	for _, recs := range [][]messages.UsageRecord{unusualRecords(), variedRecords(20), usagegen.Generate(20, usagegen.Options{Seed: 9, Hours: 1})} {
		payload, err := messages.EncodeRecords(nil, recs)
		if err != nil {
			t.Fatal(err)
		}
		for range 3000 {
			m := append([]byte(nil), payload...)
			for range 1 + rng.IntN(3) {
				i := rng.IntN(len(m))
				switch rng.IntN(4) {
				case 0:
					m[i] ^= 1 << rng.IntN(8)
				case 1:
					m[i] = byte(rng.IntN(256))
				case 2:
					m[i] = []byte{0xc0, 0xa0, 0x90, 0x80, 0xc3, 0xd4}[rng.IntN(6)]
				default:
					m = m[:i]
				}
				if len(m) == 0 {
					break
				}
			}
			if n := checkAnyPart(t, d, m); n > 0 {
				decoded++
				compared += n
			}
		}
	}
	t.Logf("%d mutants decoded, %d direct rows compared", decoded, compared)
	if decoded < 100 {
		t.Errorf("only %d mutants decoded: the test checks too little", decoded)
	}
}
