package messages

import (
	"bytes"
	"sort"
	"testing"
)

// TestAppendRowMatchesAppendRecord: a part built from rows encoded ahead
// (RowWriter.Append, UseRow, AppendRow) is byte for byte the part built from
// the records (Use, AppendRecord), whatever columns each record leaves
// unset.
func TestAppendRowMatchesAppendRecord(t *testing.T) {
	full := focusRecord()
	sparse := sampleRecord()
	sparse.Tags = nil
	delete(sparse.Ext, "Cores")
	bare := goldenRecords()[1]
	big := sampleRecord()
	big.Ext["Zeta"] = ExtStr(string(bytes.Repeat([]byte("z"), 70000)))
	big.Tags = map[string]string{"a": "1", "b": "2", "c": "3", "d": "4", "e": "5", "f": "6", "g": "7", "h": "8", "i": "9", "j": "10", "k": "11", "l": "12", "m": "13", "n": "14", "o": "15", "p": "16", "q": "17"}
	big.ConsumedQuantity = MustDecimal("-123456789012345678901234567890.5")
	noDetail := focusRecord()
	noDetail.Detail.BillingPeriodEnd = noDetail.Detail.BillingPeriodStart.Add(0)
	noDetail.Detail.PricingCurrency = ""
	ext := []string{"Cores", "Project", "Rate", "Zeta"}
	sort.Strings(ext)
	for name, recs := range map[string][]UsageRecord{
		"one full":    {full},
		"same":        {sparse, sparse},
		"mixed":       {full, sparse, bare, noDetail},
		"bare first":  {bare, full, sparse},
		"big values":  {big, bare, full},
		"only sparse": {sparse, bare},
	} {
		t.Run(name, func(t *testing.T) {
			var want PartEncoder
			for i := range recs {
				want.Use(&recs[i])
			}
			wb := want.AppendHeader(nil, len(recs))
			for i := range recs {
				wb = want.AppendRecord(wb, &recs[i])
			}
			var got PartEncoder
			type row struct {
				u    RowUse
				vals []byte
			}
			var rows []row
			var w RowWriter
			for i := range recs {
				vals, u, ok := w.Append(nil, &recs[i], ext)
				if !ok {
					t.Fatalf("record %d: extension outside %v", i, ext)
				}
				rows = append(rows, row{u, vals})
				got.UseRow(u, ext)
			}
			gb := got.AppendHeader(nil, len(recs))
			for _, r := range rows {
				gb = got.AppendRow(gb, r.u, r.vals, ext)
			}
			if got.Schema() != want.Schema() {
				t.Errorf("schema %d, want %d", got.Schema(), want.Schema())
			}
			if !bytes.Equal(gb, wb) {
				t.Fatalf("rows give %d bytes, records %d: they differ", len(gb), len(wb))
			}
		})
	}
	var w RowWriter
	if _, _, ok := w.Append(nil, &full, []string{"Other"}); ok {
		t.Error("a record with an extension outside the names was taken")
	}
}
