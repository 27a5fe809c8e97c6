package here

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
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

// The RFC 5849 section 3.4.1.1 example: the base string the RFC prints.
func TestBaseStringRFC5849Example(t *testing.T) {
	r := httptest.NewRequest(http.MethodPost, "http://example.com/request?b5=%3D%253D&a3=a&c%40=&a2=r%20b", strings.NewReader("c2&a3=2+q"))
	form, _ := url.ParseQuery("c2&a3=2+q")
	uri, err := requestURI(r, "")
	if err != nil {
		t.Fatal(err)
	}
	params := []param{
		{"oauth_consumer_key", "9djdj82h48djs9d2"}, {"oauth_token", "kkk9d7dh3k39sjv7"},
		{"oauth_signature_method", "HMAC-SHA1"}, {"oauth_timestamp", "137131201"}, {"oauth_nonce", "7d8f3e4a"},
	}
	for k, vs := range r.URL.Query() {
		for _, v := range vs {
			params = append(params, param{k, v})
		}
	}
	for k, vs := range form {
		for _, v := range vs {
			params = append(params, param{k, v})
		}
	}
	want := "POST&http%3A%2F%2Fexample.com%2Frequest&a2%3Dr%2520b%26a3%3D2%2520q" +
		"%26a3%3Da%26b5%3D%253D%25253D%26c%2540%3D%26c2%3D%26oauth_consumer_" +
		"key%3D9djdj82h48djs9d2%26oauth_nonce%3D7d8f3e4a%26oauth_signature_m" +
		"ethod%3DHMAC-SHA1%26oauth_timestamp%3D137131201%26oauth_token%3Dkkk" +
		"9d7dh3k39sjv7"
	if got := signatureBaseString(r.Method, uri, params); got != want {
		t.Fatalf("base string\n got %s\nwant %s", got, want)
	}
}

func TestBaseStringURI(t *testing.T) {
	cases := []struct{ scheme, host, path, want string }{
		{"HTTP", "Example.COM:80", "/r%20v/X", "http://example.com/r%20v/X"},
		{"https", "www.example.net:8080", "/", "https://www.example.net:8080/"},
		{"https", "account.api.here.com:443", "/oauth2/token", "https://account.api.here.com/oauth2/token"},
		{"http", "127.0.0.1:5555", "/oauth2/token", "http://127.0.0.1:5555/oauth2/token"},
		{"http", "[::1]:80", "", "http://[::1]/"},
	}
	for _, c := range cases {
		if got := baseStringURI(c.scheme, c.host, c.path); got != c.want {
			t.Errorf("baseStringURI(%s, %s, %s) = %s, want %s", c.scheme, c.host, c.path, got, c.want)
		}
	}
	if got := percentEncode("Ladies + Gentlemen ~ é/*"); got != "Ladies%20%2B%20Gentlemen%20~%20%C3%A9%2F%2A" {
		t.Errorf("percentEncode: %s", got)
	}
}

// A signature computed outside Go (openssl) over a base string written out
// by hand:
//
//	BASE='POST&https%3A%2F%2Faccount.api.here.com%2Foauth2%2Ftoken&grant_type%3Dclient_credentials%26oauth_consumer_key%3Dsbx-key-id%26oauth_nonce%3Dabc123%26oauth_signature_method%3DHMAC-SHA256%26oauth_timestamp%3D1741953600%26oauth_version%3D1.0'
//	printf '%s' "$BASE" | openssl dgst -sha256 -hmac 's3cr3t%2F%2B%3D&' -binary | base64
const (
	handSecret    = "s3cr3t/+="
	handSignature = "EOuPg+/EW3MlaFbmzDVvif3Vqvd+bD5WBrg/SjUhuTM="
	handBase      = "POST&https%3A%2F%2Faccount.api.here.com%2Foauth2%2Ftoken&grant_type%3Dclient_credentials%26oauth_consumer_key%3Dsbx-key-id%26oauth_nonce%3Dabc123%26oauth_signature_method%3DHMAC-SHA256%26oauth_timestamp%3D1741953600%26oauth_version%3D1.0"
)

