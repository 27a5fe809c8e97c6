package here

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/usagefleet/usagefleet/internal/sandbox/fault"
)

func TestReportLifecycle(t *testing.T) {
	for _, detail := range []string{DetailSummarized, DetailDay, DetailMonth} {
		t.Run(detail, func(t *testing.T) {
			e := newEnv(t, Config{GenerationDelay: 2 * time.Minute})
			tok := e.token()
			realm := "org1000000001"
			subs := []string{"org1000000102", "org1000000101"}
			q := dates("2025-01-01T00:00:00", "2025-03-01T00:00:00", "detailLevel", detail)
			r := e.do(http.MethodPost, reportPath(realm, q), `{"subAccounts":["org1000000102","org1000000101"]}`,
				map[string]string{"Authorization": "Bearer " + tok, "Content-Type": "application/json", "X-Correlation-ID": "corr-1", "X-Request-ID": "req-1"})
			if r.code != 201 || r.hdr.Get("X-Correlation-ID") != "corr-1" || r.hdr.Get("X-Request-ID") != "req-1" {
				t.Fatalf("create: %d %v %s", r.code, r.hdr, r.body)
			}
			var created map[string]string
			_ = json.Unmarshal(r.body, &created)
			id := created["id"]
			if !regexp.MustCompile(`^REPORT-\d+$`).MatchString(id) || created["status"] != StatusInProgress {
				t.Fatalf("created %s", r.body)
			}
			if loc := r.hdr.Get("Location"); loc != e.ts.URL+"/v2/usage/realms/"+realm+"/reports/"+id {
				t.Fatalf("Location %q", loc)
			}
			st := e.status(tok, realm, id)
			if st.Status != StatusInProgress || st.ResultHref != "" || st.Parameters.StartDate != "2025-01-01T00:00:00" || len(st.Parameters.SubAccounts) != 2 {
				t.Fatalf("status before delay %+v", st)
			}
			assertProblem(t, e.api(tok, http.MethodGet, "/v2/usage/realms/"+realm+"/reports/"+id+"/output", ""), 404, "E706404")
			e.clk.Add(2 * time.Minute)
			st = e.status(tok, realm, id)
			if st.Status != StatusCompleted || !strings.HasSuffix(st.ResultHref, "/reports/"+id+"/output") || st.Truncated {
				t.Fatalf("status after delay %+v", st)
			}
			res, err := e.ts.Client().Get(st.ResultHref) // no token
			if err != nil {
				t.Fatal(err)
			}
			res.Body.Close()
			if res.StatusCode != 401 {
				t.Fatalf("output without token: %d", res.StatusCode)
			}
			got := collect(t, e.output(tok, realm, id))
			want := e.srv.Expected(realm, subs, time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(2025, 3, 1, 0, 0, 0, 0, time.UTC), detail)
			if len(got.rejected) != 0 || got.tot.Records != want.Records || !got.tot.Quantity.Equal(want.Quantity) || !got.tot.UsageValue.Equal(want.UsageValue) {
				t.Fatalf("collected %d/%s/%s (rejected %v), expected %d/%s/%s", got.tot.Records, got.tot.Quantity, got.tot.UsageValue, got.rejected, want.Records, want.Quantity, want.UsageValue)
			}
			if want.Records == 0 || want.Quantity.IsZero() || len(want.PerAccount) != 2 || len(want.PerFeature) < 4 {
				t.Fatalf("thin data: %d records, %d accounts, %d features", want.Records, len(want.PerAccount), len(want.PerFeature))
			}
			sameTotals(t, "per account", got.tot.PerAccount, want.PerAccount)
			sameTotals(t, "per feature", got.tot.PerFeature, want.PerFeature)
			_, hasDate := got.cols["usageDateTime"]
			if hasDate != (detail != DetailSummarized) {
				t.Fatalf("usageDateTime present=%v at %s", hasDate, detail)
			}
			switch detail {
			case DetailDay:
				sameTotals(t, "per day", got.tot.PerDay, want.PerDay)
				if len(want.PerDay) != 59 {
					t.Errorf("days %d", len(want.PerDay))
				}
			case DetailMonth:
				sameTotals(t, "per month", got.tot.PerDay, want.PerDay)
				if len(want.PerDay) != 2 || want.PerDay["2025-02-01"].Records == 0 {
					t.Errorf("months %v", want.PerDay)
				}
			}
			for _, c := range []string{"realmId", "featureId", "billingSubscriptionId", "category", "name", "valueDriver", "usageValue", "billableValue", "appId", "appName", "billingTag"} {
				if _, ok := got.cols[c]; !ok {
					t.Errorf("no %s column", c)
				}
			}
			if _, ok := got.cols["projectHrn"]; ok {
				t.Error("projectHrn without groupBy=project")
			}
			stats := e.srv.Stats()
			if stats.ReportsCreated() != 1 || stats.Downloads != 1 || stats.Reports[0].Records != want.Records {
				t.Errorf("stats %+v", stats)
			}
		})
	}
}

