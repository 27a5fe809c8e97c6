package acronis

import (
	"bytes"
	"compress/gzip"
	"encoding/json"

	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/usagefleet/usagefleet/internal/sandbox/fault"
)

func TestReportLifecycleAndExpected(t *testing.T) {
	for _, kind := range []string{KindSummary, KindDaily} {
		t.Run(kind, func(t *testing.T) {
			e := newEnv(t, Config{GenerationDelay: 90 * time.Second})
			tok := e.token()
			obj := e.create(tok, reportBody(e.srv.RootTenantID(), kind, "2025-01-01", "2025-01-31", nil))
			if !uuidRE.MatchString(obj.ID) || obj.Version != 1 || obj.ResultAction != "save" || obj.GenerationDate != "2025-02-01" ||
				obj.Schedule != (schedule{Type: "once", Enabled: true}) || obj.Parameters.Kind != kind || obj.Recipients == nil {
				t.Fatalf("report object %+v", obj)
			}
			items := e.stored(tok, obj.ID)
			if len(items) != 1 || items[0].Status != "in_progress" || items[0].ReportFormat != FormatCSV2 {
				t.Fatalf("before the delay: %+v", items)
			}
			if r := e.api(tok, http.MethodGet, "/api/2/reports/"+obj.ID+"/stored/"+items[0].ID, nil); r.code != http.StatusNotFound {
				t.Fatalf("download while in progress: %d", r.code)
			}
			e.clk.Add(90 * time.Second)
			data := e.download(tok, obj.ID)
			if data[0] != 0x1f || data[1] != 0x8b {
				t.Fatal("download is not gzip")
			}
			p := parseFile(t, data)
			for _, col := range []string{"application.id", "edition", "infra.backend_type", "infra.id", "infra.owner_id", "name", "tenant.id", "tenant.kind",
				"usage.absolute.production", "usage.absolute.total", "usage.absolute.trial", "usage.delta.production", "usage.delta.total",
				"usage.delta.trial", "usage.effective.production", "usage.effective.total", "usage.effective.trial"} {
				if _, ok := p.col[col]; !ok {
					t.Errorf("header lacks %s", col)
				}
			}
			_, hasDate := p.col["date"]
			if hasDate != (kind == KindDaily) {
				t.Errorf("date column present=%v for %s", hasDate, kind)
			}
			got, rejected := p.collect(t)
			want := e.srv.Expected(Query{TenantID: e.srv.RootTenantID(), Level: "accounts", Kind: kind,
				Start: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC), End: time.Date(2025, 1, 31, 0, 0, 0, 0, time.UTC)})
			if len(rejected) != 0 {
				t.Fatalf("rejected %v", rejected)
			}
			if got.Records != want.Records || !got.Quantity.Equal(want.Quantity) || want.Records == 0 || want.Quantity.IsZero() {
				t.Fatalf("collected %d/%s, expected %d/%s", got.Records, got.Quantity, want.Records, want.Quantity)
			}
			if kind == KindDaily {
				sameTotals(t, "per day", got.PerDay, want.PerDay)
			}
			sameTotals(t, "per tenant", got.PerTenant, want.PerTenant)
			sameTotals(t, "per item", got.PerItem, want.PerItem)
			if len(want.PerTenant) != 4 || len(want.Rows) != want.Records {
				t.Errorf("tenants %d rows %d", len(want.PerTenant), len(want.Rows))
			}
			wantRecords := 4 * len(catalogue)
			if kind == KindDaily {
				wantRecords *= 31
			}
			if want.Records != wantRecords {
				t.Errorf("records %d, want %d", want.Records, wantRecords)
			}
			if r := e.api(tok, http.MethodGet, "/api/2/reports/"+obj.ID, nil); r.code != http.StatusOK {
				t.Errorf("get report: %d", r.code)
			}
			st := e.srv.Stats()
			if st.ReportsCreated() != 1 || st.ReportIDs()[0] != obj.ID || st.Downloads != 1 || st.Reports[0].Downloads != 1 {
				t.Errorf("stats %+v", st)
			}
		})
	}
}

