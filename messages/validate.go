package messages

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
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

// MaxStringLen bounds every string field.
const MaxStringLen = 2048

// MinYear and MaxYear bound the year of every date/time column. Cloud
// billing began after 2000 (the first public cloud bills are of 2006), and
// the years that fall outside are placeholders and typos: 1900 and
// 0001 from a zero date, 9999 as "forever", 2204 for 2024. A record dated
// there would open a unit at a destination nobody looks at, so it is
// refused with the range, the same way in every column and every input.
const (
	MinYear = 2000
	MaxYear = 2100
)

func checkYear(add func(field, format string, args ...any), field string, t time.Time) {
	if y := t.UTC().Year(); y < MinYear || y > MaxYear {
		add(field, "year %d is outside %d..%d", y, MinYear, MaxYear)
	}
}

// validUTF8 is utf8.ValidString with an ASCII fast path.
func validUTF8(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= utf8.RuneSelf {
			return utf8.ValidString(s[i:])
		}
	}
	return true
}

// quoteClip quotes s for an error message, clipped to 64 bytes (a bad
// value can be megabytes long; the message names it, it does not repeat it).
func quoteClip(s string) string {
	if len(s) > 64 {
		cut := 64
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		return strconv.Quote(s[:cut]) + fmt.Sprintf("… (%d bytes)", len(s))
	}
	return strconv.Quote(s)
}

// Validate checks one record and returns its problems (Index left 0; the
// caller sets it).
func (r *UsageRecord) Validate() []FieldError {
	var errs []FieldError
	add := func(field, format string, args ...any) {
		errs = append(errs, FieldError{Field: field, Problem: fmt.Sprintf(format, args...)})
	}
	if r.ChargePeriodStart.IsZero() {
		add("ChargePeriodStart", "required")
	} else {
		checkYear(add, "ChargePeriodStart", r.ChargePeriodStart)
	}
	if !r.ChargePeriodEnd.IsZero() {
		checkYear(add, "ChargePeriodEnd", r.ChargePeriodEnd)
		if r.ChargePeriodEnd.Before(r.ChargePeriodStart) {
			add("ChargePeriodEnd", "%s is before ChargePeriodStart %s", r.ChargePeriodEnd.Format(time.RFC3339), r.ChargePeriodStart.Format(time.RFC3339))
		}
	}
	if r.ChargeCategory != "" && !slices.Contains(ChargeCategories, r.ChargeCategory) {
		add("ChargeCategory", "%s is not one of %s", quoteClip(r.ChargeCategory), strings.Join(ChargeCategories, ", "))
	}
	hasCost := r.BilledCost.IsSet() || r.EffectiveCost.IsSet() || r.ListCost.IsSet() || r.ContractedCost.IsSet()
	if r.BillingCurrency != "" && !IsCurrency(r.BillingCurrency) {
		add("BillingCurrency", "%s is not an ISO 4217 currency code", quoteClip(r.BillingCurrency))
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
	if longestString(r) > MaxStringLen || !allUTF8(r) {
		for _, f := range strFields {
			if v := *f.get(r); len(v) > MaxStringLen {
				add(f.name, "longer than %d bytes", MaxStringLen)
			} else if !validUTF8(v) {
				add(f.name, "invalid UTF-8 %s", quoteClip(v))
			}
		}
	}
	for k, v := range r.Tags {
		switch {
		case k == "":
			add("Tags", "empty tag key")
		case len(k) > 256 || len(v) > MaxStringLen:
			add("Tags."+clipKey(k), "too long")
		case !validUTF8(k) || !validUTF8(v):
			add("Tags."+clipKey(k), "invalid UTF-8 in key or value")
		}
	}
	for k, t := range r.TagTypes {
		v, ok := r.Tags[k]
		switch {
		case !ok:
			add("Tags."+clipKey(k), "a type for a tag that is not there")
		case t == TagNumber && !isJSONNumber(v):
			add("Tags."+clipKey(k), "%s is not a JSON number", quoteClip(v))
		case t == TagBool && v != "true" && v != "false":
			add("Tags."+clipKey(k), "%s is not a boolean", quoteClip(v))
		case t == TagNull && v != "":
			add("Tags."+clipKey(k), "a null tag holds %s", quoteClip(v))
		case t < TagNumber || t > TagNull:
			add("Tags."+clipKey(k), "unknown tag type %d", t)
		}
	}
	for k, v := range r.Ext {
		if !validExtName(k) {
			add("x_"+clipKey(k), "extension column names are a letter then letters, digits or _ (at most 64)")
		}
		if v.Kind < ExtString || v.Kind > ExtDecimal {
			add("x_"+k, "value has no type")
		} else if v.Kind == ExtDecimal && !v.Dec.IsSet() {
			add("x_"+k, "decimal value not set")
		} else if v.Kind == ExtString && len(v.Str) > MaxStringLen {
			add("x_"+k, "longer than %d bytes", MaxStringLen)
		} else if v.Kind == ExtString && !validUTF8(v.Str) {
			add("x_"+k, "invalid UTF-8 %s", quoteClip(v.Str))
		}
	}
	if r.Detail != nil {
		r.Detail.validate(add)
	}
	return errs
}

func clipKey(k string) string {
	if len(k) > 64 {
		return strings.ToValidUTF8(k[:64], "?") + "…"
	}
	return strings.ToValidUTF8(k, "?")
}

// Validate checks the batch and every record, and returns a
// ValidationError listing all problems, or nil.
func (b *Batch) Validate() error { return b.validate(true) }

// ValidateFields is Validate for a batch whose records each passed
// UsageRecord.Validate already and were not changed since (a caller that
// validated them as it decoded them): the batch's own fields, and every
// record's ChargePeriodStart against a snapshot's period, are checked; the
// records are not validated again. On such a batch it answers as Validate.
func (b *Batch) ValidateFields() error { return b.validate(false) }

func (b *Batch) validate(records bool) error {
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
		if records {
			for _, e := range r.Validate() {
				e.Index = i
				errs = append(errs, e)
			}
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

// allUTF8 reports whether every core string field is valid UTF-8.
func allUTF8(r *UsageRecord) bool {
	for i := range strFields {
		if !validUTF8(*strFieldOf(r, i)) {
			return false
		}
	}
	return true
}

// longestString is the length of r's longest string field, read field by
// field: Validate runs for every published record.
func longestString(r *UsageRecord) int {
	return max(len(r.BillingAccountId), len(r.BillingAccountName), len(r.SubAccountId), len(r.SubAccountName), len(r.ProviderName), len(r.PublisherName), len(r.ServiceName), len(r.ServiceCategory), len(r.ChargeCategory), len(r.ChargeDescription), len(r.SkuId), len(r.SkuPriceId), len(r.SkuMeter), len(r.InvoiceId), len(r.ResourceId), len(r.ResourceName), len(r.ResourceType), len(r.RegionId), len(r.RegionName), len(r.AvailabilityZone), len(r.ConsumedUnit), len(r.PricingUnit), len(r.BillingCurrency))
}
