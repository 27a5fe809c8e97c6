package messages

import (
	"math/bits"
	"sort"
	"time"
)

// Payload encoding, schema 2 (what this package writes): a msgpack array
// whose first element names the columns and whose other elements are the
// records, one array of values per record in column order:
//
//	[ ["ChargePeriodStart", "BillingAccountId", ..., "Tags", "x_Project"],
//	  [<timestamp>, "acct-1", ..., {"team": "billing"}, "apollo"],
//	  [<timestamp>, "acct-2", ..., nil, nil],
//	  ... ]
//
// The columns are the core FOCUS columns the part's records use, in
// Columns() order, then the Detail columns they use (FocusColumns order),
// then its extension columns ("x_<Name>") sorted by name. A value is nil
// where the record leaves the column unset; otherwise its type is schema
// 1's: a msgpack timestamp for a date/time, a string for text, JSON text
// and decimals (plain notation), a map for Tags, and a string, an integer
// or a decimal (extension type 1) for an extension column. A tag value is a
// string, or for the other JSON types nil, a boolean, or a number as its
// exact JSON text in extension type 2.
//
// Schema 3 is schema 2 plus the Detail columns and non-string tag values.
// A part is labelled 3 only when it uses them (PartEncoder.Schema), so a
// reader of schema 2 refuses it as newer (and waits for its upgrade)
// instead of dead-lettering it over a column it does not know; every other
// part stays byte for byte what schema 2 wrote.
//
// Schema 1 wrote each record as a map keyed by column name. For FOCUS
// records the names were 60% of the bytes; naming them once per part makes
// a part less than half the size, which is what publishing, storing,
// reading back and decoding cost. Readers still read schema 1.

// The fixed columns, by position in Columns() order: the two times, the
// string columns (strFields order), the decimal columns (decFields order),
// Tags.
const (
	colStart     = 0
	colEnd       = 1
	colFirstStr  = 2
	colFirstDec  = colFirstStr + 23
	colTags      = colFirstDec + 6
	fixedColumns = colTags + 1
)

func init() {
	if len(strFields) != colFirstDec-colFirstStr || len(decFields) != colTags-colFirstDec || fixedColumns > 32 {
		panic("messages: the schema-2 column table is out of step with the record fields")
	}
}

// fixedName is the name of fixed column c.
func fixedName(c int) string {
	switch {
	case c == colStart:
		return "ChargePeriodStart"
	case c == colEnd:
		return "ChargePeriodEnd"
	case c < colFirstDec:
		return strFields[c-colFirstStr].name
	case c < colTags:
		return decFields[c-colFirstDec].name
	}
	return "Tags"
}

// fixedColumn is the position of a fixed column name, or -1.
func fixedColumn(name string) int {
	idx, ok := columnIndex[name]
	switch {
	case !ok:
		return -1
	case idx < 1000:
		return colFirstStr + idx
	case idx < 2000:
		return colFirstDec + idx - 1000
	case idx == 2000:
		return colStart
	case idx == 2001:
		return colEnd
	}
	return colTags
}

