package messages

import (
	"slices"
	"strings"
)

// AppendJSON appends the JSON object of the record Next read last (r, as
// Next left it): byte for byte what r.AppendJSON writes for the whole
// record, its tags and extension columns read from the part, so an append
// destination that sends JSON builds no map per record. ok is false (dst
// unchanged) when a tag key repeats (the record's map keeps the last
// value): Full then gives the whole record for AppendJSON. Tags or
// extension columns out of order (this package's encoder sorts them;
// another writer may not) are written sorted, from a sorted copy.
func (p *PartReader) AppendJSON(dst []byte, r *UsageRecord) ([]byte, bool) {
	tags, exts := p.d.tagKV, p.d.extKV
	if !slices.IsSortedFunc(tags, cmpTag) || repeats(tags, cmpTag) {
		tags = slices.SortedStableFunc(slices.Values(tags), cmpTag)
		if repeats(tags, cmpTag) {
			return dst, false
		}
	}
	if !slices.IsSortedFunc(exts, cmpExt) || repeats(exts, cmpExt) {
		exts = slices.SortedStableFunc(slices.Values(exts), cmpExt)
		if repeats(exts, cmpExt) {
			return dst, false
		}
	}
	dst = r.appendJSONHead(dst)
	if len(tags) > 0 {
		dst = append(appendKey(dst, "Tags"), '{')
		for i, t := range tags {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = AppendJSONString(dst, t.Key)
			dst = append(dst, ':')
			dst = appendTagValue(dst, t.Value, t.Type)
		}
		dst = append(dst, '}')
	}
	dst = r.appendJSONDetail(dst)
	for _, e := range exts {
		dst = appendJSONExt(dst, e.name, e.v)
	}
	return append(dst, '}'), true
}

func cmpTag(a, b Tag) int   { return strings.Compare(a.Key, b.Key) }
func cmpExt(a, b extKV) int { return strings.Compare(a.name, b.name) }

// repeats says whether two neighbours of xs (sorted) have the same key.
func repeats[T any](xs []T, cmp func(a, b T) int) bool {
	for i := 1; i < len(xs); i++ {
		if cmp(xs[i-1], xs[i]) == 0 {
			return true
		}
	}
	return false
}
