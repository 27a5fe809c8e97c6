package gateway

import (
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
	"slices"
	"strings"
)

// apiKey is a resolved key: only the SHA-256 of the secret is kept.
type apiKey struct {
	name    string
	sum     [32]byte
	sources []string
	feeds   []string
}

type keyring []apiKey

func newKeyring(cfg []KeyConfig) keyring {
	ks := make(keyring, len(cfg))
	for i, k := range cfg {
		ks[i] = apiKey{name: k.Name, sum: sha256.Sum256([]byte(k.Secret.Value())), sources: k.Sources, feeds: k.Feeds}
	}
	return ks
}

// credential takes the key from "Authorization: Bearer <key>" or
// "X-API-Key: <key>".
func credential(r *http.Request) string {
	if a := r.Header.Get("Authorization"); a != "" {
		if len(a) > 7 && strings.EqualFold(a[:7], "bearer ") {
			return strings.TrimSpace(a[7:])
		}
		return ""
	}
	return r.Header.Get("X-API-Key")
}

// lookup compares the presented key with every configured key in constant
// time (the digests are compared, and every key is compared, so neither
// the position nor the length of a near miss shows in the timing).
func (ks keyring) lookup(secret string) *apiKey {
	if secret == "" {
		return nil
	}
	sum := sha256.Sum256([]byte(secret))
	var found *apiKey
	for i := range ks {
		if subtle.ConstantTimeCompare(sum[:], ks[i].sum[:]) == 1 {
			found = &ks[i]
		}
	}
	return found
}

func allowed(list []string, v string) bool {
	return slices.Contains(list, "*") || slices.Contains(list, v)
}

// resolve picks the source and feed of a request (given, or the key's only
// one) and checks the key may use them.
func (k *apiKey) resolve(source, feed string) (string, string, *Problem) {
	if source == "" {
		if len(k.sources) != 1 || k.sources[0] == "*" {
			return "", "", problem(http.StatusBadRequest, typeBadRequest, "No source", "name the source: the source query parameter or the Usage-Source header (this key may publish as several)")
		}
		source = k.sources[0]
	}
	if feed == "" {
		if len(k.feeds) != 1 || k.feeds[0] == "*" {
			return "", "", problem(http.StatusBadRequest, typeBadRequest, "No feed", "name the feed: the feed query parameter or the Usage-Feed header (this key may publish to several)")
		}
		feed = k.feeds[0]
	}
	if !allowed(k.sources, source) {
		return "", "", problem(http.StatusForbidden, typeForbidden, "Source not allowed", "key "+k.name+" may not publish as source "+quote(source))
	}
	if !allowed(k.feeds, feed) {
		return "", "", problem(http.StatusForbidden, typeForbidden, "Feed not allowed", "key "+k.name+" may not publish to feed "+quote(feed))
	}
	return source, feed, nil
}

func quote(s string) string {
	if len(s) > 80 {
		s = s[:80] + "…"
	}
	return "\"" + strings.ToValidUTF8(s, "\ufffd") + "\""
}
