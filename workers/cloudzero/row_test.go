package cloudzero

import (
	"encoding/json"
	"errors"
	"maps"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/usagefleet/usagefleet/messages"
)

func dec(s string) messages.Decimal { return messages.MustDecimal(s) }

// fullRecord sets every field the mapping reads, and some it does not.
func fullRecord() messages.UsageRecord {
	return messages.UsageRecord{
		ChargePeriodStart:  time.Date(2024, 8, 16, 13, 27, 46, 500, time.UTC),
		ChargePeriodEnd:    time.Date(2024, 8, 16, 14, 0, 0, 0, time.UTC),
		BillingAccountId:   "billing-1",
		BillingAccountName: "Billing One",
		SubAccountId:       "sub-7",
		SubAccountName:     "Sub Seven",
		ProviderName:       "Acme Cloud",
		PublisherName:      "Acme",
		ServiceName:        "Compute",
		ServiceCategory:    "Compute",
		ChargeCategory:     "Usage",
		ChargeDescription:  `vCPU hours "burst" <t3>`,
		SkuId:              "SKU-123",
		SkuPriceId:         "PRICE-9",
		SkuMeter:           "RunInstances",
		InvoiceId:          "INV-2024-08",
		ResourceId:         "instance-0000",
		ResourceName:       "web-1",
		RegionId:           "us-east-1",
		RegionName:         "US East",
		ConsumedQuantity:   dec("1.500"),
		ConsumedUnit:       "Hours",
		PricingQuantity:    dec("2"),
		PricingUnit:        "Hours",
		BilledCost:         dec("12"),
		EffectiveCost:      dec("10.25"),
		ListCost:           dec("14.000001"),
		ContractedCost:     dec("11"),
		BillingCurrency:    "USD",
		Tags:               map[string]string{"team": "core", "cost-center": "42", "k8s.io/app": "web"},
		Ext:                map[string]messages.ExtValue{"Project": messages.ExtStr("x")},
	}
}

func encodeRow(t *testing.T, r *messages.UsageRecord) map[string]string {
	t.Helper()
	b, err := AppendRow(nil, r)
	if err != nil {
		t.Fatalf("AppendRow: %v", err)
	}
	var m map[string]string // every value must be a string
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("row %s: %v", b, err)
	}
	return m
}

func TestAppendRowFull(t *testing.T) {
	r := fullRecord()
	got, err := AppendRow([]byte("prefix"), &r)
	if err != nil {
		t.Fatal(err)
	}
	want := `prefix{"time/usage_start":"2024-08-16T13:00:00Z","time/usage_end":"2024-08-16T14:00:00Z",` +
		`"lineitem/type":"Usage","lineitem/cloud_provider":"Acme Cloud","lineitem/description":"vCPU hours \"burst\" \u003ct3\u003e",` +
		`"resource/id":"instance-0000","resource/service":"Compute","resource/account":"sub-7",` +
		`"resource/region":"us-east-1","resource/usage_family":"Compute","action/operation":"RunInstances",` +
		`"action/usage_type":"SKU-123","usage/amount":"1.500","usage/units":"Hours","cost/cost":"12",` +
		`"cost/amortized_cost":"10.25","cost/discounted_amortized_cost":"10.25","cost/on_demand_cost":"14.000001",` +
		`"bill/invoice_id":"INV-2024-08","resource/tag:cost-center":"42","resource/tag:k8s.io/app":"web",` +
		`"resource/tag:team":"core"}`
	if string(got) != want {
		t.Fatalf("row:\n got %s\nwant %s", got, want)
	}
}

