package messages

import (
	"reflect"
	"testing"
	"time"
)

// A Field sets what the setters by name set, for every FOCUS column, and
// nothing for a name that is no column or a column of another kind.
func TestFieldSetsWhatNameSetters(t *testing.T) {
	at := time.Date(2024, 9, 1, 3, 0, 0, 0, time.UTC)
	d := MustDecimal("1.25")
	for _, c := range append(FocusColumns(), ColumnInfo{Name: "NoSuchColumn"}) {
		f := FieldOf(c.Name)
		var byName, byField UsageRecord
		okS, okS2 := byName.SetString(c.Name, "v"), f.SetString(&byField, "v")
		okD, okD2 := byName.SetDecimal(c.Name, d), f.SetDecimal(&byField, d)
		okT, okT2 := byName.SetTime(c.Name, at), f.SetTime(&byField, at)
		if okS != okS2 || okD != okD2 || okT != okT2 || !reflect.DeepEqual(byName, byField) {
			t.Errorf("%s: by name %v %v %v %+v, by field %v %v %v %+v", c.Name, okS, okD, okT, byName, okS2, okD2, okT2, byField)
		}
		if c.Name != "NoSuchColumn" && c.Kind != ColTags && !(okS || okD || okT) {
			t.Errorf("%s: no setter took it", c.Name)
		}
	}
}
