package cloudcruiser

import (
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/usagefleet/usagefleet/messages"
)

// Field names as documented (case-sensitive), in the documented order.
const (
	FieldUsageStart      = "Usage Start"
	FieldUsageEnd        = "Usage End"
	FieldAccountID       = "Account ID"
	FieldAccountName     = "Account Name"
	FieldProvider        = "Provider"
	FieldProviderType    = "Provider Type"
	FieldProduct         = "Product"
	FieldMeterID         = "Meter ID"
	FieldMeterName       = "Meter Name"
	FieldQuantity        = "Quantity"
	FieldUnits           = "Units"
	FieldAccountOwnerID  = "Account Owner ID"
	FieldAccountOwner    = "Account Owner"
	FieldProviderRegion  = "Provider Region"
	FieldProviderZone    = "Provider Zone"
	FieldServiceCategory = "Service Category"
	FieldResourceID      = "Resource ID"
	FieldResourceName    = "Resource Name"
	FieldResourceType    = "Resource Type"
	FieldCost            = "Cost"
)

// documented holds every documented field name, lower-cased: a tag must
// not become one of them (the API would read it as that field, or refuse a
// name that differs only in case).
var documented = map[string]bool{}

func init() {
	for _, f := range []string{
		FieldUsageStart, FieldUsageEnd, FieldAccountID, FieldAccountName, FieldProvider, FieldProviderType,
		FieldProduct, FieldMeterID, FieldMeterName, FieldQuantity, FieldUnits,
		FieldAccountOwnerID, FieldAccountOwner, FieldProviderRegion, FieldProviderZone, FieldServiceCategory,
		FieldResourceID, FieldResourceName, FieldResourceType, "Rate", FieldCost,
		"VM Provider Type", "VM Provider Series", "Operating System", "CPU Utilization", "Network In MB",
		"Network Out MB", "Storage Read Bytes", "Storage Write Bytes", "Read Throughput", "Write Throughput",
		"VM Max Num Disk",
	} {
		documented[strings.ToLower(f)] = true
	}
}

// Decimal bounds. No limit is documented, but a file is accepted or
// refused whole, so a value a server could not read would cost the whole
// date: such a record is rejected alone instead. The bounds are generous
// (the sandbox's, [INFER]); no billing figure comes near them.
const (
	maxIntegerDigits  = 64
	maxFractionDigits = 64
)

// RowError says why a record cannot be sent: the Cloud Cruiser fields it
// concerns and the reason. It is the reason of the record's rejection.
type RowError struct {
	Fields []string
	Reason string
}

func (e *RowError) Error() string { return e.Reason }

// mapper turns usage records into Cloud Cruiser rows. It is immutable.
type mapper struct {
	loc       *time.Location
	suffix    string // after the seconds of a time: "Z" or "±hh:mm[:ss]"
	offset    int    // seconds east of UTC (the location's)
	def       Defaults
	tagPrefix string
	omitTags  bool
	extra     []extraField // extra_fields; nil: every x_ column and tag
	costs     bool         // send Effective Cost and List Cost
}

// rowBuilder is one upload's scratch space around the shared mapper.
type rowBuilder struct {
	m     *mapper
	keys  []string        // tag keys of the record
	ext   []string        // extension column names of the record
	clash map[string]bool // tag key -> whether it clashes with a documented field
}

// nb reports whether s is not blank (the API refuses blank required fields).
func nb(s string) bool { return strings.TrimSpace(s) != "" }

func first(vals ...string) string {
	for _, v := range vals {
		if nb(v) {
			return v
		}
	}
	return ""
}

// Placeholders for a required field that neither the record nor
// `defaults:` fills and no other FOCUS column can stand for (see the
// package doc, "Repairs").
const (
	// Unassigned stands for a missing Account ID, Provider or Product.
	Unassigned = "Unassigned"
	// NoUnit is the Units of a quantity that has no unit, and of the 0
	// quantity a record without one is sent with.
	NoUnit = "N/A"
)

// Repair is one kind of repair a row needed: a bit set.
type Repair uint16

// The repairs, each named in the metric as Kinds names it.
const (
	RepairAccountID   Repair = 1 << iota // Account ID set to Unassigned
	RepairProvider                       // Provider from PublisherName, InvoiceIssuerName or Unassigned
	RepairProduct                        // Product from ServiceCategory, ChargeCategory or Unassigned
	RepairMeterID                        // Meter ID derived (SkuMeter, ChargeCategory[:ServiceName])
	RepairQuantity                       // no quantity: 0 sent, the cost travels in Cost
	RepairUnits                          // a quantity without a unit: NoUnit
	RepairExtDropped                     // an x_ decimal beyond the bounds left out
	RepairTagDropped                     // a tag whose name would be a documented field left out
	RepairCostDropped                    // Effective or List Cost beyond the bounds left out
	repairEnd
)

