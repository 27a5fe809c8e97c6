package cloudcruiser

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"github.com/usagefleet/usagefleet/internal/sandbox/fault"
)

func TestAuthFailures(t *testing.T) {
	e := newEnv(t, Config{})
	ct, body := multipartBody(t, "data", fileOf(t, validRec("2024-03-01 10:00", "a", "m", "1")))
	for _, auth := range []string{
		"",
		"Bearer wrong",
		"bearer " + testToken,
		"Bearer  " + testToken,
		"Bearer " + testToken + "x",
		testToken,
		"Basic " + testToken,
	} {
		t.Run(fmt.Sprintf("%q", strings.ReplaceAll(auth, testToken, "TOKEN")), func(t *testing.T) {
			r := e.put("2024-03-01", ct, bytes.NewReader(body), auth)
			want := `{"success":false,"status":401,"message":"Usage upload authentication failed: The specified token did not match the expected value"}`
			if r.code != 401 || strings.TrimSpace(r.raw) != want {
				t.Fatalf("got %d %s, want 401 %s", r.code, r.raw, want)
			}
			if strings.Contains(r.raw, testToken) {
				t.Error("answer echoes the token")
			}
		})
	}
	if n := len(e.srv.Dates()); n != 0 {
		t.Fatalf("401 uploads stored %d dates", n)
	}

	// Revoke, then restore.
	e.srv.SetToken("rotated")
	expectErr(t, e.upload("2024-03-01", validRec("2024-03-01 10:00", "a", "m", "1")), 401)
	e.srv.SetToken(testToken)
	expectOK(t, e.upload("2024-03-01", validRec("2024-03-01 10:00", "a", "m", "1")), 1)

	for _, u := range e.srv.Uploads() {
		if strings.Contains(fmt.Sprintf("%+v", u), testToken) {
			t.Fatal("upload log holds the token")
		}
	}
}

func TestEmptyConfiguredTokenRejectsEverything(t *testing.T) {
	s := New(Config{})
	ts := httptest.NewServer(s.Handler())
	defer ts.Close()
	e := &env{t: t, srv: s, ts: ts}
	ct, body := multipartBody(t, "data", fileOf(t))
	expectErr(t, e.put("2024-03-01", ct, bytes.NewReader(body), "Bearer "), 401)
}

func TestBodyShapeErrors(t *testing.T) {
	e := newEnv(t, Config{})
	good := fileOf(t, validRec("2024-03-01 10:00", "a", "m", "1"))
	auth := "Bearer " + testToken
	cases := []struct {
		name   string
		ct     string
		body   []byte
		code   int
		substr string
	}{
		{"wrong part name", "", nil, 400, `no multipart part named "data" (found "file")`},
		{"not multipart", "application/json", good, 415, "multipart/form-data"},
		{"no content type", "-", good, 415, "multipart/form-data"},
		{"no boundary", "multipart/form-data", good, 400, "boundary"},
		{"truncated multipart", "", nil, 400, "multipart"},
		{"not an array", "", []byte(`{"Usage Start":"x"}`), 400, "want a JSON array"},
		{"empty file", "", []byte(``), 400, "Malformed JSON"},
		{"trailing data", "", append(append([]byte{}, good...), []byte(` []`)...), 400, "after the record array"},
		{"syntax error", "", []byte(`[{"Usage Start": }]`), 400, "Malformed JSON"},
		{"record not an object", "", []byte(`[["a"]]`), 400, "record index 0: want a JSON object"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ct, body := c.ct, c.body
			switch c.name {
			case "wrong part name":
				ct, body = multipartBody(t, "file", good)
			case "truncated multipart":
				ct, body = multipartBody(t, "data", good)
				body = body[:len(body)-10]
			default:
				if ct == "" {
					ct, body = multipartBody(t, "data", body)
				} else if ct == "-" {
					ct = ""
				}
			}
			expectErr(t, e.put("2024-03-01", ct, bytes.NewReader(body), auth), c.code, c.substr)
		})
	}
	if n := len(e.srv.Dates()); n != 0 {
		t.Fatalf("invalid uploads stored %d dates", n)
	}
}