func TestPendingThenFailed(t *testing.T) {
	e := newEnv(t, Config{PendingFor: time.Minute, GenerationDelay: 3 * time.Minute})
	tok := e.token()
	e.srv.FailNextReports(1)
	r := e.api(tok, http.MethodPost, reportPath("org1000000002", dates("2025-01-01T00:00:00", "2025-01-02T00:00:00")), "")
	if r.code != 201 || !strings.Contains(string(r.body), `"pending"`) {
		t.Fatalf("create: %d %s", r.code, r.body)
	}
	var c map[string]string
	_ = json.Unmarshal(r.body, &c)
	for _, step := range []struct {
		after time.Duration
		want  string
	}{{0, StatusPending}, {time.Minute, StatusInProgress}, {2 * time.Minute, StatusFailed}} {
		e.clk.Add(step.after)
		if st := e.status(tok, "org1000000002", c["id"]); st.Status != step.want || st.ResultHref != "" {
			t.Fatalf("after +%v: %+v", step.after, st)
		}
	}
	assertProblem(t, e.api(tok, http.MethodGet, "/v2/usage/realms/org1000000002/reports/"+c["id"]+"/output", ""), 404, "E706404")
	id2 := e.create(tok, "org1000000002", dates("2025-01-01T00:00:00", "2025-01-02T00:00:00"), "")
	e.clk.Add(3 * time.Minute)
	if st := e.status(tok, "org1000000002", id2); st.Status != StatusCompleted {
		t.Fatalf("second report %+v", st)
	}
	e.srv.FailReport(id2)
	if st := e.status(tok, "org1000000002", id2); st.Status != StatusFailed {
		t.Fatalf("FailReport %+v", st)
	}
}

func TestDeterministicBytes(t *testing.T) {
	e := newEnv(t, Config{})
	tok := e.token()
	q := dates("2025-02-01T00:00:00", "2025-02-15T00:00:00", "detailLevel", "day", "groupBy", "appId,project")
	a := e.output(tok, "org1000000001", e.create(tok, "org1000000001", q, ""))
	b := e.output(tok, "org1000000001", e.create(tok, "org1000000001", q, ""))
	if !bytes.Equal(a, b) {
		t.Fatal("same request, different bytes")
	}
	e2 := newEnv(t, Config{})
	if c := e2.output(e2.token(), "org1000000001", e2.create(e2.token(), "org1000000001", q, "")); !bytes.Equal(a, c) {
		t.Fatal("same seed, other server, different bytes")
	}
	e3 := newEnv(t, Config{Seed: 8})
	if c := e3.output(e3.token(), "org1000000001", e3.create(e3.token(), "org1000000001", q, "")); bytes.Equal(a, c) {
		t.Fatal("other seed, same bytes")
	}
	got := collect(t, a)
	if _, ok := got.cols["projectHrn"]; !ok {
		t.Error("groupBy=project: no projectHrn column")
	}
	if _, ok := got.cols["billingTag"]; ok {
		t.Error("groupBy=appId,project: unexpected billingTag column")
	}
	other := collect(t, e.output(tok, "org1000000001", e.create(tok, "org1000000001", dates("2025-02-01T00:00:00", "2025-02-15T00:00:00"), "")))
	order := func(c collected) string {
		names := make([]string, len(c.cols))
		for n, i := range c.cols {
			names[i] = n
		}
		return strings.Join(names, ",")
	}
	if order(got) == order(other) {
		t.Error("column order is the same for two reports")
	}
}