var repairKinds = map[Repair]string{
	RepairAccountID: "account_id", RepairProvider: "provider", RepairProduct: "product", RepairMeterID: "meter_id",
	RepairQuantity: "quantity", RepairUnits: "units", RepairExtDropped: "x_dropped", RepairTagDropped: "tag_dropped",
	RepairCostDropped: "cost_dropped",
}

// Kinds lists the repairs in r by their metric names.
func (r Repair) Kinds() []string {
	var out []string
	for b := Repair(1); b < repairEnd; b <<= 1 {
		if r&b != 0 {
			out = append(out, repairKinds[b])
		}
	}
	return out
}

// resolved is what a record's required and owner fields become.
type resolved struct {
	accountID, accountName string
	ownerID, ownerName     string
	provider, product      string
	meterID, meterName     string
	qty                    messages.Decimal
	units                  string
	rep                    Repair
}

// resolve fills the required fields: from the record, else `defaults:`,
// else by the repair rules of the package doc. Only a record with neither
// a quantity nor a cost is refused: it bills nothing that can be carried.
func (m *mapper) resolve(r *messages.UsageRecord) (resolved, *RowError) {
	var v resolved
	switch {
	case nb(r.SubAccountId):
		v.accountID, v.accountName = r.SubAccountId, r.SubAccountName
		if nb(r.BillingAccountId) && r.BillingAccountId != r.SubAccountId {
			v.ownerID, v.ownerName = r.BillingAccountId, r.BillingAccountName
		}
	case nb(r.BillingAccountId):
		v.accountID, v.accountName = r.BillingAccountId, r.BillingAccountName
	default:
		v.accountID = m.def.AccountID
	}
	if !nb(v.accountID) {
		v.accountID, v.rep = Unassigned, v.rep|RepairAccountID
	}
	v.accountName = first(v.accountName, m.def.AccountName, v.accountID)
	if v.provider = first(r.ProviderName, m.def.Provider); v.provider == "" {
		issuer := ""
		if r.Detail != nil {
			issuer = r.Detail.InvoiceIssuerName
		}
		v.provider, v.rep = first(r.PublisherName, issuer, Unassigned), v.rep|RepairProvider
	}
	if v.product = first(r.ServiceName, m.def.Product); v.product == "" {
		v.product, v.rep = first(r.ServiceCategory, r.ChargeCategory, Unassigned), v.rep|RepairProduct
	}
	if v.meterID = first(r.SkuId, r.SkuPriceId, m.def.MeterID); v.meterID == "" {
		v.meterID, v.rep = derivedMeter(r), v.rep|RepairMeterID
	}
	v.meterName = first(r.SkuMeter, m.def.MeterName, v.meterID)
	// Quantity and Units go as a pair: a quantity never gets another's unit.
	switch {
	case r.ConsumedQuantity.IsSet():
		v.qty, v.units = r.ConsumedQuantity, r.ConsumedUnit
	case r.PricingQuantity.IsSet():
		v.qty, v.units = r.PricingQuantity, r.PricingUnit
	case r.BilledCost.IsSet():
		v.qty, v.rep = zero, v.rep|RepairQuantity
	default:
		return v, &RowError{Fields: []string{FieldQuantity, FieldCost},
			Reason: "cloudcruiser: nothing to bill: no Quantity (from ConsumedQuantity or PricingQuantity) and no Cost (from BilledCost)"}
	}
	if v.units = first(v.units, m.def.Units); v.units == "" {
		v.units = NoUnit
		if v.rep&RepairQuantity == 0 {
			v.rep |= RepairUnits
		}
	}
	return v, nil
}

var zero = messages.MustDecimal("0")

// derivedMeter is the Meter ID of a record without SkuId, SkuPriceId and
// defaults.meter_id: its SkuMeter, else its ChargeCategory and ServiceName
// ("Tax", "Credit:Amazon EC2"), else Unassigned.
func derivedMeter(r *messages.UsageRecord) string {
	if nb(r.SkuMeter) {
		return r.SkuMeter
	}
	if !nb(r.ChargeCategory) {
		return Unassigned
	}
	if nb(r.ServiceName) {
		return r.ChargeCategory + ":" + r.ServiceName
	}
	return r.ChargeCategory
}

// checkDecimal refuses a value beyond the bounds every reader handles.
func checkDecimal(field string, d messages.Decimal) *RowError {
	if !decimalFits(d) {
		return &RowError{Fields: []string{field}, Reason: "cloudcruiser: " + field + " " + d.String() +
			" has more than " + strconv.Itoa(maxIntegerDigits) + " integer or " + strconv.Itoa(maxFractionDigits) + " fractional digits"}
	}
	return nil
}

