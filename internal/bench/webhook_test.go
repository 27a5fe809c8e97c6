package bench

import (
	"bytes"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/usagefleet/usagefleet/internal/usagegen"
	"github.com/usagefleet/usagefleet/messages"
)

func TestScanRecords(t *testing.T) {
	for name, tc := range map[string]struct {
		body    string
		records int
		cost    string // costString of the tally
		err     string
	}{
		"empty":          {body: ` [ ] `, cost: "0"},
		"one":            {body: `[{"BilledCost":"1.50","BillingCurrency":"USD"}]`, records: 1, cost: "1.50 USD"},
		"currencies":     {body: `[{"BilledCost":"1","BillingCurrency":"USD"},{"BillingCurrency":"EUR","BilledCost":"2.25"},{"BilledCost":"-0.5","BillingCurrency":"USD"}]`, records: 3, cost: "2.25 EUR + 0.5 USD"},
		"a tag named so": {body: `[{"Tags":{"BilledCost":"99","x":[1,{"y":"}"}]},"BilledCost":"1","BillingCurrency":"USD"}]`, records: 1, cost: "1 USD"},
		"escapes":        {body: `[{"ChargeDescription":"a \"quoted\" \\ BilledCost\":\"7","BilledCost":"2","BillingCurrency":"JPY"}]`, records: 1, cost: "2 JPY"},
		"null and none":  {body: "[\n {\"BilledCost\":null,\"BillingCurrency\":\"USD\"},\n {\"ConsumedQuantity\":\"3\",\"n\":12,\"b\":true}\n]", records: 2, cost: "0 (no currency) + 0 USD"},
		"not an array":   {body: `{"BilledCost":"1"}`, err: "body must be a JSON array of objects"},
		"not objects":    {body: `[1,2]`, err: "element 0: not a JSON object"},
		"a number cost":  {body: `[{"BilledCost":1.5}]`, err: "element 0: BilledCost: not a JSON string"},
		"a bad decimal":  {body: `[{"BilledCost":"1e5x"}]`, err: `element 0: BilledCost "1e5x"`},
		"an open string": {body: `[{"ChargeDescription":"abc}]`, err: "element 0: ChargeDescription: the string is not closed"},
		"not closed":     {body: `[{"BilledCost":"1"}`, err: "the array is not closed"},
		"trailing data":  {body: `[{"BilledCost":"1"}] x`, err: "data after the array"},
	} {
		t.Run(name, func(t *testing.T) {
			var tl tally
			err := scanRecords([]byte(tc.body), &tl)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tl.records != tc.records || costString(tl.cost) != tc.cost {
				t.Errorf("%d records, cost %s; want %d, %s", tl.records, costString(tl.cost), tc.records, tc.cost)
			}
		})
	}
}

// TestScanRecordsMatchesTheRecords: a body the webhook destination would
// send (AppendJSON of generated records: tags, descriptions, every cost
// column) totals exactly what the records hold.
func TestScanRecordsMatchesTheRecords(t *testing.T) {
	recs := usagegen.Generate(3000, usagegen.Options{Seed: 7, Start: time.Date(2024, 7, 1, 0, 0, 0, 0, time.UTC), Hours: 5})
	want := map[string]*messages.Sum{}
	body := []byte{'['}
	for i := range recs {
		if i%3 == 1 {
			recs[i].BillingCurrency = "EUR"
		}
		if i > 0 {
			body = append(body, ',')
		}
		body = recs[i].AppendJSON(body)
		if want[recs[i].BillingCurrency] == nil {
			want[recs[i].BillingCurrency] = &messages.Sum{}
		}
		want[recs[i].BillingCurrency].Add(recs[i].BilledCost)
	}
	body = append(body, ']')
	var tl tally
	if err := scanRecords(body, &tl); err != nil {
		t.Fatal(err)
	}
	if tl.records != len(recs) || costString(tl.cost) != costString(want) {
		t.Errorf("%d records, %s; want %d, %s", tl.records, costString(tl.cost), len(recs), costString(want))
	}
}

// TestCountingWebhookCountsAKeyOnce: a request repeated with its
// Idempotency-Key is answered but not counted again; a body over the
// limit is refused with 413 and counts nothing.
func TestCountingWebhookCountsAKeyOnce(t *testing.T) {
	h, err := startCountingWebhook(200)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	post := func(key, body string) int {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, h.url, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		if key != "" {
			req.Header.Set("Idempotency-Key", key)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	one := `[{"BilledCost":"1.25","BillingCurrency":"USD"},{"BilledCost":"2","BillingCurrency":"USD"}]`
	codes := []int{post("k1", one), post("k1", one), post("k2", one), post("", `[{"BilledCost":"`+strings.Repeat("9", 300)+`"}]`)}
	if codes[0] != 200 || codes[1] != 200 || codes[2] != 200 || codes[3] != http.StatusRequestEntityTooLarge {
		t.Errorf("answers %v, want 200 200 200 413", codes)
	}
	c := h.count()
	if c.Records != 4 || costString(c.Cost) != "6.50 USD" || c.DuplicateRequests != 1 || c.Rejected != 1 {
		t.Errorf("held %d records, %s, %d duplicate requests, %d rejected; want 4, 6.50 USD, 1, 1", c.Records, costString(c.Cost), c.DuplicateRequests, c.Rejected)
	}
}

// benchBody is a 1000-record body as the webhook destination sends it.
func benchBody(b *testing.B) []byte {
	b.Helper()
	return usagegen.JSONArray(usagegen.Generate(1000, usagegen.Options{Seed: 7, Start: time.Date(2024, 7, 1, 0, 0, 0, 0, time.UTC), Hours: 1}))
}

// BenchmarkScanRecords: the counting receiver's walk of a body (go test
// -bench ScanRecords ./internal/bench/); ns/op is per 1000 records.
func BenchmarkScanRecords(b *testing.B) {
	body := benchBody(b)
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		var tl tally
		if err := scanRecords(body, &tl); err != nil || tl.records != 1000 {
			b.Fatal(tl.records, err)
		}
	}
}

// indexQuote finds what bytes.IndexByte finds: the first quote, at every
// offset and start, in the word-at-a-time part and past it, with bytes
// around it that are one off a quote ('!' and '#') and high bytes.
func TestIndexQuote(t *testing.T) {
	for n := 0; n < 80; n++ {
		for q := -1; q < n; q++ {
			b := make([]byte, n)
			for i := range b {
				b[i] = "!#\xff\x00a\\"[i%6]
			}
			if q >= 0 {
				b[q] = '"'
				if q+3 < n {
					b[q+3] = '"' // a second quote after the first
				}
			}
			for j := 0; j <= n; j++ {
				want := bytes.IndexByte(b[j:], '"')
				if want >= 0 {
					want += j
				}
				if got := indexQuote(b, j); got != want {
					t.Fatalf("len %d, quote at %d, from %d: got %d, want %d", n, q, j, got, want)
				}
			}
		}
	}
}