func TestDataShape(t *testing.T) {
	srv := New(Config{Seed: 7})
	start, end := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(2025, 1, 31, 0, 0, 0, 0, time.UTC)
	day := srv.Expected("org1000000001", []string{"org1000000101", "org1000000102"}, start, end, DetailDay)
	sum := srv.Expected("org1000000001", []string{"org1000000101", "org1000000102"}, start, end, DetailSummarized)
	month := srv.Expected("org1000000001", []string{"org1000000101", "org1000000102"}, start, end, DetailMonth)
	if !day.Quantity.Equal(sum.Quantity) || !day.Quantity.Equal(month.Quantity) || !day.UsageValue.Equal(sum.UsageValue) {
		t.Fatalf("detail levels disagree: day %s summarized %s month %s", day.Quantity, sum.Quantity, month.Quantity)
	}
	if day.Records != sum.Records*30 {
		t.Errorf("day records %d, summarized %d", day.Records, sum.Records)
	}
	var zeroBill, zeroBoth, sixDigits, differ int
	for _, r := range day.Rows {
		if r.BillableValue.IsZero() {
			zeroBill++
			if r.UsageValue.IsZero() {
				zeroBoth++
			}
		}
		if r.UsageValue.Exponent() == -6 && !r.UsageValue.IsInteger() {
			sixDigits++
		}
		if !r.UsageValue.Equal(r.BillableValue) {
			differ++
		}
		if r.BillableValue.GreaterThan(r.UsageValue) || r.BillableValue.IsNegative() {
			t.Fatalf("billable > usage: %+v", r)
		}
	}
	if zeroBill == 0 || zeroBoth == 0 || sixDigits == 0 || differ == 0 || zeroBill == len(day.Rows) {
		t.Errorf("data not varied: zero billable %d, zero both %d, 6-digit %d, usage!=billable %d of %d", zeroBill, zeroBoth, sixDigits, differ, len(day.Rows))
	}
	// Realm itself vs sub-accounts, grouping, filters.
	own := srv.Expected("org1000000001", nil, start, end, DetailSummarized)
	if len(own.PerAccount) != 1 || own.PerAccount["org1000000001"].Records == 0 {
		t.Errorf("realm itself: %v", own.PerAccount)
	}
	coarse := srv.ExpectedQuery(Query{Realm: "org1000000001", SubAccounts: []string{"org1000000101"}, Start: start, End: end, GroupBy: []string{}})
	fine := srv.ExpectedQuery(Query{Realm: "org1000000001", SubAccounts: []string{"org1000000101"}, Start: start, End: end, GroupBy: []string{"appId", "billingTag", "project"}})
	if !coarse.Quantity.Equal(fine.Quantity) || coarse.Records >= fine.Records || coarse.Records > len(features) {
		t.Errorf("grouping: coarse %d/%s, fine %d/%s", coarse.Records, coarse.Quantity, fine.Records, fine.Quantity)
	}
	bill := srv.ExpectedQuery(Query{Realm: "org1000000001", Start: start, End: end, ChargeType: "billable"})
	non := srv.ExpectedQuery(Query{Realm: "org1000000001", Start: start, End: end, ChargeType: "nonBillable"})
	if !bill.UsageValue.Add(non.UsageValue).Equal(own.UsageValue) || !non.Quantity.IsZero() || non.Records == 0 {
		t.Errorf("chargeType: billable %s + nonBillable %s != %s", bill.UsageValue, non.UsageValue, own.UsageValue)
	}
	// Hours count when startDate <= hour < endDate.
	h10 := time.Date(2025, 1, 5, 10, 0, 0, 0, time.UTC)
	a := srv.Expected("org1000000002", nil, h10, h10.Add(2*time.Hour), DetailSummarized)
	b := srv.Expected("org1000000002", nil, h10.Add(30*time.Minute), h10.Add(2*time.Hour), DetailSummarized)
	c := srv.Expected("org1000000002", nil, h10.Add(time.Hour), h10.Add(2*time.Hour), DetailSummarized)
	if !b.UsageValue.Equal(c.UsageValue) || a.UsageValue.Equal(c.UsageValue) {
		t.Errorf("hour alignment: [10:00,12:00) %s, [10:30,12:00) %s, [11:00,12:00) %s", a.UsageValue, b.UsageValue, c.UsageValue)
	}
	// Splitting a day-level range at a day boundary partitions it exactly.
	mid := time.Date(2025, 1, 17, 0, 0, 0, 0, time.UTC)
	first := srv.Expected("org1000000001", []string{"org1000000101"}, start, mid, DetailDay)
	second := srv.Expected("org1000000001", []string{"org1000000101"}, mid, end, DetailDay)
	whole := srv.Expected("org1000000001", []string{"org1000000101"}, start, end, DetailDay)
	if first.Records+second.Records != whole.Records || !first.Quantity.Add(second.Quantity).Equal(whole.Quantity) {
		t.Errorf("split: %d+%d != %d", first.Records, second.Records, whole.Records)
	}
}

