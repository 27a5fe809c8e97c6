package cloudzero

import "github.com/usagefleet/usagefleet/messages"

// CBF lineitem/type values this destination writes: only those in the API
// schema's enum (Usage, Tax, Support, Purchase, CommittedUsePurchase,
// Discount, Credit, Fee, Adjustment). The CBF page also lists
// CommittedUseVacancy and CommittedUseRecurringFee, which the published
// schema does not: a value the API might refuse would dead-letter a whole
// request, so they are never sent.
const (
	typeUsage                = "Usage"
	typePurchase             = "Purchase"
	typeCommittedUsePurchase = "CommittedUsePurchase"
	typeTax                  = "Tax"
	typeCredit               = "Credit"
	typeDiscount             = "Discount"
	typeAdjustment           = "Adjustment"
)

// lineItemType is the CBF lineitem/type of r (the table is in the package
// doc). ok is false for a ChargeCategory FOCUS does not define (the
// producer's validation refuses those before they reach a worker).
func lineItemType(r *messages.UsageRecord) (string, bool) {
	if focusString(r, "ChargeClass") == "Correction" {
		// FOCUS: a correction to a charge of an earlier, invoiced period.
		// CBF's Adjustment is the type for it; booked as Usage it would
		// count in "Real Cost" for the hour of the correction.
		return typeAdjustment, true
	}
	switch r.ChargeCategory {
	case "", "Usage":
		return typeUsage, true
	case "Purchase":
		if focusString(r, "CommitmentDiscountId") != "" || focusString(r, "CommitmentDiscountCategory") != "" {
			return typeCommittedUsePurchase, true
		}
		return typePurchase, true
	case "Credit":
		if r.ResourceId != "" {
			// CBF: a Discount matches the time/resource of the usage it
			// reduces, a Credit is tied to no usage. [INFER] a FOCUS credit
			// on a resource is that resource's discount.
			return typeDiscount, true
		}
		return typeCredit, true
	case "Tax":
		return typeTax, true
	case "Adjustment":
		return typeAdjustment, true
	}
	return "", false
}

// focusString reads a FOCUS column that messages.UsageRecord has no field
// for yet (ChargeClass, CommitmentDiscountId, CommitmentDiscountCategory;
// FOCUS 1.0+) from the record's extension columns, where a producer puts
// it as x_<Name>. When the record gains the field (issue 14 item 1), read
// the field here; this is the only place that looks.
func focusString(r *messages.UsageRecord, name string) string {
	if v, ok := r.Ext[name]; ok && v.Kind == messages.ExtString {
		return v.Str
	}
	return ""
}
