package telemetry

import (
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"html"
	"net/url"
	"strings"
	"testing"
)

// A receiver may echo a credential in any encoding: every one is redacted,
// and text around it is kept.
func TestRedactorFindsEveryEncoding(t *testing.T) {
	const secret = `p&ss/w0rd+t<ök>"€n 😀`
	jsonEsc := func(s string) string { b, _ := json.Marshal(s); return strings.Trim(string(b), `"`) }
	upperU := strings.ReplaceAll(jsonEsc(secret), `\u003c`, `\u003C`)
	allU := func(s string) string {
		var b strings.Builder
		for _, u := range utf16Units(s) {
			b.WriteString(`\u` + strings.ToUpper(hexString(u)))
		}
		return b.String()
	}
	b64 := func(e *base64.Encoding, s string) string { return e.EncodeToString([]byte(s)) }
	for name, echoed := range map[string]string{
		"raw":                 secret,
		"json (\\u0026)":      jsonEsc(secret),
		"json upper-case hex": upperU,
		"json every char":     allU(secret),
		"json \\/":            strings.ReplaceAll(jsonEsc(secret), "/", `\/`),
		"query escaped":       url.QueryEscape(secret),
		"path escaped":        url.PathEscape(secret),
		"lower-case percent":  strings.ToLower(url.QueryEscape(secret)),
		"html":                html.EscapeString(secret),
		"base64":              b64(base64.StdEncoding, secret),
		"base64 url raw":      b64(base64.RawURLEncoding, secret),
		"basic auth":          "Basic " + b64(base64.StdEncoding, "user:"+secret),
		"bearer in base64":    b64(base64.StdEncoding, "Bearer "+secret+"!"),
		"base64 offset 2":     b64(base64.URLEncoding, "ab"+secret),
		"hex":                 hex.EncodeToString([]byte(secret)),
		"hex upper":           strings.ToUpper(hex.EncodeToString([]byte(secret))),
		"mixed json then url": jsonEsc(secret[:5]) + url.QueryEscape(secret[5:]),
	} {
		r := NewRedactor("other-token", secret)
		body := `{"error":"bad auth","echo":"` + echoed + `","at":"x"}`
		got := r.String(body)
		if !strings.Contains(got, Redacted) {
			t.Errorf("%s: %q not redacted: %s", name, echoed, got)
			continue
		}
		for _, leak := range []string{"w0rd", "dzByZ", "773072", "ss%2Fw0"} {
			if strings.Contains(got, leak) && !strings.Contains(body[:strings.Index(body, echoed)], leak) {
				t.Errorf("%s: %q still shows %q: %s", name, echoed, leak, got)
			}
		}
		if !strings.HasPrefix(got, `{"error":"bad auth","echo":"`) || !strings.HasSuffix(got, `","at":"x"}`) {
			t.Errorf("%s: text around the secret changed: %s", name, got)
		}
		if string(r.Bytes([]byte(body))) != got {
			t.Errorf("%s: Bytes and String differ", name)
		}
	}
	if got := NewRedactor("s3cret-token").String("nothing to hide: s3cret token"); got != "nothing to hide: s3cret token" {
		t.Fatalf("unrelated text changed: %q", got)
	}
	if got := NewRedactor("").String("abc"); got != "abc" {
		t.Fatalf("an empty secret changed text: %q", got)
	}
	var nilR *Redactor
	if nilR.String("abc") != "abc" {
		t.Fatal("a nil Redactor changed text")
	}
}

func utf16Units(s string) []uint16 {
	var out []uint16
	for _, r := range s {
		if r >= 0x10000 {
			a, b := surrogates(r)
			out = append(out, uint16(a), uint16(b))
			continue
		}
		out = append(out, uint16(r))
	}
	return out
}

func hexString(u uint16) string { return hex.EncodeToString([]byte{byte(u >> 8), byte(u)}) }