func TestTwoDataPartsRejected(t *testing.T) {
	e := newEnv(t, Config{})
	var buf bytes.Buffer
	body := fmt.Sprintf("--B\r\nContent-Disposition: form-data; name=\"data\"; filename=\"a.json\"\r\n\r\n%s\r\n--B\r\nContent-Disposition: form-data; name=\"data\"; filename=\"b.json\"\r\n\r\n%s\r\n--B--\r\n",
		fileOf(t, validRec("2024-03-01 10:00", "a", "m", "1")), fileOf(t))
	buf.WriteString(body)
	expectErr(t, e.put("2024-03-01", "multipart/form-data; boundary=B", &buf, "Bearer "+testToken), 400, "More than one part")
}

// The seed's Java client writes part headers with bare LF and boundary
// "*****", and names the file part "data". As printed it also writes the
// closing boundary right after the file, without the CRLF that RFC 2046
// requires before a boundary; the emulator follows the RFC and rejects
// that (the printed listing has lost lines, so the real client may differ).
func TestSeedJavaClientBody(t *testing.T) {
	e := newEnv(t, Config{})
	file := fileOf(t, validRec("2016-03-01 00:00", "{B902801E}", "3c5324ad", "1.5"))
	head := "--*****\r\n" +
		"Content-Disposition: form-data; name=\"data\"; filename=\"test.json\" \nContent-Type: application/octet-stream\n\n"
	ct := "multipart/form-data;boundary=*****"
	auth := "Bearer " + testToken

	r := e.put("2016-03-01", ct, strings.NewReader(head+string(file)+"\r\n--*****--\r\n"), auth)
	expectOK(t, r, 1)

	r = e.put("2016-03-01", ct, strings.NewReader(head+string(file)+"--*****--\r\n"), auth)
	expectErr(t, r, 400)
}

func TestRequiredFieldMissing(t *testing.T) {
	e := newEnv(t, Config{})
	// Something stored before must survive a failing upload.
	expectOK(t, e.upload("2024-03-01", validRec("2024-03-01 01:00", "old", "m", "7")), 1)
	before := e.srv.Dates()

	for _, f := range fields {
		if !f.required {
			continue
		}
		t.Run(f.name, func(t *testing.T) {
			good := validRec("2024-03-01 10:00", "a", "m", "1")
			r := e.upload("2024-03-01", good, good, good.without(f.name), good)
			expectErr(t, r, 400, "record index 2", fmt.Sprintf("%q", f.name))
			if got := e.srv.Dates(); !equalDates(got, before) {
				t.Fatalf("store changed: %v, want %v", got, before)
			}
		})
	}

	t.Run("several missing are all named", func(t *testing.T) {
		r := e.upload("2024-03-01", validRec("2024-03-01 10:00", "a", "m", "1").without("Units").without("Product"))
		expectErr(t, r, 400, "record index 0", `"Product"`, `"Units"`)
	})
	t.Run("case-mismatched name is named", func(t *testing.T) {
		// The documentation's own example spells it "Meter Id".
		good := validRec("2024-03-01 10:00", "a", "m", "1")
		r := e.upload("2024-03-01", good.without("Meter ID").with("Meter Id", "m"))
		expectErr(t, r, 400, "record index 0", `"Meter Id"`, `"Meter ID"`, "case-sensitive")
	})
	if got := e.srv.Dates(); !equalDates(got, before) {
		t.Fatalf("store changed: %v, want %v", got, before)
	}
}

func equalDates(a, b map[string]DateTotal) bool {
	if len(a) != len(b) {
		return false
	}
	for k, x := range a {
		y, ok := b[k]
		if !ok || x.Records != y.Records || !x.Quantity.Equal(y.Quantity) || !x.Cost.Equal(y.Cost) || x.Uploads != y.Uploads {
			return false
		}
	}
	return true
}