// decimalFits reports whether d has at most maxIntegerDigits integer and
// maxFractionDigits fractional digits.
func decimalFits(d messages.Decimal) bool {
	s := strings.TrimPrefix(d.String(), "-")
	intDigits, frac, _ := strings.Cut(s, ".")
	return len(intDigits) <= maxIntegerDigits && len(frac) <= maxFractionDigits
}

// clashes reports whether tag key k, with the tag prefix, would be a
// documented field name (compared without case). The answer per key is
// kept: a date's records carry the same few tag keys.
func (b *rowBuilder) clashes(k string) bool {
	if c, ok := b.clash[k]; ok {
		return c
	}
	c := documented[strings.ToLower(b.m.tagPrefix+k)]
	if b.clash == nil || len(b.clash) >= 4096 {
		b.clash = map[string]bool{}
	}
	b.clash[strings.Clone(k)] = c // k may point into a message buffer
	return c
}

// appendRow is appendRowRepaired without the repairs.
func (b *rowBuilder) appendRow(dst []byte, r *messages.UsageRecord) ([]byte, *RowError) {
	dst, _, err := b.appendRowRepaired(dst, r)
	return dst, err
}

// appendRowRepaired appends the JSON object of r to dst, and says what
// metadata it repaired or left out to do so; or it returns dst unchanged
// and why r cannot be sent: r bills nothing, or what it bills (Quantity,
// Cost) is beyond the decimal bounds. Nothing is written for a record
// that fails.
func (b *rowBuilder) appendRowRepaired(dst []byte, r *messages.UsageRecord) ([]byte, Repair, *RowError) {
	m := b.m
	v, err := m.resolve(r)
	if err != nil {
		return dst, 0, err
	}
	start := r.ChargePeriodStart
	end := r.ChargePeriodEnd
	if end.IsZero() {
		end = start
	}
	if end.Before(start) {
		// Validation refuses this at publish time; a file is refused whole,
		// so a record that got past it must not cost its date.
		return dst, 0, &RowError{Fields: []string{FieldUsageEnd}, Reason: "cloudcruiser: ChargePeriodEnd is before ChargePeriodStart"}
	}
	if err := checkDecimal(FieldQuantity, v.qty); err != nil {
		return dst, 0, err
	}
	if r.BilledCost.IsSet() {
		if err := checkDecimal(FieldCost, r.BilledCost); err != nil {
			return dst, 0, err
		}
	}
	rep := v.rep
	for _, e := range r.Ext {
		if e.Kind == messages.ExtDecimal && !decimalFits(e.Dec) {
			rep |= RepairExtDropped // left out below
		}
	}
	if m.costs && (!fitsOrUnset(r.EffectiveCost) || !fitsOrUnset(r.ListCost)) {
		rep |= RepairCostDropped // appendCost leaves it out
	}
	b.keys = b.keys[:0]
	if !m.omitTags && m.extra == nil {
		for k := range r.Tags {
			if b.clashes(k) {
				rep |= RepairTagDropped
				continue
			}
			b.keys = append(b.keys, k)
		}
	}

	dst = append(dst, `{"Usage Start":`...)
	dst = m.appendTime(dst, start)
	dst = append(dst, `,"Usage End":`...)
	dst = m.appendTime(dst, inclusiveEnd(start, end))
	dst = appendStr(dst, `,"Account ID":`, v.accountID)
	dst = appendStr(dst, `,"Account Name":`, v.accountName)
	dst = appendStr(dst, `,"Provider":`, v.provider)
	dst = appendStr(dst, `,"Provider Type":`, m.def.ProviderType)
	dst = appendStr(dst, `,"Product":`, v.product)
	dst = appendStr(dst, `,"Meter ID":`, v.meterID)
	dst = appendStr(dst, `,"Meter Name":`, v.meterName)
	dst = append(dst, `,"Quantity":`...)
	dst = append(dst, v.qty.String()...) // plain notation is a JSON number, exactly
	dst = appendStr(dst, `,"Units":`, v.units)
	dst = appendOpt(dst, `,"Account Owner ID":`, v.ownerID)
	dst = appendOpt(dst, `,"Account Owner":`, v.ownerName)
	dst = appendOpt(dst, `,"Provider Region":`, first(r.RegionId, r.RegionName))
	dst = appendOpt(dst, `,"Provider Zone":`, r.AvailabilityZone)
	dst = appendOpt(dst, `,"Service Category":`, r.ServiceCategory)
	dst = appendOpt(dst, `,"Resource ID":`, r.ResourceId)
	dst = appendOpt(dst, `,"Resource Name":`, r.ResourceName)
	dst = appendOpt(dst, `,"Resource Type":`, r.ResourceType)
	if r.BilledCost.IsSet() {
		dst = append(dst, `,"Cost":`...)
		dst = append(dst, r.BilledCost.String()...)
	}
	if m.costs {
		dst = appendCost(dst, `,"`+FieldEffectiveCost+`":`, r.EffectiveCost)
		dst = appendCost(dst, `,"`+FieldListCost+`":`, r.ListCost)
	}
	if m.extra != nil {
		for i := range m.extra {
			dst = appendTyped(dst, &m.extra[i], r)
		}
		return append(dst, '}'), rep, nil
	}
	if len(r.Ext) > 0 {
		b.ext = b.ext[:0]
		for k, e := range r.Ext {
			if e.Kind != messages.ExtDecimal || decimalFits(e.Dec) {
				b.ext = append(b.ext, k)
			}
		}
		slices.Sort(b.ext)
		for _, k := range b.ext {
			e := r.Ext[k]
			dst = append(dst, `,"x_`...)
			dst = append(dst, k...) // a letter then letters, digits or _: nothing to escape
			dst = append(dst, '"', ':')
			switch e.Kind {
			case messages.ExtInt:
				dst = strconv.AppendInt(dst, e.Int, 10)
			case messages.ExtDecimal:
				dst = append(dst, e.Dec.String()...) // plain notation: a JSON number
			default:
				dst = messages.AppendJSONString(dst, e.Str)
			}
		}
	}
	slices.Sort(b.keys) // the tag keys gathered above
	for _, k := range b.keys {
		dst = append(dst, ',')
		dst = appendJoined(dst, m.tagPrefix, k)
		dst = append(dst, ':')
		dst = messages.AppendJSONString(dst, r.Tags[k])
	}
	return append(dst, '}'), rep, nil
}

