package cloudzero

import "github.com/usagefleet/usagefleet/messages"

// EncodePartRow writes the CBF row of a record read from a schema-2 part
// (workers.PartRowEncoder): r holds every value but its tags and extension
// columns, which p gives, so a drain builds no map per record. It writes
// only the common case, a row EncodeRowWarnings would write without an
// error or a repair, byte for byte the same; for anything else (a refusal,
// a tag to repair or drop, more than 16 tags, a key that repeats, a row
// the packer could refuse as too large alone) ok is false and the pool
// decodes the whole record for EncodeRowWarnings.
func (d *Destination) EncodePartRow(dst []byte, r *messages.UsageRecord, p *messages.PartReader) ([]byte, bool) {
	if d.currency != "" && r.BillingCurrency != "" && r.BillingCurrency != d.currency {
		return dst, false
	}
	start := len(dst)
	dst, ok := appendPartRow(dst, r, p)
	// A row that fits a body alone, envelope and all, is never refused
	// by the packer (which would need the whole record to reject it).
	if !ok || len(dst)-start+headRoom+16 > d.maxBody {
		return dst[:start], false
	}
	return dst, true
}

// appendPartRow is AppendRowRepaired for a record that needs no repair,
// its tags and extension columns read from p; ok is false (dst unchanged)
// for any other.
func appendPartRow(dst []byte, r *messages.UsageRecord, p *messages.PartReader) ([]byte, bool) {
	if r.ChargePeriodStart.IsZero() {
		return dst, false
	}
	if y := r.ChargePeriodStart.UTC().Year(); y < 1 || y > 9999 {
		return dst, false
	}
	if !r.ChargePeriodEnd.IsZero() {
		if y := r.ChargePeriodEnd.UTC().Year(); y < 1 || y > 9999 {
			return dst, false
		}
	}
	if !r.BilledCost.IsSet() {
		return dst, false
	}
	lit, ok := lineItemTypeOf(r, p)
	if !ok {
		return dst, false
	}
	var stack [maxStackTags]messages.Tag
	tags := p.Tags()
	if len(tags) > 0 {
		if len(tags) > maxStackTags || r.ResourceId == "" {
			return dst, false // more than fit on the stack, or dropped (repairs)
		}
		tags = append(stack[:0], tags...)
		for i := 1; i < len(tags); i++ {
			for j := i; j > 0 && tags[j].Key < tags[j-1].Key; j-- {
				tags[j], tags[j-1] = tags[j-1], tags[j]
			}
		}
		for i, t := range tags {
			if !ValidTagKey(t.Key) || (i > 0 && t.Key == tags[i-1].Key) {
				return dst, false // repaired, or a repeated key (the map keeps the last)
			}
		}
	}
	dst = appendRowFields(dst, r, lit)
	for _, t := range tags {
		dst = appendTag(dst, t.Key, t.Value)
	}
	return append(dst, '}'), true
}
