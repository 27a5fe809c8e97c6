package demo

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"
)

// The demo is the README's first command: it must reconcile, with faults.
func TestDemoReconciles(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var out bytes.Buffer
	rows, err := Run(ctx, Options{Records: 12000, BatchSize: 3000, Dir: t.TempDir(), Faults: "500@0.1,apply-500@0.05,429:retry=1x1", Out: &out})
	if err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	for _, r := range rows {
		if !r.Match || r.ReceivedRecords != 12000 {
			t.Fatalf("row %+v\n%s", r, out.String())
		}
	}
	if !strings.Contains(out.String(), "every destination holds exactly what was published") {
		t.Fatalf("output:\n%s", out.String())
	}
}
