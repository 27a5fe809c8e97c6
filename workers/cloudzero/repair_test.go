package cloudzero

import (
	"strings"
	"testing"

	sandbox "github.com/usagefleet/usagefleet/internal/sandbox/cloudzero"
	"github.com/usagefleet/usagefleet/messages"
)

// Issue 14: rows whose tag key has a space, and tagged rows without a
// ResourceId, were dead-lettered with their cost. They are delivered now,
// their labels repaired, and the sandbox (which refuses such keys and
// tags without resource/id, as CBF says) takes every row.
func TestLabelsRepairedCostDelivered(t *testing.T) {
	s, url := emulator(t, sandbox.Config{})
	d := newDest(t, url, ModeReplaceHourly, 0)
	h := hourAt(16, 3)
	recs := hourRecords(h, 4, 0, "2")
	recs[0].Tags = map[string]string{"Cost department": "eng", " org": "acme"}
	recs[1].Tags = map[string]string{"team": "core"}
	recs[1].ResourceId = ""
	recs[2].BilledCost = messages.MustDecimal("-12") // a negative cost, as CBF allows
	recs[2].ChargeCategory = "Credit"
	j := newFakeJob(hourUnits(h), recs)
	mustDeliver(t, d, j)
	if len(j.Rejects) != 0 {
		t.Fatalf("rejected %d records (%v): a label must not cost the record", len(j.Rejects), j.Rejects[0].Reason)
	}
	checkTotals(t, s, expectTotals(recs))

	warnings := 0
	for i := range recs {
		_, w, err := d.EncodeRowWarnings(nil, &recs[i])
		if err != nil {
			t.Fatal(err)
		}
		warnings += w
	}
	if warnings != 2 {
		t.Fatalf("warnings = %d, want 2 (one per repaired record)", warnings)
	}
	rep, n := d.Repairs()
	if n != 2 || rep != (Repairs{TagKeysRewritten: 2, TagsDropped: 1}) {
		t.Fatalf("Repairs() = %+v in %d records, want 2 rewritten, 1 dropped in 2", rep, n)
	}
}

// Issue 17.3: validate_only sends every request to validate_billing_drop:
// CloudZero checks the rows and stores nothing.
func TestValidateOnlyStoresNothing(t *testing.T) {
	s, url := emulator(t, sandbox.Config{})
	d, err := New("cz-dry", Settings{BaseURL: url, ConnectionID: testConn, APIKey: newSecret(), ValidateOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(d.endpoint, "/v2/connections/billing/anycost/validate_billing_drop") || !strings.Contains(d.String(), "validate only") {
		t.Fatalf("endpoint %s, %s", d.endpoint, d)
	}
	real := newDest(t, url, ModeReplaceHourly, 0)
	if id, _ := d.Target(); func() bool { rid, _ := real.Target(); return rid == id }() {
		t.Fatal("a validating destination claims the connection the real one writes to")
	}
	h := hourAt(16, 5)
	recs := hourRecords(h, 30, 0, "1")
	j := newFakeJob(hourUnits(h), recs)
	mustDeliver(t, d, j)
	if got := s.Hours(testConn); len(got) != 0 {
		t.Fatalf("validate_only stored %v", got)
	}
	if v := s.Validations(); len(v) != 1 || v[0] != len(recs) {
		t.Fatalf("validations %v, want one of %d rows", v, len(recs))
	}
	if rows, _ := d.MonthUsage(h); rows != 0 {
		t.Fatalf("month usage counts %d validated rows", rows)
	}
}