func TestFieldValues(t *testing.T) {
	base := validRec("2024-03-01 10:00", "a", "m", "1")
	cases := []struct {
		name   string
		rec    rec
		cfg    Config
		substr string // "" = accepted
		first  rec    // the valid record sent first; base when nil
	}{
		{"Provider Type Private", base.with("Provider Type", "Private"), Config{}, "", nil},
		{"Provider Type lower case", base.with("Provider Type", "public"), Config{}, `field "Provider Type"`, nil},
		{"Provider Type other", base.with("Provider Type", "Hybrid"), Config{}, `field "Provider Type"`, nil},
		{"Quantity as string", base.with("Quantity", "1.25"), Config{}, "", nil},
		{"Quantity exponent", base.with("Quantity", json.Number("1e-3")), Config{}, "", nil},
		{"Quantity negative", base.with("Quantity", "-2"), Config{}, "", nil},
		{"Quantity not a number", base.with("Quantity", "abc"), Config{}, `field "Quantity"`, nil},
		{"Quantity comma", base.with("Quantity", "1,5"), Config{}, `field "Quantity"`, nil},
		{"Quantity leading plus", base.with("Quantity", "+1"), Config{}, `field "Quantity"`, nil},
		{"Quantity leading dot", base.with("Quantity", ".5"), Config{}, `field "Quantity"`, nil},
		{"Quantity padded", base.with("Quantity", " 1"), Config{}, `field "Quantity"`, nil},
		{"Quantity huge exponent", base.with("Quantity", json.Number("1e9999")), Config{}, "out of range", nil},
		{"Quantity 65 integer digits", base.with("Quantity", json.Number("1"+strings.Repeat("0", 64))), Config{}, "out of range", nil},
		{"Quantity 64 integer digits", base.with("Quantity", json.Number(strings.Repeat("9", 64))), Config{}, "", nil},
		{"Quantity 64 fraction digits", base.with("Quantity", "0."+strings.Repeat("1", 64)), Config{}, "", nil},
		{"Quantity 65 fraction digits", base.with("Quantity", "0."+strings.Repeat("1", 65)), Config{}, "out of range", nil},
		{"Quantity too long", base.with("Quantity", json.Number(strings.Repeat("1", 10000))), Config{}, "too long", nil},
		{"Quantity null", base.with("Quantity", nil), Config{}, `field "Quantity": want a number, found null`, nil},
		{"Quantity bool", base.with("Quantity", true), Config{}, `field "Quantity"`, nil},
		{"Quantity string, numbers only", base.with("Quantity", "1"), Config{Decimals: DecimalNumber}, "want a JSON number", nil},
		{"Quantity number, strings only", base, Config{Decimals: DecimalString}, "want a decimal string", base.with("Quantity", "2")},
		{"Quantity string, strings only", base.with("Quantity", "1"), Config{Decimals: DecimalString}, "", base.with("Quantity", "2")},
		{"Cost and Rate", base.with("Cost", json.Number("0.10")).with("Rate", "0.1"), Config{}, "", nil},
		{"Cost not a number", base.with("Cost", "ten"), Config{}, `field "Cost"`, nil},
		{"Account ID number", base.with("Account ID", json.Number("42")), Config{}, `field "Account ID": want a string`, nil},
		{"Account ID empty", base.with("Account ID", ""), Config{}, `field "Account ID": must not be empty`, nil},
		{"Units blank", base.with("Units", "  "), Config{}, `field "Units": must not be empty`, nil},
		{"optional string empty", base.with("Resource ID", ""), Config{}, "", nil},
		{"optional string number", base.with("Resource ID", json.Number("7")), Config{}, `field "Resource ID"`, nil},
		{"FLOAT", base.with("CPU Utilization", json.Number("0.35")), Config{}, "", nil},
		{"FLOAT as string", base.with("Network In MB", "12.5"), Config{}, "", nil},
		{"FLOAT bad", base.with("Network Out MB", "x"), Config{}, `field "Network Out MB"`, nil},
		{"INT", base.with("Storage Read Bytes", json.Number("1024")), Config{}, "", nil},
		{"INT fraction", base.with("Storage Write Bytes", json.Number("1.5")), Config{}, `field "Storage Write Bytes"`, nil},
		{"INT exponent", base.with("VM Max Num Disk", json.Number("1e3")), Config{}, `field "VM Max Num Disk"`, nil},
		{"INT overflow", base.with("Read Throughput", json.Number("99999999999999999999")), Config{}, "64-bit", nil},
		{"extra string", base.with("Project", "apollo"), Config{}, "", nil},
		{"extra number", base.with("Cores", json.Number("4")), Config{}, "", nil},
		{"extra bool", base.with("Spot", true), Config{}, `extra field "Spot"`, nil},
		{"extra null", base.with("Dept", nil), Config{}, `extra field "Dept"`, nil},
		{"extra object", base.with("Tags", map[string]string{"a": "b"}), Config{}, "flat", nil},
		{"extra array", base.with("List", []string{"a"}), Config{}, "flat", nil},
		{"case variant of optional", base.with("cost", json.Number("1")), Config{}, `"cost" differs from the documented field "Cost" only in letter case`, nil},
		{"empty key", base.with("", "x"), Config{}, "empty field name", nil},
		{"Usage End before Start", base.with("Usage End", "2024-03-01 09:59"), Config{}, `field "Usage End" is before "Usage Start"`, nil},
		{"Usage End equal", base, Config{}, "", nil},
		{"Usage End next day", base.with("Usage End", "2024-03-02 00:00"), Config{}, "", nil},
		{"Usage End bad", base.with("Usage End", "tomorrow"), Config{}, `field "Usage End"`, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t, c.cfg)
			first := c.first
			if first == nil {
				first = base
			}
			r := e.upload("2024-03-01", first, c.rec)
			if c.substr == "" {
				expectOK(t, r, 2)
				return
			}
			expectErr(t, r, 400, "record index 1", c.substr)
			if len(e.srv.Dates()) != 0 {
				t.Fatal("a rejected upload stored something")
			}
		})
	}
}

