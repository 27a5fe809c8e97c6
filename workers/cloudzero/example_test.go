package cloudzero_test

import (
	"fmt"
	"time"

	"github.com/usagefleet/usagefleet/messages"
	"github.com/usagefleet/usagefleet/workers/cloudzero"
)

func ExampleAppendRow() {
	r := messages.UsageRecord{
		ChargePeriodStart: time.Date(2024, 8, 16, 13, 27, 46, 0, time.UTC),
		ServiceName:       "Compute",
		ResourceId:        "instance-0000",
		BilledCost:        messages.MustDecimal("1.2e1"),
		EffectiveCost:     messages.MustDecimal("-0.50"),
		BillingCurrency:   "USD",
		Tags:              map[string]string{"team": "core"},
	}
	row, err := cloudzero.AppendRow(nil, &r)
	fmt.Println(string(row), err)

	// A tag key CBF cannot take is rewritten; the cost is delivered.
	r.Tags = map[string]string{"cost center": "42"}
	row, rep, err := cloudzero.AppendRowRepaired(nil, &r)
	fmt.Println(string(row), rep, err)
	// Output:
	// {"time/usage_start":"2024-08-16T13:00:00Z","lineitem/type":"Usage","resource/id":"instance-0000","resource/service":"Compute","cost/cost":"12","cost/amortized_cost":"-0.50","cost/discounted_amortized_cost":"-0.50","resource/tag:team":"core"} <nil>
	// {"time/usage_start":"2024-08-16T13:00:00Z","lineitem/type":"Usage","resource/id":"instance-0000","resource/service":"Compute","cost/cost":"12","cost/amortized_cost":"-0.50","cost/discounted_amortized_cost":"-0.50","resource/tag:cost_center":"42"} {1 0} <nil>
}
