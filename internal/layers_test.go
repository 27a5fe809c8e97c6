// Package internal_test checks the floor plan of internal/ (the directory
// holds no code of its own):
//
//   - the foundation: config (configuration types and the strict YAML
//     decoder), broker (the NATS connection, the embedded server and the
//     stream and consumer topology) and telemetry (logs, metrics, traces,
//     health); they sit on the messages contract and on nothing else of
//     this module;
//   - the apps on top: fleet (the worker runtime usage-worker runs), the
//     sandbox API emulators (usage-sandbox), demo and bench (usagefleet),
//     usagegen (generated usage for the demo, the bench and tests), and the
//     development commands in internal/cmd.
//
// No import runs back up: a foundation package links no app, no worker,
// no producer; the emulators and the generator link no runtime; the
// production binaries link no development code. These tests read the
// real import graph (go list -deps), so a new import that breaks a rule
// fails here and names itself.
package internal_test

import (
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/usagefleet/usagefleet/"

// deps maps every package of the module to the packages it links (its
// tests' imports are not counted).
func deps(t *testing.T) map[string][]string {
	t.Helper()
	readSources(t)
	out, err := exec.Command("go", "list", "-f", "{{.ImportPath}}{{range .Deps}} {{.}}{{end}}", module+"...").Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("go list: %v\n%s", err, stderr)
	}
	m := map[string][]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		m[f[0]] = f[1:]
	}
	return m
}

// readSources reads every Go file of the module. go test caches a
// passing result until what the test read changes; the go list it runs
// is not seen, so without this an import added anywhere else would be
// reported "ok (cached)".
func readSources(t *testing.T) {
	t.Helper()
	err := filepath.WalkDir("..", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == ".git" || d.Name() == "testdata") {
			return filepath.SkipDir
		}
		if !d.IsDir() && (strings.HasSuffix(path, ".go") || d.Name() == "go.mod") {
			_, err = os.ReadFile(path)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

// under reports whether pkg is p or below it.
func under(pkg, p string) bool { return pkg == p || strings.HasPrefix(pkg, p+"/") }

func TestNoImportRunsBackUp(t *testing.T) {
	g := deps(t)
	var (
		apps    = []string{"internal/fleet", "internal/demo", "internal/bench", "internal/sandbox", "internal/usagegen", "internal/cmd"}
		runtime = []string{"workers", "producer", "internal/fleet"}
		dev     = []string{"internal/sandbox", "internal/demo", "internal/bench", "internal/usagegen", "internal/cmd", "internal/broker/natstest", "workers/conformance"}
	)
	rules := []struct {
		pkgs      []string // these packages (and those below them) ...
		except    []string // ... but not these ...
		forbidden []string // ... link none of these
		why       string
	}{
		{[]string{"internal/config", "internal/broker", "internal/telemetry"}, nil, append(slices.Clone(apps), "workers", "producer"),
			"the foundation links no app, worker or producer"},
		{[]string{"internal/sandbox", "internal/usagegen"}, nil, append(slices.Clone(runtime), "internal/demo", "internal/bench", "internal/cmd"),
			"the emulators and the generator stand alone: they link no runtime they are used to test"},
		{[]string{"internal/fleet", "workers", "producer"}, []string{"workers/conformance"}, dev,
			"the runtime links no development code"},
		{[]string{"workers/cmd/usage-worker", "producer/cmd/usage-producer"}, nil, append(slices.Clone(dev), "github.com/vmihailenco/msgpack"),
			"the production binaries link no development code and no msgpack library (messages codes msgpack by hand)"},
		{[]string{"workers", "producer", "messages", "internal", "deploy"}, nil, []string{"helm.sh", "k8s.io", "sigs.k8s.io", "github.com/prometheus-operator", "github.com/prometheus/prometheus"},
			"Helm, the Kubernetes API types and Prometheus's rule parser render and check deploy/helm in deploy's tests only: no binary links them"},
		{[]string{"internal/demo"}, nil, []string{"internal/bench", "internal/cmd"}, "the demo stands on the runtime, not on the bench"},
		{[]string{"internal/bench"}, nil, []string{"internal/demo", "internal/cmd"}, "the bench stands on the runtime, not on the demo"},
	}
	abs := func(p string) string {
		if strings.Contains(p, ".") { // a module path
			return p
		}
		return module + p
	}
	checked := 0
	for _, r := range rules {
		for pkg, ds := range g {
			in := slices.ContainsFunc(r.pkgs, func(p string) bool { return under(pkg, abs(p)) })
			out := slices.ContainsFunc(r.except, func(p string) bool { return under(pkg, abs(p)) })
			if !in || out {
				continue
			}
			checked++
			for _, d := range ds {
				for _, f := range r.forbidden {
					if under(d, abs(f)) {
						t.Errorf("%s links %s: %s", strings.TrimPrefix(pkg, module), strings.TrimPrefix(d, module), r.why)
					}
				}
			}
		}
	}
	// The graph is the real one: every rule found its packages, and the
	// worker does link the fleet.
	if checked < 20 {
		t.Errorf("the rules matched only %d packages: is the module path right?", checked)
	}
	if !slices.Contains(g[module+"workers/cmd/usage-worker"], module+"internal/fleet") {
		t.Errorf("usage-worker does not link internal/fleet: go list -deps gave %v", g[module+"workers/cmd/usage-worker"])
	}
}
