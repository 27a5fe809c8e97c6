package here

import (
	"net/url"
	"strings"
	"testing"
	"time"
)

// RFC 5849 section 3.4.1.3 example: the request's parameters (query, body
// and protocol) and their normalized form.
func TestNormalizedParamsRFC5849Example(t *testing.T) {
	ps := []param{
		{"b5", "=%3D"}, {"a3", "a"}, {"c@", ""}, {"a2", "r b"},
		{"oauth_consumer_key", "9djdj82h48djs9d2"}, {"oauth_token", "kkk9d7dh3k39sjv7"},
		{"oauth_signature_method", "HMAC-SHA1"}, {"oauth_timestamp", "137131201"}, {"oauth_nonce", "7d8f3e4a"},
		{"c2", ""}, {"a3", "2 q"},
	}
	want := "a2=r%20b&a3=2%20q&a3=a&b5=%3D%253D&c%40=&c2=&oauth_consumer_key=9djdj82h48djs9d2&oauth_nonce=7d8f3e4a&oauth_signature_method=HMAC-SHA1&oauth_timestamp=137131201&oauth_token=kkk9d7dh3k39sjv7"
	if got := normalizedParams(ps); got != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
	u, _ := url.Parse("http://example.com/request?b5=%3D%253D&a3=a&c%40=&a2=r%20b")
	base := signatureBase("post", u, ps)
	if !strings.HasPrefix(base, "POST&http%3A%2F%2Fexample.com%2Frequest&a2%3Dr%2520b%26a3%3D2%2520q") {
		t.Fatalf("base string %s", base)
	}
}

func TestBaseURI(t *testing.T) {
	for in, want := range map[string]string{
		"HTTPS://Account.API.here.com:443/oauth2/token": "https://account.api.here.com/oauth2/token",
		"http://127.0.0.1:8080/oauth2/token?x=1":        "http://127.0.0.1:8080/oauth2/token",
		"http://example.com:80":                         "http://example.com/",
	} {
		u, _ := url.Parse(in)
		if got := baseURI(u); got != want {
			t.Errorf("baseURI(%s) = %s; want %s", in, got, want)
		}
	}
}

func TestPercentEncode(t *testing.T) {
	if got := percentEncode("a b+c/=~é"); got != "a%20b%2Bc%2F%3D~%C3%A9" {
		t.Fatal(got)
	}
}

func TestOAuthHeaderShape(t *testing.T) {
	u, _ := url.Parse("https://account.api.here.com/oauth2/token")
	h := oauthHeader("POST", u, url.Values{"grant_type": {"client_credentials"}}, "key id", "secret==", time.Unix(1700000000, 0), "n0nce")
	for _, part := range []string{`oauth_consumer_key="key%20id"`, `oauth_nonce="n0nce"`, `oauth_signature_method="HMAC-SHA256"`, `oauth_timestamp="1700000000"`, `oauth_version="1.0"`, `oauth_signature="`} {
		if !strings.Contains(h, part) {
			t.Errorf("%s lacks %s", h, part)
		}
	}
	if !strings.HasPrefix(h, "OAuth ") || strings.Contains(h, "secret") {
		t.Fatalf("header %s", h)
	}
}

func TestParseProperties(t *testing.T) {
	p := parseProperties("# comment\n! other\nhere.access.key.id = ID\nhere.access.key.secret=ab+c/d==\nhere.token.endpoint.url: https://x.example/oauth2/token\n\n")
	if p["here.access.key.id"] != "ID" || p["here.access.key.secret"] != "ab+c/d==" || p["here.token.endpoint.url"] != "https://x.example/oauth2/token" {
		t.Fatalf("%v", p)
	}
}