func TestUsageFieldsAndPlainHeaders(t *testing.T) {
	e := newEnv(t, Config{PlainHeaders: true})
	tok := e.token()
	id := e.create(tok, "org1000000002", dates("2025-01-01T00:00:00", "2025-01-03T00:00:00", "usageFields", "realmId,featureId,billableValue,usageValue,resource"), "")
	zr, _ := gzip.NewReader(bytes.NewReader(e.output(tok, "org1000000002", id)))
	raw, _ := io.ReadAll(zr)
	header := strings.Split(strings.SplitN(string(raw), "\n", 2)[0], ",")
	got := map[string]bool{}
	for _, h := range header {
		got[h] = true
	}
	for _, want := range []string{"realmId", "featureId", "billableValue", "usageValue", "resource", "appId", "appName", "appHrn", "billingTag"} {
		if !got[want] {
			t.Errorf("header %v lacks %s", header, want)
		}
	}
	if got["category"] || got["name"] || len(header) != 9 {
		t.Errorf("header %v", header)
	}
}

func TestCreateValidation(t *testing.T) {
	e := newEnv(t, Config{})
	tok := e.token()
	ok := dates("2025-01-01T00:00:00", "2025-01-31T00:00:00")
	with := func(k, v string) url.Values {
		q := url.Values{}
		for kk, vv := range ok {
			q[kk] = vv
		}
		if v == "" {
			q.Del(k)
		} else {
			q.Set(k, v)
		}
		return q
	}
	cases := []struct {
		name  string
		realm string
		q     url.Values
		body  string
		want  int
		code  string
	}{
		{"ok", "org1000000001", ok, "", 201, ""},
		{"ok with sub-accounts", "org1000000001", ok, `{"subAccounts":["org1000000101"]}`, 201, ""},
		{"exactly 95 days", "org1000000001", dates("2024-11-01T00:00:00", "2025-02-04T00:00:00"), "", 201, ""},
		{"96 days", "org1000000001", dates("2024-11-01T00:00:00", "2025-02-04T00:00:01"), "", 400, "E706003"},
		{"end in the future", "org1000000001", dates("2025-03-15T00:00:00", "2025-03-15T13:00:00"), "", 400, "E706003"},
		{"end now", "org1000000001", dates("2025-03-15T00:00:00", "2025-03-15T12:00:00"), "", 201, ""},
		{"realm too short", "org1", ok, "", 400, "E706001"},
		{"realm too long", "org123456789012345678901234567890", ok, "", 400, "E706001"},
		{"unknown realm", "org9999999999", ok, "", 400, "E706001"},
		{"foreign sub-account", "org1000000001", ok, `{"subAccounts":["org1000000999"]}`, 400, "E706001"},
		{"sub-account of other realm", "org1000000002", ok, `{"subAccounts":["org1000000101"]}`, 400, "E706001"},
		{"empty sub-accounts", "org1000000001", ok, `{"subAccounts":[]}`, 400, "E706000"},
		{"unknown body key", "org1000000001", ok, `{"subAccounts":["org1000000101"],"x":1}`, 400, "E706000"},
		{"body not json", "org1000000001", ok, `subAccounts`, 400, "E706000"},
		{"no startDate", "org1000000001", with("startDate", ""), "", 400, "E706003"},
		{"no endDate", "org1000000001", with("endDate", ""), "", 400, "E706003"},
		{"date only", "org1000000001", with("startDate", "2025-01-01"), "", 400, "E706003"},
		{"with zone", "org1000000001", with("startDate", "2025-01-01T00:00:00Z"), "", 400, "E706003"},
		{"end before start", "org1000000001", with("endDate", "2024-12-31T00:00:00"), "", 400, "E706003"},
		{"end equals start", "org1000000001", with("endDate", "2025-01-01T00:00:00"), "", 400, "E706003"},
		{"hour detail", "org1000000001", with("detailLevel", "hour"), "", 400, "E706003"},
		{"weekly detail", "org1000000001", with("detailLevel", "week"), "", 400, "E706000"},
		{"bad groupBy", "org1000000001", with("groupBy", "appId,colour"), "", 400, "E706004"},
		{"groupBy with spaces", "org1000000001", with("groupBy", "appId, billingTag, project"), "", 201, ""},
		{"bad chargeType", "org1000000001", with("chargeType", "free"), "", 400, "E706000"},
		{"bad channel", "org1000000001", with("channelId", "warm"), "", 400, "E706000"},
		{"bad appId", "org1000000001", with("appId", "a b"), "", 400, "E706000"},
		{"long category", "org1000000001", with("category", strings.Repeat("c", 129)), "", 400, "E706000"},
		{"bad usageFields", "org1000000001", with("usageFields", "realmId,cost"), "", 400, "E706000"},
		{"21 subscriptions", "org1000000001", with("billingSubscriptionId", strings.Repeat("A,", 21)+"B"), "", 400, "E706000"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := e.api(tok, http.MethodPost, reportPath(c.realm, c.q), c.body)
			if c.want == 201 {
				if r.code != 201 {
					t.Fatalf("status %d: %s", r.code, r.body)
				}
				return
			}
			assertProblem(t, r, c.want, c.code)
		})
	}
	// Auth.
	r := e.do(http.MethodPost, reportPath("org1000000001", ok), "", nil)
	if r.code != 401 || !strings.Contains(string(r.body), `"error":"Unauthorized"`) || !strings.Contains(string(r.body), "No credentials found.") {
		t.Fatalf("no token: %d %s", r.code, r.body)
	}
	if r := e.api("forged", http.MethodPost, reportPath("org1000000001", ok), ""); r.code != 401 {
		t.Fatalf("forged token: %d", r.code)
	}
	// Correlation id generated when absent, required when configured.
	if r := e.api(tok, http.MethodGet, "/v2/usage/realms/org1000000001/reports", ""); len(r.hdr.Get("X-Correlation-ID")) != 36 {
		t.Fatalf("no generated correlation id: %v", r.hdr)
	}
	strict := newEnv(t, Config{RequireCorrelationID: true})
	assertProblem(t, strict.api(strict.token(), http.MethodGet, "/v2/usage/realms/org1000000001/reports", ""), 400, "E706000")
	// Unknown report, list limit.
	assertProblem(t, e.api(tok, http.MethodGet, "/v2/usage/realms/org1000000001/reports/REPORT-99999", ""), 404, "E706404")
	assertProblem(t, e.api(tok, http.MethodGet, "/v2/usage/realms/org1000000001/reports?limit=101", ""), 400, "E706002")
}