func TestDataVariedAndConsistent(t *testing.T) {
	e := newEnv(t, Config{})
	start, end := time.Date(2024, 11, 1, 0, 0, 0, 0, time.UTC), time.Date(2024, 11, 30, 0, 0, 0, 0, time.UTC)
	// Compute points are rounded per row once converted: compare the
	// file's own deltas, which add up exactly.
	raw := func(q Query) Totals {
		tot := Totals{PerTenant: map[string]Total{}}
		rows, err := e.srv.rows(q)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rows {
			tot.Quantity = tot.Quantity.Add(r.Delta.Total)
			addTo(tot.PerTenant, r.TenantID, r.Delta.Total)
		}
		tot.Rows = rows
		return tot
	}
	sum := raw(Query{TenantID: e.srv.RootTenantID(), Level: "accounts", Kind: KindSummary, Start: start, End: end})
	dailyRaw := raw(Query{TenantID: e.srv.RootTenantID(), Level: "accounts", Kind: KindDaily, Start: start, End: end})
	daily := e.srv.Expected(Query{TenantID: e.srv.RootTenantID(), Level: "accounts", Kind: KindDaily, Start: start, End: end})
	if !sum.Quantity.Equal(dailyRaw.Quantity) {
		t.Fatalf("summary delta %s != sum of daily deltas %s", sum.Quantity, dailyRaw.Quantity)
	}
	for k, v := range sum.PerTenant {
		if !v.Quantity.Equal(dailyRaw.PerTenant[k].Quantity) {
			t.Errorf("tenant %s: summary %s daily %s", k, v.Quantity, dailyRaw.PerTenant[k].Quantity)
		}
	}
	var zeroRows, sixDigits, trial, zeroDelta int
	for _, r := range daily.Rows {
		if r.Absolute.zero() && r.Delta.zero() {
			zeroRows++
		}
		if r.Quantity().IsZero() {
			zeroDelta++
		}
		if r.Absolute.Total.Exponent() <= -5 || strings.Count(r.Absolute.Total.String(), ".") == 1 && len(strings.SplitN(r.Absolute.Total.String(), ".", 2)[1]) >= 5 {
			sixDigits++
		}
		if !r.Absolute.Trial.IsZero() {
			trial++
		}
		if r.Delta.Total.IsNegative() {
			t.Fatalf("negative delta %+v", r)
		}
		if !r.Absolute.Total.Equal(r.Absolute.Production.Add(r.Absolute.Trial)) {
			t.Fatalf("total != production + trial: %+v", r)
		}
	}
	if zeroRows == 0 || sixDigits == 0 || trial == 0 || zeroDelta == 0 || zeroDelta == len(daily.Rows) {
		t.Errorf("data not varied: zero rows %d, 5+ fraction digits %d, trial %d, zero delta %d of %d", zeroRows, sixDigits, trial, zeroDelta, len(daily.Rows))
	}
	hidden := e.srv.Expected(Query{TenantID: e.srv.RootTenantID(), Level: "accounts", Kind: KindDaily, Start: start, End: end, HideZeroUsage: true})
	if hidden.Records != daily.Records-zeroRows || !hidden.Quantity.Equal(daily.Quantity) {
		t.Errorf("hide_zero_usage: %d records (want %d), %s", hidden.Records, daily.Records-zeroRows, hidden.Quantity)
	}
	// Pure function of seed: another server with the same seed agrees, another seed does not.
	same := New(Config{Seed: 42, Now: e.clk.Now}).Expected(Query{TenantID: e.srv.RootTenantID(), Level: "accounts", Kind: KindDaily, Start: start, End: end})
	if !same.Quantity.Equal(daily.Quantity) || same.Records != daily.Records {
		t.Error("same seed, different data")
	}
	other := New(Config{Seed: 7, Tenants: e.srv.Tenants(), RootTenantID: e.srv.RootTenantID()}).Expected(Query{TenantID: e.srv.RootTenantID(), Level: "accounts", Kind: KindDaily, Start: start, End: end})
	if other.Quantity.Equal(daily.Quantity) {
		t.Error("different seed, same data")
	}
	// Level and tenant scope.
	itself := e.srv.Expected(Query{TenantID: e.srv.RootTenantID(), Level: "itself", Kind: KindSummary, Start: start, End: end})
	one := e.srv.Expected(Query{TenantID: e.srv.Tenants()[1], Level: "accounts", Kind: KindSummary, Start: start, End: end})
	if len(itself.PerTenant) > 1 || itself.Records != len(catalogue) || one.Records != len(catalogue) || len(one.PerTenant) > 1 {
		t.Errorf("scope: itself %d, one tenant %d", itself.Records, one.Records)
	}
}

