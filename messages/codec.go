package messages

import (
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
)

// SchemaVersion is the version of the part encoding this package writes
// (schema 2, columnar: see columnar.go). Readers read every version up to
// theirs, and refuse a newer one instead of misreading it.
const SchemaVersion = 3

// extDecimalType is the msgpack extension type of a decimal extension column
// (its bytes are the plain-notation string).
const extDecimalType int8 = 1

// extNumberType is the msgpack extension type of a numeric tag value (its
// bytes are the number's JSON text, exactly as read).
const extNumberType int8 = 2

// ErrNewerSchema is wrapped when a part was written by a newer schema.
var ErrNewerSchema = errors.New("newer schema version")

// Payload encoding, schema 1 (read, no longer written): a msgpack array of
// records; each record a msgpack map from FOCUS column name to value, unset
// fields left out.
// Decimals are strings in plain notation, times msgpack timestamps, Tags a
// map of strings, extension columns "x_<Name>" keys holding a string, an
// integer, or a decimal (extension type 1). Everything about the part is in
// the NATS headers (see PartMeta and the Hdr* constants). The schema-1
// writer and the msgpack-library codec the decoders are tested against are
// in schema1_test.go: no binary links them.

// EncodeRecords appends the schema-2 payload of recs to dst.
func EncodeRecords(dst []byte, recs []UsageRecord) ([]byte, error) {
	var e PartEncoder
	for i := range recs {
		e.Use(&recs[i])
	}
	dst = e.AppendHeader(dst, len(recs))
	for i := range recs {
		dst = e.AppendRecord(dst, &recs[i])
	}
	return dst, nil
}

type strField struct {
	name string
	get  func(*UsageRecord) *string
}

type decField struct {
	name string
	get  func(*UsageRecord) *Decimal
}

var strFields = []strField{
	{"BillingAccountId", func(r *UsageRecord) *string { return &r.BillingAccountId }},
	{"BillingAccountName", func(r *UsageRecord) *string { return &r.BillingAccountName }},
	{"SubAccountId", func(r *UsageRecord) *string { return &r.SubAccountId }},
	{"SubAccountName", func(r *UsageRecord) *string { return &r.SubAccountName }},
	{"ProviderName", func(r *UsageRecord) *string { return &r.ProviderName }},
	{"PublisherName", func(r *UsageRecord) *string { return &r.PublisherName }},
	{"ServiceName", func(r *UsageRecord) *string { return &r.ServiceName }},
	{"ServiceCategory", func(r *UsageRecord) *string { return &r.ServiceCategory }},
	{"ChargeCategory", func(r *UsageRecord) *string { return &r.ChargeCategory }},
	{"ChargeDescription", func(r *UsageRecord) *string { return &r.ChargeDescription }},
	{"SkuId", func(r *UsageRecord) *string { return &r.SkuId }},
	{"SkuPriceId", func(r *UsageRecord) *string { return &r.SkuPriceId }},
	{"SkuMeter", func(r *UsageRecord) *string { return &r.SkuMeter }},
	{"InvoiceId", func(r *UsageRecord) *string { return &r.InvoiceId }},
	{"ResourceId", func(r *UsageRecord) *string { return &r.ResourceId }},
	{"ResourceName", func(r *UsageRecord) *string { return &r.ResourceName }},
	{"ResourceType", func(r *UsageRecord) *string { return &r.ResourceType }},
	{"RegionId", func(r *UsageRecord) *string { return &r.RegionId }},
	{"RegionName", func(r *UsageRecord) *string { return &r.RegionName }},
	{"AvailabilityZone", func(r *UsageRecord) *string { return &r.AvailabilityZone }},
	{"ConsumedUnit", func(r *UsageRecord) *string { return &r.ConsumedUnit }},
	{"PricingUnit", func(r *UsageRecord) *string { return &r.PricingUnit }},
	{"BillingCurrency", func(r *UsageRecord) *string { return &r.BillingCurrency }},
}

