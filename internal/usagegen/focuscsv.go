package usagegen

import (
	"bufio"
	"io"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"

	"github.com/usagefleet/usagefleet/messages"
)

// FocusColumns is the header WriteFocusCSV writes: 42 FOCUS 1.0 columns as
// AWS Data Exports names them, a string extension column and a typed one
// (44 in all).
var FocusColumns = []string{
	"AvailabilityZone", "BilledCost", "BillingAccountId", "BillingAccountName", "BillingCurrency",
	"BillingPeriodEnd", "BillingPeriodStart", "ChargeCategory", "ChargeClass", "ChargeDescription",
	"ChargeFrequency", "ChargePeriodEnd", "ChargePeriodStart", "CommitmentDiscountCategory", "CommitmentDiscountId",
	"CommitmentDiscountName", "CommitmentDiscountStatus", "ConsumedQuantity", "ConsumedUnit", "ContractedCost",
	"ContractedUnitPrice", "EffectiveCost", "InvoiceIssuerName", "ListCost", "ListUnitPrice",
	"PricingCategory", "PricingQuantity", "PricingUnit", "ProviderName", "PublisherName",
	"RegionId", "RegionName", "ResourceId", "ResourceName", "ResourceType",
	"ServiceCategory", "ServiceName", "SkuId", "SkuPriceId", "SubAccountId",
	"SubAccountName", "Tags", "x_Operation", "x_LineItemNumber:int",
}

// FocusTotals is what a generated file holds, to check a destination
// against: rows and the exact sum of BilledCost per currency.
type FocusTotals struct {
	Rows  int
	Bytes int64
	Cost  map[string]*messages.Sum
}

type focusService struct {
	name, category, unit, sku, op, rtype, desc string
	price                                      string
}

var focusServices = []focusService{
	{"Amazon Elastic Compute Cloud", "Compute", "Hours", "K8GXGZN8X3ZQXSSX", "RunInstances", "Instance", `$0.0416 per On Demand Linux t3.medium Instance Hour`, "0.0416"},
	{"Amazon Simple Storage Service", "Storage", "GB-Mo", "WP9ANXZGBYYSGJEA", "StandardStorage", "Bucket", `$0.023 per GB - first 50 TB / month of storage used`, "0.023"},
	{"Amazon Relational Database Service", "Databases", "Hours", "QG5SXCWK4W2ZFCJH", "CreateDBInstance:0002", "DBInstance", `RDS db.r6g.large "Multi-AZ", PostgreSQL`, "0.4520"},
	{"AWS Data Transfer", "Networking", "GB", "AQ3QYV5QF4RY3D8W", "PublicIP-Out", "", "$0.09 per GB - first 10 TB / month data transfer out beyond the global free tier", "0.09"},
	{"AWS Lambda", "Compute", "Requests", "TG3M4CAGBA3NYQBH", "Invoke", "Function", "AWS Lambda - Requests, Free Tier: 1M", "0.0000002"},
	{"Amazon CloudWatch", "Management and Governance", "Metrics", "CW8MQXWBKFU4WJRK", "MetricStorage", "Metric", "$0.30 per metric-month - first 10,000 metrics", "0.30"},
}

var (
	focusRegions = []struct{ id, name, az string }{
		{"us-east-1", "US East (N. Virginia)", "us-east-1a"},
		{"eu-west-1", "Europe (Ireland)", "eu-west-1b"},
		{"eu-central-1", "Europe (Frankfurt)", ""},
		{"ap-southeast-2", "Asia Pacific (Sydney)", "ap-southeast-2c"},
	}
	focusAccounts = []struct{ id, name string }{
		{"444455556666", "prod"},
		{"777788889999", "staging — Zürich"},
		{"121212121212", `data "lake"`},
		{"343434343434", "shared, tools"},
	}
)

// WriteFocusCSV writes a realistic FOCUS CSV export of n rows (about 750
// bytes each) spread over the month that starts at o.Start (default
// 2024-09-01), in time order as exports are written: every column type
// (strings, exact decimals, date/times, JSON tags with string, number and
// boolean values, string and integer extension columns), NULL written both
// as NULL and as an empty cell, quoted cells with commas, doubled quotes
// and line breaks, credits with negative costs, decimals in E notation and
// with 10 fraction digits, non-ASCII names. The same options always write
// the same file.
func WriteFocusCSV(w io.Writer, n int, o Options) (FocusTotals, error) {
	if o.Start.IsZero() {
		o.Start = time.Date(2024, 9, 1, 0, 0, 0, 0, time.UTC)
	}
	start := o.Start.UTC().Truncate(time.Hour)
	end := start.AddDate(0, 1, 0)
	hours := int(end.Sub(start) / time.Hour)
	if o.Hours > 0 {
		hours = o.Hours
	}
	rng := rand.New(rand.NewPCG(o.Seed, o.Seed^0x9e3779b97f4a7c15))
	bw := bufio.NewWriterSize(w, 1<<20)
	tot := FocusTotals{Rows: n, Cost: map[string]*messages.Sum{}}
	var line []byte
	line = append(line, strings.Join(FocusColumns, ",")...)
	line = append(line, '\n')
	if _, err := bw.Write(line); err != nil {
		return tot, err
	}
	tot.Bytes += int64(len(line))
	bpStart := start.Format(time.RFC3339)
	bpEnd := end.Format(time.RFC3339)
	for i := 0; i < n; i++ {
		h := start.Add(time.Duration(i*hours/max(n, 1)) * time.Hour)
		var err error
		line, err = appendFocusRow(line[:0], rng, &tot, i, h, bpStart, bpEnd)
		if err != nil {
			return tot, err
		}
		if _, err := bw.Write(line); err != nil {
			return tot, err
		}
		tot.Bytes += int64(len(line))
	}
	return tot, bw.Flush()
}