func TestDuplicateKeyRejected(t *testing.T) {
	e := newEnv(t, Config{})
	file := []byte(strings.Replace(string(fileOf(t, validRec("2024-03-01 10:00", "a", "m", "1"))),
		`"Quantity":1`, `"Quantity":1,"Quantity":2`, 1))
	ct, body := multipartBody(t, "data", file)
	expectErr(t, e.put("2024-03-01", ct, bytes.NewReader(body), "Bearer "+testToken), 400, `field "Quantity" appears twice`)
}

func checkTotal(t *testing.T, got DateTotal, records int, qty, cost string, uploads int) {
	t.Helper()
	if got.Records != records || !got.Quantity.Equal(decimal.RequireFromString(qty)) ||
		!got.Cost.Equal(decimal.RequireFromString(cost)) || got.Uploads != uploads {
		t.Fatalf("total %d records, quantity %s, cost %s, %d uploads; want %d, %s, %s, %d",
			got.Records, got.Quantity, got.Cost, got.Uploads, records, qty, cost, uploads)
	}
}

func TestFaults(t *testing.T) {
	d := "2024-03-01"
	one := validRec(d+" 10:00", "a", "m", "1.5")
	t.Run("apply then 500 applies", func(t *testing.T) {
		e := newEnv(t, Config{})
		e.srv.Faults().Set(fault.Rule{Kind: fault.ApplyThenStatus, Code: 500, Count: 1})
		expectErr(t, e.upload(d, one), 500, "injected fault")
		checkTotal(t, e.srv.Dates()[d], 1, "1.5", "0", 1)
		// The retry replaces, it does not add.
		expectOK(t, e.upload(d, one), 1)
		checkTotal(t, e.srv.Dates()[d], 1, "1.5", "0", 2)
		ups := e.srv.Uploads()
		if len(ups) != 2 || !ups[0].Applied || ups[0].Status != 500 || ups[0].Fault != fault.ApplyThenStatus || ups[0].Success {
			t.Fatalf("log %+v", ups)
		}
	})
	t.Run("apply then fault on invalid upload applies nothing", func(t *testing.T) {
		e := newEnv(t, Config{})
		e.srv.Faults().Set(fault.Rule{Kind: fault.ApplyThenStatus, Code: 500})
		expectErr(t, e.upload(d, one.without("Units")), 400, `"Units"`)
		if len(e.srv.Dates()) != 0 {
			t.Fatal("stored")
		}
	})
	t.Run("status fault applies nothing", func(t *testing.T) {
		e := newEnv(t, Config{})
		e.srv.Faults().Set(fault.Rule{Kind: fault.Status, Code: 503, RetryAfter: "2", Message: "busy", Count: 1})
		r := e.upload(d, one)
		expectErr(t, r, 503, "busy")
		if r.header.Get("Retry-After") != "2" {
			t.Errorf("Retry-After %q", r.header.Get("Retry-After"))
		}
		if len(e.srv.Dates()) != 0 {
			t.Fatal("stored")
		}
	})
	t.Run("401 fault", func(t *testing.T) {
		e := newEnv(t, Config{})
		e.srv.Faults().Set(fault.Rule{Kind: fault.Status, Code: 401, Message: authFailedMessage, Count: 1})
		expectErr(t, e.upload(d, one), 401, "authentication failed")
	})
	t.Run("reset applies nothing", func(t *testing.T) {
		e := newEnv(t, Config{})
		e.srv.Faults().Set(fault.Rule{Kind: fault.Reset, Count: 1})
		ct, body := multipartBody(t, "data", fileOf(t, one))
		req, _ := http.NewRequest(http.MethodPut, e.ts.URL+UploadPath+d, bytes.NewReader(body))
		req.Header.Set("Content-Type", ct)
		req.Header.Set("Authorization", "Bearer "+testToken)
		if resp, err := e.ts.Client().Do(req); err == nil {
			resp.Body.Close()
			t.Fatalf("got %d, want a dropped connection", resp.StatusCode)
		}
		if len(e.srv.Dates()) != 0 {
			t.Fatal("stored")
		}
		if ups := e.srv.Uploads(); len(ups) != 1 || ups[0].Status != 0 || ups[0].Fault != fault.Reset {
			t.Fatalf("log %+v", ups)
		}
	})
	t.Run("apply then reset applies", func(t *testing.T) {
		e := newEnv(t, Config{})
		e.srv.Faults().Set(fault.Rule{Kind: fault.ApplyThenReset, Count: 1})
		ct, body := multipartBody(t, "data", fileOf(t, one))
		req, _ := http.NewRequest(http.MethodPut, e.ts.URL+UploadPath+d, bytes.NewReader(body))
		req.Header.Set("Content-Type", ct)
		req.Header.Set("Authorization", "Bearer "+testToken)
		if resp, err := e.ts.Client().Do(req); err == nil {
			resp.Body.Close()
			t.Fatalf("got %d, want a dropped connection", resp.StatusCode)
		}
		checkTotal(t, e.srv.Dates()[d], 1, "1.5", "0", 1)
	})
	t.Run("admin is never faulted", func(t *testing.T) {
		e := newEnv(t, Config{})
		e.srv.Faults().Set(fault.Rule{Kind: fault.Status, Code: 500})
		resp, err := e.ts.Client().Get(e.ts.URL + "/_sandbox/dates")
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("%v %v", resp, err)
		}
		resp.Body.Close()
	})
}

