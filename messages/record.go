package messages

import (
	"fmt"
	"strings"
	"time"
)

// UsageRecord is one usage or billing line. Field names follow the FinOps
// FOCUS 1.x columns, so a FOCUS export can be published as it is. A raw
// metered event fills what it knows (a time, an account, a SKU or meter and a
// quantity); a rated line item carries costs too.
//
// Quantities and costs are exact Decimals; an unset Decimal means "absent",
// which destinations treat differently from zero.
type UsageRecord struct {
	// When. ChargePeriodStart is required.
	ChargePeriodStart time.Time
	ChargePeriodEnd   time.Time

	// Who.
	BillingAccountId   string
	BillingAccountName string
	SubAccountId       string
	SubAccountName     string

	// What.
	ProviderName      string
	PublisherName     string
	ServiceName       string
	ServiceCategory   string
	ChargeCategory    string // Usage, Purchase, Tax, Credit, Adjustment
	ChargeDescription string
	SkuId             string
	SkuPriceId        string
	SkuMeter          string
	InvoiceId         string

	// Where.
	ResourceId       string
	ResourceName     string
	ResourceType     string
	RegionId         string
	RegionName       string
	AvailabilityZone string

	// How much.
	ConsumedQuantity Decimal
	ConsumedUnit     string
	PricingQuantity  Decimal
	PricingUnit      string

	// Cost.
	BilledCost      Decimal
	EffectiveCost   Decimal
	ListCost        Decimal
	ContractedCost  Decimal
	BillingCurrency string

	// Labels. Tags holds every tag's value as text: a JSON string as it
	// is, a number as its exact JSON text, a boolean as "true" or "false",
	// null as "". TagTypes says which values were not strings (nil when
	// all are, the usual case), so the JSON type travels too.
	Tags     map[string]string
	TagTypes map[string]TagType
	// Ext holds the extension columns, keyed by name without the "x_"
	// prefix ("x_Project" is Ext["Project"]).
	Ext map[string]ExtValue

	// Detail holds the other FOCUS columns (nil when the record has none
	// of them): see Detail.
	Detail *Detail
}

// TagType is the JSON type of a tag value that is not a string.
type TagType uint8

const (
	TagNumber TagType = iota + 1 // the value is the number's exact JSON text
	TagBool                      // "true" or "false"
	TagNull                      // ""
)

func (t TagType) String() string {
	switch t {
	case TagNumber:
		return "number"
	case TagBool:
		return "boolean"
	case TagNull:
		return "null"
	}
	return fmt.Sprintf("TagType(%d)", uint8(t))
}

// ChargeCategories are the FOCUS ChargeCategory values.
var ChargeCategories = []string{"Usage", "Purchase", "Tax", "Credit", "Adjustment"}

// ExtKind is the type of an extension column.
type ExtKind uint8

const (
	ExtString ExtKind = iota + 1
	ExtInt
	ExtDecimal
)

func (k ExtKind) String() string {
	switch k {
	case ExtString:
		return "string"
	case ExtInt:
		return "int"
	case ExtDecimal:
		return "decimal"
	}
	return fmt.Sprintf("ExtKind(%d)", uint8(k))
}

// ExtValue is a typed extension column value.
type ExtValue struct {
	Kind ExtKind
	Str  string
	Int  int64
	Dec  Decimal
}

// ExtStr, ExtI and ExtDec build extension values.
func ExtStr(s string) ExtValue  { return ExtValue{Kind: ExtString, Str: s} }
func ExtI(i int64) ExtValue     { return ExtValue{Kind: ExtInt, Int: i} }
func ExtDec(d Decimal) ExtValue { return ExtValue{Kind: ExtDecimal, Dec: d} }
func (v ExtValue) IsZero() bool { return v.Kind == 0 }
func (v ExtValue) Equal(o ExtValue) bool {
	return v.Kind == o.Kind && v.Str == o.Str && v.Int == o.Int && v.Dec.Equal(o.Dec)
}

// String renders the value as text (decimals in plain notation).
func (v ExtValue) String() string {
	switch v.Kind {
	case ExtInt:
		return fmt.Sprint(v.Int)
	case ExtDecimal:
		return v.Dec.String()
	}
	return v.Str
}

// Clone returns a deep copy of r: its strings, decimals and maps share no
// memory with r's, so it can outlive the buffer r was decoded from (see
// DecodeRecordsReusing).
func (r *UsageRecord) Clone() UsageRecord {
	c := *r
	for i := range strFields {
		p := strFieldOf(&c, i)
		*p = strings.Clone(*p)
	}
	for i := range decFields {
		p := decFieldOf(&c, i)
		p.s = strings.Clone(p.s)
	}
	if r.Tags != nil {
		c.Tags = make(map[string]string, len(r.Tags))
		for k, v := range r.Tags {
			c.Tags[strings.Clone(k)] = strings.Clone(v)
		}
	}
	if r.TagTypes != nil {
		c.TagTypes = make(map[string]TagType, len(r.TagTypes))
		for k, v := range r.TagTypes {
			c.TagTypes[strings.Clone(k)] = v
		}
	}
	c.Detail = r.Detail.clone()
	if r.Ext != nil {
		c.Ext = make(map[string]ExtValue, len(r.Ext))
		for k, v := range r.Ext {
			v.Str, v.Dec.s = strings.Clone(v.Str), strings.Clone(v.Dec.s)
			c.Ext[strings.Clone(k)] = v
		}
	}
	return c
}