func TestAppendRowMapping(t *testing.T) {
	tests := []struct {
		name   string
		edit   func(r *messages.UsageRecord)
		want   map[string]string // columns checked
		absent []string          // columns that must not be there
	}{
		{"start truncated to the UTC hour", func(r *messages.UsageRecord) {
			r.ChargePeriodStart = time.Date(2024, 8, 16, 15, 59, 59, 999, time.FixedZone("CEST", 2*3600))
		}, map[string]string{"time/usage_start": "2024-08-16T13:00:00Z"}, nil},
		{"end in UTC with fraction", func(r *messages.UsageRecord) {
			r.ChargePeriodEnd = time.Date(2024, 8, 16, 16, 30, 0, 5e8, time.FixedZone("CEST", 2*3600))
		}, map[string]string{"time/usage_end": "2024-08-16T14:30:00.5Z"}, nil},
		{"no end", func(r *messages.UsageRecord) { r.ChargePeriodEnd = time.Time{} }, nil, []string{"time/usage_end"}},
		{"empty category is Usage", func(r *messages.UsageRecord) { r.ChargeCategory = "" }, map[string]string{"lineitem/type": "Usage"}, nil},
		{"Purchase", func(r *messages.UsageRecord) { r.ChargeCategory = "Purchase" }, map[string]string{"lineitem/type": "Purchase"}, nil},
		{"Tax", func(r *messages.UsageRecord) { r.ChargeCategory = "Tax" }, map[string]string{"lineitem/type": "Tax"}, nil},
		{"Credit negative, no resource", func(r *messages.UsageRecord) {
			r.ChargeCategory, r.BilledCost, r.EffectiveCost = "Credit", dec("-5.00"), dec("-5.00")
			r.ResourceId, r.Tags = "", nil
		}, map[string]string{"lineitem/type": "Credit", "cost/cost": "-5.00", "cost/discounted_amortized_cost": "-5.00"}, nil},
		{"Credit on a resource is a Discount", func(r *messages.UsageRecord) {
			r.ChargeCategory, r.BilledCost = "Credit", dec("-12")
		}, map[string]string{"lineitem/type": "Discount", "cost/cost": "-12", "resource/id": "instance-0000"}, nil},
		{"commitment purchase", func(r *messages.UsageRecord) {
			r.ChargeCategory, r.EffectiveCost = "Purchase", messages.Decimal{}
			r.Ext = map[string]messages.ExtValue{"CommitmentDiscountId": messages.ExtStr("ri-1")}
		}, map[string]string{"lineitem/type": "CommittedUsePurchase", "cost/amortized_cost": "0", "cost/discounted_amortized_cost": "0"}, nil},
		{"commitment purchase by category", func(r *messages.UsageRecord) {
			r.ChargeCategory = "Purchase"
			r.Ext = map[string]messages.ExtValue{"CommitmentDiscountCategory": messages.ExtStr("Spend")}
		}, map[string]string{"lineitem/type": "CommittedUsePurchase", "cost/amortized_cost": "10.25"}, nil},
		{"correction is an Adjustment", func(r *messages.UsageRecord) {
			r.ChargeCategory, r.BilledCost = "Usage", dec("-3")
			r.Ext = map[string]messages.ExtValue{"ChargeClass": messages.ExtStr("Correction")}
		}, map[string]string{"lineitem/type": "Adjustment", "cost/cost": "-3"}, nil},
		{"correction from the FOCUS column", func(r *messages.UsageRecord) {
			r.ChargeCategory, r.BilledCost = "Usage", dec("-3")
			r.Detail = &messages.Detail{ChargeClass: "Correction"}
		}, map[string]string{"lineitem/type": "Adjustment", "cost/cost": "-3"}, nil},
		{"commitment purchase from the FOCUS column", func(r *messages.UsageRecord) {
			r.ChargeCategory = "Purchase"
			r.Detail = &messages.Detail{CommitmentDiscountId: "arn:aws:ec2:us-east-1:1:reserved-instances/ri-1"}
		}, map[string]string{"lineitem/type": "CommittedUsePurchase"}, nil},
		{"commitment category from the FOCUS column", func(r *messages.UsageRecord) {
			r.ChargeCategory = "Purchase"
			r.Detail = &messages.Detail{CommitmentDiscountCategory: "Usage"}
		}, map[string]string{"lineitem/type": "CommittedUsePurchase"}, nil},
		{"a usage row that used a commitment stays Usage", func(r *messages.UsageRecord) {
			r.Detail = &messages.Detail{CommitmentDiscountId: "ri-1", CommitmentDiscountStatus: "Used"}
		}, map[string]string{"lineitem/type": "Usage"}, nil},
		{"cloud provider", func(r *messages.UsageRecord) {}, map[string]string{"lineitem/cloud_provider": "Acme Cloud"}, nil},
		{"no provider", func(r *messages.UsageRecord) { r.ProviderName = "" }, nil, []string{"lineitem/cloud_provider"}},
		{"Adjustment", func(r *messages.UsageRecord) { r.ChargeCategory = "Adjustment" }, map[string]string{"lineitem/type": "Adjustment"}, nil},
		{"negative Usage stays Usage", func(r *messages.UsageRecord) {
			r.BilledCost = dec("-0.0003")
		}, map[string]string{"lineitem/type": "Usage", "cost/cost": "-0.0003"}, nil},
		{"negative discount in effective cost", func(r *messages.UsageRecord) {
			r.EffectiveCost = dec("-1.25")
		}, map[string]string{"cost/amortized_cost": "-1.25", "cost/discounted_amortized_cost": "-1.25"}, nil},
		{"decimals stay plain", func(r *messages.UsageRecord) {
			r.BilledCost = dec("1e-7")
			r.ListCost = dec("2.5E+3")
			r.ConsumedQuantity = dec("0.000000000000000000000001")
		}, map[string]string{"cost/cost": "0.0000001", "cost/on_demand_cost": "2500", "usage/amount": "0.000000000000000000000001"}, nil},
		{"zero cost kept", func(r *messages.UsageRecord) { r.BilledCost = dec("0.00") }, map[string]string{"cost/cost": "0.00"}, nil},
		{"optional costs absent", func(r *messages.UsageRecord) {
			r.EffectiveCost, r.ListCost = messages.Decimal{}, messages.Decimal{}
		}, nil, []string{"cost/amortized_cost", "cost/discounted_amortized_cost", "cost/on_demand_cost", "cost/discounted_cost"}},
		{"account falls back to billing account", func(r *messages.UsageRecord) { r.SubAccountId = "" },
			map[string]string{"resource/account": "billing-1"}, nil},
		{"no account", func(r *messages.UsageRecord) { r.SubAccountId, r.BillingAccountId = "", "" }, nil, []string{"resource/account"}},
		{"no region left to CloudZero's default", func(r *messages.UsageRecord) { r.RegionId = "" }, nil, []string{"resource/region"}},
		{"units only with an amount", func(r *messages.UsageRecord) { r.ConsumedQuantity = messages.Decimal{} }, nil, []string{"usage/amount", "usage/units"}},
		{"no tags no resource needed", func(r *messages.UsageRecord) { r.Tags, r.ResourceId = nil, "" }, nil, []string{"resource/id"}},
		{"unicode tag key and escaped value", func(r *messages.UsageRecord) {
			r.Tags = map[string]string{"équipe": "a\"b\n", "a@b+c=d:e/f_g.h-i": ""}
		}, map[string]string{"resource/tag:équipe": "a\"b\n", "resource/tag:a@b+c=d:e/f_g.h-i": ""}, nil},
		{"strings escaped", func(r *messages.UsageRecord) { r.ResourceId = "arn:aws:ec2:\\x\u2028" },
			map[string]string{"resource/id": "arn:aws:ec2:\\x\u2028"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := fullRecord()
			tt.edit(&r)
			got := encodeRow(t, &r)
			for k, v := range tt.want {
				if got[k] != v {
					t.Errorf("%s = %q, want %q (row %v)", k, got[k], v, got)
				}
			}
			for _, k := range tt.absent {
				if _, ok := got[k]; ok {
					t.Errorf("%s present (%q), want absent", k, got[k])
				}
			}
			for k, v := range got {
				if strings.HasPrefix(k, "cost/") || k == "usage/amount" {
					if strings.ContainsAny(v, "eE+") {
						t.Errorf("%s = %q is not plain notation", k, v)
					}
				}
			}
		})
	}
}