func TestFailWith200(t *testing.T) {
	d := "2024-03-01"
	e := newEnv(t, Config{FailWith200: true})
	one := validRec(d+" 10:00", "a", "m", "1")
	check := func() {
		t.Helper()
		r := e.upload(d, one)
		want := `{"success":false,"status":500,"message":"Upload failed: internal error"}`
		if r.code != 200 || strings.TrimSpace(r.raw) != want {
			t.Fatalf("got %d %s, want 200 %s", r.code, r.raw, want)
		}
		if len(e.srv.Dates()) != 0 {
			t.Fatal("fail-with-200 stored something")
		}
	}
	check()

	e.srv.SetFailWith200(false)
	expectOK(t, e.upload(d, one), 1)
	e.srv.Reset()

	// Over the admin endpoint.
	adminPut(t, e, "/_sandbox/fail-with-200", "true\n", 200)
	check()
	adminPut(t, e, "/_sandbox/fail-with-200", "maybe", 400)
	adminPut(t, e, "/_sandbox/fail-with-200", "false", 200)
	expectOK(t, e.upload(d, one), 1)
}

func adminPut(t *testing.T, e *env, path, body string, code int) string {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPut, e.ts.URL+path, strings.NewReader(body))
	return adminDo(t, e, req, code)
}

