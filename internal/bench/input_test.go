package bench

import (
	"context"
	"path/filepath"
	"testing"
	"time"
)

// The input bench generates a FOCUS file, publishes it as CSV, gzip and
// Parquet through usage-producer's code into an embedded server, and
// finds every part stored once with every row and the exact cost.
func TestRunInput(t *testing.T) {
	path := filepath.Join(t.TempDir(), "focus.csv")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if r, err := RunInput(ctx, InputOptions{GenerateFocus: 3000, OutFile: path}); err != nil || r != nil {
		t.Fatalf("generate: %v, %v", r, err)
	}
	for _, c := range []struct {
		name          string
		gzip, parquet bool
		format        string
	}{{"csv", false, false, "csv"}, {"gzip", true, false, "csv+gzip"}, {"parquet", false, true, "parquet"}} {
		t.Run(c.name, func(t *testing.T) {
			r, err := RunInput(ctx, InputOptions{Input: path, Gzip: c.gzip, Parquet: c.parquet, Window: 2})
			if err != nil {
				t.Fatal(err)
			}
			if !r.Exact || r.Rows != 3000 || r.Format != c.format || r.Parts < 720 {
				t.Fatalf("%+v", r)
			}
		})
	}
}
