package acronis

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestTokenIssueAndErrors(t *testing.T) {
	e := newEnv(t, Config{})
	r := e.tokenReq("sandbox-client", "sandbox-secret")
	if r.code != http.StatusOK {
		t.Fatalf("token: %d %s", r.code, r.body)
	}
	var raw map[string]any
	if err := json.Unmarshal(r.body, &raw); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"access_token", "token_type", "expires_on", "id_token"} {
		if _, ok := raw[k]; !ok {
			t.Errorf("token answer lacks %q: %s", k, r.body)
		}
	}
	if raw["token_type"] != "bearer" || int64(raw["expires_on"].(float64)) != noon.Add(2*time.Hour).Unix() {
		t.Errorf("token answer %s", r.body)
	}

	cases := []struct {
		name string
		ct   string
		body string
		id   string
		sec  string
		want int
	}{
		{"wrong secret", "application/x-www-form-urlencoded", "grant_type=client_credentials", "sandbox-client", "nope", 401},
		{"wrong id", "application/x-www-form-urlencoded", "grant_type=client_credentials", "other", "sandbox-secret", 401},
		{"no basic auth", "application/x-www-form-urlencoded", "grant_type=client_credentials", "", "", 401},
		{"json body", "application/json", `{"grant_type":"client_credentials"}`, "sandbox-client", "sandbox-secret", 415},
		{"no grant", "application/x-www-form-urlencoded", "", "sandbox-client", "sandbox-secret", 400},
		{"password grant", "application/x-www-form-urlencoded", "grant_type=password", "sandbox-client", "sandbox-secret", 400},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodPost, e.ts.URL+"/api/2/idp/token", strings.NewReader(c.body))
			req.Header.Set("Content-Type", c.ct)
			if c.id != "" {
				req.SetBasicAuth(c.id, c.sec)
			}
			res, err := e.ts.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer res.Body.Close()
			b, _ := io.ReadAll(res.Body)
			if res.StatusCode != c.want {
				t.Fatalf("status %d, want %d: %s", res.StatusCode, c.want, b)
			}
			assertErrorShape(t, b)
			if strings.Contains(string(b), "sandbox-secret") {
				t.Fatal("error body echoes the secret")
			}
		})
	}
}

func assertErrorShape(t *testing.T, b []byte) {
	t.Helper()
	var body struct {
		Error *struct {
			Code    any             `json:"code"`
			Domain  *string         `json:"domain"`
			Message string          `json:"message"`
			Details map[string]any  `json:"details"`
			Context map[string]any  `json:"context"`
			Data    json.RawMessage `json:"data"`
		} `json:"error"`
	}
	if err := json.Unmarshal(b, &body); err != nil || body.Error == nil {
		t.Fatalf("not the Acronis error shape: %s", b)
	}
	if body.Error.Code == nil || body.Error.Message == "" || body.Error.Details == nil || body.Error.Context == nil || string(body.Error.Data) != "[]" {
		t.Fatalf("incomplete error shape: %s", b)
	}
	if _, ok := body.Error.Details["info"]; !ok {
		t.Fatalf("error details lack info: %s", b)
	}
}

func TestTokenExpiryAndRefresh(t *testing.T) {
	e := newEnv(t, Config{TokenTTL: time.Hour})
	tok := e.token()
	path := "/api/2/reports/" + uuidFrom(1, 2) + "/stored"
	if r := e.api(tok, http.MethodGet, path, nil); r.code != http.StatusNotFound {
		t.Fatalf("fresh token: %d %s", r.code, r.body)
	}
	e.clk.Add(59 * time.Minute)
	if r := e.api(tok, http.MethodGet, path, nil); r.code != http.StatusNotFound {
		t.Fatalf("token before TTL: %d", r.code)
	}
	e.clk.Add(time.Minute)
	r := e.api(tok, http.MethodGet, path, nil)
	if r.code != http.StatusUnauthorized {
		t.Fatalf("expired token: %d", r.code)
	}
	assertErrorShape(t, r.body)

	tok2 := e.token()
	if r := e.api(tok2, http.MethodGet, path, nil); r.code != http.StatusNotFound {
		t.Fatalf("refreshed token: %d", r.code)
	}
	e.srv.ExpireTokens()
	if r := e.api(tok2, http.MethodGet, path, nil); r.code != http.StatusUnauthorized {
		t.Fatalf("after ExpireTokens: %d", r.code)
	}
	if r := e.api(e.token(), http.MethodGet, path, nil); r.code != http.StatusNotFound {
		t.Fatalf("token after ExpireTokens: %d", r.code)
	}
	for _, h := range []string{"", "Basic abc", "Bearer ", "Bearer unknown"} {
		r := e.do(http.MethodGet, path, nil, map[string]string{"Authorization": h})
		if r.code != http.StatusUnauthorized {
			t.Errorf("Authorization %q: %d", h, r.code)
		}
	}
	st := e.srv.Stats()
	if st.TokensIssued != 3 || st.TokenExpiries != 1 || st.AuthFailures < 6 {
		t.Errorf("stats %+v", st)
	}
}
