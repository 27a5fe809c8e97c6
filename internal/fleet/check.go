package fleet

import (
	"fmt"
	"net/url"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/usagefleet/usagefleet/internal/config"
)

// refuseURLCredentials refuses any URL in the file (a scalar under a key
// named url or ending in _url) that carries user information: a password
// in a URL ends up in logs, process listings and version control. The
// error names the key and line, never the URL.
func refuseURLCredentials(n *yaml.Node, path string) error {
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			if err := refuseURLCredentials(c, path); err != nil {
				return err
			}
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			if err := refuseURLCredentials(c, fmt.Sprintf("%s[%d]", path, i)); err != nil {
				return err
			}
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			key := k.Value
			if path != "" {
				key = path + "." + k.Value
			}
			if v.Kind == yaml.ScalarNode && (k.Value == "url" || strings.HasSuffix(k.Value, "_url")) && hasUserInfo(v.Value) {
				return &config.Error{Key: key, Line: v.Line, Msg: "the URL carries credentials (user:password@): put them in the credential keys ({env: VARIABLE} or {file: PATH}); the URL was not printed"}
			}
			if err := refuseURLCredentials(v, key); err != nil {
				return err
			}
		}
	}
	return nil
}

// hasUserInfo looks for user information in raw, or in any URL of a
// comma-separated list (NATS takes one for a cluster).
func hasUserInfo(raw string) bool {
	for _, part := range strings.Split(raw, ",") {
		part = strings.TrimSpace(part)
		if u, err := url.Parse(part); err == nil && u.User != nil {
			return true
		}
		// Unparseable (a stray character in the password): look by hand.
		rest := part
		if _, after, ok := strings.Cut(part, "://"); ok {
			rest = after
		}
		if host, _, _ := strings.Cut(rest, "/"); strings.Contains(host, "@") {
			return true
		}
	}
	return false
}

// refuseExplicitZero refuses `field: 0` written in any item of the
// top-level list (0 decodes like an absent key, which takes the default).
func refuseExplicitZero(root *yaml.Node, list, field, want string) error {
	doc := root
	if doc.Kind == yaml.DocumentNode && len(doc.Content) > 0 {
		doc = doc.Content[0]
	}
	if doc.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(doc.Content); i += 2 {
		if doc.Content[i].Value != list || doc.Content[i+1].Kind != yaml.SequenceNode {
			continue
		}
		for j, item := range doc.Content[i+1].Content {
			if item.Kind != yaml.MappingNode {
				continue
			}
			for k := 0; k+1 < len(item.Content); k += 2 {
				if v := item.Content[k+1]; item.Content[k].Value == field && v.Kind == yaml.ScalarNode && strings.TrimSpace(v.Value) == "0" {
					return &config.Error{Key: fmt.Sprintf("%s[%d].%s", list, j, field), Line: v.Line, Msg: "0: " + want}
				}
			}
		}
	}
	return nil
}