func TestListReports(t *testing.T) {
	e := newEnv(t, Config{})
	tok := e.token()
	var ids []string
	for i := 0; i < 5; i++ {
		ids = append(ids, e.create(tok, "org1000000001", dates("2025-01-01T00:00:00", "2025-01-02T00:00:00"), ""))
	}
	e.create(tok, "org1000000002", dates("2025-01-01T00:00:00", "2025-01-02T00:00:00"), "")
	r := e.api(tok, http.MethodGet, "/v2/usage/realms/org1000000001/reports?limit=2&offset=2&sort=asc", "")
	var l statusList
	if err := json.Unmarshal(r.body, &l); err != nil || r.code != 200 {
		t.Fatalf("list: %d %s", r.code, r.body)
	}
	if l.Total != 5 || l.Count != 2 || l.Limit != 2 || l.LastOffset != 4 || l.NextOffset == nil || *l.NextOffset != 4 || l.Items[0].ID != ids[2] {
		t.Fatalf("list %s", r.body)
	}
	r = e.api(tok, http.MethodGet, "/v2/usage/realms/org1000000001/reports", "")
	l = statusList{}
	_ = json.Unmarshal(r.body, &l)
	if l.Items[0].ID != ids[4] || l.NextOffset != nil || l.Count != 5 {
		t.Fatalf("default list (desc) %s", r.body)
	}
	// A report is not visible under another realm.
	assertProblem(t, e.api(tok, http.MethodGet, "/v2/usage/realms/org1000000002/reports/"+ids[0], ""), 404, "E706404")
}