func TestSameRequestSameBytes(t *testing.T) {
	e := newEnv(t, Config{})
	tok := e.token()
	body := reportBody(e.srv.RootTenantID(), KindDaily, "2025-02-01", "2025-02-10", map[string]any{"show_skus": "true", "hide_zero_usage": true})
	a := e.download(tok, e.create(tok, body).ID)
	b := e.download(tok, e.create(tok, body).ID)
	if !bytes.Equal(a, b) {
		t.Fatal("same request, different bytes")
	}
	e2 := newEnv(t, Config{})
	tok2 := e2.token()
	if c := e2.download(tok2, e2.create(tok2, body).ID); !bytes.Equal(a, c) {
		t.Fatal("same seed on another server, different bytes")
	}
	p := parseFile(t, a)
	if _, ok := p.col["sku"]; !ok {
		t.Error("show_skus: no sku column")
	}
	// Column order differs between reports (so parsers must map by name).
	other := parseFile(t, e.download(tok, e.create(tok, reportBody(e.srv.RootTenantID(), KindSummary, "2025-02-01", "2025-02-10", nil)).ID))
	if strings.Join(other.header, ",") == strings.Join(p.header, ",") {
		t.Error("two different reports with the same column order")
	}
	// A tenant name with a comma and quotes survives CSV quoting.
	raw := string(gunzip(t, a))
	if !strings.Contains(raw, `"Smith, Jones & Co"`) && !strings.Contains(raw, `"Contoso ""Backup"" Ltd"`) {
		t.Error("no quoted tenant names in the file")
	}
}

