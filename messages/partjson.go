package messages

// AppendJSON appends the JSON object of the record Next read last (r, as
// Next left it): byte for byte what r.AppendJSON writes for the whole
// record, its tags and extension columns read from the part, so an append
// destination that sends JSON builds no map per record. ok is false (dst
// unchanged) when a tag key repeats (the record's map keeps the last
// value) or when its tags or extension columns are out of order (this
// package's encoder sorts them; another writer may not) and more than 16:
// Full then gives the whole record for AppendJSON.
func (p *PartReader) AppendJSON(dst []byte, r *UsageRecord) ([]byte, bool) {
	var tagStack [16]Tag
	tags, ok := sortedByKey(tagStack[:0], p.d.tagKV, tagKey)
	if !ok {
		return dst, false
	}
	var extStack [16]extKV
	exts, ok := sortedByKey(extStack[:0], p.d.extKV, extName)
	if !ok {
		return dst, false
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

// sortedByKey is xs in key order: xs itself when it is in order already,
// else a sorted copy in buf when it fits. ok is false when a key repeats,
// or when xs is out of order and does not fit buf.
func sortedByKey[T any](buf, xs []T, key func(*T) string) ([]T, bool) {
	inOrder := true
	for i := 1; i < len(xs); i++ {
		if key(&xs[i]) <= key(&xs[i-1]) {
			inOrder = false
			break
		}
	}
	if inOrder {
		return xs, true
	}
	if len(xs) > cap(buf) {
		return nil, false
	}
	buf = append(buf, xs...)
	for i := 1; i < len(buf); i++ {
		for j := i; j > 0 && key(&buf[j]) < key(&buf[j-1]); j-- {
			buf[j], buf[j-1] = buf[j-1], buf[j]
		}
	}
	for i := 1; i < len(buf); i++ {
		if key(&buf[i]) == key(&buf[i-1]) {
			return nil, false
		}
	}
	return buf, true
}

func tagKey(t *Tag) string    { return t.Key }
func extName(e *extKV) string { return e.name }
