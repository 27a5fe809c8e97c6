package messages

import (
	"encoding/json"
	"strings"
	"time"
)

// # FOCUS columns
//
// The columns come from the FOCUS specification itself, read in the
// FinOps-Open-Cost-and-Usage-Spec/FOCUS_Spec repository:
// specification/columns/*.md at tags v1.0 (f7f58a0a), v1.1 (6108d409) and
// v1.2 (7296e314): each file's "Column ID", "Data type", "Allows nulls",
// "Value format" and allowed-values table, and its "Introduced (version)".
// The formats are specification/attributes/{numeric_format,datetime_format,
// key_value_format,null_handling,currency_format}.md at v1.2.
//
// FOCUS 1.3 is not tagged in the stored snapshot of that repository (its
// newest commit, working_draft 04f8bb3d of 2025-05-29, is 1.2). The eight
// columns 1.3 adds are taken from secondary sources [INFER]: the FOCUS 1.3
// requirements model as described by atlon.io/docs/focus-requirements-model
// (ContractApplied and AllocatedMethodDetails are JSON objects) and the
// column reference of rshade/pulumicost-spec docs/focus-columns.md
// (ServiceProviderName, HostProviderName, AllocatedMethodId,
// AllocatedMethodDetails, AllocatedResourceId, AllocatedResourceName,
// AllocatedTags, ContractApplied). Because their types are inferred, the
// 1.3 JSON columns other than AllocatedTags are kept as their exact text and
// checked as JSON only when they start with '{' or '['.

// Detail holds the FOCUS columns that are not in UsageRecord's core: the
// ones no destination maps today, or only some do. It hangs off the record
// by a pointer (nil for records without any of them, which is every record
// that does not come from a FOCUS export), so the core record stays the
// size it was and its hot encode and decode paths pay one nil check; a
// FOCUS record pays one allocation. Fields are typed as the specification
// types them; JSON columns hold their JSON text exactly as read.
type Detail struct {
	BillingPeriodStart time.Time // 1.0, Date/Time
	BillingPeriodEnd   time.Time // 1.0, Date/Time

	BillingAccountType         string // 1.2
	SubAccountType             string // 1.2
	ChargeClass                string // 1.0, allowed: Correction
	ChargeFrequency            string // 1.0, allowed: One-Time, Recurring, Usage-Based
	CommitmentDiscountCategory string // 1.0, allowed: Spend, Usage
	CommitmentDiscountId       string // 1.0
	CommitmentDiscountName     string // 1.0
	CommitmentDiscountStatus   string // 1.0, allowed: Used, Unused
	CommitmentDiscountType     string // 1.0
	CommitmentDiscountUnit     string // 1.1
	CapacityReservationId      string // 1.1
	CapacityReservationStatus  string // 1.1, allowed: Used, Unused
	InvoiceIssuerName          string // 1.0
	PricingCategory            string // 1.0, allowed: Standard, Dynamic, Committed, Other
	PricingCurrency            string // 1.2, ISO 4217
	ServiceSubcategory         string // 1.1
	ServiceProviderName        string // 1.3 [INFER]
	HostProviderName           string // 1.3 [INFER]
	AllocatedMethodId          string // 1.3 [INFER]
	AllocatedResourceId        string // 1.3 [INFER]
	AllocatedResourceName      string // 1.3 [INFER]

	SkuPriceDetails        string // 1.1, JSON key-value object (its text)
	AllocatedTags          string // 1.3 [INFER], JSON key-value object (its text)
	AllocatedMethodDetails string // 1.3 [INFER], JSON (its text)
	ContractApplied        string // 1.3 [INFER], JSON (its text)

	CommitmentDiscountQuantity         Decimal // 1.1
	ContractedUnitPrice                Decimal // 1.0
	ListUnitPrice                      Decimal // 1.0
	PricingCurrencyContractedUnitPrice Decimal // 1.2
	PricingCurrencyEffectiveCost       Decimal // 1.2
	PricingCurrencyListUnitPrice       Decimal // 1.2
}

// ColumnInfo describes one FOCUS column.
type ColumnInfo struct {
	Name  string
	Kind  ColumnKind
	Since string // the FOCUS version that introduced it ("1.0" for older)
	// Allowed lists the values the specification allows (nil: any).
	Allowed []string
}

