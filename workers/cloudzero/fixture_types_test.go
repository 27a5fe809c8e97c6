package cloudzero

import (
	"encoding/json"
	"path/filepath"
	"testing"

	"github.com/usagefleet/usagefleet/producer/input"
)

// TestLineItemTypesOfRealExports reads the FOCUS fixtures shaped like the
// providers' exports through the producer's reader (as usage-producer
// publish and the gateway do) and checks the CBF type of the rows whose
// type depends on a FOCUS column the reader keeps in the record's Detail:
// AWS's Correction row must be an Adjustment, not this hour's Usage.
func TestLineItemTypesOfRealExports(t *testing.T) {
	files, err := filepath.Glob("../../producer/input/testdata/focus/*")
	if err != nil || len(files) == 0 {
		t.Fatalf("no fixtures: %v", err)
	}
	corrections := 0
	for _, f := range files {
		rows, errs, err := input.ReadFile(f)
		if err != nil || len(errs) > 0 {
			t.Fatalf("%s: %v %v", f, err, errs)
		}
		for _, row := range rows {
			r := row.Record
			b, err := AppendRow(nil, &r)
			if err != nil {
				t.Fatalf("%s:%d: %v", f, row.Line, err)
			}
			var got map[string]any
			if err := json.Unmarshal(b, &got); err != nil {
				t.Fatalf("%s:%d: %v", f, row.Line, err)
			}
			typ := got["lineitem/type"]
			var class, commitment string
			if r.Detail != nil {
				class, commitment = r.Detail.ChargeClass, r.Detail.CommitmentDiscountId
			}
			switch {
			case class == "Correction":
				corrections++
				if typ != typeAdjustment {
					t.Errorf("%s:%d: a Correction is %v, want %s", f, row.Line, typ, typeAdjustment)
				}
			case r.ChargeCategory == "Purchase" && commitment != "":
				if typ != typeCommittedUsePurchase {
					t.Errorf("%s:%d: a commitment purchase is %v, want %s", f, row.Line, typ, typeCommittedUsePurchase)
				}
			}
		}
	}
	if corrections == 0 {
		t.Fatal("no fixture has a Correction row: the check proved nothing")
	}
}
