package acronis

import (
	"bytes"
	"compress/gzip"
	"encoding/csv"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shopspring/decimal"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func (c *clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

var noon = time.Date(2025, 3, 15, 12, 0, 0, 0, time.UTC)

type env struct {
	t   *testing.T
	srv *Server
	ts  *httptest.Server
	clk *clock
}

func newEnv(t *testing.T, cfg Config) *env {
	t.Helper()
	clk := &clock{t: noon}
	if cfg.Now == nil {
		cfg.Now = clk.Now
	}
	if cfg.Seed == 0 {
		cfg.Seed = 42
	}
	srv := New(cfg)
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(ts.Close)
	return &env{t: t, srv: srv, ts: ts, clk: clk}
}

type resp struct {
	code int
	hdr  http.Header
	body []byte
}

func (e *env) do(method, path string, body io.Reader, hdr map[string]string) resp {
	e.t.Helper()
	req, err := http.NewRequest(method, e.ts.URL+path, body)
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

func (e *env) tokenReq(id, secret string) resp {
	e.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, e.ts.URL+"/api/2/idp/token", strings.NewReader("grant_type=client_credentials"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(id, secret)
	res, err := e.ts.Client().Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return resp{res.StatusCode, res.Header, b}
}

func (e *env) token() string {
	e.t.Helper()
	r := e.tokenReq("sandbox-client", "sandbox-secret")
	if r.code != http.StatusOK {
		e.t.Fatalf("token: %d %s", r.code, r.body)
	}
	var tr tokenResponse
	if err := json.Unmarshal(r.body, &tr); err != nil {
		e.t.Fatal(err)
	}
	return tr.AccessToken
}

func (e *env) api(tok, method, path string, body any) resp {
	e.t.Helper()
	var rd io.Reader
	hdr := map[string]string{"Authorization": "Bearer " + tok}
	if body != nil {
		var b []byte
		switch v := body.(type) {
		case string:
			b = []byte(v)
		default:
			b, _ = json.Marshal(v)
		}
		rd = bytes.NewReader(b)
		hdr["Content-Type"] = "application/json"
	}
	return e.do(method, path, rd, hdr)
}

func reportBody(tenant, kind, start, end string, extra map[string]any) map[string]any {
	params := map[string]any{
		"tenant_id": tenant,
		"level":     "accounts",
		"kind":      kind,
		"formats":   []string{"csv_v2_0"},
		"period":    map[string]string{"start": start, "end": end},
	}
	for k, v := range extra {
		params[k] = v
	}
	return map[string]any{"result_action": "save", "parameters": params, "schedule": map[string]any{"type": "once"}}
}

func (e *env) create(tok string, body any) reportObject {
	e.t.Helper()
	r := e.api(tok, http.MethodPost, "/api/2/reports", body)
	if r.code != http.StatusOK {
		e.t.Fatalf("create: %d %s", r.code, r.body)
	}
	var obj reportObject
	if err := json.Unmarshal(r.body, &obj); err != nil {
		e.t.Fatal(err)
	}
	return obj
}

func (e *env) stored(tok, id string) []storedItem {
	e.t.Helper()
	r := e.api(tok, http.MethodGet, "/api/2/reports/"+id+"/stored", nil)
	if r.code != http.StatusOK {
		e.t.Fatalf("stored: %d %s", r.code, r.body)
	}
	var out struct{ Items []storedItem }
	if err := json.Unmarshal(r.body, &out); err != nil {
		e.t.Fatal(err)
	}
	return out.Items
}

func (e *env) download(tok, id string) []byte {
	e.t.Helper()
	items := e.stored(tok, id)
	if len(items) != 1 || items[0].Status != "saved" {
		e.t.Fatalf("stored items: %+v", items)
	}
	r := e.api(tok, http.MethodGet, "/api/2/reports/"+id+"/stored/"+items[0].ID, nil)
	if r.code != http.StatusOK {
		e.t.Fatalf("download: %d %s", r.code, r.body)
	}
	if ct := r.hdr.Get("Content-Type"); ct != "application/octet-stream" {
		e.t.Fatalf("download content type %q", ct)
	}
	if items[0].Size != len(r.body) {
		e.t.Fatalf("size %d, body %d bytes", items[0].Size, len(r.body))
	}
	return r.body
}

// parsed is a csv_v2_0 file read the way a collector should: sniff gzip,
// map columns by header name.
type parsed struct {
	header []string
	col    map[string]int
	recs   [][]string
}

func parseFile(t *testing.T, data []byte) parsed {
	t.Helper()
	if len(data) >= 2 && data[0] == 0x1f && data[1] == 0x8b {
		zr, err := gzip.NewReader(bytes.NewReader(data))
		if err != nil {
			t.Fatal(err)
		}
		if data, err = io.ReadAll(zr); err != nil {
			t.Fatal(err)
		}
	}
	all, err := csv.NewReader(bytes.NewReader(data)).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	p := parsed{header: all[0], col: map[string]int{}, recs: all[1:]}
	for i, h := range all[0] {
		p.col[h] = i
	}
	return p
}

// collect sums the quantity column like a collector would, rejecting rows
// it cannot use with their CSV line.
func (p parsed) collect(t *testing.T) (Totals, map[int]bool) {
	t.Helper()
	tot := Totals{PerDay: map[string]Total{}, PerTenant: map[string]Total{}, PerItem: map[string]Total{}}
	rejected := map[int]bool{}
	for i, rec := range p.recs {
		q, err := decimal.NewFromString(rec[p.col[QuantityColumn]])
		if err != nil || rec[p.col["tenant.id"]] == "" || rec[p.col["name"]] == "" || rec[p.col["application.id"]] == "" {
			rejected[i+2] = true
			continue
		}
		if rec[p.col["name"]] == ComputePointsItem { // seconds in csv_v2_0: /3600, 2 places
			q = q.Div(decimal.NewFromInt(3600)).Round(2)
		}
		tot.Records++
		tot.Quantity = tot.Quantity.Add(q)
		if c, ok := p.col["date"]; ok {
			addTo(tot.PerDay, rec[c], q)
		}
		addTo(tot.PerTenant, rec[p.col["tenant.id"]], q)
		addTo(tot.PerItem, rec[p.col["name"]], q)
	}
	return tot, rejected
}

func sameTotals(t *testing.T, what string, got, want map[string]Total) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%s: %d keys, want %d", what, len(got), len(want))
	}
	for k, w := range want {
		g := got[k]
		if g.Records != w.Records || !g.Quantity.Equal(w.Quantity) {
			t.Errorf("%s[%s] = %d/%s, want %d/%s", what, k, g.Records, g.Quantity, w.Records, w.Quantity)
		}
	}
}
