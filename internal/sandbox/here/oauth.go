package here

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"
)

// The OAuth 1.0 (RFC 5849) request verification of the token endpoint.
// Deliberately unexported: a collector must sign on its own, so the tests
// of both sides do not share a bug.

// authError is a failed token request: the HTTP status, HERE's numeric
// error code and a message that never contains a secret.
type authError struct {
	status int
	code   int
	msg    string
}

func (e *authError) Error() string { return e.msg }

func unauth(code int, format string, args ...any) *authError {
	return &authError{status: http.StatusUnauthorized, code: code, msg: fmt.Sprintf(format, args...)}
}

// HERE's documented "Client Signed Request" error codes.
const (
	codeMalformedHeader = 401202
	codeTimestamp       = 401204
	codeSignatureMethod = 401205
	codeVersion         = 401206
	codeNonceUsed       = 401207
	codeBadCredentials  = 401300
)

// parseOAuthHeader parses `OAuth k="v", ...` (RFC 5849 section 3.5.1): names
// and values are percent-encoded, values are quoted, no parameter repeats.
func parseOAuthHeader(h string) (map[string]string, *authError) {
	scheme, rest, _ := strings.Cut(strings.TrimSpace(h), " ")
	if !strings.EqualFold(scheme, "OAuth") {
		return nil, unauth(codeMalformedHeader, "No credentials found: the Authorization header must use the OAuth scheme")
	}
	params := map[string]string{}
	for _, part := range strings.Split(rest, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		k, v, ok := strings.Cut(part, "=")
		k, v = strings.TrimSpace(k), strings.TrimSpace(v)
		if !ok || len(v) < 2 || v[0] != '"' || v[len(v)-1] != '"' {
			return nil, unauth(codeMalformedHeader, "Malformed OAuth 1.0 header: parameter %q is not name=\"value\"", k)
		}
		name, err1 := url.PathUnescape(k)
		value, err2 := url.PathUnescape(v[1 : len(v)-1])
		if err1 != nil || err2 != nil {
			return nil, unauth(codeMalformedHeader, "Malformed OAuth 1.0 header: bad percent-encoding in %q", k)
		}
		if _, dup := params[name]; dup {
			return nil, unauth(codeMalformedHeader, "Malformed OAuth 1.0 header: duplicated parameter %q", name)
		}
		params[name] = value
	}
	return params, nil
}

// percentEncode is RFC 5849 section 3.6: every byte but ALPHA, DIGIT, '-',
// '.', '_' and '~' becomes %XX (upper-case hex).
func percentEncode(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~' {
			b.WriteByte(c)
			continue
		}
		fmt.Fprintf(&b, "%%%02X", c)
	}
	return b.String()
}

// baseStringURI is RFC 5849 section 3.4.1.2: lower-case scheme and host,
// the port only when it is not the scheme's default, the path, no query.
func baseStringURI(scheme, host, path string) string {
	scheme, host = strings.ToLower(scheme), strings.ToLower(host)
	if h, port, err := net.SplitHostPort(host); err == nil {
		if scheme == "http" && port == "80" || scheme == "https" && port == "443" {
			host = h
			if strings.Contains(h, ":") {
				host = "[" + h + "]"
			}
		}
	}
	if path == "" {
		path = "/"
	}
	return scheme + "://" + host + path
}

