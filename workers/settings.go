package workers

import (
	"go.yaml.in/yaml/v3"

	"github.com/usagefleet/usagefleet/internal/config"
)

// DecodeSettings decodes a destination's `settings:` node into s with
// config.Decode's strict rules; key is the node's path in the file. The
// field named secret, a credential, is checked first: written as a plain
// value it is refused, naming key.secret, without the value (the YAML
// decoder would quote it in its type error); noun names it in the error
// ("a literal token is not accepted").
func DecodeSettings(node *yaml.Node, key string, s any, secret, noun string) error {
	if node != nil && node.Kind == yaml.MappingNode {
		for i := 0; i+1 < len(node.Content); i += 2 {
			k, v := node.Content[i], node.Content[i+1]
			if k.Value == secret && v.Kind == yaml.ScalarNode && v.Tag != "!!null" {
				return &config.Error{Key: key + "." + secret, Line: v.Line,
					Msg: "a literal " + noun + " is not accepted: set env (a variable name) or file (a path)"}
			}
		}
	}
	return config.Decode(node, s, key)
}