func TestHandComputedSignature(t *testing.T) {
	if got := hmacSHA256(handSecret, handBase); got != handSignature {
		t.Fatalf("hmacSHA256 = %s, want %s", got, handSignature)
	}
	clk := &clock{t: time.Unix(1741953600, 0).Add(3 * time.Minute)}
	srv := New(Config{AccessKeyID: "sbx-key-id", AccessKeySecret: handSecret, TokenURL: "https://account.api.here.com/oauth2/token", Now: clk.Now})
	ts := httptest.NewServer(srv.Handler())
	defer ts.Close()
	// sig is sent as given: already percent-encoded.
	send := func(sig string) int {
		req, _ := http.NewRequest(http.MethodPost, ts.URL+"/oauth2/token", strings.NewReader("grant_type=client_credentials"))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Authorization", `OAuth oauth_consumer_key="sbx-key-id",oauth_nonce="abc123",oauth_signature_method="HMAC-SHA256",`+
			`oauth_timestamp="1741953600",oauth_version="1.0",oauth_signature="`+sig+`"`)
		res, err := ts.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res.StatusCode
	}
	wrong := []byte(handSignature)
	wrong[3] ^= 1
	if code := send(url.QueryEscape(string(wrong))); code != http.StatusUnauthorized {
		t.Fatalf("altered signature: %d", code)
	}
	if code := send("EOuPg%2B%2FEW3MlaFbmzDVvif3Vqvd%2BbD5WBrg%2FSjUhuTM%3D"); code != http.StatusOK {
		t.Fatalf("hand-computed signature refused: %d", code)
	}
}

// signer is an independent client-side implementation (the classic
// QueryEscape-based one), so the emulator is not tested against itself.
type signer struct {
	key, secret string
	nonce       int
	mu          sync.Mutex
}

func enc(s string) string {
	return strings.NewReplacer("+", "%20", "*", "%2A", "%7E", "~").Replace(url.QueryEscape(s))
}

type signOpts struct {
	method, version, url, nonce, secret, key string
	ts                                       time.Time
	extraSigned                              url.Values // signed but maybe not sent
}

func (s *signer) header(o signOpts, form url.Values) string {
	s.mu.Lock()
	s.nonce++
	n := s.nonce
	s.mu.Unlock()
	if o.nonce == "" {
		o.nonce = fmt.Sprintf("n%d-%d", n, o.ts.UnixNano())
	}
	if o.method == "" {
		o.method = "HMAC-SHA256"
	}
	if o.secret == "" {
		o.secret = s.secret
	}
	if o.key == "" {
		o.key = s.key
	}
	op := map[string]string{
		"oauth_consumer_key": o.key, "oauth_nonce": o.nonce, "oauth_signature_method": o.method,
		"oauth_timestamp": strconv.FormatInt(o.ts.Unix(), 10),
	}
	if o.version != "-" {
		op["oauth_version"] = "1.0"
		if o.version != "" {
			op["oauth_version"] = o.version
		}
	}
	var pairs []string
	for k, v := range op {
		pairs = append(pairs, enc(k)+"="+enc(v))
	}
	for _, vals := range []url.Values{form, o.extraSigned} {
		for k, vs := range vals {
			for _, v := range vs {
				pairs = append(pairs, enc(k)+"="+enc(v))
			}
		}
	}
	sort.Strings(pairs)
	u, _ := url.Parse(o.url)
	base := "POST&" + enc(strings.ToLower(u.Scheme)+"://"+strings.ToLower(u.Host)+u.Path) + "&" + enc(strings.Join(pairs, "&"))
	m := hmac.New(sha256.New, []byte(enc(o.secret)+"&"))
	m.Write([]byte(base))
	op["oauth_signature"] = base64.StdEncoding.EncodeToString(m.Sum(nil))
	var parts []string
	for k, v := range op {
		parts = append(parts, enc(k)+`="`+enc(v)+`"`)
	}
	sort.Strings(parts)
	return "OAuth " + strings.Join(parts, ", ")
}

