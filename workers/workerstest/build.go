package workerstest

import (
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/usagefleet/usagefleet/workers"
)

// Build builds a destination of the registered type typ from doc, the YAML
// of its `settings:`, as the config file would (its key
// "destinations[0].settings").
func Build(t testing.TB, typ, name, doc string) (workers.Destination, error) {
	t.Helper()
	f, ok := workers.Lookup(typ)
	if !ok {
		t.Fatalf("%s is not registered", typ)
	}
	var n yaml.Node
	if err := yaml.Unmarshal([]byte(doc), &n); err != nil {
		t.Fatal(err)
	}
	var node *yaml.Node
	if len(n.Content) > 0 {
		node = n.Content[0]
	}
	return f(name, node, "destinations[0].settings")
}