var decFields = []decField{
	{"ConsumedQuantity", func(r *UsageRecord) *Decimal { return &r.ConsumedQuantity }},
	{"PricingQuantity", func(r *UsageRecord) *Decimal { return &r.PricingQuantity }},
	{"BilledCost", func(r *UsageRecord) *Decimal { return &r.BilledCost }},
	{"EffectiveCost", func(r *UsageRecord) *Decimal { return &r.EffectiveCost }},
	{"ListCost", func(r *UsageRecord) *Decimal { return &r.ListCost }},
	{"ContractedCost", func(r *UsageRecord) *Decimal { return &r.ContractedCost }},
}

// Column kinds, for readers of other formats (CSV, JSON) that look columns
// up by name.
type ColumnKind int

const (
	ColUnknown ColumnKind = iota
	ColString
	ColDecimal
	ColTime
	ColTags
	ColExt
	ColJSON // a JSON column other than Tags (SkuPriceDetails, ...): its text
)

var columnIndex = func() map[string]int {
	m := map[string]int{}
	for i, f := range strFields {
		m[f.name] = i
	}
	for i, f := range decFields {
		m[f.name] = 1000 + i
	}
	m["ChargePeriodStart"] = 2000
	m["ChargePeriodEnd"] = 2001
	m["Tags"] = 3000
	return m
}()

// Columns lists every FOCUS column name a UsageRecord carries, in a stable
// order (times, strings, decimals, Tags).
func Columns() []string {
	out := []string{"ChargePeriodStart", "ChargePeriodEnd"}
	for _, f := range strFields {
		out = append(out, f.name)
	}
	for _, f := range decFields {
		out = append(out, f.name)
	}
	return append(out, "Tags")
}

// ColumnOf tells what kind of column name is ("x_" names are extension
// columns).
func ColumnOf(name string) ColumnKind {
	if len(name) > 2 && name[:2] == "x_" {
		return ColExt
	}
	i, ok := columnIndex[name]
	switch {
	case !ok:
		return detailKind(name)
	case i < 1000:
		return ColString
	case i < 2000:
		return ColDecimal
	case i < 3000:
		return ColTime
	}
	return ColTags
}

// SetString sets the string column name; it reports false if name is not a
// string column.
func (r *UsageRecord) SetString(name, v string) bool {
	i, ok := columnIndex[name]
	if !ok {
		return setDetailString(r, name, v)
	}
	if i >= 1000 {
		return false
	}
	*strFields[i].get(r) = v
	return true
}

// SetDecimal sets the decimal column name.
func (r *UsageRecord) SetDecimal(name string, v Decimal) bool {
	i, ok := columnIndex[name]
	if !ok {
		return setDetailDecimal(r, name, v)
	}
	if i < 1000 || i >= 2000 {
		return false
	}
	*decFields[i-1000].get(r) = v
	return true
}

// SetTime sets a date/time column (ChargePeriodStart, BillingPeriodEnd, ...).
func (r *UsageRecord) SetTime(name string, t time.Time) bool {
	switch name {
	case "ChargePeriodStart":
		r.ChargePeriodStart = t
	case "ChargePeriodEnd":
		r.ChargePeriodEnd = t
	default:
		return setDetailTime(r, name, t)
	}
	return true
}

// DecodeError says which record and field of a payload could not be read.
type DecodeError struct {
	Record int
	Field  string
	Err    error
}

func (e *DecodeError) Error() string {
	if e.Field == "" {
		return fmt.Sprintf("record %d: %v", e.Record, e.Err)
	}
	return fmt.Sprintf("record %d: %s: %v", e.Record, e.Field, e.Err)
}

func (e *DecodeError) Unwrap() error { return e.Err }

// DecodeRecords decodes a payload of any schema this package knows (the
// layout tells them apart), appending to dst. The strings of records read
// from a schema-2 payload share one copy of it: keeping any of them keeps
// that copy alive.
func DecodeRecords(dst []UsageRecord, data []byte) ([]UsageRecord, error) {
	return decodeRecordsFast(dst, data, 0)
}

// DecodeRecordsAs is DecodeRecords for a payload whose Usage-Schema header
// says schema: a layout that does not match it is an error.
func DecodeRecordsAs(dst []UsageRecord, data []byte, schema int) ([]UsageRecord, error) {
	if schema < 1 || schema > SchemaVersion {
		return dst, fmt.Errorf("payload: schema %d: this reader knows 1 to %d: %w", schema, SchemaVersion, ErrNewerSchema)
	}
	return decodeRecordsFast(dst, data, schema)
}

