package workers

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/usagefleet/usagefleet/internal/usagegen"
	"github.com/usagefleet/usagefleet/messages"
)

// testPartEncoder writes a row naming what the record holds, tags and
// extension columns included; it refuses ChargeCategory "Bogus", warns on
// a tag "warn", and its direct path (from the part) declines records whose
// SkuId ends in 7, so both paths run in one part.
type testPartEncoder struct{}

func (testPartEncoder) row(dst []byte, r *messages.UsageRecord, tags []messages.Tag, ext func(string) string) []byte {
	dst = fmt.Appendf(dst, "{%s|%s|%s|%s|%s", r.ChargePeriodStart.Format(time.RFC3339Nano), r.ResourceId, r.SkuId, r.BilledCost, r.BillingCurrency)
	slices.SortFunc(tags, func(a, b messages.Tag) int { return strings.Compare(a.Key, b.Key) })
	for _, t := range tags {
		dst = fmt.Appendf(dst, "|%s=%s", t.Key, t.Value)
	}
	return fmt.Appendf(dst, "|x=%s}", ext("Project"))
}

func (e testPartEncoder) EncodeRowWarnings(dst []byte, r *messages.UsageRecord) ([]byte, int, error) {
	if r.ChargeCategory == "Bogus" {
		return dst, 0, errors.New("bogus")
	}
	var tags []messages.Tag
	for k, v := range r.Tags {
		tags = append(tags, messages.Tag{Key: k, Value: v})
	}
	w := 0
	if _, ok := r.Tags["warn"]; ok {
		w = 1
	}
	return e.row(dst, r, tags, func(n string) string {
		if v, ok := r.Ext[n]; ok && v.Kind == messages.ExtString {
			return v.Str
		}
		return ""
	}), w, nil
}

func (e testPartEncoder) EncodePartRow(dst []byte, r *messages.UsageRecord, p *messages.PartReader) ([]byte, bool) {
	if r.Tags != nil || r.Ext != nil || r.TagTypes != nil {
		panic("a record read by a PartReader with its maps")
	}
	if r.ChargeCategory == "Bogus" || strings.HasSuffix(r.SkuId, "7") || slices.ContainsFunc(p.Tags(), func(t messages.Tag) bool { return t.Key == "warn" }) {
		return dst, false
	}
	return e.row(dst, r, slices.Clone(p.Tags()), p.ExtString), true
}

