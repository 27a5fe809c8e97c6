// Package usagegen generates realistic usage records: FOCUS fields with
// varied accounts, services, SKUs, regions, tags and exact decimal costs.
// The demo, the tests and the benchmark publish what it makes.
package usagegen

import (
	"fmt"
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/usagefleet/usagefleet/messages"
)

var (
	services = []struct{ name, category, unit string }{
		{"Compute", "Compute", "Hours"},
		{"Object Storage", "Storage", "GB-Hours"},
		{"Managed Database", "Databases", "Hours"},
		{"Load Balancer", "Networking", "LCU-Hours"},
		{"Data Transfer", "Networking", "GB"},
		{"Functions", "Compute", "Requests"},
	}
	regions = []string{"eu-west-1", "eu-central-1", "us-east-1", "us-west-2", "ap-southeast-2"}
	teams   = []string{"billing", "search", "payments", "platform", "data"}
	envs    = []string{"prod", "staging", "dev"}
)

// Options shape what Generate makes.
type Options struct {
	Seed    uint64
	Start   time.Time // first hour (truncated to the hour)
	Hours   int       // records spread over this many hours (default 24)
	Account string    // BillingAccountId (default "acct-1000")
}

// Generate makes n records. Costs have up to 10 fraction digits; the same
// options always give the same records.
func Generate(n int, o Options) []messages.UsageRecord {
	if o.Hours <= 0 {
		o.Hours = 24
	}
	if o.Account == "" {
		o.Account = "acct-1000"
	}
	if o.Start.IsZero() {
		o.Start = time.Date(2024, 8, 1, 0, 0, 0, 0, time.UTC)
	}
	start := o.Start.UTC().Truncate(time.Hour)
	rng := rand.New(rand.NewPCG(o.Seed, o.Seed^0x9e3779b97f4a7c15))
	out := make([]messages.UsageRecord, n)
	for i := range out {
		s := services[rng.IntN(len(services))]
		hour := start.Add(time.Duration(rng.IntN(o.Hours)) * time.Hour)
		at := hour.Add(time.Duration(rng.IntN(3600)) * time.Second)
		sub := rng.IntN(40)
		qty := messages.MustDecimal(strconv.Itoa(rng.IntN(1000)) + "." + pad(rng.IntN(1000000), 6))
		cost := messages.MustDecimal(strconv.Itoa(rng.IntN(50)) + "." + pad(rng.IntN(10000000000), 10))
		region := regions[rng.IntN(len(regions))]
		r := messages.UsageRecord{
			ChargePeriodStart:  at,
			ChargePeriodEnd:    at.Add(time.Duration(1+rng.IntN(3599)) * time.Second),
			BillingAccountId:   o.Account,
			BillingAccountName: "Example Corp",
			SubAccountId:       fmt.Sprintf("sub-%03d", sub),
			SubAccountName:     fmt.Sprintf("project %d", sub),
			ProviderName:       "Example Cloud",
			PublisherName:      "Example Cloud",
			ServiceName:        s.name,
			ServiceCategory:    s.category,
			ChargeCategory:     "Usage",
			ChargeDescription:  s.name + " usage in " + region,
			SkuId:              fmt.Sprintf("SKU-%s-%02d", s.category[:3], rng.IntN(20)),
			SkuMeter:           s.unit,
			ResourceId:         fmt.Sprintf("res-%s-%06d", s.category[:3], rng.IntN(100000)),
			ResourceType:       s.category,
			RegionId:           region,
			RegionName:         region,
			ConsumedQuantity:   qty,
			ConsumedUnit:       s.unit,
			PricingQuantity:    qty,
			PricingUnit:        s.unit,
			BilledCost:         cost,
			EffectiveCost:      cost,
			BillingCurrency:    "USD",
			Tags:               map[string]string{"team": teams[rng.IntN(len(teams))], "env": envs[rng.IntN(len(envs))]},
		}
		if rng.IntN(4) == 0 {
			r.Ext = map[string]messages.ExtValue{"Project": messages.ExtStr(fmt.Sprintf("proj-%d", rng.IntN(30))), "Cores": messages.ExtI(int64(1 + rng.IntN(64)))}
		}
		out[i] = r
	}
	return out
}

func pad(v, width int) string {
	s := strconv.Itoa(v)
	for len(s) < width {
		s = "0" + s
	}
	return s
}

// Totals are the exact count and cost of records.
type Totals struct {
	Records int
	Cost    messages.Decimal
}

// Total sums records exactly.
func Total(recs []messages.UsageRecord) Totals {
	var s messages.Sum
	for i := range recs {
		s.Add(recs[i].BilledCost)
	}
	return Totals{Records: len(recs), Cost: s.Decimal()}
}

// JSONArray is recs as one JSON array: the body the webhook destination
// sends for them (the benchmarks' input).
func JSONArray(recs []messages.UsageRecord) []byte {
	body := []byte{'['}
	for i := range recs {
		if i > 0 {
			body = append(body, ',')
		}
		body = recs[i].AppendJSON(body)
	}
	return append(body, ']')
}
