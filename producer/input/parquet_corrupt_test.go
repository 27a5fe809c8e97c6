package input

import (
	"bytes"
	"strings"
	"testing"

	"github.com/parquet-go/parquet-go"
)

// A file whose pages are damaged ends the reading with an error that
// names the row it stopped before; the rows before are those reading row
// by row gave, in order, and the reading does not hang.
func TestParquetDamagedPages(t *testing.T) {
	data := mixedParquet(t, 3000)
	damaged := 0
	for _, at := range []float64{0.2, 0.45, 0.6, 0.7} {
		bad := bytes.Clone(data)
		off := int(float64(len(bad)) * at)
		for i := off; i < off+256; i++ {
			bad[i] ^= 0x5a
		}
		var want []Row
		old := &collector{file: "d.parquet"}
		pf, err := parquet.OpenFile(bytes.NewReader(bad), int64(len(bad)))
		if err != nil {
			t.Fatal(err)
		}
		oldErr := oldReadParquet(old, pf, func(r Row) error { want = append(want, r); return nil })
		var got []Row
		_, err = ReadWith("d.parquet", bytes.NewReader(bad), Options{}, func(r Row) error { got = append(got, r); return nil })
		t.Logf("at %.2f: old %v (%d rows), new %v (%d rows)", at, oldErr, len(want), err, len(got))
		if (err == nil) != (oldErr == nil) {
			t.Fatalf("at %.2f: error %v, reading row by row %v", at, err, oldErr)
		}
		if err != nil {
			damaged++
		}
		if err != nil && !strings.Contains(err.Error(), "d.parquet: row ") {
			t.Errorf("at %.2f: %v does not name the row", at, err)
		}
		for i := range min(len(got), len(want)) {
			if got[i].Line != want[i].Line {
				t.Fatalf("at %.2f: row %d is line %d, reading row by row %d", at, i, got[i].Line, want[i].Line)
			}
		}
	}
	if damaged == 0 {
		t.Fatal("no damage was found: damage a column that is read")
	}
}