// TestMaxRecordsSplit drives the "split and collect again" path: a report
// over MaxRecords is cut and says so; halving the range until no report is
// truncated collects exactly the full Expected.
func TestMaxRecordsSplit(t *testing.T) {
	e := newEnv(t, Config{MaxRecords: 50})
	tok := e.token()
	realm := "org1000000002"
	start, end := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(2025, 1, 21, 0, 0, 0, 0, time.UTC)
	full := e.srv.Expected(realm, nil, start, end, DetailDay)
	if !full.Truncated || full.Records <= 50 {
		t.Fatalf("full range should exceed the cap: %d records", full.Records)
	}
	var got Totals
	got.PerDay = map[string]Total{}
	var reports int
	var fetch func(a, b time.Time)
	fetch = func(a, b time.Time) {
		reports++
		id := e.create(tok, realm, dates(a.Format(DateLayout), b.Format(DateLayout), "detailLevel", "day"), "")
		st := e.status(tok, realm, id)
		c := collect(t, e.output(tok, realm, id))
		if st.Truncated {
			if c.rows != 50 {
				t.Fatalf("truncated report holds %d rows", c.rows)
			}
			mid := a.Add(b.Sub(a) / 2).Truncate(24 * time.Hour)
			if !mid.After(a) {
				t.Fatal("cannot split further")
			}
			fetch(a, mid)
			fetch(mid, b)
			return
		}
		got.Records += c.tot.Records
		got.Quantity = got.Quantity.Add(c.tot.Quantity)
		for k, v := range c.tot.PerDay {
			got.PerDay[k] = v
		}
	}
	fetch(start, end)
	if reports < 3 || got.Records != full.Records || !got.Quantity.Equal(full.Quantity) {
		t.Fatalf("after %d reports: %d/%s, want %d/%s", reports, got.Records, got.Quantity, full.Records, full.Quantity)
	}
	sameTotals(t, "per day", got.PerDay, full.PerDay)
}

