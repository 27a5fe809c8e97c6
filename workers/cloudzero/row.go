package cloudzero

import (
	"fmt"
	"slices"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/usagefleet/usagefleet/messages"
)

// CBF columns named in errors.
const (
	colUsageStart   = "time/usage_start"
	colUsageEnd     = "time/usage_end"
	colCost         = "cost/cost"
	colLineItemType = "lineitem/type"
	colResourceID   = "resource/id"
	tagPrefix       = "resource/tag:"
)

// The placeholder row replace_hourly (or replace_drop) sends for a unit that
// has no deliverable record: the API cannot replace an hour with nothing, so
// an emptied unit is replaced by one zero-cost row. Tests and reports that
// compare what CloudZero holds with what was published leave rows with this
// lineitem/id out.
const (
	PlaceholderLineItemID  = "usagefleet:empty-hour"
	PlaceholderDescription = "usagefleet: empty hour"
)

// RowError says why a record cannot become a CBF row. The record is
// rejected alone; the rest of its unit is still delivered.
type RowError struct {
	Column string // the CBF column concerned
	Reason string
}

func (e *RowError) Error() string { return e.Column + ": " + e.Reason }

// maxStackTags is how many tag keys AppendRow sorts without allocating.
const maxStackTags = 16

// AppendRow appends the CBF row object of r to dst (see the package doc for
// the mapping) and returns the extended buffer; it is AppendRowRepaired
// without the count of repairs.
func AppendRow(dst []byte, r *messages.UsageRecord) ([]byte, error) {
	dst, _, err := AppendRowRepaired(dst, r)
	return dst, err
}

