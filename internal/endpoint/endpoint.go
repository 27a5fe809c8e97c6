// Package endpoint gives an HTTP endpoint one spelling, so that two
// configurations naming the same API connection are recognised as one:
// "HTTP://API.cloudzero.com:443/" (if https), "https://api.cloudzero.com"
// and the default base URL are the same connection.
//
// The fleet's config check compares destinations' targets by Normalize,
// and the worker runtime keys a connection's lease by LeaseKey, so "one
// request at a time per connection" holds across destination names and
// across workers whose files spell the URL differently.
//
// Normalisation follows RFC 3986 section 6.2.2 (case, percent-encoding
// and path-segment normalisation) and 6.2.3 (scheme-based: the default
// port and an empty path).
package endpoint

import (
	"crypto/sha256"
	"encoding/hex"
	"net"
	"net/url"
	"path"
	"strings"
)

var defaultPorts = map[string]string{"http": "80", "https": "443"}

// Normalize returns raw in one canonical form: the scheme and host in
// lower case, without a trailing dot or the scheme's default port, the
// path cleaned (no dot segments, no doubled or trailing slash) and
// re-escaped canonically, user information dropped. Query and fragment
// are kept. A string that is not an absolute URL is returned unchanged.
func Normalize(raw string) string {
	u, err := url.Parse(strings.TrimSpace(raw))
	if err != nil || u.Scheme == "" || u.Host == "" {
		return raw
	}
	scheme := strings.ToLower(u.Scheme)
	host, port := u.Hostname(), u.Port()
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	if port == defaultPorts[scheme] {
		port = ""
	}
	if port != "" {
		host = net.JoinHostPort(host, port)
	} else if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	p := u.Path
	if p != "" {
		p = path.Clean("/" + p)
	}
	p = strings.TrimSuffix(p, "/")
	n := url.URL{Scheme: scheme, Host: host, Path: p, RawQuery: u.RawQuery, Fragment: u.Fragment}
	return n.String()
}

// LeaseKey is a JetStream KV key for the connection raw names (a
// destination's Target id): the same for every spelling of it, and made
// only of characters a KV key may hold. Use it without the destination
// name in front, so two destination names on one connection share it.
func LeaseKey(raw string) string {
	sum := sha256.Sum256([]byte(Normalize(raw)))
	return "conn-" + hex.EncodeToString(sum[:12])
}