func TestAppendRowRejects(t *testing.T) {
	tests := []struct {
		name   string
		edit   func(r *messages.UsageRecord)
		column string
		reason string
	}{
		{"missing cost", func(r *messages.UsageRecord) { r.BilledCost = messages.Decimal{} }, "cost/cost", "BilledCost is required"},
		{"no start", func(r *messages.UsageRecord) { r.ChargePeriodStart = time.Time{} }, "time/usage_start", "required"},
		{"unknown category", func(r *messages.UsageRecord) { r.ChargeCategory = "Refund" }, "lineitem/type", `"Refund"`},
		{"end year out of range", func(r *messages.UsageRecord) { r.ChargePeriodEnd = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC) }, "time/usage_end", "outside"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := fullRecord()
			r.Tags = maps.Clone(r.Tags)
			tt.edit(&r)
			dst := []byte("keep")
			got, err := AppendRow(dst, &r)
			var re *RowError
			if !errors.As(err, &re) {
				t.Fatalf("err = %v, want a *RowError", err)
			}
			if re.Column != tt.column || !strings.Contains(re.Reason, tt.reason) {
				t.Fatalf("err = %q (column %q), want column %q and reason containing %q", err, re.Column, tt.column, tt.reason)
			}
			if string(got) != "keep" {
				t.Fatalf("dst changed on error: %q", got)
			}
		})
	}
}