func TestMalformedRows(t *testing.T) {
	e := newEnv(t, Config{MalformedRows: 4})
	tok := e.token()
	realm := "org1000000001"
	id := e.create(tok, realm, dates("2025-01-01T00:00:00", "2025-01-05T00:00:00", "detailLevel", "day"), `{"subAccounts":["org1000000101"]}`)
	c := collect(t, e.output(tok, realm, id))
	want := e.srv.Expected(realm, []string{"org1000000101"}, time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(2025, 1, 5, 0, 0, 0, 0, time.UTC), DetailDay)
	reported, _ := e.srv.Malformed(id)
	if len(want.Malformed) != 4 || len(c.rejected) != 4 || len(reported) != 4 {
		t.Fatalf("malformed: expected %v, rejected %v, reported %v", want.Malformed, c.rejected, reported)
	}
	reasons := map[string]bool{}
	for i, m := range want.Malformed {
		if _, ok := c.rejected[m.Line]; !ok || reported[i] != m {
			t.Errorf("malformed %+v not rejected at its line (%v) or not reported (%+v)", m, c.rejected, reported[i])
		}
		reasons[m.Reason] = true
	}
	if len(reasons) != 4 {
		t.Errorf("reasons %v", reasons)
	}
	if c.tot.Records != want.Records || !c.tot.Quantity.Equal(want.Quantity) || want.Records+4 != c.rows {
		t.Fatalf("collected %d/%s of %d rows, expected %d/%s", c.tot.Records, c.tot.Quantity, c.rows, want.Records, want.Quantity)
	}
}

func TestTokenExpiryAndRefresh(t *testing.T) {
	e := newEnv(t, Config{TokenTTL: time.Hour})
	tok := e.token()
	list := "/v2/usage/realms/org1000000001/reports"
	if r := e.api(tok, http.MethodGet, list, ""); r.code != 200 {
		t.Fatalf("fresh: %d", r.code)
	}
	e.clk.Add(time.Hour)
	r := e.api(tok, http.MethodGet, list, "")
	if r.code != 401 || !strings.Contains(string(r.body), `"error":"Unauthorized"`) {
		t.Fatalf("expired: %d %s", r.code, r.body)
	}
	tok = e.token()
	e.srv.ExpireTokens()
	if r := e.api(tok, http.MethodGet, list, ""); r.code != 401 {
		t.Fatalf("after ExpireTokens: %d", r.code)
	}
	// A shorter expires_in is honoured, a longer one ignored.
	r = e.tokenResp(url.Values{"expires_in": {"600"}})
	var tr struct {
		AccessToken string `json:"access_token"`
		ExpiresIn   int    `json:"expires_in"`
	}
	_ = json.Unmarshal(r.body, &tr)
	if tr.ExpiresIn != 600 {
		t.Fatalf("expires_in 600: %s", r.body)
	}
	e.clk.Add(10 * time.Minute)
	if r := e.api(tr.AccessToken, http.MethodGet, list, ""); r.code != 401 {
		t.Fatalf("short token after 10m: %d", r.code)
	}
	r = e.tokenResp(url.Values{"expires_in": {"999999"}})
	_ = json.Unmarshal(r.body, &tr)
	if tr.ExpiresIn != 3600 {
		t.Fatalf("expires_in over TTL: %s", r.body)
	}
}