func gunzip(t *testing.T, b []byte) []byte {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	out, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestPlainAndContentEncodingDownloads(t *testing.T) {
	off := false
	e := newEnv(t, Config{GzipDownloads: &off})
	tok := e.token()
	data := e.download(tok, e.create(tok, reportBody(e.srv.RootTenantID(), KindSummary, "2025-01-01", "2025-01-31", nil)).ID)
	if data[0] == 0x1f {
		t.Fatal("GzipDownloads=false still gzips")
	}
	if got, _ := parseFile(t, data).collect(t); got.Records != 4*len(catalogue) {
		t.Fatalf("plain file: %d records", got.Records)
	}

	e = newEnv(t, Config{ContentEncodingGzip: true})
	tok = e.token()
	id := e.create(tok, reportBody(e.srv.RootTenantID(), KindSummary, "2025-01-01", "2025-01-31", nil)).ID
	items := e.stored(tok, id)
	// Go's client decompresses Content-Encoding: gzip transparently.
	r := e.api(tok, http.MethodGet, "/api/2/reports/"+id+"/stored/"+items[0].ID, nil)
	if r.code != 200 || r.body[0] == 0x1f {
		t.Fatalf("content-encoding download: %d", r.code)
	}
	if got, _ := parseFile(t, r.body).collect(t); got.Records != 4*len(catalogue) {
		t.Fatalf("decoded file: %d records", got.Records)
	}
}

func TestCreateValidation(t *testing.T) {
	e := newEnv(t, Config{})
	tok := e.token()
	root := e.srv.RootTenantID()
	valid := func(mut func(m map[string]any)) map[string]any {
		b := reportBody(root, KindSummary, "2025-01-01", "2025-01-31", nil)
		mut(b)
		return b
	}
	params := func(m map[string]any) map[string]any { return m["parameters"].(map[string]any) }
	cases := []struct {
		name string
		body any
		want int
		msg  string
	}{
		{"ok", valid(func(map[string]any) {}), 200, ""},
		{"string booleans", valid(func(m map[string]any) { params(m)["hide_zero_usage"] = "true"; params(m)["show_skus"] = "false" }), 200, ""},
		{"bool booleans", valid(func(m map[string]any) { params(m)["hide_zero_usage"] = false }), 200, ""},
		{"formats default", valid(func(m map[string]any) { delete(params(m), "formats") }), 200, ""},
		{"send with recipients", valid(func(m map[string]any) { m["result_action"] = "send"; m["recipients"] = []string{uuidFrom(3, 4)} }), 200, ""},
		{"monthly", valid(func(m map[string]any) { m["schedule"] = map[string]any{"type": "monthly", "enabled": false} }), 200, ""},
		{"generation date", valid(func(m map[string]any) { m["generation_date"] = "2025-02-03" }), 200, ""},
		{"nested unknown ignored", valid(func(m map[string]any) { params(m)["colour"] = "blue" }), 200, ""},
		{"unknown top key", valid(func(m map[string]any) { m["colour"] = "blue" }), 400, "additionalProperties"},
		{"no parameters", valid(func(m map[string]any) { delete(m, "parameters") }), 400, "parameters is required"},
		{"no schedule", valid(func(m map[string]any) { delete(m, "schedule") }), 400, "schedule is required"},
		{"no result_action", valid(func(m map[string]any) { delete(m, "result_action") }), 400, "result_action is required"},
		{"bad result_action", valid(func(m map[string]any) { m["result_action"] = "print" }), 400, "save or send"},
		{"send without recipients", valid(func(m map[string]any) { m["result_action"] = "send" }), 400, "recipients"},
		{"bad recipient", valid(func(m map[string]any) { m["recipients"] = []string{"bob"} }), 400, "not a UUID"},
		{"no kind", valid(func(m map[string]any) { delete(params(m), "kind") }), 400, "parameters.kind is required"},
		{"no tenant", valid(func(m map[string]any) { delete(params(m), "tenant_id") }), 400, "parameters.tenant_id is required"},
		{"no level", valid(func(m map[string]any) { delete(params(m), "level") }), 400, "parameters.level is required"},
		{"bad level", valid(func(m map[string]any) { params(m)["level"] = "everyone" }), 400, "parameters.level"},
		{"bad kind", valid(func(m map[string]any) { params(m)["kind"] = "usage_hourly" }), 400, "parameters.kind"},
		{"kind not in sandbox", valid(func(m map[string]any) { params(m)["kind"] = "usage_current" }), 400, "not supported by the sandbox"},
		{"bad tenant uuid", valid(func(m map[string]any) { params(m)["tenant_id"] = "root" }), 400, "UUID"},
		{"unknown tenant", valid(func(m map[string]any) { params(m)["tenant_id"] = uuidFrom(9, 9) }), 403, "not authorized"},
		{"unknown format", valid(func(m map[string]any) { params(m)["formats"] = []string{"xlsx"} }), 400, "is not one of"},
		{"json_v2_0", valid(func(m map[string]any) { params(m)["formats"] = []string{"csv_v2_0", "json_v2_0"} }), 400, MsgFormatNotInBox},
		{"empty formats", valid(func(m map[string]any) { params(m)["formats"] = []string{} }), 400, "non-empty"},
		{"no period", valid(func(m map[string]any) { delete(params(m), "period") }), 400, "period is required"},
		{"no period end", valid(func(m map[string]any) { params(m)["period"] = map[string]string{"start": "2025-01-01"} }), 400, "period.end is required"},
		{"bad date", valid(func(m map[string]any) {
			params(m)["period"] = map[string]string{"start": "2025-1-1", "end": "2025-01-31"}
		}), 400, "YYYY-MM-DD"},
		{"impossible date", valid(func(m map[string]any) {
			params(m)["period"] = map[string]string{"start": "2025-02-30", "end": "2025-03-01"}
		}), 400, "not a valid date"},
		{"end before start", valid(func(m map[string]any) {
			params(m)["period"] = map[string]string{"start": "2025-01-31", "end": "2025-01-01"}
		}), 400, "before start"},
		{"future", valid(func(m map[string]any) {
			params(m)["period"] = map[string]string{"start": "2025-03-01", "end": "2025-03-16"}
		}), 400, "future"},
		{"today ok", valid(func(m map[string]any) {
			params(m)["period"] = map[string]string{"start": "2025-03-01", "end": "2025-03-15"}
		}), 200, ""},
		{"bad bool", valid(func(m map[string]any) { params(m)["show_skus"] = "yes" }), 400, "boolean"},
		{"bad schedule", valid(func(m map[string]any) { m["schedule"] = map[string]any{"type": "weekly"} }), 400, "once or monthly"},
		{"bad generation date", valid(func(m map[string]any) { m["generation_date"] = "tomorrow" }), 400, "generation_date"},
		{"not json", "{", 400, "not valid JSON"},
		{"array body", "[]", 400, "JSON object"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := e.api(tok, http.MethodPost, "/api/2/reports", c.body)
			if r.code != c.want {
				t.Fatalf("status %d, want %d: %s", r.code, c.want, r.body)
			}
			if c.want != 200 {
				assertErrorShape(t, r.body)
				if !strings.Contains(string(r.body), c.msg) {
					t.Fatalf("body %s lacks %q", r.body, c.msg)
				}
			}
		})
	}
	strict := newEnv(t, Config{StrictNested: true})
	if r := strict.api(strict.token(), http.MethodPost, "/api/2/reports", valid(func(m map[string]any) { params(m)["colour"] = "blue" })); r.code != 400 {
		t.Errorf("StrictNested: %d", r.code)
	}
	// Content type and Accept.
	r := e.do(http.MethodPost, "/api/2/reports", strings.NewReader("{}"), map[string]string{"Authorization": "Bearer " + tok, "Content-Type": "text/plain"})
	if r.code != http.StatusUnsupportedMediaType {
		t.Errorf("text/plain body: %d", r.code)
	}
	r = e.do(http.MethodGet, "/api/2/reports/"+uuidFrom(1, 1), nil, map[string]string{"Authorization": "Bearer " + tok, "Accept": "text/html"})
	if r.code != http.StatusUnsupportedMediaType {
		t.Errorf("Accept text/html: %d", r.code)
	}
	// send stores nothing.
	obj := e.create(tok, valid(func(m map[string]any) { m["result_action"] = "send"; m["recipients"] = []string{uuidFrom(3, 4)} }))
	if items := e.stored(tok, obj.ID); len(items) != 0 {
		t.Errorf("send stored %+v", items)
	}
}