// DecodeRecordsReusing is DecodeRecordsAs for a caller that decodes part
// after part into one buffer and uses each record only until the next
// decode, allocating next to nothing: it reuses the Tags and Ext maps of
// the records it overwrites in dst's spare capacity
// (dst[len(dst):cap(dst)]), so those records and their maps must no longer
// be in use; and the strings of a schema-2 part are not copied but point
// into data, which must not change while the records are in use (keep a
// record longer by deep-copying it).
func DecodeRecordsReusing(dst []UsageRecord, data []byte, schema int) ([]UsageRecord, error) {
	if schema < 1 || schema > SchemaVersion {
		return dst, fmt.Errorf("payload: schema %d: this reader knows 1 to %d: %w", schema, SchemaVersion, ErrNewerSchema)
	}
	return decodeWith(dst, data, schema, true)
}

// Header renders the metadata as NATS headers (with the schema version).
func (m PartMeta) Header() nats.Header {
	h := nats.Header{}
	v := m.Schema
	if v == 0 {
		v = SchemaVersion
	}
	h.Set(HdrSchema, strconv.Itoa(v))
	h.Set(HdrBatch, m.BatchID)
	h.Set(HdrFeed, m.Feed)
	h.Set(HdrSource, m.Source)
	h.Set(HdrKind, string(m.Kind))
	h.Set(HdrHour, m.Hour.UTC().Format(time.RFC3339))
	h.Set(HdrRecords, strconv.Itoa(m.Records))
	if m.Kind != KindSnapshotEnd {
		h.Set(HdrPart, strconv.Itoa(m.Part))
	}
	if m.Kind == KindSnapshot || m.Kind == KindSnapshotEnd {
		h.Set(HdrPeriod, m.Period.String())
		h.Set(HdrGeneration, strconv.FormatInt(m.Generation, 10))
	}
	if m.Kind == KindSnapshotEnd {
		h.Set(HdrParts, strconv.Itoa(m.Parts))
	}
	h.Set(HdrMsgID, m.MsgID())
	return h
}

// ParseMeta reads the metadata from NATS headers. It fails with
// ErrNewerSchema for parts written by a newer version, and names the header
// for anything missing or malformed.
func ParseMeta(h nats.Header) (PartMeta, error) {
	// Read the identifying fields first, so that even a part this reader
	// refuses can be named in a dead letter and acked back to its producer.
	m := PartMeta{BatchID: h.Get(HdrBatch), Feed: h.Get(HdrFeed), Source: h.Get(HdrSource), Kind: Kind(h.Get(HdrKind))}
	m.Part, _ = strconv.Atoi(h.Get(HdrPart))
	m.Records, _ = strconv.Atoi(h.Get(HdrRecords))
	sv := h.Get(HdrSchema)
	if sv == "" {
		return m, fmt.Errorf("header %s missing: not a usagefleet part", HdrSchema)
	}
	v, err := strconv.Atoi(sv)
	if err != nil || v < 1 {
		return m, fmt.Errorf("header %s: %q is not a schema version", HdrSchema, sv)
	}
	if v > SchemaVersion {
		return m, fmt.Errorf("header %s: version %d, this reader knows up to %d (upgrade usagefleet): %w", HdrSchema, v, SchemaVersion, ErrNewerSchema)
	}
	m.Schema = v
	if m.BatchID == "" {
		return m, fmt.Errorf("header %s missing", HdrBatch)
	}
	if !ValidToken(m.Source) {
		return m, fmt.Errorf("header %s: %q is not a valid source", HdrSource, m.Source)
	}
	if !ValidToken(m.Feed) {
		return m, fmt.Errorf("header %s: %q is not a valid feed", HdrFeed, m.Feed)
	}
	if m.Hour, err = time.Parse(time.RFC3339, h.Get(HdrHour)); err != nil {
		return m, fmt.Errorf("header %s: %v", HdrHour, err)
	}
	m.Hour = m.Hour.UTC()
	if m.Records, err = strconv.Atoi(h.Get(HdrRecords)); err != nil || m.Records < 0 {
		return m, fmt.Errorf("header %s: %q is not a record count", HdrRecords, h.Get(HdrRecords))
	}
	switch m.Kind {
	case KindAppend, KindSnapshot:
		if m.Part, err = strconv.Atoi(h.Get(HdrPart)); err != nil || m.Part < 1 {
			return m, fmt.Errorf("header %s: %q is not a part number", HdrPart, h.Get(HdrPart))
		}
	case KindSnapshotEnd:
		if m.Parts, err = strconv.Atoi(h.Get(HdrParts)); err != nil || m.Parts < 0 {
			return m, fmt.Errorf("header %s: %q is not a part count", HdrParts, h.Get(HdrParts))
		}
	default:
		return m, fmt.Errorf("header %s: unknown kind %q", HdrKind, m.Kind)
	}
	if m.Kind != KindAppend {
		if m.Period, err = ParsePeriod(h.Get(HdrPeriod)); err != nil {
			return m, fmt.Errorf("header %s: %v", HdrPeriod, err)
		}
		if m.Generation, err = strconv.ParseInt(h.Get(HdrGeneration), 10, 64); err != nil || m.Generation < 1 {
			return m, fmt.Errorf("header %s: %q is not a generation", HdrGeneration, h.Get(HdrGeneration))
		}
	}
	return m, nil
}

