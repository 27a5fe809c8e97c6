package cloudzero

import (
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Repairs says what AppendRowRepaired changed in a record's labels to make
// it a row CloudZero accepts. The record's cost is delivered either way:
// a destination refuses a record only when what it bills cannot be carried
// (DESIGN, "Money is not lost over metadata").
type Repairs struct {
	// TagKeysRewritten counts tag keys rewritten to CBF's characters
	// (RepairTagKey).
	TagKeysRewritten int
	// TagsDropped counts tags left out: every tag of a record without
	// ResourceId, a key empty once repaired, and a repaired key that
	// another of the record's keys already holds.
	TagsDropped int
}

// Any reports whether anything was repaired.
func (r Repairs) Any() bool { return r.TagKeysRewritten+r.TagsDropped > 0 }

// Add sums two repair counts.
func (r Repairs) Add(o Repairs) Repairs {
	return Repairs{r.TagKeysRewritten + o.TagKeysRewritten, r.TagsDropped + o.TagsDropped}
}

// RepairTagKey rewrites k to a key CBF accepts after "resource/tag:"
// (letters, digits and _ . : / = + - @, no whitespace [DOC: CBF,
// resource/tag:<key>]): leading and trailing whitespace is trimmed, then
// every other character outside that set (inner whitespace, quotes, an
// invalid UTF-8 byte) becomes "_", so "Cost department" is
// "Cost_department" and " org" is "org". It returns "" when nothing is
// left (the tag is then dropped).
func RepairTagKey(k string) string {
	k = strings.TrimFunc(k, func(r rune) bool { return unicode.IsSpace(r) })
	if ValidTagKey(k) || k == "" {
		return k
	}
	var b strings.Builder
	b.Grow(len(k))
	for i := 0; i < len(k); {
		r, size := utf8.DecodeRuneInString(k[i:])
		if size == 1 && r < utf8.RuneSelf && ValidTagKey(k[i:i+1]) ||
			r != utf8.RuneError && size > 1 && (unicode.IsLetter(r) || unicode.IsDigit(r)) {
			b.WriteString(k[i : i+size])
		} else {
			b.WriteByte('_')
		}
		i += size
	}
	return b.String()
}

func allValidTagKeys(keys []string) bool {
	for _, k := range keys {
		if !ValidTagKey(k) {
			return false
		}
	}
	return true
}

// repairTags returns the tags to write, their keys sorted, and what was
// repaired. keys are tags' keys, sorted. Without a resource id every tag is
// dropped: CBF attaches a tag to a resource/id and refuses a tagged row
// without one. Otherwise a key already valid keeps its value; a rewritten
// key that collides with a valid one, or with an earlier (in sorted order)
// rewritten one, is dropped.
func repairTags(keys []string, tags map[string]string, hasResource bool) ([]string, map[string]string, Repairs) {
	var rep Repairs
	if !hasResource {
		rep.TagsDropped = len(keys)
		return nil, nil, rep
	}
	out := make(map[string]string, len(keys))
	for _, k := range keys {
		if ValidTagKey(k) {
			out[k] = tags[k]
		}
	}
	for _, k := range keys {
		if ValidTagKey(k) {
			continue
		}
		nk := RepairTagKey(k)
		if _, taken := out[nk]; nk == "" || taken {
			rep.TagsDropped++
			continue
		}
		out[nk] = tags[k]
		rep.TagKeysRewritten++
	}
	nkeys := make([]string, 0, len(out))
	for k := range out {
		nkeys = append(nkeys, k)
	}
	slices.Sort(nkeys)
	return nkeys, out, rep
}