func TestNotReady(t *testing.T) {
	e := newEnv(t, Config{})
	tok := e.token()
	root := e.srv.RootTenantID()
	cases := []struct {
		name string
		now  time.Time
		end  string
		want int
		msg  string
	}{
		{"03:00 yesterday", time.Date(2025, 3, 15, 3, 0, 0, 0, time.UTC), "2025-03-14", 400, MsgNotReadyYet},
		{"03:00 today", time.Date(2025, 3, 15, 3, 0, 0, 0, time.UTC), "2025-03-15", 400, MsgNotReadyYet},
		{"03:00 two days ago", time.Date(2025, 3, 15, 3, 0, 0, 0, time.UTC), "2025-03-13", 200, ""},
		{"01:00 yesterday", time.Date(2025, 3, 15, 1, 0, 0, 0, time.UTC), "2025-03-14", 400, MsgNotReadyYet},
		{"00:59 yesterday", time.Date(2025, 3, 15, 0, 59, 0, 0, time.UTC), "2025-03-14", 200, ""},
		{"06:00 yesterday", time.Date(2025, 3, 15, 6, 0, 0, 0, time.UTC), "2025-03-14", 200, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e.clk.Set(c.now)
			r := e.api(tok, http.MethodPost, "/api/2/reports", reportBody(root, KindSummary, "2025-03-01", c.end, nil))
			if r.code != c.want || !strings.Contains(string(r.body), c.msg) {
				t.Fatalf("status %d, want %d %q: %s", r.code, c.want, c.msg, r.body)
			}
		})
	}
	e.clk.Set(noon)
	e.srv.SetNotReadyUntil(noon.Add(time.Minute))
	r := e.api(tok, http.MethodPost, "/api/2/reports", reportBody(root, KindSummary, "2025-03-01", "2025-03-10", nil))
	if r.code != http.StatusInternalServerError || !strings.Contains(string(r.body), MsgShouldBeReady) {
		t.Fatalf("NotReadyUntil: %d %s", r.code, r.body)
	}
	assertErrorShape(t, r.body)
	e.clk.Add(time.Minute)
	if r := e.api(tok, http.MethodPost, "/api/2/reports", reportBody(root, KindSummary, "2025-03-01", "2025-03-10", nil)); r.code != 200 {
		t.Fatalf("after NotReadyUntil: %d", r.code)
	}
	cfgE := newEnv(t, Config{NotReadyUntil: noon.Add(time.Hour)})
	if r := cfgE.api(cfgE.token(), http.MethodPost, "/api/2/reports", reportBody(cfgE.srv.RootTenantID(), KindSummary, "2025-01-01", "2025-01-02", nil)); r.code != 500 {
		t.Fatalf("Config.NotReadyUntil: %d", r.code)
	}
}

