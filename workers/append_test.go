package workers

import (
	"errors"
	"testing"

	"github.com/usagefleet/usagefleet/messages"
)

// deliveredCost sums a part's cost per currency in runs; what it returns
// is what adding every record that was not rejected gives, whatever the
// order of currencies, unset costs and rejects.
func TestDeliveredCostIsThePerRecordSum(t *testing.T) {
	rec := func(cur, cost string) messages.UsageRecord {
		r := messages.UsageRecord{BillingCurrency: cur}
		if cost != "" {
			r.BilledCost = messages.MustDecimal(cost)
		}
		return r
	}
	cases := []struct {
		name     string
		recs     []messages.UsageRecord
		rejected map[int]bool
	}{
		{"empty", nil, nil},
		{"one currency", []messages.UsageRecord{rec("USD", "1.5"), rec("USD", "0.25"), rec("USD", "-0.75")}, nil},
		{"alternating", []messages.UsageRecord{rec("USD", "1"), rec("EUR", "2.125"), rec("USD", "3"), rec("", "4"), rec("EUR", "0.000001")}, nil},
		{"unset costs", []messages.UsageRecord{rec("USD", ""), rec("EUR", ""), rec("USD", "1.10"), rec("JPY", "")}, nil},
		{"sums to zero", []messages.UsageRecord{rec("USD", "1.5"), rec("USD", "-1.5")}, nil},
		{"large", []messages.UsageRecord{rec("USD", "92233720368547758.07"), rec("USD", "92233720368547758.07"), rec("USD", "0.001")}, nil},
		{"rejected", []messages.UsageRecord{rec("USD", "1"), rec("EUR", "2"), rec("USD", "4"), rec("EUR", "8")}, map[int]bool{1: true, 2: true}},
		{"all rejected", []messages.UsageRecord{rec("USD", "1"), rec("EUR", "2")}, map[int]bool{0: true, 1: true}},
	}
	for _, c := range cases {
		var want messages.CurrencySums
		for i := range c.recs {
			if !c.rejected[i] {
				want.Add(c.recs[i].BillingCurrency, c.recs[i].BilledCost)
			}
		}
		sameSums(t, c.name, deliveredCost(c.recs, c.rejected), want)

		// emit counts the cost of every record of its unit, refused by
		// the encoder or not, and none of those outside it (here the
		// rejected ones).
		b := &encodedPart{seq: 7, recs: c.recs}
		for i := range c.recs {
			switch {
			case c.rejected[i]:
				b.ends = append(b.ends, skipped)
			case i%3 == 2:
				b.ends = append(b.ends, refused)
				b.errs = append(b.errs, encodeErr{i, errors.New("refused")})
			default:
				b.rows = append(b.rows, 'x')
				b.ends = append(b.ends, int32(len(b.rows)))
			}
		}
		stats := map[uint64]*seqStat{}
		if err := b.emit(Unit{}, stats, true, func(RecordRef, *messages.UsageRecord, []byte, error) error { return nil }); err != nil {
			t.Fatal(err)
		}
		var got messages.CurrencySums
		if st := stats[7]; st != nil {
			got = st.cost
		}
		sameSums(t, c.name+" (emit)", got, want)
	}
}

func sameSums(t *testing.T, name string, got, want messages.CurrencySums) {
	t.Helper()
	gm, wm := got.Decimals(), want.Decimals()
	if len(gm) != len(wm) {
		t.Errorf("%s: got %v, want %v", name, gm, wm)
		return
	}
	for cur, w := range wm {
		if g, ok := gm[cur]; !ok || !g.Big().Equal(w.Big()) {
			t.Errorf("%s: %q got %v, want %v", name, cur, gm, wm)
		}
	}
}