// appendFocusRow appends row i (hour h) of the export to line, drawing its
// values from rng, and adds its cost to tot.
func appendFocusRow(line []byte, rng *rand.Rand, tot *FocusTotals, i int, h time.Time, bpStart, bpEnd string) ([]byte, error) {
	svc := &focusServices[rng.IntN(len(focusServices))]
	reg := &focusRegions[rng.IntN(len(focusRegions))]
	acct := &focusAccounts[rng.IntN(len(focusAccounts))]
	qty := strconv.Itoa(rng.IntN(1000)) + "." + pad(rng.IntN(1000000), 6)
	cost := strconv.Itoa(rng.IntN(50)) + "." + pad(rng.IntN(10000000000), 10)
	category := "Usage"
	switch k := rng.IntN(100); {
	case k == 0:
		category, cost = "Credit", "-"+cost
	case k == 1:
		category = "Tax"
	case k == 2:
		cost = "1.5E-7" // legal, and exact
	}
	currency := "USD"
	if acct.id == "777788889999" {
		currency = "EUR"
	}
	d, err := messages.ParseDecimal(cost)
	if err != nil {
		return line, err
	}
	s := tot.Cost[currency]
	if s == nil {
		s = &messages.Sum{}
		tot.Cost[currency] = s
	}
	s.Add(d)
	nullish := func() string { // exports write NULL both ways
		if rng.IntN(2) == 0 {
			return "NULL"
		}
		return ""
	}
	cell := func(v string) {
		line = appendCSVCell(line, v)
		line = append(line, ',')
	}
	if reg.az == "" {
		cell(nullish())
	} else {
		cell(reg.az)
	}
	cell(cost)
	cell("111122223333")
	cell("Example Corp payer")
	cell(currency)
	cell(bpEnd)
	cell(bpStart)
	cell(category)
	if category == "Credit" {
		cell("Correction")
	} else {
		cell("NULL")
	}
	desc := svc.desc
	if rng.IntN(50) == 0 {
		desc += "\nsecond line of the description" // a quoted line break, as Azure writes
	}
	cell(desc)
	cell("Usage-Based")
	cell(h.Add(time.Hour).Format(time.RFC3339))
	cell(h.Format(time.RFC3339))
	if rng.IntN(10) == 0 {
		cell("Spend")
		cell("arn:aws:savingsplans::111122223333:savingsplan/" + pad(rng.IntN(100000000), 8) + "-aaaa-bbbb-cccc-0123456789ab")
		cell("Compute Savings Plan, 1yr")
		cell("Used")
	} else {
		cell(nullish())
		cell(nullish())
		cell(nullish())
		cell(nullish())
	}
	cell(qty)
	cell(svc.unit)
	cell(cost)
	cell(svc.price)
	cell(cost)
	cell("Amazon Web Services, Inc.")
	cell(cost)
	cell(svc.price)
	cell("Standard")
	cell(qty)
	cell(svc.unit)
	cell("AWS")
	cell("Amazon Web Services, Inc.")
	cell(reg.id)
	cell(reg.name)
	rid := "arn:aws:ec2:" + reg.id + ":" + acct.id + ":instance/i-0" + pad(rng.IntN(1000000000), 9) + "abcdef01"
	cell(rid)
	cell("web-" + strconv.Itoa(rng.IntN(500)))
	cell(svc.rtype)
	cell(svc.category)
	cell(svc.name)
	cell(svc.sku)
	cell(svc.sku + ".JRTCKXETXF." + pad(rng.IntN(10000), 4))
	cell(acct.id)
	cell(acct.name)
	tags := `{"user:team":"` + teams[rng.IntN(len(teams))] + `","user:env":"` + envs[rng.IntN(len(envs))] + `","user:cost-center":"cc-` + strconv.Itoa(rng.IntN(100)) + `, shared","tier":` + strconv.Itoa(rng.IntN(3)) + `,"managed":true}`
	if rng.IntN(20) == 0 {
		tags = nullish()
	}
	cell(tags)
	cell(svc.op)
	line = strconv.AppendInt(line, int64(i+1), 10)
	line = append(line, '\n')
	return line, nil
}

// appendCSVCell quotes v when it must be (RFC 4180).
func appendCSVCell(dst []byte, v string) []byte {
	if !strings.ContainsAny(v, ",\"\r\n") {
		return append(dst, v...)
	}
	dst = append(dst, '"')
	for i := 0; i < len(v); i++ {
		if v[i] == '"' {
			dst = append(dst, '"')
		}
		dst = append(dst, v[i])
	}
	return append(dst, '"')
}
