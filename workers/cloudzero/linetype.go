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
	return lineItemTypeOf(r, recordExt{r})
}

// extSource reads a record's string extension column x_<name> ("" when
// it has none): its Ext map (recordExt), or the part it is read from
// (*messages.PartReader).
type extSource interface {
	ExtString(name string) string
}

type recordExt struct{ r *messages.UsageRecord }

func (e recordExt) ExtString(name string) string { return focusString(e.r, name) }

// lineItemTypeOf is lineItemType with r's extension columns read from ext.
func lineItemTypeOf(r *messages.UsageRecord, ext extSource) (string, bool) {
	var class, commitID, commitCat string
	if r.Detail != nil {
		class, commitID, commitCat = r.Detail.ChargeClass, r.Detail.CommitmentDiscountId, r.Detail.CommitmentDiscountCategory
	}
	if focusColumn(class, ext, "ChargeClass") == "Correction" {
		// FOCUS: a correction to a charge of an earlier, invoiced period.
		// CBF's Adjustment is the type for it; booked as Usage it would
		// count in "Real Cost" for the hour of the correction.
		return typeAdjustment, true
	}
	switch r.ChargeCategory {
	case "", "Usage":
		return typeUsage, true
	case "Purchase":
		if focusColumn(commitID, ext, "CommitmentDiscountId") != "" || focusColumn(commitCat, ext, "CommitmentDiscountCategory") != "" {
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

// focusColumn is a FOCUS column: v, its value in the record's Detail,
// where the FOCUS readers (CSV, Parquet, NDJSON, the gateway) put it; a
// producer that wrote it before Detail existed sent it as the extension
// column x_<name>: that counts when v is empty.
func focusColumn(v string, ext extSource, name string) string {
	if v != "" {
		return v
	}
	return ext.ExtString(name)
}

// focusString reads the extension column x_<name>.
func focusString(r *messages.UsageRecord, name string) string {
	if v, ok := r.Ext[name]; ok && v.Kind == messages.ExtString {
		return v.Str
	}
	return ""
}
