package acronis

import (
	"context"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/usagefleet/usagefleet/internal/config"
	sbacronis "github.com/usagefleet/usagefleet/internal/sandbox/acronis"
	"github.com/usagefleet/usagefleet/internal/sandbox/fault"
	"github.com/usagefleet/usagefleet/messages"
	"github.com/usagefleet/usagefleet/producer/collect"
)

// now is the sandbox's and the collector's clock in these tests.
var now = time.Date(2024, 8, 20, 12, 0, 0, 0, time.UTC)

type sinkRec struct {
	recs    []messages.UsageRecord
	rejects []string
}

func (s *sinkRec) Record(_ collect.Row, r *messages.UsageRecord) { s.recs = append(s.recs, r.Clone()) }
func (s *sinkRec) Reject(_ collect.Row, col, reason string) {
	s.rejects = append(s.rejects, col+": "+reason)
}

// sandboxPlatform starts the sandbox and a platform on it; edit changes the
// settings before they are validated.
func sandboxPlatform(t *testing.T, cfg sbacronis.Config, edit func(*Settings)) (*sbacronis.Server, *Platform) {
	t.Helper()
	cfg.Now = func() time.Time { return now }
	sb := sbacronis.New(cfg)
	ts := httptest.NewServer(sb.Handler())
	t.Cleanup(ts.Close)
	s := Settings{BaseURL: ts.URL, ClientID: "sandbox-client", ClientSecret: config.NewSecret("sandbox-secret"), TenantID: sb.RootTenantID()}
	if edit != nil {
		edit(&s)
	}
	if err := s.Validate("settings"); err != nil {
		t.Fatal(err)
	}
	p, err := New(s, collect.Env{Now: func() time.Time { return now }, Retry: collect.Retry{For: time.Second}}.WithDefaults())
	if err != nil {
		t.Fatal(err)
	}
	return sb, p
}

// collectOnce asks for r, waits for it and downloads it.
func collectOnce(t *testing.T, p *Platform, r collect.Range) (*sinkRec, error) {
	t.Helper()
	ctx := context.Background()
	id, err := p.Request(ctx, r)
	if err != nil {
		t.Fatalf("request: %v", err)
	}
	st, err := p.Status(ctx, id)
	if err != nil || st.State != collect.Ready {
		t.Fatalf("status %+v, %v", st, err)
	}
	sink := &sinkRec{}
	_, err = p.Fetch(ctx, id, st, r, sink)
	return sink, err
}

var august = collect.Range{Start: time.Date(2024, 8, 1, 0, 0, 0, 0, time.UTC), End: time.Date(2024, 8, 8, 0, 0, 0, 0, time.UTC)}

// Issue 17.9: with only the documented csv_v2_0 columns, the default kind
// (usage_summary) collects, and usage_daily fails naming the date column
// instead of guessing; a missing documented column is named too.
func TestDocumentedColumnsOnly(t *testing.T) {
	sb, p := sandboxPlatform(t, sbacronis.Config{Seed: 3, DocumentedColumnsOnly: true}, nil)
	if p.s.Kind != KindSummary {
		t.Fatalf("default kind %q, want usage_summary (it needs no undocumented column)", p.s.Kind)
	}
	got, err := collectOnce(t, p, august)
	if err != nil {
		t.Fatalf("usage_summary on the documented columns: %v", err)
	}
	want := sb.Expected(sbacronis.Query{TenantID: sb.RootTenantID(), Level: "all_customers", Kind: sbacronis.KindSummary,
		Start: august.Start, End: august.End.AddDate(0, 0, -1), ShowSKUs: true})
	if len(got.recs) != want.Records || len(got.rejects) != 0 {
		t.Fatalf("%d records %d rejects, want %d records", len(got.recs), len(got.rejects), want.Records)
	}

	_, p = sandboxPlatform(t, sbacronis.Config{Seed: 3, DocumentedColumnsOnly: true}, func(s *Settings) { s.Kind = KindDaily })
	_, err = collectOnce(t, p, august)
	if err == nil || !strings.Contains(err.Error(), `column "date" missing`) || !strings.Contains(err.Error(), "usage_summary") {
		t.Fatalf("usage_daily without a date column: err %v, want one naming the column", err)
	}

	body := "application.id,name,tenant.id,tenant.kind,usage.delta.total\na,b,c,customer,1\n"
	_, err = p.parse(strings.NewReader(body), august, &sinkRec{})
	if err == nil || !strings.Contains(err.Error(), "infra.backend_type") || !strings.Contains(err.Error(), "usage.effective.trial") {
		t.Fatalf("err %v, want the missing documented columns named", err)
	}
}

// Issue 17.11 (seed 003, step 6): a downloaded report is deleted with its
// id and version, so an hourly schedule leaves no report objects behind.
func TestDownloadedReportIsDeleted(t *testing.T) {
	sb, p := sandboxPlatform(t, sbacronis.Config{Seed: 5}, nil)
	for i := 0; i < 3; i++ {
		if _, err := collectOnce(t, p, august); err != nil {
			t.Fatal(err)
		}
	}
	if st := sb.Stats(); st.ReportsKept() != 3 {
		t.Fatalf("%d kept before publication, want 3: a run that fails after the download takes its report over", st.ReportsKept())
	}
	for _, id := range sb.Stats().ReportIDs() {
		p.CleanReport(context.Background(), id) // the collector, once the report's periods are published
	}
	st := sb.Stats()
	if st.ReportsCreated() != 3 || st.ReportsKept() != 0 {
		t.Fatalf("%d reports created, %d kept; want 3 and 0", st.ReportsCreated(), st.ReportsKept())
	}
	// A delete the API refuses is logged; the report stays.
	sb.Faults().Set(fault.Rule{Kind: fault.Status, Code: 500, Method: "DELETE", Path: "/api/2/reports/"})
	if _, err := collectOnce(t, p, august); err != nil {
		t.Fatal(err)
	}
	p.CleanReport(context.Background(), sb.Stats().ReportIDs()[3]) // logs, returns
	if st := sb.Stats(); st.ReportsKept() != 1 {
		t.Fatalf("%d kept, want the one whose delete failed", st.ReportsKept())
	}
}