func adminDo(t *testing.T, e *env, req *http.Request, code int) string {
	t.Helper()
	resp, err := e.ts.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != code {
		t.Fatalf("%s %s: %d %s, want %d", req.Method, req.URL.Path, resp.StatusCode, b, code)
	}
	return string(b)
}

func TestAdminEndpoints(t *testing.T) {
	e := newEnv(t, Config{})
	d := "2024-03-01"
	expectOK(t, e.upload(d, validRec(d+" 10:00", "a", "m", "0.1").with("Cost", "0.30")), 1)
	expectOK(t, e.upload(d, validRec(d+" 10:00", "a", "m", "0.1").with("Cost", "0.30"),
		validRec(d+" 11:00", "a", "m", "0.2")), 2)

	get := func(path string) string {
		req, _ := http.NewRequest(http.MethodGet, e.ts.URL+path, nil)
		return adminDo(t, e, req, 200)
	}
	var dates map[string]struct {
		Records  int    `json:"records"`
		Quantity string `json:"quantity"`
		Cost     string `json:"cost"`
		Uploads  int    `json:"uploads"`
		Zone     string `json:"zone_offset"`
	}
	if err := json.Unmarshal([]byte(get("/_sandbox/dates")), &dates); err != nil {
		t.Fatal(err)
	}
	if got := dates[d]; got.Records != 2 || got.Quantity != "0.3" || got.Cost != "0.3" || got.Uploads != 2 || got.Zone != "+00:00" {
		t.Fatalf("dates %+v", dates)
	}
	var recs []Record
	if err := json.Unmarshal([]byte(get("/_sandbox/records?date="+d)), &recs); err != nil || len(recs) != 2 || recs[0].Cost != "0.3" {
		t.Fatalf("records %+v %v", recs, err)
	}
	var st Stats
	if err := json.Unmarshal([]byte(get("/_sandbox/stats")), &st); err != nil {
		t.Fatal(err)
	}
	if st.Uploads != 2 || st.Applied != 2 || st.ByStatus["200"] != 2 || st.Dates != 1 || st.Records != 2 {
		t.Fatalf("stats %+v", st)
	}
	var ups []UploadLog
	if err := json.Unmarshal([]byte(get("/_sandbox/uploads")), &ups); err != nil || len(ups) != 2 || ups[1].Records != 2 || ups[1].Bytes == 0 {
		t.Fatalf("uploads %+v %v", ups, err)
	}

	// Token rotation over HTTP; the answer never carries it.
	if body := adminPut(t, e, "/_sandbox/token", "new-token\n", 204); strings.Contains(body, "new-token") {
		t.Fatal("token echoed")
	}
	expectErr(t, e.upload(d, validRec(d+" 10:00", "a", "m", "1")), 401)
	ct, body := multipartBody(t, "data", fileOf(t, validRec(d+" 10:00", "a", "m", "1")))
	expectOK(t, e.put(d, ct, bytes.NewReader(body), "Bearer new-token"), 1)

	// Faults over HTTP.
	adminPut(t, e, "/_sandbox/faults", `[{"kind":"status","code":429,"retry_after":"1","count":1}]`, 204)
	ct, body = multipartBody(t, "data", fileOf(t))
	expectErr(t, e.put(d, ct, bytes.NewReader(body), "Bearer new-token"), 429)

	req, _ := http.NewRequest(http.MethodPost, e.ts.URL+"/_sandbox/reset", nil)
	adminDo(t, e, req, 204)
	if len(e.srv.Dates()) != 0 || len(e.srv.Uploads()) != 0 {
		t.Fatal("reset kept data")
	}
	req, _ = http.NewRequest(http.MethodGet, e.ts.URL+"/_sandbox/reset", nil)
	adminDo(t, e, req, 405)
	req, _ = http.NewRequest(http.MethodGet, e.ts.URL+"/_sandbox/nope", nil)
	adminDo(t, e, req, 404)
}