// usedMask has a bit for every fixed column r sets. Fields are named one
// by one (not through the tables) because this runs for every record.
func usedMask(r *UsageRecord) uint32 {
	var m uint32
	if !r.ChargePeriodStart.IsZero() {
		m |= 1 << colStart
	}
	if !r.ChargePeriodEnd.IsZero() {
		m |= 1 << colEnd
	}
	if r.BillingAccountId != "" {
		m |= 1 << (colFirstStr + 0)
	}
	if r.BillingAccountName != "" {
		m |= 1 << (colFirstStr + 1)
	}
	if r.SubAccountId != "" {
		m |= 1 << (colFirstStr + 2)
	}
	if r.SubAccountName != "" {
		m |= 1 << (colFirstStr + 3)
	}
	if r.ProviderName != "" {
		m |= 1 << (colFirstStr + 4)
	}
	if r.PublisherName != "" {
		m |= 1 << (colFirstStr + 5)
	}
	if r.ServiceName != "" {
		m |= 1 << (colFirstStr + 6)
	}
	if r.ServiceCategory != "" {
		m |= 1 << (colFirstStr + 7)
	}
	if r.ChargeCategory != "" {
		m |= 1 << (colFirstStr + 8)
	}
	if r.ChargeDescription != "" {
		m |= 1 << (colFirstStr + 9)
	}
	if r.SkuId != "" {
		m |= 1 << (colFirstStr + 10)
	}
	if r.SkuPriceId != "" {
		m |= 1 << (colFirstStr + 11)
	}
	if r.SkuMeter != "" {
		m |= 1 << (colFirstStr + 12)
	}
	if r.InvoiceId != "" {
		m |= 1 << (colFirstStr + 13)
	}
	if r.ResourceId != "" {
		m |= 1 << (colFirstStr + 14)
	}
	if r.ResourceName != "" {
		m |= 1 << (colFirstStr + 15)
	}
	if r.ResourceType != "" {
		m |= 1 << (colFirstStr + 16)
	}
	if r.RegionId != "" {
		m |= 1 << (colFirstStr + 17)
	}
	if r.RegionName != "" {
		m |= 1 << (colFirstStr + 18)
	}
	if r.AvailabilityZone != "" {
		m |= 1 << (colFirstStr + 19)
	}
	if r.ConsumedUnit != "" {
		m |= 1 << (colFirstStr + 20)
	}
	if r.PricingUnit != "" {
		m |= 1 << (colFirstStr + 21)
	}
	if r.BillingCurrency != "" {
		m |= 1 << (colFirstStr + 22)
	}
	if r.ConsumedQuantity.s != "" {
		m |= 1 << (colFirstDec + 0)
	}
	if r.PricingQuantity.s != "" {
		m |= 1 << (colFirstDec + 1)
	}
	if r.BilledCost.s != "" {
		m |= 1 << (colFirstDec + 2)
	}
	if r.EffectiveCost.s != "" {
		m |= 1 << (colFirstDec + 3)
	}
	if r.ListCost.s != "" {
		m |= 1 << (colFirstDec + 4)
	}
	if r.ContractedCost.s != "" {
		m |= 1 << (colFirstDec + 5)
	}
	if len(r.Tags) > 0 {
		m |= 1 << colTags
	}
	return m
}

// PartEncoder writes schema-2 payloads. Tell it every record of the part
// with Use (that decides the columns), then write the header for the
// record count with AppendHeader and each record with AppendRecord. The
// zero value is ready; Reset makes it ready for another part.
type PartEncoder struct {
	mask   uint32
	dmask  uint64   // Detail columns used
	typed  bool     // a record has a non-string tag value
	ext    []string // extension column names (without "x_"), sorted once sealed
	extSet map[string]bool
	cols   []byte // the encoded column array, once sealed
	ncols  int
	sealed bool
}

// Reset forgets the columns.
func (e *PartEncoder) Reset() {
	e.mask, e.ext, e.cols, e.sealed = 0, e.ext[:0], e.cols[:0], false
	e.dmask, e.typed = 0, false
	clear(e.extSet)
}

// Use widens the columns to cover r. It must not be called after the first
// AppendHeader or AppendRecord.
func (e *PartEncoder) Use(r *UsageRecord) {
	if e.sealed {
		panic("messages: PartEncoder.Use after encoding began")
	}
	e.mask |= usedMask(r)
	if r.Detail != nil {
		e.dmask |= r.Detail.mask()
	}
	if len(r.TagTypes) > 0 {
		e.typed = true
	}
	for k := range r.Ext {
		if !e.extSet[k] {
			if e.extSet == nil {
				e.extSet = map[string]bool{}
			}
			e.extSet[k] = true
			e.ext = append(e.ext, k)
		}
	}
}

func (e *PartEncoder) seal() {
	if e.sealed {
		return
	}
	e.sealed = true
	sort.Strings(e.ext)
	n := e.columnCount()
	e.ncols = n
	e.cols = appendArrayLen(e.cols[:0], n)
	for c := 0; c < fixedColumns; c++ {
		if e.mask&(1<<c) != 0 {
			e.cols = appendStr(e.cols, fixedName(c))
		}
	}
	for c := 0; c < detailColumns; c++ {
		if e.dmask&(1<<c) != 0 {
			e.cols = appendStr(e.cols, detailInfo(c).Name)
		}
	}
	for _, k := range e.ext {
		e.cols = appendStrLen(e.cols, len(k)+2)
		e.cols = append(e.cols, 'x', '_')
		e.cols = append(e.cols, k...)
	}
}

func (e *PartEncoder) columnCount() int {
	n := len(e.ext)
	for m := e.mask; m != 0; m &= m - 1 {
		n++
	}
	return n + bits.OnesCount64(e.dmask)
}