func TestFaults(t *testing.T) {
	e := newEnv(t, Config{})
	tok := e.token()
	create := reportPath("org1000000001", dates("2025-01-01T00:00:00", "2025-01-02T00:00:00"))

	e.srv.Faults().Set(fault.Rule{Kind: fault.Status, Code: 503, RetryAfter: "3", Count: 1, Method: "POST", Path: "/v2/"})
	r := e.do(http.MethodPost, create, "", map[string]string{"Authorization": "Bearer " + tok, "X-Correlation-ID": "c-503"})
	if r.code != 503 || r.hdr.Get("Retry-After") != "3" {
		t.Fatalf("503 fault: %d %v", r.code, r.hdr)
	}
	assertProblem(t, r, 503, "E706503")
	if e.srv.Stats().ReportsCreated() != 0 {
		t.Fatal("Status fault applied the request")
	}
	e.srv.Faults().Set(fault.Rule{Kind: fault.ApplyThenStatus, Code: 502, Count: 1, Path: "/v2/"})
	if r := e.api(tok, http.MethodPost, create, ""); r.code != 502 {
		t.Fatalf("apply-then-status: %d", r.code)
	}
	if e.srv.Stats().ReportsCreated() != 1 {
		t.Fatal("apply-then-status did not apply")
	}
	e.srv.Faults().Set(fault.Rule{Kind: fault.Status, Code: 401, Count: 1, Path: "/v2/"})
	r = e.api(tok, http.MethodGet, "/v2/usage/realms/org1000000001/reports", "")
	if r.code != 401 || !strings.Contains(string(r.body), `"error":"Unauthorized"`) {
		t.Fatalf("401 fault: %d %s", r.code, r.body)
	}
	e.srv.Faults().Set(fault.Rule{Kind: fault.Status, Code: 429, RetryAfter: "1", Count: 1, Path: "/oauth2/token"})
	if r := e.tokenResp(nil); r.code != 429 || r.hdr.Get("Retry-After") != "1" || !strings.Contains(string(r.body), `"error"`) {
		t.Fatalf("token 429: %d %s", r.code, r.body)
	}
	e.srv.Faults().Set(fault.Rule{Kind: fault.Timeout, Delay: 50 * time.Millisecond, Count: 1})
	req, _ := http.NewRequest(http.MethodGet, e.ts.URL+"/v2/usage/realms/org1000000001/reports", nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	// A fresh connection: on a reused one, Go's transport would silently
	// retry the idempotent GET after the abort.
	fresh := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	if res, err := fresh.Do(req); err == nil {
		res.Body.Close()
		t.Fatal("timeout fault answered")
	}
	inj := e.srv.Faults().Injected()
	if inj[fault.Status] != 3 || inj[fault.ApplyThenStatus] != 1 || inj[fault.Timeout] != 1 {
		t.Fatalf("injected %v", inj)
	}
}

func TestAdminHTTP(t *testing.T) {
	e := newEnv(t, Config{})
	tok := e.token()
	e.create(tok, "org1000000001", dates("2025-01-01T00:00:00", "2025-01-08T00:00:00"), "")
	r := e.do(http.MethodGet, "/_sandbox/stats", "", nil)
	var st Stats
	if err := json.Unmarshal(r.body, &st); err != nil || st.ReportsCreated() != 1 || st.TokensIssued != 1 || strings.Contains(string(r.body), tok) {
		t.Fatalf("stats %d %s", r.code, r.body)
	}
	q := dates("2025-01-01T00:00:00", "2025-01-08T00:00:00", "realm", "org1000000001", "subAccounts", "org1000000101,org1000000102", "detailLevel", "day")
	r = e.do(http.MethodGet, "/_sandbox/expected?"+q.Encode(), "", nil)
	var tot Totals
	if err := json.Unmarshal(r.body, &tot); err != nil || r.code != 200 {
		t.Fatalf("expected: %d %s", r.code, r.body)
	}
	want := e.srv.Expected("org1000000001", []string{"org1000000101", "org1000000102"}, time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(2025, 1, 8, 0, 0, 0, 0, time.UTC), DetailDay)
	if tot.Records != want.Records || !tot.Quantity.Equal(want.Quantity) || tot.Rows != nil {
		t.Fatalf("expected over HTTP %d/%s, want %d/%s", tot.Records, tot.Quantity, want.Records, want.Quantity)
	}
	if r := e.do(http.MethodPost, "/_sandbox/expire-tokens", "", nil); r.code != 204 {
		t.Fatal(r.code)
	}
	if r := e.api(tok, http.MethodGet, "/v2/usage/realms/org1000000001/reports", ""); r.code != 401 {
		t.Fatalf("after expire-tokens: %d", r.code)
	}
	if r := e.do(http.MethodPut, "/_sandbox/faults", `[{"kind":"status","code":500,"count":1}]`, nil); r.code != 204 {
		t.Fatalf("faults: %d %s", r.code, r.body)
	}
	if r := e.tokenResp(nil); r.code != 500 {
		t.Fatalf("fault via admin: %d", r.code)
	}
	if r := e.do(http.MethodPost, "/_sandbox/reset", "", nil); r.code != 204 {
		t.Fatal(r.code)
	}
	if st := e.srv.Stats(); st.ReportsCreated() != 0 || st.TokensIssued != 0 {
		t.Fatalf("after reset %+v", st)
	}
}
