package here

import (
	"context"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/usagefleet/usagefleet/internal/config"
	sbhere "github.com/usagefleet/usagefleet/internal/sandbox/here"
	"github.com/usagefleet/usagefleet/messages"
	"github.com/usagefleet/usagefleet/producer/collect"
)

var (
	now   = time.Date(2024, 8, 20, 12, 0, 0, 0, time.UTC)
	realm = "org1000000001"
	subs  = []string{"org1000000101", "org1000000102"}
	days  = collect.Range{Start: time.Date(2024, 8, 16, 0, 0, 0, 0, time.UTC), End: time.Date(2024, 8, 18, 0, 0, 0, 0, time.UTC)}
)

type sinkRec struct {
	recs    []messages.UsageRecord
	rejects []string
}

func (s *sinkRec) Record(_ collect.Row, r *messages.UsageRecord) { s.recs = append(s.recs, r.Clone()) }
func (s *sinkRec) Reject(_ collect.Row, col, reason string) {
	s.rejects = append(s.rejects, col+": "+reason)
}

func sandboxPlatform(t *testing.T, cfg sbhere.Config, edit func(*Settings)) (*sbhere.Server, *Platform) {
	t.Helper()
	cfg.Now = func() time.Time { return now }
	sb := sbhere.New(cfg)
	srv := httptest.NewServer(sb.Handler())
	t.Cleanup(srv.Close)
	s := Settings{BaseURL: srv.URL + "/v2", TokenURL: srv.URL + "/oauth2/token",
		Credentials: config.NewSecret("here.access.key.id=sandbox-access-key-id\nhere.access.key.secret=sandbox-access-key-secret\n"),
		Realm:       realm, SubAccounts: subs}
	if edit != nil {
		edit(&s)
	}
	if err := s.Validate("settings"); err != nil {
		t.Fatal(err)
	}
	p, err := New(s, collect.Env{Now: func() time.Time { return now }, Retry: collect.Retry{For: time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	return sb, p
}

func collectOnce(t *testing.T, p *Platform, r collect.Range) *sinkRec {
	t.Helper()
	ctx := context.Background()
	id, err := p.Request(ctx, r)
	if err != nil {
		t.Fatal(err)
	}
	st, err := p.Status(ctx, id)
	if err != nil || st.State != collect.Ready {
		t.Fatalf("status %+v %v", st, err)
	}
	sink := &sinkRec{}
	if _, err := p.Fetch(ctx, id, st, r, sink); err != nil {
		t.Fatal(err)
	}
	if len(sink.rejects) != 0 {
		t.Fatalf("rejected %v", sink.rejects)
	}
	return sink
}

func quantity(recs []messages.UsageRecord) (n int, q messages.Sum) {
	for i := range recs {
		q.Add(recs[i].ConsumedQuantity)
	}
	return len(recs), q
}

// Issue 17.14: the spec does not say whether endDate is inclusive; the
// collector gets the same data under both readings (it ends at hh:59:59),
// where a next-midnight end would count the next day's first hour when
// the API reads it as inclusive.
func TestEndDateEitherReading(t *testing.T) {
	for _, inclusive := range []bool{false, true} {
		sb, p := sandboxPlatform(t, sbhere.Config{Seed: 4, InclusiveEnd: inclusive}, nil)
		n, q := quantity(collectOnce(t, p, days).recs)
		want := sb.ExpectedQuery(sbhere.Query{Realm: realm, SubAccounts: subs, Start: days.Start, End: days.End, DetailLevel: sbhere.DetailDay})
		if n != want.Records || !q.Big().Equal(want.Quantity) {
			t.Errorf("inclusive %v: %d records, quantity %s; want %d, %s", inclusive, n, q.Big(), want.Records, want.Quantity)
		}
		if got := sb.Stats().Reports[0].Query.End; !inclusive && !got.Equal(days.End.Add(-time.Second)) {
			t.Errorf("endDate %s, want the last second of the range", got)
		}
	}
}

// Issue 17.14: with sub-accounts the report covers only them (the spec:
// "If subaccounts pass to the request body, then the usage report
// consists of data for the subaccounts"); include_own_org adds the
// partner org's own usage through a second report without a body.
func TestPartnerOrgWithSubAccounts(t *testing.T) {
	sb, p := sandboxPlatform(t, sbhere.Config{Seed: 6}, func(s *Settings) { s.IncludeOwnOrg = true })
	got := collectOnce(t, p, days)
	own := sb.ExpectedQuery(sbhere.Query{Realm: realm, Start: days.Start, End: days.End, DetailLevel: sbhere.DetailDay})
	sub := sb.ExpectedQuery(sbhere.Query{Realm: realm, SubAccounts: subs, Start: days.Start, End: days.End, DetailLevel: sbhere.DetailDay})
	n, q := quantity(got.recs)
	if n != own.Records+sub.Records || !q.Big().Equal(own.Quantity.Add(sub.Quantity)) || own.Records == 0 {
		t.Fatalf("%d records, %s; want %d + %d, %s + %s", n, q.Big(), own.Records, sub.Records, own.Quantity, sub.Quantity)
	}
	orgs := map[string]bool{}
	for _, r := range got.recs {
		orgs[r.SubAccountId] = true
	}
	if !orgs[realm] || !orgs[subs[0]] || !orgs[subs[1]] {
		t.Fatalf("orgs %v, want the partner and both sub-accounts", orgs)
	}
	if st := sb.Stats(); st.ReportsCreated() != 2 {
		t.Fatalf("%d reports, want one for the org and one for the sub-accounts", st.ReportsCreated())
	}
	if !strings.Contains(p.Fingerprint(), "true") {
		t.Fatal("include_own_org does not change the fingerprint: a checkpointed report of another scope could be reused")
	}
}