// TestEncodePartMatchesEncode: a part encoded through a PartRowEncoder
// gives the rows, ends, refusals and warnings encode gives, and the
// records the fn sees are the decoded ones (whole where the direct path
// declined, without their maps where it wrote the row).
func TestEncodePartMatchesEncode(t *testing.T) {
	hour := time.Date(2024, 7, 1, 5, 0, 0, 0, time.UTC)
	recs := usagegen.Generate(300, usagegen.Options{Seed: 3, Start: hour, Hours: 1})
	for i := range recs {
		switch i % 11 {
		case 3:
			recs[i].ChargeCategory = "Bogus"
		case 5:
			recs[i].Tags = map[string]string{"warn": "1", "b": "2"}
		case 6:
			recs[i].Ext = map[string]messages.ExtValue{"Project": messages.ExtStr("apollo"), "N": messages.ExtI(2)}
		}
	}
	payload, err := messages.EncodeRecords(nil, recs)
	if err != nil {
		t.Fatal(err)
	}
	meta := messages.PartMeta{Schema: messages.SchemaVersion, Hour: hour, Records: len(recs)}
	enc := partEncoding{row: testPartEncoder{}.EncodeRowWarnings, part: testPartEncoder{}}
	units := []Unit{
		{Key: "all", Start: hour, End: hour.Add(time.Hour)},
		{Key: "half", Start: hour.Add(20 * time.Minute), End: hour.Add(50 * time.Minute)},
	}
	var pr messages.PartReader
	for _, u := range units {
		want := &encodedPart{unit: u, data: payload, meta: meta}
		want.encode(enc.row)
		if want.err != nil {
			t.Fatal(want.err)
		}
		// A part reused from an earlier, larger one: its records keep maps.
		got := &encodedPart{unit: u, data: payload, meta: meta}
		got.recs = slices.Clone(want.recs)
		if !got.encodePart(enc, &pr) {
			t.Fatal("encodePart declined a schema-2 part")
		}
		if string(got.rows) != string(want.rows) || !slices.Equal(got.ends, want.ends) || got.warnings != want.warnings || errsText(got.errs) != errsText(want.errs) {
			t.Fatalf("%s: encodePart\n%.300q %v %d %v\nencode\n%.300q %v %d %v", u.Key, got.rows, got.ends, got.warnings, errsText(got.errs), want.rows, want.ends, want.warnings, errsText(want.errs))
		}
		if len(want.errs) == 0 || want.warnings == 0 {
			t.Fatalf("%s: no refusal or no warning to compare", u.Key)
		}
		direct := 0
		for i, end := range got.ends {
			if end == skipped {
				continue
			}
			g, w := got.recs[i], want.recs[i]
			if g.Tags == nil && g.Ext == nil && (w.Tags != nil || w.Ext != nil) {
				direct++
				g.Tags, g.TagTypes, g.Ext = w.Tags, w.TagTypes, w.Ext
			}
			if !reflect.DeepEqual(g, w) {
				t.Fatalf("%s: record %d\n%+v\nwant\n%+v", u.Key, i, g, w)
			}
		}
		if direct == 0 {
			t.Errorf("%s: no row written directly", u.Key)
		}
		// What the emit of each passes to fn is the same but for the maps.
		var gotSeen, wantSeen []string
		collect := func(seen *[]string) func(RecordRef, *messages.UsageRecord, []byte, error) error {
			return func(ref RecordRef, r *messages.UsageRecord, row []byte, err error) error {
				*seen = append(*seen, fmt.Sprint(ref, r.BilledCost, r.BillingCurrency, string(row), err))
				return nil
			}
		}
		gs, ws := map[uint64]*seqStat{}, map[uint64]*seqStat{}
		if err := got.emit(u, gs, true, collect(&gotSeen)); err != nil {
			t.Fatal(err)
		}
		if err := want.emit(u, ws, true, collect(&wantSeen)); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(gotSeen, wantSeen) {
			t.Fatalf("%s: emit passes\n%v\nnot\n%v", u.Key, gotSeen, wantSeen)
		}
		if g, w := gs[0], ws[0]; g.records != w.records || g.warnings != w.warnings || g.cost.String() != w.cost.String() || len(g.cost.Decimals()) == 0 {
			t.Fatalf("%s: emit counts %d %d %s, not %d %d %s", u.Key, g.records, g.warnings, g.cost, w.records, w.warnings, w.cost)
		}
	}
}

func errsText(errs []encodeErr) string {
	var b strings.Builder
	for _, e := range errs {
		fmt.Fprintf(&b, "%d:%v ", e.index, e.err)
	}
	return b.String()
}

// TestEncodePartDeclinesWhatEncodeRefuses: a part that does not decode,
// or whose header disagrees with it, goes to encode (which says why).
func TestEncodePartDeclinesWhatEncodeRefuses(t *testing.T) {
	hour := time.Date(2024, 7, 1, 5, 0, 0, 0, time.UTC)
	recs := usagegen.Generate(20, usagegen.Options{Seed: 4, Start: hour, Hours: 1})
	payload, err := messages.EncodeRecords(nil, recs)
	if err != nil {
		t.Fatal(err)
	}
	enc := partEncoding{row: testPartEncoder{}.EncodeRowWarnings, part: testPartEncoder{}}
	u := Unit{Key: "all", Start: hour, End: hour.Add(time.Hour)}
	ok := messages.PartMeta{Schema: messages.SchemaVersion, Hour: hour, Records: len(recs)}
	var pr messages.PartReader
	for name, c := range map[string]struct {
		data []byte
		meta messages.PartMeta
	}{
		"count":     {payload, messages.PartMeta{Schema: ok.Schema, Hour: hour, Records: 19}},
		"hour":      {payload, messages.PartMeta{Schema: ok.Schema, Hour: hour.Add(time.Hour), Records: 20}},
		"schema 1":  {payload, messages.PartMeta{Schema: 1, Hour: hour, Records: 20}},
		"newer":     {payload, messages.PartMeta{Schema: messages.SchemaVersion + 1, Hour: hour, Records: 20}},
		"truncated": {payload[:len(payload)-3], ok},
		"trailing":  {append(slices.Clone(payload), 0xc0), ok},
	} {
		b := &encodedPart{unit: u, data: c.data, meta: c.meta}
		if b.encodePart(enc, &pr) {
			t.Errorf("%s: encodePart took it", name)
		}
		b.encode(enc.row)
		if b.err == nil {
			t.Errorf("%s: encode took it", name)
		}
	}
	b := &encodedPart{unit: u, data: payload, meta: ok}
	if !b.encodePart(enc, &pr) {
		t.Error("encodePart declined a good part")
	}
}