type detailStr struct {
	info ColumnInfo
	get  func(*Detail) *string
}

type detailDec struct {
	info ColumnInfo
	get  func(*Detail) *Decimal
}

type detailTime struct {
	info ColumnInfo
	get  func(*Detail) *time.Time
}

// Allowed values (FOCUS 1.0 to 1.2 agree on each).
var (
	ChargeClasses      = []string{"Correction"}
	ChargeFrequencies  = []string{"One-Time", "Recurring", "Usage-Based"}
	CommitmentCategory = []string{"Spend", "Usage"}
	UsedUnused         = []string{"Used", "Unused"}
	PricingCategories  = []string{"Standard", "Dynamic", "Committed", "Other"}
)

func info(name string, kind ColumnKind, since string, allowed ...string) ColumnInfo {
	return ColumnInfo{Name: name, Kind: kind, Since: since, Allowed: allowed}
}

var detailTimes = []detailTime{
	{info("BillingPeriodStart", ColTime, "1.0"), func(d *Detail) *time.Time { return &d.BillingPeriodStart }},
	{info("BillingPeriodEnd", ColTime, "1.0"), func(d *Detail) *time.Time { return &d.BillingPeriodEnd }},
}

var detailStrs = []detailStr{
	{info("BillingAccountType", ColString, "1.2"), func(d *Detail) *string { return &d.BillingAccountType }},
	{info("SubAccountType", ColString, "1.2"), func(d *Detail) *string { return &d.SubAccountType }},
	{info("ChargeClass", ColString, "1.0", ChargeClasses...), func(d *Detail) *string { return &d.ChargeClass }},
	{info("ChargeFrequency", ColString, "1.0", ChargeFrequencies...), func(d *Detail) *string { return &d.ChargeFrequency }},
	{info("CommitmentDiscountCategory", ColString, "1.0", CommitmentCategory...), func(d *Detail) *string { return &d.CommitmentDiscountCategory }},
	{info("CommitmentDiscountId", ColString, "1.0"), func(d *Detail) *string { return &d.CommitmentDiscountId }},
	{info("CommitmentDiscountName", ColString, "1.0"), func(d *Detail) *string { return &d.CommitmentDiscountName }},
	{info("CommitmentDiscountStatus", ColString, "1.0", UsedUnused...), func(d *Detail) *string { return &d.CommitmentDiscountStatus }},
	{info("CommitmentDiscountType", ColString, "1.0"), func(d *Detail) *string { return &d.CommitmentDiscountType }},
	{info("CommitmentDiscountUnit", ColString, "1.1"), func(d *Detail) *string { return &d.CommitmentDiscountUnit }},
	{info("CapacityReservationId", ColString, "1.1"), func(d *Detail) *string { return &d.CapacityReservationId }},
	{info("CapacityReservationStatus", ColString, "1.1", UsedUnused...), func(d *Detail) *string { return &d.CapacityReservationStatus }},
	{info("InvoiceIssuerName", ColString, "1.0"), func(d *Detail) *string { return &d.InvoiceIssuerName }},
	{info("PricingCategory", ColString, "1.0", PricingCategories...), func(d *Detail) *string { return &d.PricingCategory }},
	{info("PricingCurrency", ColString, "1.2"), func(d *Detail) *string { return &d.PricingCurrency }},
	{info("ServiceSubcategory", ColString, "1.1"), func(d *Detail) *string { return &d.ServiceSubcategory }},
	{info("ServiceProviderName", ColString, "1.3"), func(d *Detail) *string { return &d.ServiceProviderName }},
	{info("HostProviderName", ColString, "1.3"), func(d *Detail) *string { return &d.HostProviderName }},
	{info("AllocatedMethodId", ColString, "1.3"), func(d *Detail) *string { return &d.AllocatedMethodId }},
	{info("AllocatedResourceId", ColString, "1.3"), func(d *Detail) *string { return &d.AllocatedResourceId }},
	{info("AllocatedResourceName", ColString, "1.3"), func(d *Detail) *string { return &d.AllocatedResourceName }},
	{info("SkuPriceDetails", ColJSON, "1.1"), func(d *Detail) *string { return &d.SkuPriceDetails }},
	{info("AllocatedTags", ColJSON, "1.3"), func(d *Detail) *string { return &d.AllocatedTags }},
	{info("AllocatedMethodDetails", ColJSON, "1.3"), func(d *Detail) *string { return &d.AllocatedMethodDetails }},
	{info("ContractApplied", ColJSON, "1.3"), func(d *Detail) *string { return &d.ContractApplied }},
}

