package here

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"net"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"
)

// OAuth 1.0 (RFC 5849) signing of the token request: HMAC-SHA256 with the
// access key secret, no token secret.

// percentEncode is RFC 5849 section 3.6 (RFC 3986 unreserved characters
// stay, every other byte becomes %XX in upper-case hex).
func percentEncode(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~' {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

// baseURI is RFC 5849 section 3.4.1.2: scheme and host lower-cased, the
// port only when it is not the scheme's default, the path, no query.
func baseURI(u *url.URL) string {
	scheme, host := strings.ToLower(u.Scheme), strings.ToLower(u.Host)
	if h, port, err := net.SplitHostPort(host); err == nil && (scheme == "http" && port == "80" || scheme == "https" && port == "443") {
		host = h
		if strings.Contains(h, ":") {
			host = "[" + h + "]"
		}
	}
	path := u.EscapedPath()
	if path == "" {
		path = "/"
	}
	return scheme + "://" + host + path
}

type param struct{ k, v string }

// normalizedParams is RFC 5849 section 3.4.1.3.2: every name and value
// encoded, sorted by name then value, joined name=value with '&'.
func normalizedParams(ps []param) string {
	enc := make([]param, len(ps))
	for i, p := range ps {
		enc[i] = param{percentEncode(p.k), percentEncode(p.v)}
	}
	sort.Slice(enc, func(i, j int) bool {
		if enc[i].k != enc[j].k {
			return enc[i].k < enc[j].k
		}
		return enc[i].v < enc[j].v
	})
	parts := make([]string, len(enc))
	for i, p := range enc {
		parts[i] = p.k + "=" + p.v
	}
	return strings.Join(parts, "&")
}

// signatureBase is RFC 5849 section 3.4.1.1.
func signatureBase(method string, u *url.URL, ps []param) string {
	return strings.ToUpper(method) + "&" + percentEncode(baseURI(u)) + "&" + percentEncode(normalizedParams(ps))
}

// oauthHeader signs a request to u (with form body parameters form) and
// returns its Authorization header value.
func oauthHeader(method string, u *url.URL, form url.Values, keyID, secret string, now time.Time, nonce string) string {
	oauth := []param{
		{"oauth_consumer_key", keyID},
		{"oauth_nonce", nonce},
		{"oauth_signature_method", "HMAC-SHA256"},
		{"oauth_timestamp", strconv.FormatInt(now.Unix(), 10)},
		{"oauth_version", "1.0"},
	}
	all := append([]param(nil), oauth...)
	for k, vs := range u.Query() {
		for _, v := range vs {
			all = append(all, param{k, v})
		}
	}
	for k, vs := range form {
		for _, v := range vs {
			all = append(all, param{k, v})
		}
	}
	m := hmac.New(sha256.New, []byte(percentEncode(secret)+"&"))
	m.Write([]byte(signatureBase(method, u, all)))
	sig := base64.StdEncoding.EncodeToString(m.Sum(nil))
	var b strings.Builder
	b.WriteString("OAuth ")
	for _, p := range append(oauth, param{"oauth_signature", sig}) {
		if b.Len() > len("OAuth ") {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, "%s=\"%s\"", percentEncode(p.k), percentEncode(p.v))
	}
	return b.String()
}

func newNonce() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