func TestMalformedRows(t *testing.T) {
	e := newEnv(t, Config{MalformedRows: 5})
	tok := e.token()
	obj := e.create(tok, reportBody(e.srv.RootTenantID(), KindDaily, "2025-01-01", "2025-01-07", nil))
	p := parseFile(t, e.download(tok, obj.ID))
	got, rejected := p.collect(t)
	want := e.srv.Expected(Query{TenantID: e.srv.RootTenantID(), Level: "accounts", Kind: KindDaily,
		Start: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC), End: time.Date(2025, 1, 7, 0, 0, 0, 0, time.UTC)})
	if len(want.Malformed) != 5 || len(rejected) != 5 {
		t.Fatalf("malformed: expected %d, rejected %d", len(want.Malformed), len(rejected))
	}
	reported, _ := e.srv.Malformed(obj.ID)
	for i, m := range want.Malformed {
		if !rejected[m.Line] || reported[i] != m || m.Reason == "" {
			t.Errorf("malformed %+v: rejected=%v reported=%+v", m, rejected[m.Line], reported[i])
		}
	}
	if got.Records != want.Records || !got.Quantity.Equal(want.Quantity) {
		t.Fatalf("collected %d/%s, expected %d/%s", got.Records, got.Quantity, want.Records, want.Quantity)
	}
	if want.Records+5 != len(p.recs) {
		t.Fatalf("records %d + 5 != %d rows", want.Records, len(p.recs))
	}
}