func TestPlaceholder(t *testing.T) {
	b := AppendPlaceholder(nil, time.Date(2024, 8, 16, 13, 0, 0, 0, time.UTC))
	var m map[string]string
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"time/usage_start": "2024-08-16T13:00:00Z", "cost/cost": "0", "lineitem/type": "Usage",
		"lineitem/id": PlaceholderLineItemID, "lineitem/description": PlaceholderDescription,
	}
	if !maps.Equal(m, want) {
		t.Fatalf("placeholder = %v, want %v", m, want)
	}
}

func TestAppendRowAllocs(t *testing.T) {
	recs := variedRecords(64)
	buf := make([]byte, 0, 1<<20)
	n := testing.AllocsPerRun(100, func() {
		buf = buf[:0]
		for i := range recs {
			var err error
			if buf, err = AppendRow(buf, &recs[i]); err != nil {
				t.Fatal(err)
			}
		}
	})
	if n != 0 {
		t.Fatalf("AppendRow allocates %.1f times per 64 rows, want 0", n)
	}
}

func FuzzValidTagKey(f *testing.F) {
	for _, s := range []string{"team", "a b", "équipe", "k8s.io/app", "a\xff", "", "@+=-_.:/", "日本"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, k string) {
		r := fullRecord()
		r.Tags = map[string]string{k: "v"}
		b, rep, err := AppendRowRepaired(nil, &r)
		if err != nil {
			t.Fatalf("key %q refused the record: %v", k, err)
		}
		if ValidTagKey(k) == rep.Any() {
			t.Fatalf("ValidTagKey(%q) = %v but repairs = %+v", k, ValidTagKey(k), rep)
		}
		if !json.Valid(b) {
			t.Fatalf("invalid JSON for key %q: %s", k, b)
		}
	})
}

