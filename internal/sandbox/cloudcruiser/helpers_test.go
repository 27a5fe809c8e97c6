package cloudcruiser

import (
	"bytes"
	"encoding/json"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

const testToken = "s3cret-collection-token"

// rec is one record of a test upload; values are strings or json.Number.
type rec map[string]any

// validRec returns a record with every required field, starting at start.
func validRec(start, account, meter, qty string) rec {
	return rec{
		"Usage Start":   start,
		"Usage End":     start,
		"Account ID":    account,
		"Account Name":  "Account " + account,
		"Provider":      "Azure",
		"Provider Type": "Public",
		"Product":       "Networking: Data Transfer Out",
		"Meter ID":      meter,
		"Meter Name":    "Data Transfer Out (GB)",
		"Quantity":      json.Number(qty),
		"Units":         "GB",
	}
}

func (r rec) with(k string, v any) rec {
	out := rec{}
	for kk, vv := range r {
		out[kk] = vv
	}
	out[k] = v
	return out
}

func (r rec) without(k string) rec {
	out := rec{}
	for kk, vv := range r {
		if kk != k {
			out[kk] = vv
		}
	}
	return out
}

func fileOf(t *testing.T, recs ...rec) []byte {
	t.Helper()
	if recs == nil {
		recs = []rec{}
	}
	b, err := json.Marshal(recs)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// multipartBody wraps file in a multipart/form-data body with one part.
func multipartBody(t *testing.T, part string, file []byte) (string, []byte) {
	t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	fw, err := mw.CreateFormFile(part, "usage.json")
	if err != nil {
		t.Fatal(err)
	}
	fw.Write(file)
	if err := mw.Close(); err != nil {
		t.Fatal(err)
	}
	return mw.FormDataContentType(), buf.Bytes()
}

type env struct {
	t   *testing.T
	srv *Server
	ts  *httptest.Server
}

func newEnv(t *testing.T, cfg Config) *env {
	t.Helper()
	if cfg.Token == "" {
		cfg.Token = testToken
	}
	s := New(cfg)
	ts := httptest.NewServer(s.Handler())
	t.Cleanup(ts.Close)
	return &env{t: t, srv: s, ts: ts}
}

// reply is a decoded Cloud Cruiser answer.
type reply struct {
	code    int
	header  http.Header
	raw     string
	Success *bool  `json:"success"`
	Status  int    `json:"status"`
	Message string `json:"message"`
}

// do sends req and decodes the Cloud Cruiser JSON answer strictly.
func (e *env) do(req *http.Request) reply {
	e.t.Helper()
	resp, err := e.ts.Client().Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	r := reply{code: resp.StatusCode, header: resp.Header, raw: string(b)}
	if strings.HasPrefix(req.URL.Path, UploadPath) {
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&r); err != nil || r.Success == nil {
			e.t.Fatalf("answer %d %q is not the Cloud Cruiser JSON shape: %v", resp.StatusCode, b, err)
		}
		if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
			e.t.Errorf("Content-Type %q, want application/json", ct)
		}
	}
	return r
}

// put uploads a raw multipart body to pathAndQuery (relative to UploadPath).
func (e *env) put(pathAndQuery, contentType string, body io.Reader, auth string) reply {
	e.t.Helper()
	req, err := http.NewRequest(http.MethodPut, e.ts.URL+UploadPath+pathAndQuery, body)
	if err != nil {
		e.t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	return e.do(req)
}

// upload sends records for date (pathAndQuery may carry ?zoneOffset=...).
func (e *env) upload(pathAndQuery string, recs ...rec) reply {
	e.t.Helper()
	ct, body := multipartBody(e.t, "data", fileOf(e.t, recs...))
	return e.put(pathAndQuery, ct, bytes.NewReader(body), "Bearer "+testToken)
}

func (r reply) ok() bool { return r.code == 200 && r.Success != nil && *r.Success && r.Status == 200 }

func expectOK(t *testing.T, r reply, n int) {
	t.Helper()
	want := "Completed upload of " + itoa(n) + " record(s)"
	if !r.ok() || r.Message != want {
		t.Fatalf("got %d %s, want 200 success %q", r.code, r.raw, want)
	}
}

func expectErr(t *testing.T, r reply, code int, substrs ...string) {
	t.Helper()
	if r.code != code || *r.Success || r.Status != code {
		t.Fatalf("got %d %s, want %d with success:false status:%d", r.code, r.raw, code, code)
	}
	for _, s := range substrs {
		if !strings.Contains(r.Message, s) {
			t.Errorf("message %q lacks %q", r.Message, s)
		}
	}
}

func itoa(n int) string {
	b, _ := json.Marshal(n)
	return string(b)
}