var detailDecs = []detailDec{
	{info("CommitmentDiscountQuantity", ColDecimal, "1.1"), func(d *Detail) *Decimal { return &d.CommitmentDiscountQuantity }},
	{info("ContractedUnitPrice", ColDecimal, "1.0"), func(d *Detail) *Decimal { return &d.ContractedUnitPrice }},
	{info("ListUnitPrice", ColDecimal, "1.0"), func(d *Detail) *Decimal { return &d.ListUnitPrice }},
	{info("PricingCurrencyContractedUnitPrice", ColDecimal, "1.2"), func(d *Detail) *Decimal { return &d.PricingCurrencyContractedUnitPrice }},
	{info("PricingCurrencyEffectiveCost", ColDecimal, "1.2"), func(d *Detail) *Decimal { return &d.PricingCurrencyEffectiveCost }},
	{info("PricingCurrencyListUnitPrice", ColDecimal, "1.2"), func(d *Detail) *Decimal { return &d.PricingCurrencyListUnitPrice }},
}

// Detail columns are numbered times, strings, decimals: the schema-2 column
// order and the bit of each in a mask.
const (
	detailFirstStr = 2
	detailFirstDec = detailFirstStr + 25
	detailColumns  = detailFirstDec + 6
)

func init() {
	if len(detailTimes) != detailFirstStr || len(detailStrs) != detailFirstDec-detailFirstStr || len(detailDecs) != detailColumns-detailFirstDec || detailColumns > 64 {
		panic("messages: the detail column table is out of step with Detail")
	}
}

// detailIndex maps a detail column name to its number.
var detailIndex = func() map[string]int {
	m := map[string]int{}
	for c := 0; c < detailColumns; c++ {
		m[detailInfo(c).Name] = c
	}
	return m
}()

func detailInfo(c int) ColumnInfo {
	switch {
	case c < detailFirstStr:
		return detailTimes[c].info
	case c < detailFirstDec:
		return detailStrs[c-detailFirstStr].info
	}
	return detailDecs[c-detailFirstDec].info
}

// coreSince is the version that introduced a core column ("1.0" for the
// ones older than 1.0).
var coreSince = map[string]string{"SkuMeter": "1.1", "InvoiceId": "1.2"}

// FocusColumns lists every column FOCUS 1.0 to 1.3 defines, core first.
func FocusColumns() []ColumnInfo {
	var out []ColumnInfo
	for _, n := range Columns() {
		since := coreSince[n]
		if since == "" {
			since = "1.0"
		}
		out = append(out, ColumnInfo{Name: n, Kind: ColumnOf(n), Since: since})
	}
	for i, c := range out {
		if c.Name == "ChargeCategory" {
			out[i].Allowed = ChargeCategories
		}
	}
	for c := 0; c < detailColumns; c++ {
		out = append(out, detailInfo(c))
	}
	return out
}

// FocusVersion tells which FOCUS version a file with these column names
// follows: the newest version that introduced one of them ("1.0" when only
// 1.0 columns are present, "" when none is a FOCUS column). It is a lower
// bound: a 1.2 export that leaves out every 1.2 column reads as 1.1.
func FocusVersion(names []string) string {
	best := ""
	for _, n := range names {
		since := ""
		if c, ok := detailIndex[n]; ok {
			since = detailInfo(c).Since
		} else if _, ok := columnIndex[n]; ok {
			since = coreSince[n]
			if since == "" {
				since = "1.0"
			}
		}
		if since > best { // "1.0" < "1.1" < "1.2" < "1.3" as strings
			best = since
		}
	}
	return best
}

// detailKind is the kind of a detail column (ColUnknown if name is none).
func detailKind(name string) ColumnKind {
	c, ok := detailIndex[name]
	if !ok {
		return ColUnknown
	}
	return detailInfo(c).Kind
}

