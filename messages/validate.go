package messages

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// FieldError is one problem with one field of one record. Index is the
// record's position in its batch (-1 when the error is about the batch).
type FieldError struct {
	Index   int
	Field   string
	Problem string
}

func (e *FieldError) Error() string {
	switch {
	case e.Index < 0 && e.Field == "":
		return e.Problem
	case e.Index < 0:
		return e.Field + ": " + e.Problem
	}
	return fmt.Sprintf("records[%d].%s: %s", e.Index, e.Field, e.Problem)
}

// ValidationError lists every problem found, not just the first.
type ValidationError []FieldError

func (v ValidationError) Error() string {
	var b strings.Builder
	for i, e := range v {
		if i == 10 {
			fmt.Fprintf(&b, "; and %d more", len(v)-10)
			break
		}
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(e.Error())
	}
	return b.String()
}

// isCurrency is ^[A-Z]{3}$ (an ISO 4217 code's shape).
func isCurrency(s string) bool {
	return len(s) == 3 && s[0] >= 'A' && s[0] <= 'Z' && s[1] >= 'A' && s[1] <= 'Z' && s[2] >= 'A' && s[2] <= 'Z'
}

// MaxStringLen bounds every string field.
const MaxStringLen = 2048

// Validate checks one record and returns its problems (Index left 0; the
// caller sets it).
func (r *UsageRecord) Validate() []FieldError {
	var errs []FieldError
	add := func(field, format string, args ...any) {
		errs = append(errs, FieldError{Field: field, Problem: fmt.Sprintf(format, args...)})
	}
	if r.ChargePeriodStart.IsZero() {
		add("ChargePeriodStart", "required")
	}
	if !r.ChargePeriodEnd.IsZero() && r.ChargePeriodEnd.Before(r.ChargePeriodStart) {
		add("ChargePeriodEnd", "%s is before ChargePeriodStart %s", r.ChargePeriodEnd.Format(time.RFC3339), r.ChargePeriodStart.Format(time.RFC3339))
	}
	if r.ChargeCategory != "" && !slices.Contains(ChargeCategories, r.ChargeCategory) {
		add("ChargeCategory", "%q is not one of %s", r.ChargeCategory, strings.Join(ChargeCategories, ", "))
	}
	hasCost := r.BilledCost.IsSet() || r.EffectiveCost.IsSet() || r.ListCost.IsSet() || r.ContractedCost.IsSet()
	if r.BillingCurrency != "" && !isCurrency(r.BillingCurrency) {
		add("BillingCurrency", "%q is not an ISO 4217 code", r.BillingCurrency)
	}
	if hasCost && r.BillingCurrency == "" {
		add("BillingCurrency", "required when a cost is set")
	}
	if r.ConsumedQuantity.IsSet() && r.ConsumedUnit == "" {
		add("ConsumedUnit", "required when ConsumedQuantity is set")
	}
	if r.PricingQuantity.IsSet() && r.PricingUnit == "" {
		add("PricingUnit", "required when PricingQuantity is set")
	}
	if longestString(r) > MaxStringLen {
		for _, f := range strFields {
			if len(*f.get(r)) > MaxStringLen {
				add(f.name, "longer than %d bytes", MaxStringLen)
			}
		}
	}
	for k, v := range r.Tags {
		if k == "" {
			add("Tags", "empty tag key")
		} else if len(k) > 256 || len(v) > MaxStringLen {
			add("Tags."+k, "too long")
		}
	}
	for k, v := range r.Ext {
		if !validExtName(k) {
			add("x_"+k, "extension column names are a letter then letters, digits or _ (at most 64)")
		}
		if v.Kind < ExtString || v.Kind > ExtDecimal {
			add("x_"+k, "value has no type")
		} else if v.Kind == ExtDecimal && !v.Dec.IsSet() {
			add("x_"+k, "decimal value not set")
		}
	}
	return errs
}

// Validate checks the batch and every record, and returns a
// ValidationError listing all problems, or nil.
func (b *Batch) Validate() error {
	var errs ValidationError
	batchErr := func(field, format string, args ...any) {
		errs = append(errs, FieldError{Index: -1, Field: field, Problem: fmt.Sprintf(format, args...)})
	}
	if b.ID == "" || len(b.ID) > 200 || strings.ContainsAny(b.ID, " \t\r\n") {
		batchErr("ID", "required, at most 200 bytes, no whitespace")
	}
	if !ValidToken(b.Feed) {
		batchErr("Feed", "%q: want 1-64 of A-Z a-z 0-9 _ -", b.Feed)
	}
	if !ValidToken(b.Source) {
		batchErr("Source", "%q: want 1-64 of A-Z a-z 0-9 _ -", b.Source)
	}
	if s := b.Snapshot; s != nil {
		if s.Generation < 1 {
			batchErr("Snapshot.Generation", "must be at least 1")
		}
		if !s.Period.End.After(s.Period.Start) {
			batchErr("Snapshot.Period", "end is not after start")
		}
		if s.Period.Start.Truncate(time.Hour) != s.Period.Start || s.Period.End.Truncate(time.Hour) != s.Period.End {
			batchErr("Snapshot.Period", "start and end must be whole UTC hours")
		}
		if s.Period.End.Sub(s.Period.Start) > 400*24*time.Hour {
			batchErr("Snapshot.Period", "longer than 400 days")
		}
	} else if len(b.Records) == 0 {
		batchErr("Records", "an append batch needs at least one record")
	}
	for i := range b.Records {
		r := &b.Records[i]
		for _, e := range r.Validate() {
			e.Index = i
			errs = append(errs, e)
		}
		if b.Snapshot != nil && !r.ChargePeriodStart.IsZero() && !b.Snapshot.Period.Contains(r.ChargePeriodStart) {
			errs = append(errs, FieldError{Index: i, Field: "ChargePeriodStart", Problem: fmt.Sprintf("%s is outside the snapshot period %s", r.ChargePeriodStart.Format(time.RFC3339), b.Snapshot.Period)})
		}
	}
	if len(errs) > 0 {
		return errs
	}
	return nil
}

// longestString is the length of r's longest string field, read field by
// field: Validate runs for every published record.
func longestString(r *UsageRecord) int {
	return max(len(r.BillingAccountId), len(r.BillingAccountName), len(r.SubAccountId), len(r.SubAccountName), len(r.ProviderName), len(r.PublisherName), len(r.ServiceName), len(r.ServiceCategory), len(r.ChargeCategory), len(r.ChargeDescription), len(r.SkuId), len(r.SkuPriceId), len(r.SkuMeter), len(r.InvoiceId), len(r.ResourceId), len(r.ResourceName), len(r.ResourceType), len(r.RegionId), len(r.RegionName), len(r.AvailabilityZone), len(r.ConsumedUnit), len(r.PricingUnit), len(r.BillingCurrency))
}
