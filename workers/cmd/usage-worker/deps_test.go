package main

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/usagefleet/usagefleet/"

// goListDeps lists the packages pkg links (not its tests'), as go build
// would for this platform.
func goListDeps(t *testing.T, pkg string) []string {
	t.Helper()
	out, err := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}}", pkg).Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("go list -deps %s: %v\n%s", pkg, err, stderr)
	}
	return strings.Fields(string(out))
}

// TestWorkerLinksNoDevelopmentCode holds the production binary to the
// worker runtime: the API emulators (usage-sandbox), the demo and the
// bench (usagefleet), the usage generator and the test kits are binaries
// and packages of their own, and must not creep back in through an import.
func TestWorkerLinksNoDevelopmentCode(t *testing.T) {
	deps := goListDeps(t, module+"workers/cmd/usage-worker")
	// The list is the real one: the fleet and a destination are in it.
	for _, want := range []string{module + "internal/fleet", module + "workers/cloudzero", module + "messages"} {
		if !slices.Contains(deps, want) {
			t.Fatalf("go list -deps does not list %s: %v", want, deps)
		}
	}
	forbidden := []string{
		module + "internal/sandbox",
		module + "internal/demo",
		module + "internal/bench",
		module + "internal/usagegen",
		module + "internal/cmd",
		module + "internal/broker/natstest",
		module + "workers/conformance",
		"github.com/vmihailenco/msgpack", // messages writes and reads msgpack by hand; the library is the tests' reference
	}
	for _, d := range deps {
		for _, f := range forbidden {
			if d == f || strings.HasPrefix(d, f+"/") {
				t.Errorf("usage-worker links %s", d)
			}
		}
	}
}