func TestTokenSignatureCases(t *testing.T) {
	clk := &clock{t: time.Date(2025, 3, 15, 12, 0, 0, 0, time.UTC)}
	srv := New(Config{AccessKeyID: "key-id", AccessKeySecret: "sec&ret /x", Now: clk.Now})
	ts := httptest.NewServer(srv.Handler())
	defer ts.Close()
	sg := &signer{key: "key-id", secret: "sec&ret /x"}
	tokenURL := ts.URL + "/oauth2/token"
	form := url.Values{"grant_type": {"client_credentials"}}
	replayed := sg.header(signOpts{url: tokenURL, ts: clk.Now(), nonce: "fixed-nonce"}, form)

	cases := []struct {
		name   string
		header string
		ct     string
		body   string
		want   int
		code   int // errorCode for 401s
	}{
		{"good", sg.header(signOpts{url: tokenURL, ts: clk.Now()}, form), "application/x-www-form-urlencoded", "grant_type=client_credentials", 200, 0},
		{"good without oauth_version", sg.header(signOpts{url: tokenURL, ts: clk.Now(), version: "-"}, form), "application/x-www-form-urlencoded", "grant_type=client_credentials", 200, 0},
		{"good with scope", sg.header(signOpts{url: tokenURL, ts: clk.Now()}, url.Values{"grant_type": {"client_credentials"}, "scope": {"hrn:here:authorization::org1:project/p"}}), "application/x-www-form-urlencoded", "grant_type=client_credentials&scope=hrn%3Ahere%3Aauthorization%3A%3Aorg1%3Aproject%2Fp", 200, 0},
		{"good json", sg.header(signOpts{url: tokenURL, ts: clk.Now()}, nil), "application/json", `{"grantType":"client_credentials"}`, 200, 0},
		{"replay first use", replayed, "application/x-www-form-urlencoded", "grant_type=client_credentials", 200, 0},
		{"replayed nonce", replayed, "application/x-www-form-urlencoded", "grant_type=client_credentials", 401, codeNonceUsed},
		{"wrong secret", sg.header(signOpts{url: tokenURL, ts: clk.Now(), secret: "other"}, form), "application/x-www-form-urlencoded", "grant_type=client_credentials", 401, codeBadCredentials},
		{"wrong key id", sg.header(signOpts{url: tokenURL, ts: clk.Now(), key: "other"}, form), "application/x-www-form-urlencoded", "grant_type=client_credentials", 401, codeBadCredentials},
		{"tampered body param", sg.header(signOpts{url: tokenURL, ts: clk.Now()}, form), "application/x-www-form-urlencoded", "grant_type=client_credentials&scope=x", 401, codeBadCredentials},
		{"unsent signed param", sg.header(signOpts{url: tokenURL, ts: clk.Now(), extraSigned: url.Values{"scope": {"x"}}}, form), "application/x-www-form-urlencoded", "grant_type=client_credentials", 401, codeBadCredentials},
		{"other URL signed", sg.header(signOpts{url: "https://account.api.here.com/oauth2/token", ts: clk.Now()}, form), "application/x-www-form-urlencoded", "grant_type=client_credentials", 401, codeBadCredentials},
		{"stale timestamp", sg.header(signOpts{url: tokenURL, ts: clk.Now().Add(-11 * time.Minute)}, form), "application/x-www-form-urlencoded", "grant_type=client_credentials", 401, codeTimestamp},
		{"future timestamp", sg.header(signOpts{url: tokenURL, ts: clk.Now().Add(11 * time.Minute)}, form), "application/x-www-form-urlencoded", "grant_type=client_credentials", 401, codeTimestamp},
		{"edge timestamp", sg.header(signOpts{url: tokenURL, ts: clk.Now().Add(-10 * time.Minute)}, form), "application/x-www-form-urlencoded", "grant_type=client_credentials", 200, 0},
		{"HMAC-SHA1", sg.header(signOpts{url: tokenURL, ts: clk.Now(), method: "HMAC-SHA1"}, form), "application/x-www-form-urlencoded", "grant_type=client_credentials", 401, codeSignatureMethod},
		{"version 2.0", sg.header(signOpts{url: tokenURL, ts: clk.Now(), version: "2.0"}, form), "application/x-www-form-urlencoded", "grant_type=client_credentials", 401, codeVersion},
		{"no header", "", "application/x-www-form-urlencoded", "grant_type=client_credentials", 401, 401200},
		{"bearer header", "Bearer abc", "application/x-www-form-urlencoded", "grant_type=client_credentials", 401, codeMalformedHeader},
		{"duplicate param", `OAuth oauth_nonce="a", oauth_nonce="b"`, "application/x-www-form-urlencoded", "grant_type=client_credentials", 401, codeMalformedHeader},
		{"unquoted", `OAuth oauth_consumer_key=key-id`, "application/x-www-form-urlencoded", "grant_type=client_credentials", 401, codeMalformedHeader},
		{"missing nonce", `OAuth oauth_consumer_key="key-id", oauth_signature_method="HMAC-SHA256", oauth_timestamp="1", oauth_signature="x"`, "application/x-www-form-urlencoded", "grant_type=client_credentials", 401, codeMalformedHeader},
		{"wrong grant", sg.header(signOpts{url: tokenURL, ts: clk.Now()}, url.Values{"grant_type": {"password"}}), "application/x-www-form-urlencoded", "grant_type=password", 400, 0},
		{"text body", sg.header(signOpts{url: tokenURL, ts: clk.Now()}, nil), "text/plain", "grant_type=client_credentials", 400, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodPost, tokenURL, strings.NewReader(c.body))
			req.Header.Set("Content-Type", c.ct)
			if c.header != "" {
				req.Header.Set("Authorization", c.header)
			}
			res, err := ts.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer res.Body.Close()
			b, _ := io.ReadAll(res.Body)
			if res.StatusCode != c.want {
				t.Fatalf("status %d, want %d: %s", res.StatusCode, c.want, b)
			}
			var body map[string]any
			if err := json.Unmarshal(b, &body); err != nil {
				t.Fatalf("not JSON: %s", b)
			}
			if strings.Contains(string(b), "sec&ret") {
				t.Fatal("answer leaks the secret")
			}
			switch {
			case c.want == 200 && c.ct == "application/json":
				if body["accessToken"] == nil || body["tokenType"] != "bearer" || body["expiresIn"] != float64(86400) || body["access_token"] != nil {
					t.Fatalf("JSON token answer %s", b)
				}
			case c.want == 200:
				if body["access_token"] == nil || body["token_type"] != "bearer" || body["expires_in"] != float64(86400) || body["accessToken"] != nil {
					t.Fatalf("form token answer %s", b)
				}
				if strings.Contains(c.body, "scope=") && body["scope"] != "hrn:here:authorization::org1:project/p" {
					t.Fatalf("scope not echoed: %s", b)
				}
			case c.want == 401:
				if body["error"] != "Unauthorized" || body["error_description"] == "" || body["errorCode"] != float64(c.code) {
					t.Fatalf("401 body %s, want errorCode %d", b, c.code)
				}
			}
		})
	}
	if st := srv.Stats(); st.TokensIssued != 6 || st.SignatureFailures != 15 {
		t.Errorf("stats: issued %d, signature failures %d", st.TokensIssued, st.SignatureFailures)
	}
}

func TestTokenURLConfigured(t *testing.T) {
	clk := &clock{t: time.Date(2025, 3, 15, 12, 0, 0, 0, time.UTC)}
	const real = "https://account.api.here.com/oauth2/token"
	srv := New(Config{TokenURL: real, Now: clk.Now})
	ts := httptest.NewServer(srv.Handler())
	defer ts.Close()
	sg := &signer{key: "sandbox-access-key-id", secret: "sandbox-access-key-secret"}
	form := url.Values{"grant_type": {"client_credentials"}}
	for _, c := range []struct {
		signed string
		want   int
	}{{real, 200}, {ts.URL + "/oauth2/token", 401}} {
		req, _ := http.NewRequest(http.MethodPost, ts.URL+"/oauth2/token", strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Authorization", sg.header(signOpts{url: c.signed, ts: clk.Now()}, form))
		res, err := ts.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != c.want {
			t.Errorf("signed %s: %d, want %d", c.signed, res.StatusCode, c.want)
		}
	}
}
