package here

import (
	"bytes"
	"compress/gzip"
	"encoding/csv"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/shopspring/decimal"
)

var noon = time.Date(2025, 3, 15, 12, 0, 0, 0, time.UTC)

type env struct {
	t   *testing.T
	srv *Server
	ts  *httptest.Server
	clk *clock
	sg  *signer
}

func newEnv(t *testing.T, cfg Config) *env {
	t.Helper()
	clk := &clock{t: noon}
	if cfg.Now == nil {
		cfg.Now = clk.Now
	}
	if cfg.Seed == 0 {
		cfg.Seed = 7
	}
	srv := New(cfg)
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(ts.Close)
	return &env{t: t, srv: srv, ts: ts, clk: clk, sg: &signer{key: srv.Config().AccessKeyID, secret: srv.Config().AccessKeySecret}}
}

type resp struct {
	code int
	hdr  http.Header
	body []byte
}

func (e *env) do(method, path string, body string, hdr map[string]string) resp {
	e.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, e.ts.URL+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	res, err := e.ts.Client().Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return resp{res.StatusCode, res.Header, b}
}

func (e *env) tokenResp(extra url.Values) resp {
	e.t.Helper()
	form := url.Values{"grant_type": {"client_credentials"}}
	for k, v := range extra {
		form[k] = v
	}
	return e.do(http.MethodPost, "/oauth2/token", form.Encode(), map[string]string{
		"Content-Type":  "application/x-www-form-urlencoded",
		"Authorization": e.sg.header(signOpts{url: e.ts.URL + "/oauth2/token", ts: e.clk.Now()}, form),
	})
}

func (e *env) token() string {
	e.t.Helper()
	r := e.tokenResp(nil)
	if r.code != 200 {
		e.t.Fatalf("token: %d %s", r.code, r.body)
	}
	var tr struct {
		AccessToken string `json:"access_token"`
	}
	_ = json.Unmarshal(r.body, &tr)
	return tr.AccessToken
}

func (e *env) api(tok, method, path, body string) resp {
	e.t.Helper()
	hdr := map[string]string{"Authorization": "Bearer " + tok}
	if body != "" {
		hdr["Content-Type"] = "application/json"
	}
	return e.do(method, path, body, hdr)
}

func reportPath(realm string, q url.Values) string {
	return "/v2/usage/realms/" + realm + "/reports?" + q.Encode()
}

func dates(start, end string, more ...string) url.Values {
	v := url.Values{"startDate": {start}, "endDate": {end}}
	for i := 0; i+1 < len(more); i += 2 {
		v.Set(more[i], more[i+1])
	}
	return v
}

func (e *env) create(tok, realm string, q url.Values, body string) string {
	e.t.Helper()
	r := e.api(tok, http.MethodPost, reportPath(realm, q), body)
	if r.code != http.StatusCreated {
		e.t.Fatalf("create: %d %s", r.code, r.body)
	}
	var out map[string]string
	_ = json.Unmarshal(r.body, &out)
	return out["id"]
}

func (e *env) status(tok, realm, id string) statusObject {
	e.t.Helper()
	r := e.api(tok, http.MethodGet, "/v2/usage/realms/"+realm+"/reports/"+id, "")
	if r.code != 200 {
		e.t.Fatalf("status: %d %s", r.code, r.body)
	}
	var st statusObject
	_ = json.Unmarshal(r.body, &st)
	return st
}

func (e *env) output(tok, realm, id string) []byte {
	e.t.Helper()
	r := e.api(tok, http.MethodGet, "/v2/usage/realms/"+realm+"/reports/"+id+"/output", "")
	if r.code != 200 || r.hdr.Get("Content-Type") != "application/x-gzip" {
		e.t.Fatalf("output: %d %s %s", r.code, r.hdr.Get("Content-Type"), r.body)
	}
	return r.body
}

var fieldInParens = regexp.MustCompile(`\(([A-Za-z]+)\)\s*$`)

// collected is a report read like a collector should: gunzip, map columns
// by the field name in the header label, sum billableValue exactly, reject
// rows that cannot be used (with their line).
type collected struct {
	cols     map[string]int
	rows     int
	tot      Totals
	rejected map[int]string
}

func collect(t *testing.T, gz []byte) collected {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(gz))
	if err != nil {
		t.Fatalf("not gzip: %v", err)
	}
	raw, _ := io.ReadAll(zr)
	all, err := csv.NewReader(bytes.NewReader(raw)).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	c := collected{cols: map[string]int{}, rows: len(all) - 1, rejected: map[int]string{},
		tot: Totals{PerDay: map[string]Total{}, PerAccount: map[string]Total{}, PerFeature: map[string]Total{}}}
	for i, h := range all[0] {
		name := h
		if m := fieldInParens.FindStringSubmatch(h); m != nil {
			name = m[1]
		}
		c.cols[name] = i
	}
	dt, hasDate := c.cols["usageDateTime"]
	for i, rec := range all[1:] {
		line := i + 2
		bill, err := decimal.NewFromString(rec[c.cols["billableValue"]])
		if err != nil {
			c.rejected[line] = "billableValue"
			continue
		}
		usage, err := decimal.NewFromString(rec[c.cols["usageValue"]])
		if err != nil {
			c.rejected[line] = "usageValue"
			continue
		}
		if rec[c.cols["realmId"]] == "" || rec[c.cols["featureId"]] == "" {
			c.rejected[line] = "empty id"
			continue
		}
		r := Row{RealmID: rec[c.cols["realmId"]], FeatureID: rec[c.cols["featureId"]], BillableValue: bill, UsageValue: usage}
		if hasDate {
			if _, err := time.Parse(time.DateOnly, rec[dt]); err != nil {
				c.rejected[line] = "date"
				continue
			}
			r.UsageDateTime = rec[dt]
		}
		c.tot.Records++
		c.tot.Quantity = c.tot.Quantity.Add(bill)
		c.tot.UsageValue = c.tot.UsageValue.Add(usage)
		if hasDate {
			addTo(c.tot.PerDay, r.UsageDateTime, r)
		}
		addTo(c.tot.PerAccount, r.RealmID, r)
		addTo(c.tot.PerFeature, r.FeatureID, r)
	}
	return c
}

func sameTotals(t *testing.T, what string, got, want map[string]Total) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%s: %d keys, want %d", what, len(got), len(want))
	}
	for k, w := range want {
		g := got[k]
		if g.Records != w.Records || !g.Quantity.Equal(w.Quantity) || !g.UsageValue.Equal(w.UsageValue) {
			t.Errorf("%s[%s] = %d/%s/%s, want %d/%s/%s", what, k, g.Records, g.Quantity, g.UsageValue, w.Records, w.Quantity, w.UsageValue)
		}
	}
}

func assertProblem(t *testing.T, r resp, status int, code string) {
	t.Helper()
	if r.code != status {
		t.Fatalf("status %d, want %d: %s", r.code, status, r.body)
	}
	var p ErrorResponse
	if err := json.Unmarshal(r.body, &p); err != nil || p.Code != code || p.Status != status || p.Title == "" || p.Cause == "" ||
		p.Action == "" || !strings.HasPrefix(p.ErrorID, "ERROR-") || p.CorrelationID == "" || len(p.Details) == 0 {
		t.Fatalf("ErrorResponse %s, want code %s", r.body, code)
	}
	if p.CorrelationID != r.hdr.Get("X-Correlation-ID") {
		t.Fatalf("correlationId %s, header %s", p.CorrelationID, r.hdr.Get("X-Correlation-ID"))
	}
}