// Schema is the schema version the part's payload needs: 3 when a record
// uses a Detail column or a non-string tag value, else 2.
func (e *PartEncoder) Schema() int {
	if e.dmask != 0 || e.typed {
		return 3
	}
	return 2
}

// HeaderLen is the size of the payload header for n records.
func (e *PartEncoder) HeaderLen(n int) int {
	e.seal()
	return arrayHeaderLen(n+1) + len(e.cols)
}

// MaxHeaderLen is the largest HeaderLen can be, whatever the record count.
func (e *PartEncoder) MaxHeaderLen() int {
	e.seal()
	return 5 + len(e.cols)
}

// AppendHeader appends the payload header for n records: the outer array
// and the column names.
func (e *PartEncoder) AppendHeader(dst []byte, n int) []byte {
	e.seal()
	dst = appendArrayLen(dst, n+1)
	return append(dst, e.cols...)
}

// AppendRecord appends r as one row. Every column r sets must have been
// covered by Use.
//
// It is long on purpose (issue 11 leaves it whole): it runs for every
// record of every part, one branch per column on the mask; steps in
// functions of their own would be calls on that path, to be split only
// with a paired BenchmarkEncodePart on a quiet machine showing no cost.
func (e *PartEncoder) AppendRecord(dst []byte, r *UsageRecord) []byte {
	e.seal()
	return e.appendValues(appendArrayLen(dst, e.ncols), r)
}

// appendValues appends r's values in the sealed encoder's columns (the
// row without its array header).
func (e *PartEncoder) appendValues(dst []byte, r *UsageRecord) []byte {
	m := e.mask
	if m&(1<<colStart) != 0 {
		dst = appendTimeOrNil(dst, r.ChargePeriodStart)
	}
	if m&(1<<colEnd) != 0 {
		dst = appendTimeOrNil(dst, r.ChargePeriodEnd)
	}
	if m&(1<<(colFirstStr+0)) != 0 {
		dst = appendStrOrNil(dst, r.BillingAccountId)
	}
	if m&(1<<(colFirstStr+1)) != 0 {
		dst = appendStrOrNil(dst, r.BillingAccountName)
	}
	if m&(1<<(colFirstStr+2)) != 0 {
		dst = appendStrOrNil(dst, r.SubAccountId)
	}
	if m&(1<<(colFirstStr+3)) != 0 {
		dst = appendStrOrNil(dst, r.SubAccountName)
	}
	if m&(1<<(colFirstStr+4)) != 0 {
		dst = appendStrOrNil(dst, r.ProviderName)
	}
	if m&(1<<(colFirstStr+5)) != 0 {
		dst = appendStrOrNil(dst, r.PublisherName)
	}
	if m&(1<<(colFirstStr+6)) != 0 {
		dst = appendStrOrNil(dst, r.ServiceName)
	}
	if m&(1<<(colFirstStr+7)) != 0 {
		dst = appendStrOrNil(dst, r.ServiceCategory)
	}
	if m&(1<<(colFirstStr+8)) != 0 {
		dst = appendStrOrNil(dst, r.ChargeCategory)
	}
	if m&(1<<(colFirstStr+9)) != 0 {
		dst = appendStrOrNil(dst, r.ChargeDescription)
	}
	if m&(1<<(colFirstStr+10)) != 0 {
		dst = appendStrOrNil(dst, r.SkuId)
	}
	if m&(1<<(colFirstStr+11)) != 0 {
		dst = appendStrOrNil(dst, r.SkuPriceId)
	}
	if m&(1<<(colFirstStr+12)) != 0 {
		dst = appendStrOrNil(dst, r.SkuMeter)
	}
	if m&(1<<(colFirstStr+13)) != 0 {
		dst = appendStrOrNil(dst, r.InvoiceId)
	}
	if m&(1<<(colFirstStr+14)) != 0 {
		dst = appendStrOrNil(dst, r.ResourceId)
	}
	if m&(1<<(colFirstStr+15)) != 0 {
		dst = appendStrOrNil(dst, r.ResourceName)
	}
	if m&(1<<(colFirstStr+16)) != 0 {
		dst = appendStrOrNil(dst, r.ResourceType)
	}
	if m&(1<<(colFirstStr+17)) != 0 {
		dst = appendStrOrNil(dst, r.RegionId)
	}
	if m&(1<<(colFirstStr+18)) != 0 {
		dst = appendStrOrNil(dst, r.RegionName)
	}
	if m&(1<<(colFirstStr+19)) != 0 {
		dst = appendStrOrNil(dst, r.AvailabilityZone)
	}
	if m&(1<<(colFirstStr+20)) != 0 {
		dst = appendStrOrNil(dst, r.ConsumedUnit)
	}
	if m&(1<<(colFirstStr+21)) != 0 {
		dst = appendStrOrNil(dst, r.PricingUnit)
	}
	if m&(1<<(colFirstStr+22)) != 0 {
		dst = appendStrOrNil(dst, r.BillingCurrency)
	}
	if m&(1<<(colFirstDec+0)) != 0 {
		dst = appendStrOrNil(dst, r.ConsumedQuantity.s)
	}
	if m&(1<<(colFirstDec+1)) != 0 {
		dst = appendStrOrNil(dst, r.PricingQuantity.s)
	}
	if m&(1<<(colFirstDec+2)) != 0 {
		dst = appendStrOrNil(dst, r.BilledCost.s)
	}
	if m&(1<<(colFirstDec+3)) != 0 {
		dst = appendStrOrNil(dst, r.EffectiveCost.s)
	}
	if m&(1<<(colFirstDec+4)) != 0 {
		dst = appendStrOrNil(dst, r.ListCost.s)
	}
	if m&(1<<(colFirstDec+5)) != 0 {
		dst = appendStrOrNil(dst, r.ContractedCost.s)
	}
	if m&(1<<colTags) != 0 {
		if len(r.TagTypes) > 0 {
			dst = appendTypedTags(dst, r.Tags, r.TagTypes)
		} else {
			dst = appendTags(dst, r.Tags)
		}
	}
	if e.dmask != 0 {
		dst = appendDetail(dst, e.dmask, r.Detail)
	}
	for _, k := range e.ext {
		v, ok := r.Ext[k]
		if !ok {
			dst = append(dst, 0xc0)
			continue
		}
		dst = appendExtValue(dst, v)
	}
	return dst
}