// DecodePart decodes a stored message: headers, then payload. The record
// count must match the header.
func DecodePart(h nats.Header, data []byte) (Part, error) {
	m, err := ParseMeta(h)
	if err != nil {
		return Part{}, err
	}
	p := Part{Meta: m}
	if m.Kind == KindSnapshotEnd {
		return p, nil
	}
	p.Records, err = DecodeRecordsAs(nil, data, m.Schema)
	if err != nil {
		return Part{}, err
	}
	if len(p.Records) != m.Records {
		return Part{}, fmt.Errorf("payload has %d records, header %s says %d", len(p.Records), HdrRecords, m.Records)
	}
	return p, nil
}

// A Field is a column of UsageRecord (core or Detail) found by name once
// (FieldOf), so a reader that sets it row after row does not look the
// name up for every value. The zero Field is no column: its setters
// report false.
type Field struct {
	idx int // 1 + columnIndex's number or detailField + the Detail column; 0: none
}

const detailField = 10000

// FieldOf is the column name names (FieldOf("x") is no column).
func FieldOf(name string) Field {
	if i, ok := columnIndex[name]; ok {
		return Field{idx: i + 1}
	}
	if c, ok := detailIndex[name]; ok {
		return Field{idx: detailField + c + 1}
	}
	return Field{}
}

// SetString is r.SetString(name, v) for the field's name.
func (f Field) SetString(r *UsageRecord, v string) bool {
	switch i := f.idx - 1; {
	case i >= 0 && i < 1000:
		*strFields[i].get(r) = v
		return true
	case i >= detailField+detailFirstStr && i < detailField+detailFirstDec:
		*detailStrs[i-detailField-detailFirstStr].get(r.detail()) = v
		return true
	}
	return false
}

// SetDecimal is r.SetDecimal(name, v) for the field's name.
func (f Field) SetDecimal(r *UsageRecord, v Decimal) bool {
	switch i := f.idx - 1; {
	case i >= 1000 && i < 2000:
		*decFields[i-1000].get(r) = v
		return true
	case i >= detailField+detailFirstDec && i < detailField+detailColumns:
		*detailDecs[i-detailField-detailFirstDec].get(r.detail()) = v
		return true
	}
	return false
}

// SetTime is r.SetTime(name, t) for the field's name.
func (f Field) SetTime(r *UsageRecord, t time.Time) bool {
	switch i := f.idx - 1; {
	case i == 2000:
		r.ChargePeriodStart = t
		return true
	case i == 2001:
		r.ChargePeriodEnd = t
		return true
	case i >= detailField && i < detailField+detailFirstStr:
		*detailTimes[i-detailField].get(r.detail()) = t
		return true
	}
	return false
}