// requestURI is the base string URI of r: from tokenURL when configured
// (the client signs the URL it called, which a proxy or a test server may
// not see), else from the request as received.
func requestURI(r *http.Request, tokenURL string) (string, error) {
	if tokenURL != "" {
		u, err := url.Parse(tokenURL)
		if err != nil {
			return "", err
		}
		return baseStringURI(u.Scheme, u.Host, u.EscapedPath()), nil
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return baseStringURI(scheme, r.Host, r.URL.EscapedPath()), nil
}

type param struct{ k, v string }

// signatureBaseString is RFC 5849 section 3.4.1: METHOD & URI & normalized
// parameters, each part percent-encoded; parameters are encoded, sorted by
// name then value, and joined as name=value with '&'.
func signatureBaseString(method, uri string, params []param) string {
	enc := make([]param, len(params))
	for i, p := range params {
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
	return strings.ToUpper(method) + "&" + percentEncode(uri) + "&" + percentEncode(strings.Join(parts, "&"))
}

// hmacSHA256 signs a base string with the client secret (no token secret):
// key = percent-encoded secret + "&".
func hmacSHA256(secret, base string) string {
	m := hmac.New(sha256.New, []byte(percentEncode(secret)+"&"))
	m.Write([]byte(base))
	return base64.StdEncoding.EncodeToString(m.Sum(nil))
}

var errNonceUsed = errors.New("nonce already consumed")

// verifyOAuth checks the signed token request. form holds the decoded
// application/x-www-form-urlencoded body parameters (nil for a JSON body).
// On success it returns the nonce and timestamp for the replay check.
func (s *Server) verifyOAuth(r *http.Request, form url.Values) (nonce string, ts time.Time, e *authError) {
	h := r.Header.Get("Authorization")
	if strings.TrimSpace(h) == "" {
		return "", ts, unauth(401200, "No credentials found.")
	}
	op, e := parseOAuthHeader(h)
	if e != nil {
		return "", ts, e
	}
	for _, k := range []string{"oauth_consumer_key", "oauth_signature_method", "oauth_timestamp", "oauth_nonce", "oauth_signature"} {
		if op[k] == "" {
			return "", ts, unauth(codeMalformedHeader, "Malformed OAuth 1.0 header: missing %s", k)
		}
	}
	if v, ok := op["oauth_version"]; ok && v != "1.0" {
		return "", ts, unauth(codeVersion, "Unsupported value for \"oauth_version\" parameter - should be 1.0")
	}
	if op["oauth_signature_method"] != "HMAC-SHA256" {
		return "", ts, unauth(codeSignatureMethod, "Unsupported value for signature method: want HMAC-SHA256")
	}
	if !hmac.Equal([]byte(op["oauth_consumer_key"]), []byte(s.cfg.AccessKeyID)) {
		return "", ts, unauth(codeBadCredentials, "Invalid client credentials.")
	}
	sec, err := strconv.ParseInt(op["oauth_timestamp"], 10, 64)
	if err != nil {
		return "", ts, unauth(codeMalformedHeader, "Malformed OAuth 1.0 header: oauth_timestamp is not a number")
	}
	ts = time.Unix(sec, 0)
	if d := s.now().Sub(ts); d > s.cfg.TimestampSkew || d < -s.cfg.TimestampSkew {
		return "", ts, unauth(codeTimestamp, "Time stamp is outside the valid period.")
	}
	uri, err := requestURI(r, s.cfg.TokenURL)
	if err != nil {
		return "", ts, &authError{status: http.StatusInternalServerError, code: 500000, msg: "sandbox TokenURL is not a URL"}
	}
	var params []param
	for k, v := range op {
		if k == "realm" || k == "oauth_signature" {
			continue
		}
		params = append(params, param{k, v})
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
	want := hmacSHA256(s.cfg.AccessKeySecret, signatureBaseString(r.Method, uri, params))
	if !hmac.Equal([]byte(want), []byte(op["oauth_signature"])) {
		return "", ts, unauth(codeBadCredentials, "Signature mismatch. Authorization signature or client credential is wrong.")
	}
	return op["oauth_nonce"], ts, nil
}

// useNonce records a nonce, refusing one already seen inside the replay
// window. Nonces older than the window are forgotten (their timestamps are
// refused anyway).
func (s *Server) useNonce(nonce string, ts time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	for n, t := range s.nonces {
		if now.Sub(t) > 2*s.cfg.TimestampSkew {
			delete(s.nonces, n)
		}
	}
	if _, seen := s.nonces[nonce]; seen {
		return errNonceUsed
	}
	s.nonces[nonce] = ts
	return nil
}