// AppendRowRepaired appends the CBF row object of r to dst and says what it
// had to repair. It encodes by appending bytes, without reflection, and
// allocates nothing for a record with at most 16 tags that needs no
// repair. A record is refused (a *RowError, dst unchanged) only when what
// it bills cannot be carried: no cost, no time, a time CBF cannot write.
// Tags CBF cannot take are repaired or dropped alone (see Repairs and the
// package doc) and the row is still written.
func AppendRowRepaired(dst []byte, r *messages.UsageRecord) ([]byte, Repairs, error) {
	if r.ChargePeriodStart.IsZero() {
		return dst, Repairs{}, &RowError{colUsageStart, "ChargePeriodStart is required"}
	}
	if y := r.ChargePeriodStart.UTC().Year(); y < 1 || y > 9999 {
		return dst, Repairs{}, &RowError{colUsageStart, "ChargePeriodStart is outside years 0001-9999"}
	}
	if !r.ChargePeriodEnd.IsZero() {
		if y := r.ChargePeriodEnd.UTC().Year(); y < 1 || y > 9999 {
			return dst, Repairs{}, &RowError{colUsageEnd, "ChargePeriodEnd is outside years 0001-9999"}
		}
	}
	if !r.BilledCost.IsSet() {
		return dst, Repairs{}, &RowError{colCost, "BilledCost is required: CloudZero needs a cost on every row"}
	}
	lit, ok := lineItemType(r)
	if !ok {
		return dst, Repairs{}, &RowError{colLineItemType, fmt.Sprintf("ChargeCategory %q has no CBF line item type", r.ChargeCategory)}
	}
	var stack [maxStackTags]string
	keys := stack[:0]
	tags := r.Tags
	var rep Repairs
	if len(tags) > 0 {
		for k := range tags {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		if r.ResourceId == "" || !allValidTagKeys(keys) {
			keys, tags, rep = repairTags(keys, tags, r.ResourceId != "")
		}
	}

	dst = appendRowFields(dst, r, lit)
	for _, k := range keys {
		dst = appendTag(dst, k, tags[k])
	}
	return append(dst, '}'), rep, nil
}

// appendRowFields appends a row's opening brace and every column up to
// its tags: the row of r, of line item type lit, checked already.
func appendRowFields(dst []byte, r *messages.UsageRecord, lit string) []byte {
	dst = append(dst, `{"time/usage_start":"`...)
	dst = appendHour(dst, r.ChargePeriodStart)
	dst = append(dst, '"')
	if !r.ChargePeriodEnd.IsZero() {
		dst = append(dst, `,"time/usage_end":"`...)
		dst = appendRFC3339Nano(dst, r.ChargePeriodEnd)
		dst = append(dst, '"')
	}
	dst = append(dst, `,"lineitem/type":"`...)
	dst = append(dst, lit...)
	dst = append(dst, '"')
	dst = appendString(dst, `,"lineitem/cloud_provider":`, r.ProviderName)
	dst = appendString(dst, `,"lineitem/description":`, r.ChargeDescription)
	dst = appendString(dst, `,"resource/id":`, r.ResourceId)
	dst = appendString(dst, `,"resource/service":`, r.ServiceName)
	account := r.SubAccountId
	if account == "" {
		account = r.BillingAccountId
	}
	dst = appendString(dst, `,"resource/account":`, account)
	dst = appendString(dst, `,"resource/region":`, r.RegionId)
	dst = appendString(dst, `,"resource/usage_family":`, r.ServiceCategory)
	dst = appendString(dst, `,"action/operation":`, r.SkuMeter)
	dst = appendString(dst, `,"action/usage_type":`, r.SkuId)
	if r.ConsumedQuantity.IsSet() {
		dst = appendDecimal(dst, `,"usage/amount":`, r.ConsumedQuantity)
		dst = appendString(dst, `,"usage/units":`, r.ConsumedUnit)
	}
	dst = appendDecimal(dst, `,"cost/cost":`, r.BilledCost)
	if lit == typeCommittedUsePurchase && !r.EffectiveCost.IsSet() {
		// CBF: a commitment purchase's amortized cost is 0 (it is spread
		// over the usage it covers); left out, it would fall back to
		// cost/cost and count the purchase twice in the amortized view.
		dst = append(dst, `,"cost/amortized_cost":"0","cost/discounted_amortized_cost":"0"`...)
	} else {
		dst = appendDecimal(dst, `,"cost/amortized_cost":`, r.EffectiveCost)
		dst = appendDecimal(dst, `,"cost/discounted_amortized_cost":`, r.EffectiveCost)
	}
	dst = appendDecimal(dst, `,"cost/on_demand_cost":`, r.ListCost)
	dst = appendString(dst, `,"bill/invoice_id":`, r.InvoiceId)
	return dst
}

// appendTag appends a tag column; k is a valid key (ValidTagKey), which
// holds nothing JSON escapes: it is appended as it is.
func appendTag(dst []byte, k, v string) []byte {
	dst = append(dst, `,"resource/tag:`...)
	dst = append(dst, k...)
	dst = append(dst, '"', ':')
	return messages.AppendJSONString(dst, v)
}

// AppendPlaceholder appends the zero-cost row that stands for an empty unit
// starting at hour (see PlaceholderLineItemID).
func AppendPlaceholder(dst []byte, hour time.Time) []byte {
	dst = append(dst, `{"time/usage_start":"`...)
	dst = appendHour(dst, hour)
	dst = append(dst, `","lineitem/type":"Usage","lineitem/id":"`+PlaceholderLineItemID+
		`","lineitem/description":"`+PlaceholderDescription+`","cost/cost":"0"}`...)
	return dst
}

// appendString appends key (`,"column":`) and v as a JSON string, or
// nothing when v is empty: CBF reads a missing column and a blank one alike.
func appendString(dst []byte, key, v string) []byte {
	if v == "" {
		return dst
	}
	dst = append(dst, key...)
	return messages.AppendJSONString(dst, v)
}

// appendDecimal appends key and d as a JSON string, or nothing when d is
// unset. A Decimal is already plain notation (no exponent), which is what
// CloudZero's amount pattern demands.
func appendDecimal(dst []byte, key string, d messages.Decimal) []byte {
	if !d.IsSet() {
		return dst
	}
	dst = append(dst, key...)
	dst = append(dst, '"')
	dst = append(dst, d.String()...)
	return append(dst, '"')
}

// appendHour appends t truncated to its UTC hour as "2006-01-02T15:00:00Z".
// The year must be in 1..9999.
func appendHour(dst []byte, t time.Time) []byte {
	t = t.UTC()
	y, m, d := t.Date()
	h := t.Hour()
	dst = append(dst,
		byte('0'+y/1000), byte('0'+y/100%10), byte('0'+y/10%10), byte('0'+y%10), '-',
		byte('0'+int(m)/10), byte('0'+int(m)%10), '-',
		byte('0'+d/10), byte('0'+d%10), 'T',
		byte('0'+h/10), byte('0'+h%10))
	return append(dst, ":00:00Z"...)
}

// appendRFC3339Nano appends t in UTC as time.RFC3339Nano formats it
// ("2006-01-02T15:04:05.999999999Z", the fraction without trailing zeros),
// without the general formatter. The year must be in 1..9999.
func appendRFC3339Nano(dst []byte, t time.Time) []byte {
	t = t.UTC()
	dst, _ = messages.AppendDateTime(dst, t) // the caller checked the year
	if ns := t.Nanosecond(); ns != 0 {
		var frac [10]byte
		frac[0] = '.'
		for i := 9; i >= 1; i-- {
			frac[i] = byte('0' + ns%10)
			ns /= 10
		}
		n := 10
		for frac[n-1] == '0' {
			n--
		}
		dst = append(dst, frac[:n]...)
	}
	return append(dst, 'Z')
}

// ValidTagKey reports whether k may follow "resource/tag:": CBF allows
// letters, digits and _ . : / = + - @, so no whitespace. Letters include
// non-ASCII letters, as the emulator reads the docs.
func ValidTagKey(k string) bool {
	if k == "" {
		return false
	}
	for i := 0; i < len(k); {
		c := k[i]
		if c < utf8.RuneSelf {
			switch {
			case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
			case c == '_', c == '.', c == ':', c == '/', c == '=', c == '+', c == '-', c == '@':
			default:
				return false
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(k[i:])
		if !unicode.IsLetter(r) && !unicode.IsDigit(r) {
			return false // includes utf8.RuneError for invalid bytes
		}
		i += size
	}
	return true
}