func TestFailedReports(t *testing.T) {
	e := newEnv(t, Config{FailReports: true})
	tok := e.token()
	obj := e.create(tok, reportBody(e.srv.RootTenantID(), KindSummary, "2025-01-01", "2025-01-31", nil))
	items := e.stored(tok, obj.ID)
	if len(items) != 1 || items[0].Status != "failed" {
		t.Fatalf("items %+v", items)
	}
	if r := e.api(tok, http.MethodGet, "/api/2/reports/"+obj.ID+"/stored/"+items[0].ID, nil); r.code != 404 {
		t.Fatalf("download failed report: %d", r.code)
	}

	e = newEnv(t, Config{})
	tok = e.token()
	e.srv.FailNextReports(1)
	a := e.create(tok, reportBody(e.srv.RootTenantID(), KindSummary, "2025-01-01", "2025-01-31", nil))
	b := e.create(tok, reportBody(e.srv.RootTenantID(), KindSummary, "2025-01-01", "2025-01-31", nil))
	if e.stored(tok, a.ID)[0].Status != "failed" || e.stored(tok, b.ID)[0].Status != "saved" {
		t.Fatal("FailNextReports(1) did not fail exactly the next report")
	}
	if !e.srv.FailReport(b.ID) || e.stored(tok, b.ID)[0].Status != "failed" {
		t.Fatal("FailReport")
	}
}

func TestUnknownIDs(t *testing.T) {
	e := newEnv(t, Config{})
	tok := e.token()
	obj := e.create(tok, reportBody(e.srv.RootTenantID(), KindSummary, "2025-01-01", "2025-01-31", nil))
	cases := []struct {
		path string
		want int
	}{
		{"/api/2/reports/" + uuidFrom(5, 5), 404},
		{"/api/2/reports/" + uuidFrom(5, 5) + "/stored", 404},
		{"/api/2/reports/" + obj.ID + "/stored/" + uuidFrom(5, 5), 404},
		{"/api/2/reports/nope/stored", 400},
		{"/api/2/nothing", 404},
	}
	for _, c := range cases {
		r := e.api(tok, http.MethodGet, c.path, nil)
		if r.code != c.want {
			t.Errorf("%s: %d, want %d", c.path, r.code, c.want)
		}
		assertErrorShape(t, r.body)
	}
	if r := e.api(tok, http.MethodDelete, "/api/2/reports/"+obj.ID+"?version=2", nil); r.code != 409 {
		t.Errorf("delete wrong version: %d", r.code)
	}
	if r := e.api(tok, http.MethodDelete, "/api/2/reports/"+obj.ID+"?version=1", nil); r.code != 204 {
		t.Errorf("delete: %d", r.code)
	}
	if r := e.api(tok, http.MethodGet, "/api/2/reports/"+obj.ID, nil); r.code != 404 {
		t.Errorf("get deleted: %d", r.code)
	}
}

