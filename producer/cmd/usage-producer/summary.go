package main

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/usagefleet/usagefleet/messages"
	"github.com/usagefleet/usagefleet/producer"
)

// summary adds up one destination's outcomes over every batch: exact
// cost per currency, and every rejection reason with its records.
type summary struct {
	producer.Summary
	cost    costs
	reasons messages.ReasonCounts
}

func (s *summary) merge(o *producer.Summary) {
	s.Parts += o.Parts
	s.Delivered += o.Delivered
	s.Rejected += o.Rejected
	s.Dead += o.Dead
	s.Superseded += o.Superseded
	s.Records += o.Records
	s.RejectedRecords += o.RejectedRecords
	s.Warnings += o.Warnings
	for cur, d := range o.Costs {
		s.cost.addDecimal(cur, d)
	}
	s.reasons.AddAll(o.ReasonCounts)
}

// printSummary is a row per destination, then every rejection reason of
// each, most records first: "<destination>: <n> records: <reason>".
func printSummary(w io.Writer, dests []string, agg map[string]*summary) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "DESTINATION\tPARTS\tDELIVERED\tREJECTED\tDEAD\tSUPERSEDED\tRECORDS\tREJECTED RECORDS\tWARNINGS\tCOST")
	for _, d := range dests {
		s := agg[d]
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%s\n", d, s.Parts, s.Delivered, s.Rejected, s.Dead, s.Superseded, s.Records, s.RejectedRecords, s.Warnings, s.cost)
	}
	tw.Flush()
	for _, d := range dests {
		for _, rc := range agg[d].reasons.Sorted() {
			fmt.Fprintf(w, "%s: %s: %s\n", d, plural(rc.Count, "record"), rc.Reason)
		}
	}
}

// costs sums money exactly per currency.
type costs map[string]*messages.Sum

func (c costs) addDecimal(cur string, d messages.Decimal) {
	s := c[cur]
	if s == nil {
		s = &messages.Sum{}
		c[cur] = s
	}
	s.Add(d)
}

func (c costs) add(o costs) {
	for cur, s := range o {
		c.addDecimal(cur, s.Decimal())
	}
}

// String is "12.50 USD + 3.00 EUR", "0" when nothing was summed.
func (c costs) String() string {
	if len(c) == 0 {
		return "0"
	}
	curs := make([]string, 0, len(c))
	for cur := range c {
		curs = append(curs, cur)
	}
	sort.Strings(curs)
	parts := make([]string, 0, len(curs))
	for _, cur := range curs {
		parts = append(parts, strings.TrimSpace(c[cur].Decimal().String()+" "+cur))
	}
	return strings.Join(parts, " + ")
}

// costsOf is a spool's cost per currency.
func costsOf(m map[string]messages.Decimal) costs {
	c := costs{}
	for cur, d := range m {
		c.addDecimal(cur, d)
	}
	return c
}

// costOf sums BilledCost per BillingCurrency.
func costOf(recs []messages.UsageRecord) costs {
	c := costs{}
	for i := range recs {
		if recs[i].BilledCost.IsSet() {
			c.addDecimal(recs[i].BillingCurrency, recs[i].BilledCost)
		}
	}
	return c
}
