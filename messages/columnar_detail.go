package messages

// The schema-3 additions to the columnar codec (columnar.go): the Detail
// columns and typed tag values.

// detailBase numbers the Detail columns after the fixed ones.
const detailBase = 64

func columnName(c column) string {
	switch {
	case c.fixed < 0:
		return "x_" + c.ext
	case c.fixed >= detailBase:
		return detailInfo(c.fixed - detailBase).Name
	}
	return fixedName(c.fixed)
}

// appendTypedTags writes tags with their JSON types, keys sorted (up to 8
// on the stack, like appendTags).
func appendTypedTags(dst []byte, tags map[string]string, types map[string]TagType) []byte {
	dst = appendMapLen(dst, len(tags))
	var arr [8]string
	keys := arr[:0]
	if len(tags) > len(arr) {
		keys = sortedKeys(tags)
	} else {
		for k := range tags {
			keys = append(keys, k)
		}
		for i := 1; i < len(keys); i++ {
			for j := i; j > 0 && keys[j] < keys[j-1]; j-- {
				keys[j], keys[j-1] = keys[j-1], keys[j]
			}
		}
	}
	for _, k := range keys {
		dst = appendStr(dst, k)
		v := tags[k]
		switch types[k] {
		case TagNumber:
			dst = appendExtHeader(dst, extNumberType, len(v))
			dst = append(dst, v...)
		case TagBool:
			if v == "true" {
				dst = append(dst, 0xc3)
			} else {
				dst = append(dst, 0xc2)
			}
		case TagNull:
			dst = append(dst, 0xc0)
		default:
			dst = appendStr(dst, v)
		}
	}
	return dst
}

// appendDetail writes the Detail columns in mask (nil where d leaves one
// unset, or has no Detail).
func appendDetail(dst []byte, mask uint64, d *Detail) []byte {
	for c := 0; c < detailColumns; c++ {
		if mask&(1<<c) == 0 {
			continue
		}
		if d == nil {
			dst = append(dst, 0xc0)
			continue
		}
		switch {
		case c < detailFirstStr:
			dst = appendTimeOrNil(dst, *detailTimes[c].get(d))
		case c < detailFirstDec:
			dst = appendStrOrNil(dst, *detailStrs[c-detailFirstStr].get(d))
		default:
			dst = appendStrOrNil(dst, detailDecs[c-detailFirstDec].get(d).s)
		}
	}
	return dst
}

// detailValue reads Detail column c.
func (d *fastDecoder) detailValue(r *UsageRecord, c int) error {
	if d.nilNext() {
		return nil
	}
	if r.Detail == nil && d.det != nil { // reusing: the Detail the record had
		*d.det = Detail{}
		r.Detail, d.det = d.det, nil
	}
	switch {
	case c < detailFirstStr:
		t, err := d.time()
		if err != nil {
			return err
		}
		*detailTimes[c].get(r.detail()) = t
	case c < detailFirstDec:
		s, err := d.sub()
		if err != nil {
			return err
		}
		*detailStrs[c-detailFirstStr].get(r.detail()) = s
	default:
		s, err := d.sub()
		if err != nil {
			return err
		}
		v, err := decimalOf(s)
		if err != nil {
			return err
		}
		*detailDecs[c-detailFirstDec].get(r.detail()) = v
	}
	return nil
}