func (r *UsageRecord) detail() *Detail {
	if r.Detail == nil {
		r.Detail = &Detail{}
	}
	return r.Detail
}

func setDetailString(r *UsageRecord, name, v string) bool {
	c, ok := detailIndex[name]
	if !ok || c < detailFirstStr || c >= detailFirstDec {
		return false
	}
	*detailStrs[c-detailFirstStr].get(r.detail()) = v
	return true
}

func setDetailDecimal(r *UsageRecord, name string, v Decimal) bool {
	c, ok := detailIndex[name]
	if !ok || c < detailFirstDec {
		return false
	}
	*detailDecs[c-detailFirstDec].get(r.detail()) = v
	return true
}

func setDetailTime(r *UsageRecord, name string, t time.Time) bool {
	c, ok := detailIndex[name]
	if !ok || c >= detailFirstStr {
		return false
	}
	*detailTimes[c].get(r.detail()) = t
	return true
}

// mask has a bit for every detail column d sets.
func (d *Detail) mask() uint64 {
	if d == nil {
		return 0
	}
	var m uint64
	for c, f := range detailTimes {
		if !f.get(d).IsZero() {
			m |= 1 << c
		}
	}
	for i, f := range detailStrs {
		if *f.get(d) != "" {
			m |= 1 << (detailFirstStr + i)
		}
	}
	for i, f := range detailDecs {
		if f.get(d).s != "" {
			m |= 1 << (detailFirstDec + i)
		}
	}
	return m
}

// validate appends d's problems.
func (d *Detail) validate(add func(field, format string, args ...any)) {
	for _, f := range detailTimes {
		if t := *f.get(d); !t.IsZero() {
			checkYear(add, f.info.Name, t)
		}
	}
	if !d.BillingPeriodStart.IsZero() && !d.BillingPeriodEnd.IsZero() && !d.BillingPeriodEnd.After(d.BillingPeriodStart) {
		add("BillingPeriodEnd", "%s is not after BillingPeriodStart %s", d.BillingPeriodEnd.Format(time.RFC3339), d.BillingPeriodStart.Format(time.RFC3339))
	}
	for _, f := range detailStrs {
		v := *f.get(d)
		if v == "" {
			continue
		}
		name := f.info.Name
		max := MaxStringLen
		if f.info.Kind == ColJSON {
			max = MaxJSONLen
		}
		switch {
		case len(v) > max:
			add(name, "longer than %d bytes", max)
			continue
		case !validUTF8(v):
			add(name, "invalid UTF-8 %s", quoteClip(v))
			continue
		}
		if f.info.Allowed != nil && !contains(f.info.Allowed, v) {
			add(name, "%s is not one of %s", quoteClip(v), strings.Join(f.info.Allowed, ", "))
		}
		if f.info.Kind == ColJSON {
			if p := jsonColumnProblem(name, v); p != "" {
				add(name, "%s", p)
			}
		}
	}
	if d.PricingCurrency != "" && validUTF8(d.PricingCurrency) && !IsCurrency(d.PricingCurrency) {
		add("PricingCurrency", "%s is not an ISO 4217 currency code", quoteClip(d.PricingCurrency))
	}
}

// MaxJSONLen bounds a JSON column's text.
const MaxJSONLen = 64 << 10

// jsonColumnProblem checks a JSON column: the key-value columns must be a
// JSON object whose values are strings, numbers, booleans or null
// (specification/attributes/key_value_format.md); the inferred 1.3 ones must
// be valid JSON when they look like JSON.
func jsonColumnProblem(name, v string) string {
	switch name {
	case "SkuPriceDetails", "AllocatedTags":
		if _, _, err := ParseKeyValue([]byte(v)); err != nil {
			return err.Error()
		}
	default:
		if (v[0] == '{' || v[0] == '[') && !json.Valid([]byte(v)) {
			return "invalid JSON " + quoteClip(v)
		}
	}
	return ""
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// clone deep-copies d.
func (d *Detail) clone() *Detail {
	if d == nil {
		return nil
	}
	c := *d
	for _, f := range detailStrs {
		p := f.get(&c)
		*p = strings.Clone(*p)
	}
	for _, f := range detailDecs {
		p := f.get(&c)
		p.s = strings.Clone(p.s)
	}
	return &c
}