func appendArrayLen(dst []byte, n int) []byte {
	switch {
	case n < 16:
		return append(dst, 0x90|byte(n))
	case n <= 0xffff:
		return append(dst, 0xdc, byte(n>>8), byte(n))
	}
	return append(dst, 0xdd, byte(n>>24), byte(n>>16), byte(n>>8), byte(n))
}

func arrayHeaderLen(n int) int {
	switch {
	case n < 16:
		return 1
	case n <= 0xffff:
		return 3
	}
	return 5
}

func appendTimeOrNil(dst []byte, t time.Time) []byte {
	if t.IsZero() {
		return append(dst, 0xc0)
	}
	return appendMsgpackTime(dst, t)
}

func appendStrOrNil(dst []byte, s string) []byte {
	if s == "" {
		return append(dst, 0xc0)
	}
	return appendStr(dst, s)
}

// appendTags writes tags as a map with its keys sorted (nil when empty),
// sorting up to 8 keys on the stack.
func appendTags(dst []byte, tags map[string]string) []byte {
	if len(tags) == 0 {
		return append(dst, 0xc0)
	}
	dst = appendMapLen(dst, len(tags))
	if len(tags) > 8 {
		for _, k := range sortedKeys(tags) {
			dst = appendStr(dst, k)
			dst = appendStr(dst, tags[k])
		}
		return dst
	}
	type kv struct{ k, v string }
	var arr [8]kv
	kvs := arr[:0]
	for k, v := range tags {
		kvs = append(kvs, kv{k, v})
	}
	for i := 1; i < len(kvs); i++ { // insertion sort: a handful of keys
		for j := i; j > 0 && kvs[j].k < kvs[j-1].k; j-- {
			kvs[j], kvs[j-1] = kvs[j-1], kvs[j]
		}
	}
	for _, p := range kvs {
		dst = appendStr(dst, p.k)
		dst = appendStr(dst, p.v)
	}
	return dst
}

func appendExtValue(dst []byte, v ExtValue) []byte {
	switch v.Kind {
	case ExtString:
		return appendStr(dst, v.Str)
	case ExtInt:
		return appendInt(dst, v.Int)
	case ExtDecimal:
		dst = appendExtHeader(dst, extDecimalType, len(v.Dec.s))
		return append(dst, v.Dec.s...)
	}
	return append(dst, 0xc0) // unreachable for validated records
}