// appendRFC3339Nano writes what time.RFC3339Nano writes, for times across
// the years CBF allows, with and without fractions and offsets.
func TestAppendRFC3339NanoMatchesTimeFormat(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 9))
	zones := []*time.Location{time.UTC, time.FixedZone("x", -7*3600), time.FixedZone("y", 5*3600+1800)}
	times := []time.Time{time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC), time.Date(2024, 2, 29, 12, 0, 0, 100, time.UTC)}
	for range 2000 {
		sec := rng.Int64N(253402300799+62135596800) - 62135596800
		ns := []int64{0, rng.Int64N(1e9), rng.Int64N(1000) * 1e6, 500}[rng.IntN(4)]
		tt := time.Unix(sec, ns).In(zones[rng.IntN(len(zones))])
		if y := tt.UTC().Year(); y >= 1 && y <= 9999 {
			times = append(times, tt)
		}
	}
	for _, tt := range times {
		want := tt.UTC().Format(time.RFC3339Nano)
		if got := string(appendRFC3339Nano(nil, tt)); got != want {
			t.Fatalf("%v: got %s, want %s", tt, got, want)
		}
	}
}

func TestAppendRowRepairsLabels(t *testing.T) {
	tests := []struct {
		name     string
		resource string
		tags     map[string]string
		want     map[string]string // resource/tag columns expected, exactly
		rep      Repairs
	}{
		{"space inside a key", "i-1", map[string]string{"Cost department": "eng"},
			map[string]string{"resource/tag:Cost_department": "eng"}, Repairs{TagKeysRewritten: 1}},
		{"leading space trimmed", "i-1", map[string]string{" org": "x", "team": "a"},
			map[string]string{"resource/tag:org": "x", "resource/tag:team": "a"}, Repairs{TagKeysRewritten: 1}},
		{"tab, quote, invalid utf-8", "i-1", map[string]string{"a\tb": "1", `c"d`: "2", "e\xfff": "3"},
			map[string]string{"resource/tag:a_b": "1", "resource/tag:c_d": "2", "resource/tag:e_f": "3"}, Repairs{TagKeysRewritten: 3}},
		{"empty key dropped", "i-1", map[string]string{"": "v", "  ": "w", "ok": "1"},
			map[string]string{"resource/tag:ok": "1"}, Repairs{TagsDropped: 2}},
		{"collision: the valid key wins", "i-1", map[string]string{"a b": "rewritten", "a_b": "valid"},
			map[string]string{"resource/tag:a_b": "valid"}, Repairs{TagsDropped: 1}},
		{"no resource: tags dropped, cost kept", "", map[string]string{"team": "a", "bad key": "b"},
			map[string]string{}, Repairs{TagsDropped: 2}},
		{"nothing to repair", "i-1", map[string]string{"team": "a"},
			map[string]string{"resource/tag:team": "a"}, Repairs{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := fullRecord()
			r.ResourceId, r.Tags = tt.resource, tt.tags
			b, rep, err := AppendRowRepaired(nil, &r)
			if err != nil {
				t.Fatalf("refused: %v (a label must never cost the record)", err)
			}
			if rep != tt.rep {
				t.Errorf("repairs = %+v, want %+v", rep, tt.rep)
			}
			var m map[string]string
			if err := json.Unmarshal(b, &m); err != nil {
				t.Fatal(err)
			}
			if m["cost/cost"] != "12" {
				t.Errorf("cost/cost = %q, want 12", m["cost/cost"])
			}
			got := map[string]string{}
			for k, v := range m {
				if strings.HasPrefix(k, "resource/tag:") {
					got[k] = v
					if !ValidTagKey(strings.TrimPrefix(k, "resource/tag:")) {
						t.Errorf("invalid key %q written", k)
					}
				}
			}
			if !maps.Equal(got, tt.want) {
				t.Errorf("tags = %v, want %v", got, tt.want)
			}
		})
	}
}

func FuzzRepairTagKey(f *testing.F) {
	for _, s := range []string{"", " ", "Cost department", " org", "a\xffb", "équipe x", "a@b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, k string) {
		nk := RepairTagKey(k)
		if nk != "" && !ValidTagKey(nk) {
			t.Fatalf("RepairTagKey(%q) = %q, not a valid key", k, nk)
		}
		if ValidTagKey(k) && nk != k {
			t.Fatalf("RepairTagKey(%q) = %q changed a valid key", k, nk)
		}
	})
}
