package cloudcruiser

import (
	"strings"
	"testing"
	"time"

	"github.com/shopspring/decimal"
)

// FuzzParseUpload checks that no file makes the parser panic, and that an
// accepted file's totals agree with the records it kept.
func FuzzParseUpload(f *testing.F) {
	for _, s := range []string{
		`[]`, `[{}]`, `{"a" 1}`, `[{,}]`, `[1,]`, `[{"Quantity":1e400}]`, `[[]]`, `[["Usage Start"],["x"]]`,
		`[{"Usage Start":"2024-03-01 10:00","Usage End":"2024-03-01 10:00","Account ID":"a","Account Name":"a",` +
			`"Provider":"p","Provider Type":"Public","Product":"p","Meter ID":"m","Meter Name":"m","Quantity":"0.1","Units":"u","Cost":0.2}]`,
	} {
		f.Add(s, false)
		f.Add(s, true)
	}
	f.Fuzz(func(t *testing.T, file string, header bool) {
		loc := time.FixedZone("", -7*3600)
		start := time.Date(2024, 3, 1, 0, 0, 0, 0, loc)
		opt := parseOptions{loc: loc, dayStart: start, dayEnd: start.AddDate(0, 0, 1),
			date: "2024-03-01", zone: "-07:00", keepUpTo: 10, keepFirst: 3}
		if header {
			opt.layout = LayoutHeaderRow
		}
		res, err := parseUpload(strings.NewReader(file), opt)
		if err != nil {
			if err.status != 400 || err.msg == "" {
				t.Fatalf("error %d %q", err.status, err.msg)
			}
			return
		}
		if res.records <= opt.keepUpTo {
			if len(res.kept) != res.records {
				t.Fatalf("kept %d of %d", len(res.kept), res.records)
			}
			sum := decimal.Zero
			for _, r := range res.kept {
				sum = sum.Add(decimal.RequireFromString(r.Quantity))
			}
			if !sum.Equal(res.quantity) {
				t.Fatalf("quantity %s, records sum to %s", res.quantity, sum)
			}
		}
	})
}