// Issue 17.10: csv_v2_0 is a report type "other than csv or html", so
// Disaster Recovery compute points arrive in seconds and are divided by
// 3600 and rounded to 2 places.
func TestComputePointsFromSeconds(t *testing.T) {
	for in, want := range map[string]string{"5400": "1.50", "1": "0.00", "18": "0.01", "17.99": "0.00", "-18": "-0.01", "36000": "10.00"} {
		if got := computePoints(messages.MustDecimal(in)).String(); got != want {
			t.Errorf("computePoints(%s) = %s, want %s", in, got, want)
		}
	}
	sb, p := sandboxPlatform(t, sbacronis.Config{Seed: 8}, nil)
	got, err := collectOnce(t, p, august)
	if err != nil {
		t.Fatal(err)
	}
	exp := sb.Expected(sbacronis.Query{TenantID: sb.RootTenantID(), Level: "all_customers", Kind: sbacronis.KindSummary,
		Start: august.Start, End: august.End.AddDate(0, 0, -1), ShowSKUs: true})
	want := map[string]string{}
	converted := false
	for _, r := range exp.Rows {
		if r.Name == ComputePointsItem {
			want[r.TenantID] = r.Quantity().String()
			converted = converted || !r.Quantity().Equal(r.Delta.Total)
		}
	}
	if len(want) == 0 || !converted {
		t.Fatalf("the sandbox has no compute points usage in seconds to convert: %v", want)
	}
	n := 0
	for _, r := range got.recs {
		if r.SkuMeter != ComputePointsItem {
			continue
		}
		n++
		if w := want[r.SubAccountId]; !r.ConsumedQuantity.Equal(messages.MustDecimal(w)) || r.ConsumedUnit != ComputePointsUnit {
			t.Errorf("tenant %s: %s %s, want %s %s", r.SubAccountId, r.ConsumedQuantity, r.ConsumedUnit, w, ComputePointsUnit)
		}
	}
	if n != len(want) {
		t.Fatalf("%d compute points records, want %d", n, len(want))
	}
}

// Issue 17.12: with level all_customers a sub-partner's row sums its
// customers' rows, which the file lists too: the partner's usage must not
// be counted twice.
func TestAllCustomersCountsPartnerUsageOnce(t *testing.T) {
	sub := map[string][]string{
		"5b0e3f5c-1111-4a4a-8b8b-000000000001": {"5b0e3f5c-2222-4a4a-8b8b-000000000001", "5b0e3f5c-2222-4a4a-8b8b-000000000002"},
		"5b0e3f5c-1111-4a4a-8b8b-000000000002": {"5b0e3f5c-2222-4a4a-8b8b-000000000003"},
	}
	sb, p := sandboxPlatform(t, sbacronis.Config{Seed: 9, SubPartners: sub}, func(s *Settings) { s.Level = "all_customers" })
	got, err := collectOnce(t, p, august)
	if err != nil {
		t.Fatal(err)
	}
	q := sbacronis.Query{TenantID: sb.RootTenantID(), Level: "all_customers", Kind: sbacronis.KindSummary,
		Start: august.Start, End: august.End.AddDate(0, 0, -1), ShowSKUs: true}
	want := sb.Expected(q)
	var sum messages.Sum
	tenants := map[string]bool{}
	for i := range got.recs {
		sum.Add(got.recs[i].ConsumedQuantity)
		tenants[got.recs[i].SubAccountId] = true
	}
	if want.Aggregates == 0 {
		t.Fatal("the sandbox wrote no sub-partner rows")
	}
	if len(got.recs) != want.Records || !sum.Big().Equal(want.Quantity) {
		t.Fatalf("published %d records, quantity %s; want %d, %s (sub-partner rows counted twice?)", len(got.recs), sum.Big(), want.Records, want.Quantity)
	}
	for sp, kids := range sub {
		if tenants[sp] {
			t.Errorf("sub-partner %s published beside its customers", sp)
		}
		for _, k := range kids {
			if !tenants[k] {
				t.Errorf("customer %s of sub-partner %s missing", k, sp)
			}
		}
	}
	// Level direct_partners lists a sub-partner's row without its
	// customers': there the row is the only one carrying their usage.
	sb2, p2 := sandboxPlatform(t, sbacronis.Config{Seed: 9, SubPartners: sub}, func(s *Settings) { s.Level = "direct_partners" })
	got2, err := collectOnce(t, p2, august)
	if err != nil {
		t.Fatal(err)
	}
	q.Level = "direct_partners"
	if w := sb2.Expected(q); len(got2.recs) != w.Records || w.Aggregates != 0 {
		t.Fatalf("direct_partners: %d records, want %d (aggregates %d)", len(got2.recs), w.Records, w.Aggregates)
	}
}