// fitsOrUnset reports whether d is unset or within the decimal bounds.
func fitsOrUnset(d messages.Decimal) bool { return !d.IsSet() || decimalFits(d) }

// appendCost appends key and d as a JSON number (a FLOAT extra field),
// or nothing when d is unset or beyond the decimal bounds (a cost beside
// BilledCost is information, not what the row bills).
func appendCost(dst []byte, key string, d messages.Decimal) []byte {
	if !d.IsSet() || !decimalFits(d) {
		return dst
	}
	dst = append(dst, key...)
	return append(dst, d.String()...)
}

// inclusiveEnd turns FOCUS's exclusive ChargePeriodEnd into the inclusive
// end the seed's example shows: a daily row ends at "23:59" of its date,
// not at the next midnight. An end on a whole minute becomes the minute
// before it (next midnight → 23:59:00 of the date; 14:00 → 13:59:00),
// unless that would fall before the start (a record shorter than a
// minute), when the end is sent as it is.
func inclusiveEnd(start, end time.Time) time.Time {
	if end.Truncate(time.Minute).Equal(end) {
		if e := end.Add(-time.Minute); !e.Before(start) {
			return e
		}
	}
	return end
}

// appendTime writes t in the zone offset as "2024-08-16T13:00:00-07:00"
// (documented form yyyy-MM-ddTHH:mm:ssZ, Z an offset, "Z" for UTC). The
// form has no fraction: t is truncated to the second, which keeps it on
// the same accounting date (midnight is a whole second).
func (m *mapper) appendTime(dst []byte, t time.Time) []byte {
	dst = append(dst, '"')
	// The wall clock in the offset is UTC shifted by it; written digit by
	// digit (the general formatter was a fifth of a row's cost).
	w := t.Truncate(time.Second).UTC().Add(time.Duration(m.offset) * time.Second)
	var ok bool
	if dst, ok = messages.AppendDateTime(dst, w); !ok {
		dst = t.Truncate(time.Second).In(m.loc).AppendFormat(dst, "2006-01-02T15:04:05")
	}
	dst = append(dst, m.suffix...)
	return append(dst, '"')
}

// appendJoined appends a+b as one JSON string, without building a+b.
func appendJoined(dst []byte, a, b string) []byte {
	dst = messages.AppendJSONString(dst, a)
	dst = dst[:len(dst)-1] // a's closing quote
	mark := len(dst)
	dst = messages.AppendJSONString(dst, b)
	// b's opening quote goes: shift b (and its closing quote) left by one.
	copy(dst[mark:], dst[mark+1:])
	return dst[:len(dst)-1]
}

func appendStr(dst []byte, key, v string) []byte {
	dst = append(dst, key...)
	return messages.AppendJSONString(dst, v)
}

func appendOpt(dst []byte, key, v string) []byte {
	if v == "" {
		return dst
	}
	return appendStr(dst, key, v)
}