func TestConcurrentUploadsOfOneDate(t *testing.T) {
	e := newEnv(t, Config{ProcessingDelay: 300 * time.Millisecond})
	run := func(dates ...string) {
		var wg sync.WaitGroup
		for _, d := range dates {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ct, body := multipartBody(t, "data", fileOf(t, validRec(d+" 10:00", "a", "m", "1")))
				req, _ := http.NewRequest(http.MethodPut, e.ts.URL+UploadPath+d, bytes.NewReader(body))
				req.Header.Set("Content-Type", ct)
				req.Header.Set("Authorization", "Bearer "+testToken)
				resp, err := e.ts.Client().Do(req)
				if err != nil {
					t.Error(err)
					return
				}
				resp.Body.Close()
				if resp.StatusCode != 200 {
					t.Errorf("status %d", resp.StatusCode)
				}
			}()
		}
		wg.Wait()
	}
	run("2024-03-01", "2024-03-02", "2024-03-03")
	if n := e.srv.ConcurrencyViolations(); n != 0 {
		t.Fatalf("%d violations for distinct dates", n)
	}
	run("2024-03-01", "2024-03-01")
	if n := e.srv.ConcurrencyViolations(); n != 1 {
		t.Fatalf("%d violations, want 1", n)
	}
	if got := e.srv.Dates()["2024-03-01"]; got.Records != 1 || got.Uploads != 3 {
		t.Fatalf("both overlapping uploads must apply (replace): %+v", got)
	}
}

func TestMaxBodyBytes(t *testing.T) {
	e := newEnv(t, Config{MaxBodyBytes: 2048})
	d := "2024-03-01"
	expectOK(t, e.upload(d, validRec(d+" 10:00", "a", "m", "1")), 1)
	var many []rec
	for range 20 {
		many = append(many, validRec(d+" 10:00", "a", "m", "1"))
	}
	expectErr(t, e.upload(d, many...), 413, "2048 bytes")
	checkTotal(t, e.srv.Dates()[d], 1, "1", "0", 1)
}

func TestHeaderRowLayout(t *testing.T) {
	e := newEnv(t, Config{Layout: LayoutHeaderRow})
	hdr := `["Usage Start","Usage End","Account ID","Account Name","Provider","Provider Type","Product","Meter ID","Meter Name","Quantity","Units","Cost"]`
	row := func(start, qty, cost string) string {
		return fmt.Sprintf(`[%q,%q,"a","A","Azure","Public","P","m","M",%s,"GB",%s]`, start, start, qty, cost)
	}
	cases := []struct {
		name string
		file string
		ok   int
		msg  string
	}{
		{"rows", "[" + hdr + "," + row("2024-03-01 01:00", "1.5", `"2"`) + "," + row("2024-03-01 02:00", `"0.5"`, "null") + "]", 2, ""},
		{"header only", "[" + hdr + "]", 0, ""},
		{"no header", "[]", -1, "header row is missing"},
		{"short row", "[" + hdr + `,["2024-03-01 01:00"]]`, -1, "record index 0: 1 values for 12 header fields"},
		{"null required", "[" + hdr + "," + row("2024-03-01 01:00", "null", "1") + "]", -1, `field "Quantity"`},
		{"case variant", `[["usage start"]]`, -1, "letter case"},
		{"duplicate header", `[["Units","Units"]]`, -1, "appears twice"},
		{"objects given", `[{"Usage Start":"x"}]`, -1, "header row: want an array"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e.srv.Reset()
			ct, body := multipartBody(t, "data", []byte(c.file))
			r := e.put("2024-03-01", ct, bytes.NewReader(body), "Bearer "+testToken)
			if c.ok >= 0 {
				expectOK(t, r, c.ok)
				return
			}
			expectErr(t, r, 400, c.msg)
		})
	}
	e.srv.Reset()
	ct, body := multipartBody(t, "data", []byte(cases[0].file))
	expectOK(t, e.put("2024-03-01", ct, bytes.NewReader(body), "Bearer "+testToken), 2)
	checkTotal(t, e.srv.Dates()["2024-03-01"], 2, "2", "2", 1)
}