func TestFaults(t *testing.T) {
	e := newEnv(t, Config{})
	tok := e.token()
	body := reportBody(e.srv.RootTenantID(), KindSummary, "2025-01-01", "2025-01-31", nil)

	e.srv.Faults().Set(fault.Rule{Kind: fault.Status, Code: 503, RetryAfter: "2", Count: 1, Method: "POST", Path: "/api/2/reports"})
	r := e.api(tok, http.MethodPost, "/api/2/reports", body)
	if r.code != 503 || r.hdr.Get("Retry-After") != "2" {
		t.Fatalf("status fault: %d %v", r.code, r.hdr)
	}
	assertErrorShape(t, r.body)
	if e.srv.Stats().ReportsCreated() != 0 {
		t.Fatal("a Status fault applied the request")
	}
	e.create(tok, body)

	e.srv.Faults().Set(fault.Rule{Kind: fault.ApplyThenStatus, Code: 500, Count: 1, Path: "/api/2/reports"})
	if r := e.api(tok, http.MethodPost, "/api/2/reports", body); r.code != 500 {
		t.Fatalf("apply-then-status: %d", r.code)
	}
	if e.srv.Stats().ReportsCreated() != 2 {
		t.Fatal("apply-then-status did not apply")
	}

	e.srv.Faults().Set(fault.Rule{Kind: fault.Reset, Count: 1, Path: "/api/2/idp/token"})
	req, _ := http.NewRequest(http.MethodPost, e.ts.URL+"/api/2/idp/token", strings.NewReader("grant_type=client_credentials"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth("sandbox-client", "sandbox-secret")
	if res, err := e.ts.Client().Do(req); err == nil {
		res.Body.Close()
		t.Fatal("reset fault: got an answer")
	}
	e.srv.Faults().Set(fault.Rule{Kind: fault.Status, Code: 401, Count: 1})
	if r := e.api(tok, http.MethodGet, "/_sandbox/stats", nil); r.code != 200 {
		t.Fatal("admin endpoints must not be faulted")
	}
	if got := e.srv.Faults().Injected(); got[fault.Status] != 1 || got[fault.ApplyThenStatus] != 1 || got[fault.Reset] != 1 {
		t.Fatalf("injected %v", got)
	}
}

func TestAdminHTTP(t *testing.T) {
	e := newEnv(t, Config{})
	tok := e.token()
	e.create(tok, reportBody(e.srv.RootTenantID(), KindSummary, "2025-01-01", "2025-01-31", nil))

	r := e.do(http.MethodGet, "/_sandbox/stats", nil, nil)
	var st Stats
	if err := json.Unmarshal(r.body, &st); err != nil || r.code != 200 || st.ReportsCreated() != 1 || st.TokensIssued != 1 {
		t.Fatalf("stats: %d %s", r.code, r.body)
	}
	if strings.Contains(string(r.body), tok) {
		t.Fatal("stats leak a token")
	}
	q := url.Values{"start": {"2025-01-01"}, "end": {"2025-01-31"}, "kind": {KindSummary}}
	r = e.do(http.MethodGet, "/_sandbox/expected?"+q.Encode(), nil, nil)
	var tot Totals
	if err := json.Unmarshal(r.body, &tot); err != nil || r.code != 200 {
		t.Fatalf("expected: %d %s", r.code, r.body)
	}
	want := e.srv.Expected(Query{TenantID: e.srv.RootTenantID(), Level: "accounts", Kind: KindSummary, Start: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC), End: time.Date(2025, 1, 31, 0, 0, 0, 0, time.UTC)})
	if tot.Records != want.Records || !tot.Quantity.Equal(want.Quantity) || tot.Rows != nil {
		t.Fatalf("expected over HTTP %d/%s, want %d/%s", tot.Records, tot.Quantity, want.Records, want.Quantity)
	}

	if r := e.do(http.MethodPost, "/_sandbox/expire-tokens", nil, nil); r.code != 204 {
		t.Fatalf("expire-tokens: %d", r.code)
	}
	if r := e.api(tok, http.MethodGet, "/api/2/reports/"+uuidFrom(1, 1), nil); r.code != 401 {
		t.Fatalf("token after expire-tokens: %d", r.code)
	}
	rules := `[{"kind":"status","code":429,"retry_after":"1","count":1}]`
	if r := e.do(http.MethodPut, "/_sandbox/faults", strings.NewReader(rules), nil); r.code != 204 {
		t.Fatalf("faults: %d %s", r.code, r.body)
	}
	if r := e.tokenReq("sandbox-client", "sandbox-secret"); r.code != 429 {
		t.Fatalf("fault from admin rules: %d", r.code)
	}
	if r := e.do(http.MethodPost, "/_sandbox/fail-reports?count=1", nil, nil); r.code != 204 {
		t.Fatalf("fail-reports: %d", r.code)
	}
	if r := e.do(http.MethodPost, "/_sandbox/reset", nil, nil); r.code != 204 {
		t.Fatalf("reset: %d", r.code)
	}
	if st := e.srv.Stats(); st.ReportsCreated() != 0 || st.TokensIssued != 0 {
		t.Fatalf("after reset: %+v", st)
	}

}
