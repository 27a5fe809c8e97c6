package workers

import (
	"fmt"
	"sort"
	"sync"

	"go.yaml.in/yaml/v3"
)

// Factory builds a destination from its configuration: name is the
// configured name, settings the destination's `settings:` section (decode
// it with config.Decode so unknown keys are refused), key its path in the
// file for error messages ("destinations[2].settings"). A factory resolves
// its secrets and checks its settings; an error stops the process.
type Factory func(name string, settings *yaml.Node, key string) (Destination, error)

var (
	regMu    sync.RWMutex
	registry = map[string]Factory{}
)

// Register makes a destination type available to the configuration
// (`type: cloudzero`). Destination packages call it from init.
func Register(typ string, f Factory) {
	regMu.Lock()
	defer regMu.Unlock()
	if _, dup := registry[typ]; dup {
		panic(fmt.Sprintf("workers: destination type %q registered twice", typ))
	}
	registry[typ] = f
}

// Lookup returns the factory of a destination type.
func Lookup(typ string) (Factory, bool) {
	regMu.RLock()
	defer regMu.RUnlock()
	f, ok := registry[typ]
	return f, ok
}

// Types lists the registered destination types.
func Types() []string {
	regMu.RLock()
	defer regMu.RUnlock()
	out := make([]string, 0, len(registry))
	for t := range registry {
		out = append(out, t)
	}
	sort.Strings(out)
	return out
}
