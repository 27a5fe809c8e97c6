package telemetry

import (
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"regexp"
	"strings"
)

// Redacted replaces a secret wherever Redactor finds one.
const Redacted = "[redacted]"

// Redactor finds secrets in text an API sent back, in whatever encoding the
// receiver echoed them: a webhook that logs its request and answers with
// it JSON-escaped ("a\u0026b"), URL-encoded ("a%26b", "a+b"),
// HTML-escaped ("a&amp;b", "&#38;"), with "\/" for "/", or any mix of
// these character by character; base64 (standard or URL alphabet, padded
// or not, at any offset inside a longer base64 text such as a Basic
// authorization) and hex. Answers go into errors, logs, acks and dead
// letters, which keep them for weeks: run every answer through it before
// it goes anywhere.
type Redactor struct {
	re *regexp.Regexp
}

// minBase64Secret: a secret shorter than this is not searched in base64 or
// hex (its encodings are too short to mean anything and would blank
// unrelated text).
const minBase64Secret = 6

// NewRedactor returns a Redactor for the non-empty secrets.
func NewRedactor(secrets ...string) *Redactor {
	var alts []string
	for _, s := range secrets {
		if s == "" {
			continue
		}
		alts = append(alts, charwise(s))
		if len(s) >= minBase64Secret {
			for _, lit := range encodedForms(s) {
				alts = append(alts, regexp.QuoteMeta(lit))
			}
		}
	}
	if len(alts) == 0 {
		return &Redactor{}
	}
	// Longer alternatives first: an encoding that contains another wins.
	return &Redactor{re: regexp.MustCompile(strings.Join(alts, "|"))}
}

// charwise is a pattern matching s with each character written as itself
// or escaped in JSON, URL or HTML form.
func charwise(s string) string {
	var b strings.Builder
	b.WriteString("(?:")
	for _, r := range s {
		forms := []string{regexp.QuoteMeta(string(r))}
		if r < 0x10000 {
			forms = append(forms, fmt.Sprintf(`\\u(?i:%04x)`, r)) // JSON \u0026
		} else {
			// JSON writes it as a UTF-16 surrogate pair.
			r1, r2 := surrogates(r)
			forms = append(forms, fmt.Sprintf(`\\u(?i:%04x)\\u(?i:%04x)`, r1, r2))
		}
		var pct strings.Builder
		for _, u := range []byte(string(r)) {
			fmt.Fprintf(&pct, `%%(?i:%02x)`, u)
		}
		forms = append(forms, pct.String(),
			fmt.Sprintf(`&#0*%d;`, r), fmt.Sprintf(`&#[xX]0*(?i:%x);`, r)) // HTML numeric
		switch r {
		case '/':
			forms = append(forms, `\\/`)
		case ' ':
			forms = append(forms, `\+`)
		case '&':
			forms = append(forms, `&amp;`)
		case '<':
			forms = append(forms, `&lt;`)
		case '>':
			forms = append(forms, `&gt;`)
		case '"':
			forms = append(forms, `\\"`, `&quot;`)
		case '\'':
			forms = append(forms, `&apos;`, `&#39;`)
		case '\\':
			forms = append(forms, `\\\\`)
		}
		b.WriteString("(?:" + strings.Join(forms, "|") + ")")
	}
	b.WriteString(")")
	return b.String()
}

func surrogates(r rune) (rune, rune) {
	r -= 0x10000
	return 0xd800 + (r>>10)&0x3ff, 0xdc00 + r&0x3ff
}

// encodedForms are the literal whole-secret encodings: hex, and base64 in
// both alphabets at each of the three offsets the secret can start at
// inside a longer base64 text (the characters that depend on neighbouring
// bytes are left out, so the core is found wherever the secret was).
func encodedForms(s string) []string {
	forms := []string{hex.EncodeToString([]byte(s)), strings.ToUpper(hex.EncodeToString([]byte(s)))}
	for off := 0; off < 3; off++ {
		buf := append(make([]byte, off), s...)
		enc := base64.StdEncoding.EncodeToString(buf)
		// Leading characters that involve the off filler bytes.
		skip := 0
		if off > 0 {
			skip = (off*8 + 5) / 6
		}
		// Only characters whose six bits all fall in the secret: none that
		// also takes bits of whatever follows it (or padding).
		core := enc[skip : len(buf)*8/6]
		if len(core) < 4 {
			continue
		}
		forms = append(forms, core, strings.NewReplacer("+", "-", "/", "_").Replace(core))
	}
	return forms
}

// String returns s with every secret found replaced by Redacted.
func (r *Redactor) String(s string) string {
	if r == nil || r.re == nil {
		return s
	}
	return r.re.ReplaceAllLiteralString(s, Redacted)
}

// Bytes is String for a byte slice (a new slice when anything is replaced).
func (r *Redactor) Bytes(b []byte) []byte {
	if r == nil || r.re == nil {
		return b
	}
	return r.re.ReplaceAllLiteral(b, []byte(Redacted))
}
