package messages

import (
	"reflect"
	"strings"
	"testing"
)

// checkPartReader reads data with a PartReader as DecodeRecordsReusing
// reads it: the same records (Next's without their maps, Tags and
// ExtString giving them; Full's whole), or, where DecodeRecordsReusing
// refuses the part, no record read whole. recs is a slice the reader
// reuses (its maps included) from one call to the next.
func checkPartReader(t *testing.T, data []byte, schema int, recs []UsageRecord) []UsageRecord {
	t.Helper()
	want, werr := DecodeRecordsAs(nil, data, schema)
	var pr PartReader
	if !pr.Reset(data, schema) {
		if werr == nil {
			t.Fatalf("Reset refused a part DecodeRecordsAs reads")
		}
		return recs
	}
	if werr == nil && pr.Len() != len(want) {
		t.Fatalf("Len %d, DecodeRecordsAs read %d", pr.Len(), len(want))
	}
	if cap(recs) < pr.Len() {
		recs = append(recs[:cap(recs)], make([]UsageRecord, pr.Len()-cap(recs))...)
	}
	recs = recs[:pr.Len()]
	for i := range recs {
		r := &recs[i]
		if err := pr.Next(r); err != nil {
			if werr == nil {
				t.Fatalf("record %d: Next: %v; DecodeRecordsAs read the part", i, err)
			}
			return recs
		}
		if werr != nil {
			continue
		}
		if r.Tags != nil || r.TagTypes != nil || r.Ext != nil {
			t.Fatalf("record %d: Next left maps", i)
		}
		w := want[i]
		tags := map[string]string{}
		for _, tg := range pr.Tags() {
			tags[tg.Key] = tg.Value // a repeated key: the last, as in the map
		}
		if len(tags) != len(w.Tags) || (len(tags) > 0 && !reflect.DeepEqual(tags, w.Tags)) {
			t.Fatalf("record %d: Tags %v, want %v", i, pr.Tags(), w.Tags)
		}
		for name, v := range w.Ext {
			want := ""
			if v.Kind == ExtString {
				want = v.Str
			}
			if got := pr.ExtString(name); got != want {
				t.Fatalf("record %d: ExtString(%q) %q, want %q", i, name, got, want)
			}
		}
		if pr.ExtString("NoSuchColumn") != "" {
			t.Fatalf("record %d: a column it does not have", i)
		}
		if js, ok := pr.AppendJSON([]byte("prefix"), r); ok {
			if want := w.AppendJSON([]byte("prefix")); string(js) != string(want) {
				t.Fatalf("record %d: AppendJSON from the part\n%s\nwant\n%s", i, js, want)
			}
		} else if !repeatsTag(pr.Tags()) {
			t.Fatalf("record %d: AppendJSON refused a record it can write", i)
		}
		skinny := w
		skinny.Tags, skinny.TagTypes, skinny.Ext = nil, nil, nil
		if !recordsEqual(r, &skinny) {
			t.Fatalf("record %d: Next read\n%+v\nwant\n%+v", i, *r, skinny)
		}
		if i%2 == 0 { // the pool reads whole only the records it must
			if err := pr.Full(r); err != nil {
				t.Fatalf("record %d: Full: %v", i, err)
			}
			if !recordsEqual(r, &w) {
				t.Fatalf("record %d: Full read\n%+v\nwant\n%+v", i, *r, w)
			}
		}
	}
	if done := pr.Done(); done != (werr == nil) {
		t.Fatalf("Done %v, DecodeRecordsAs: %v", done, werr)
	}
	return recs
}

// repeatsTag says whether a key appears twice in tags.
func repeatsTag(tags []Tag) bool {
	seen := map[string]bool{}
	for _, t := range tags {
		if seen[t.Key] {
			return true
		}
		seen[t.Key] = true
	}
	return false
}

func TestPartReader(t *testing.T) {
	var recs []UsageRecord
	for _, set := range [][]UsageRecord{variedRecords(), {focusRecord(), sampleRecord(), {}}, {sampleRecord()}, nil} {
		payload, err := EncodeRecords(nil, set)
		if err != nil {
			t.Fatal(err)
		}
		recs = checkPartReader(t, payload, SchemaVersion, recs)
		// Schema 1 is not columnar: Reset refuses it (DecodeRecordsReusing
		// reads it).
		var pr PartReader
		if pr.Reset(payload, 1) {
			t.Error("Reset took a part labelled schema 1")
		}
		if pr.Reset(payload, SchemaVersion+1) {
			t.Error("Reset took a part of a newer schema")
		}
	}
	var pr PartReader
	if pr.Reset(encodeRecordsV1(nil, []UsageRecord{sampleRecord()}), SchemaVersion) {
		t.Error("Reset took a schema-1 payload")
	}
}

// FuzzPartReader: whatever the payload, a PartReader reads what
// DecodeRecordsAs reads, or nothing whole where it refuses the part.
func FuzzPartReader(f *testing.F) {
	for _, set := range [][]UsageRecord{variedRecords(), {focusRecord(), sampleRecord()}} {
		payload, _ := EncodeRecords(nil, set)
		f.Add(payload)
	}
	f.Add([]byte{0x91, 0x90})
	var recs []UsageRecord
	f.Fuzz(func(t *testing.T, data []byte) {
		recs = checkPartReader(t, data, SchemaVersion, recs)
	})
}

// Tags out of order (another writer's encoder) are written sorted, as the
// map would be; a repeated key is left to the whole record (its map keeps
// the last value).
func TestPartReaderJSONTagsOutOfOrder(t *testing.T) {
	r := sampleRecord()
	r.Tags, r.TagTypes = map[string]string{"k1": "one", "k2": "two"}, nil
	payload, err := EncodeRecords(nil, []UsageRecord{r})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, from, to string
		ok             bool
	}{
		{"out of order", "\xa2k1\xa3one", "\xa2k3\xa3one", true},
		{"repeated", "\xa2k2\xa3two", "\xa2k1\xa3two", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := []byte(strings.Replace(string(payload), tc.from, tc.to, 1))
			if string(p) == string(payload) {
				t.Fatal("the tag is not in the payload as expected")
			}
			checkPartReader(t, p, SchemaVersion, nil)
			var pr PartReader
			var rec UsageRecord
			if !pr.Reset(p, SchemaVersion) || pr.Next(&rec) != nil {
				t.Fatal("the part does not read")
			}
			if _, ok := pr.AppendJSON(nil, &rec); ok != tc.ok {
				t.Fatalf("AppendJSON ok = %v, want %v", ok, tc.ok)
			}
		})
	}
}
