package demo

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"
)

func rowsBy(rows []Row) map[string]Row {
	m := map[string]Row{}
	for _, r := range rows {
		m[r.Destination+"/"+r.Source] = r
	}
	return m
}

// The demo is the README's first command: with faults at every emulator
// it must reconcile the generated usage at every destination, and the
// collected reports at Cloud Cruiser against the emulators' own totals,
// the same after the re-collection as after the first collection.
func TestDemoReconciles(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var out bytes.Buffer
	rows, err := Run(ctx, Options{Records: 12000, BatchSize: 3000, Dir: t.TempDir(), Faults: "500@0.1,apply-500@0.05,429:retry=1x1", Out: &out})
	if err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	// Half of the 4 batches went over HTTP through usage-gateway, and the
	// rows below reconcile them with the rest.
	if !strings.Contains(out.String(), "2 of the batches (6000 records) over HTTP through usage-gateway") {
		t.Errorf("the demo did not publish through the gateway:\n%s", out.String())
	}
	by := rowsBy(rows)
	for _, k := range []string{"cloudzero/demo", "webhook/demo", "cloudcruiser/demo", "cloudcruiser/" + acronisCollector,
		"cloudcruiser/" + hereCollector, "cloudcruiser/" + AllAfterFirst, "cloudcruiser/" + AllAfterSecond} {
		if _, ok := by[k]; !ok {
			t.Fatalf("no row %s in %+v\n%s", k, rows, out.String())
		}
	}
	for _, r := range rows {
		if !r.Match || r.Rejected != 0 {
			t.Fatalf("row %+v\n%s", r, out.String())
		}
		if r.Source == demoSource && r.ReceivedRecords != 12000 {
			t.Fatalf("row %+v: want 12000 records\n%s", r, out.String())
		}
	}
	for _, c := range []string{acronisCollector, hereCollector} {
		r := by["cloudcruiser/"+c]
		if r.ReceivedRecords == 0 || !r.HasQuantity {
			t.Fatalf("%s: nothing collected, or the quantity not reconciled: %+v\n%s", c, r, out.String())
		}
	}
	// Collected twice, held once: the totals after the re-collection are
	// the demo feed plus one copy of each collector's reports.
	once, twice, demo := by["cloudcruiser/"+AllAfterFirst], by["cloudcruiser/"+AllAfterSecond], by["cloudcruiser/demo"]
	reports := by["cloudcruiser/"+acronisCollector].ReceivedRecords + by["cloudcruiser/"+hereCollector].ReceivedRecords
	if twice.ReceivedRecords != once.ReceivedRecords || !twice.ReceivedQuantity.Equal(once.ReceivedQuantity) ||
		twice.ReceivedRecords != demo.ReceivedRecords+reports {
		t.Fatalf("re-collection changed the totals: once %+v, twice %+v\n%s", once, twice, out.String())
	}
	for _, want := range []string{
		"collection 2: " + acronisCollector, "collection 2: " + hereCollector,
		"uploaded 2 collected date(s) again", "replaced, not added",
		"every destination holds exactly what was published",
	} {
		if !strings.Contains(out.String(), want) {
			t.Fatalf("output lacks %q:\n%s", want, out.String())
		}
	}
}

// Cloud Cruiser refuses its first upload (400): the destination
// dead-letters that date's records, so Cloud Cruiser and the acks no
// longer agree with what was published, and the demo must say so and
// fail (usagefleet demo then exits 1) while the other destinations
// still reconcile.
func TestDemoFailsOnAMismatch(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var out bytes.Buffer
	rows, err := Run(ctx, Options{Records: 6000, BatchSize: 3000, Dir: t.TempDir(), Faults: "cloudcruiser=400x1", Out: &out})
	if err == nil || !strings.Contains(err.Error(), "reconciliation failed") || !strings.Contains(err.Error(), "cloudcruiser/") {
		t.Fatalf("err = %v\n%s", err, out.String())
	}
	by := rowsBy(rows)
	if !by["cloudzero/demo"].Match || !by["webhook/demo"].Match {
		t.Fatalf("a destination without faults does not reconcile: %+v\n%s", rows, out.String())
	}
	if r := by["cloudcruiser/"+AllAfterSecond]; r.Match || r.Rejected == 0 {
		t.Fatalf("the refused upload's records are not reported: %+v\n%s", r, out.String())
	}
	if !strings.Contains(out.String(), "NO") || strings.Contains(out.String(), "every destination holds exactly") {
		t.Fatalf("output:\n%s", out.String())
	}
}

// The fault option: one spec everywhere, or per emulator.
func TestFaultSpecs(t *testing.T) {
	got, err := faultSpecs("")
	if err != nil || got["cloudcruiser"] != lightFaults || got["acronis"] != lightFaults {
		t.Fatalf("default: %v %v", got, err)
	}
	got, err = faultSpecs("none")
	if err != nil || got["webhook"] != "" || got["here"] != "" {
		t.Fatalf("none: %v %v", got, err)
	}
	got, err = faultSpecs("500@0.05,429:retry=1x1;cloudcruiser=400x1;here=none")
	if err != nil || got["webhook"] != "500@0.05,429:retry=1x1" || got["cloudcruiser"] != "400x1" || got["here"] != "" {
		t.Fatalf("groups: %v %v", got, err)
	}
	got, err = faultSpecs("cloudcruiser=400x1")
	if err != nil || got["cloudcruiser"] != "400x1" || got["cloudzero"] != "" {
		t.Fatalf("one emulator only: %v %v", got, err)
	}
	if _, err := faultSpecs("cloudcrusier=400"); err == nil || !strings.Contains(err.Error(), "not an emulator") {
		t.Fatalf("a misspelt emulator: %v", err)
	}
}
