package deploy

import (
	"bytes"
	"encoding/json"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/usagefleet/usagefleet/internal/fleet"
	"github.com/usagefleet/usagefleet/messages"
	_ "github.com/usagefleet/usagefleet/producer/collect/acronis" // collector types, as usage-producer registers them
	_ "github.com/usagefleet/usagefleet/producer/collect/here"
	"github.com/usagefleet/usagefleet/producer/input"
	"github.com/usagefleet/usagefleet/workers"
)

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// TestEveryConfigFileParses decodes every YAML file under deploy/ (all
// documents of each) and docker-compose.yml, and the dashboard JSON.
func TestEveryConfigFileParses(t *testing.T) {
	var files []string
	err := filepath.WalkDir(repoPath("deploy"), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		// A Helm chart's templates are Go templates, not YAML:
		// helm_test.go renders them and parses what comes out.
		if d.IsDir() && d.Name() == "templates" && filepath.Base(filepath.Dir(filepath.Dir(p))) == "helm" {
			return filepath.SkipDir
		}
		switch filepath.Ext(p) {
		case ".yaml", ".yml", ".json":
			rel, _ := filepath.Rel(root, p)
			files = append(files, filepath.ToSlash(rel))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	files = append(files, "docker-compose.yml")
	if len(files) < 15 {
		t.Fatalf("found only %d config files: %v", len(files), files)
	}
	for _, f := range files {
		b := readFile(t, f)
		if bytes.Contains(b, []byte("\t")) && !strings.HasSuffix(f, ".json") {
			t.Errorf("%s: holds a tab (YAML indents with spaces)", f)
		}
		if strings.HasSuffix(f, ".json") {
			var v any
			if err := json.Unmarshal(b, &v); err != nil {
				t.Errorf("%s: %v", f, err)
			}
			continue
		}
		docs, err := decodeYAMLDocs(b)
		if err != nil {
			t.Errorf("%s: %v", f, err)
			continue
		}
		if len(docs) == 0 {
			t.Errorf("%s: no YAML document", f)
		}
	}
	t.Logf("%d files parse", len(files))
}

// TestDockerfileBuildsEveryBinary checks each target: a static build
// (CGO off, -trimpath, stripped) of the right package, a distroless or
// scratch final stage, a non-root user and the binary as entrypoint; and
// that the Go image matches go.mod.
func TestDockerfileBuildsEveryBinary(t *testing.T) {
	stages := dockerfile(t)
	for _, target := range sortedKeys(binaries) {
		t.Run(target, func(t *testing.T) {
			final := stages[target]
			if final == nil {
				t.Fatalf("no stage %q (docker build --target %s)", target, target)
			}
			if !strings.HasPrefix(final.base, "gcr.io/distroless/static") && final.base != "scratch" {
				t.Errorf("final stage is FROM %s; want distroless static or scratch (with CA certificates)", final.base)
			}
			users := final.instr("USER")
			if len(users) == 0 || strings.HasPrefix(users[len(users)-1], "root") || strings.HasPrefix(users[len(users)-1], "0") {
				t.Errorf("final stage runs as %v; want a non-root user", users)
			}
			bin := "/usr/local/bin/" + target
			entry := final.instr("ENTRYPOINT")
			if len(entry) != 1 {
				t.Fatalf("ENTRYPOINT %v", entry)
			}
			var argv []string
			if err := json.Unmarshal([]byte(entry[0]), &argv); err != nil || len(argv) != 1 || argv[0] != bin {
				t.Errorf("ENTRYPOINT %s; want [%q] (exec form)", entry[0], bin)
			}
			var from string
			for _, c := range final.instr("COPY") {
				f := strings.Fields(c)
				if len(f) == 3 && strings.HasPrefix(f[0], "--from=") && f[2] == bin {
					from = strings.TrimPrefix(f[0], "--from=")
				}
			}
			build := stages[from]
			if build == nil {
				t.Fatalf("the final stage copies %s from no known stage (%q)", bin, from)
			}
			var goBuild string
			for _, r := range build.instr("RUN") {
				if strings.Contains(r, "go build") {
					goBuild = r
				}
			}
			for _, want := range []string{"-trimpath", `-ldflags "-s -w"`, binaries[target]} {
				if !strings.Contains(goBuild, want) {
					t.Errorf("stage %s: go build %q lacks %s", from, goBuild, want)
				}
			}
			if !cgoOff(stages, build) {
				t.Errorf("stage %s does not build with CGO_ENABLED=0: the binary would need libc", from)
			}
		})
	}
	goMod := string(readFile(t, "go.mod"))
	want := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindStringSubmatch(goMod)
	if want == nil {
		t.Fatal("go.mod has no go directive")
	}
	re := regexp.MustCompile(`(?m)^ARG GO_VERSION=(\S+)`)
	got := re.FindStringSubmatch(string(readFile(t, "deploy/Dockerfile")))
	if got == nil || !strings.HasPrefix(got[1], want[1]) {
		t.Errorf("the builder image is golang:%v; go.mod wants go %s", got, want[1])
	}
}

// cgoOff reports whether st (or a stage it builds on) sets CGO_ENABLED=0.
func cgoOff(stages map[string]*stage, st *stage) bool {
	for st != nil {
		for _, e := range append(st.instr("ENV"), st.instr("RUN")...) {
			if strings.Contains(e, "CGO_ENABLED=0") {
				return true
			}
		}
		st = stages[st.base]
	}
	return false
}

// TestDockerContextHoldsWhatTheBinariesNeed lists the packages the
// binaries are built from (go list -deps) and checks that the builder
// copies their directories and that .dockerignore drops none of their
// files: a new top-level package or an over-eager ignore pattern would
// otherwise surface only in a failed image build.
func TestDockerContextHoldsWhatTheBinariesNeed(t *testing.T) {
	stages := dockerfile(t)
	var copied []string
	for _, st := range stages {
		for _, c := range st.instr("COPY") {
			f := strings.Fields(c)
			if strings.HasPrefix(f[0], "--") {
				continue
			}
			copied = append(copied, f[:len(f)-1]...)
		}
	}
	var ignore []string
	for _, line := range strings.Split(string(readFile(t, ".dockerignore")), "\n") {
		line = strings.TrimSpace(line)
		if line != "" && !strings.HasPrefix(line, "#") {
			ignore = append(ignore, line)
		}
	}
	args := []string{"list", "-deps", "-f", "{{if .Module}}{{if .Module.Main}}{{.Dir}}|{{join .GoFiles \",\"}}|{{join .EmbedFiles \",\"}}{{end}}{{end}}"}
	for _, n := range sortedKeys(binaries) {
		args = append(args, binaries[n])
	}
	cmd := exec.Command("go", args...)
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	absRoot, _ := filepath.Abs(root)
	need := []string{"go.mod", "go.sum"}
	pkgs := 0
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if line == "" {
			continue
		}
		parts := strings.Split(line, "|")
		dir, err := filepath.Rel(absRoot, parts[0])
		if err != nil {
			t.Fatal(err)
		}
		pkgs++
		for _, f := range append(strings.Split(parts[1], ","), strings.Split(parts[2], ",")...) {
			if f != "" {
				need = append(need, filepath.ToSlash(filepath.Join(dir, f)))
			}
		}
	}
	for _, f := range need {
		if !slices.ContainsFunc(copied, func(c string) bool { return f == c || strings.HasPrefix(f, strings.TrimSuffix(c, "/")+"/") }) {
			t.Errorf("%s is needed by the build but no COPY brings it into the builder (COPY %v)", f, copied)
		}
		for _, p := range ignore {
			if dockerIgnored(p, f) {
				t.Errorf("%s is needed by the build but .dockerignore drops it (%s)", f, p)
			}
		}
	}
	t.Logf("%d packages, %d files of the module reach the builder", pkgs, len(need))
}

// dockerIgnored matches a .dockerignore pattern (filepath.Match syntax,
// a leading **/ for any depth) against rel or one of its parent
// directories, as Docker does.
func dockerIgnored(pattern, rel string) bool {
	comps := strings.Split(rel, "/")
	for k := 1; k <= len(comps); k++ {
		prefix := comps[:k]
		if q, ok := strings.CutPrefix(pattern, "**/"); ok {
			for i := range prefix {
				if ok, _ := filepath.Match(q, strings.Join(prefix[i:], "/")); ok {
					return true
				}
			}
			continue
		}
		if ok, _ := filepath.Match(pattern, strings.Join(prefix, "/")); ok {
			return true
		}
	}
	return false
}

// parseWorkerConfig runs the worker's own validation (fleet.Parse: every
// key, every destination's settings, every secret resolved) on a config
// with env set.
func parseWorkerConfig(t *testing.T, name string, b []byte, env map[string]string) *fleet.Config {
	t.Helper()
	setenv(t, env)
	cfg, err := fleet.Parse(devTLSHere(t, b))
	if err != nil && strings.Contains(err.Error(), "field metrics not found") {
		// The metrics listener is being added to the worker config
		// (worker.metrics.listen); until then check everything else.
		t.Logf("%s: this worker does not know worker.metrics yet; parsing the rest", name)
		cfg, err = fleet.Parse(withoutMetrics(t, b))
	}
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return cfg
}

// devTLSHere points a compose config's CA (mounted from deploy/nats/dev-tls
// at /etc/usagefleet/tls) at that directory in this checkout, so the
// validation that the file exists runs on the real file.
func devTLSHere(t *testing.T, b []byte) []byte {
	t.Helper()
	return bytes.ReplaceAll(b, []byte("/etc/usagefleet/tls/"), []byte(repoPath("deploy/nats/dev-tls")+"/"))
}

func withoutMetrics(t *testing.T, b []byte) []byte {
	t.Helper()
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	top := doc.Content[0]
	for i := 0; i+1 < len(top.Content); i += 2 {
		if top.Content[i].Value != "worker" {
			continue
		}
		w := top.Content[i+1]
		for j := 0; j+1 < len(w.Content); j += 2 {
			if w.Content[j].Value == "metrics" {
				w.Content = append(w.Content[:j], w.Content[j+2:]...)
				break
			}
		}
	}
	out, err := yaml.Marshal(&doc)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// workerConfig is a worker config with what the other files refer to.
type workerConfig struct {
	name    string
	raw     map[string]any
	cfg     *fleet.Config
	metrics int // worker.metrics.listen port
	envRefs []string
	env     map[string]string // the process's environment (its secrets resolve from it)
}

func loadWorkerConfig(t *testing.T, name string, b []byte, env map[string]string) workerConfig {
	t.Helper()
	w := workerConfig{name: name, cfg: parseWorkerConfig(t, name, b, env), envRefs: envRefs(t, b), env: env}
	if err := yaml.Unmarshal(b, &w.raw); err != nil {
		t.Fatal(err)
	}
	listen := str(w.raw, "worker", "metrics", "listen")
	if listen == "" {
		t.Fatalf("%s: no worker.metrics.listen: the probes, the Service and Prometheus need it", name)
	}
	w.metrics = portOf(t, listen)
	for _, ref := range w.envRefs {
		if _, ok := env[ref]; !ok {
			t.Errorf("%s names {env: %s}, which its environment does not set", name, ref)
		}
	}
	return w
}

func (w workerConfig) destination(name string) *fleet.DestinationConfig {
	for i := range w.cfg.Destinations {
		if w.cfg.Destinations[i].Name == name {
			return &w.cfg.Destinations[i]
		}
	}
	return nil
}

func (w workerConfig) destinationsOfType(typ string) []map[string]any {
	var out []map[string]any
	for _, d := range list(w.raw, "destinations") {
		if str(d, "type") == typ {
			out = append(out, d.(map[string]any))
		}
	}
	return out
}

func (w workerConfig) feeds() []string {
	var out []string
	for _, d := range w.cfg.Destinations {
		out = append(out, d.Feeds...)
	}
	return out
}

// semantics builds a destination of the config to ask whether it appends
// or replaces (the environment must still hold its secrets).
func (w workerConfig) semantics(t *testing.T, d *fleet.DestinationConfig) workers.Semantics {
	t.Helper()
	setenv(t, w.env)
	f, ok := workers.Lookup(d.Type)
	if !ok {
		t.Fatalf("%s: destination type %q is not registered", w.name, d.Type)
	}
	dest, err := f(d.Name, &d.Settings, "settings")
	if err != nil {
		t.Fatalf("%s: %v", w.name, err)
	}
	return dest.Semantics()
}

// checkCollectorFeed checks a collector's feed against a worker config: a
// collector publishes snapshots (every scheduled run re-reads its last
// periods as a new generation), so its feed needs a replace destination,
// which rebuilds each unit from the newest complete generation. An append
// destination delivers every generation as new records: served by append
// destinations only, a period collected twice would arrive twice. Whether
// a destination appends or replaces is asked of the destination itself,
// built from the config (CloudZero's mode sum appends).
func checkCollectorFeed(t *testing.T, where, collector, feed string, w workerConfig) {
	t.Helper()
	var appends, replaces []string
	for i := range w.cfg.Destinations {
		d := &w.cfg.Destinations[i]
		if !slices.Contains(d.Feeds, feed) {
			continue
		}
		if w.semantics(t, d) == workers.Replace {
			replaces = append(replaces, d.Name)
		} else {
			appends = append(appends, d.Name)
		}
	}
	switch {
	case len(replaces) > 0:
	case len(appends) == 0:
		t.Errorf("%s: collector %s publishes to feed %s, which no destination of %s serves", where, collector, feed, w.name)
	default:
		t.Errorf("%s: collector %s publishes snapshots to feed %s, which %s serves only by append destinations %v: every re-collection (a new generation) would arrive there again. Route it to a replace destination that takes usage without a cost (cloudcruiser)", where, collector, feed, w.name, appends)
	}
}

// pushesOTLPMetrics returns the variable that makes a process export its
// metrics over OTLP (telemetry.Setup adds an OTLP metric reader when one
// of them is set), or "". A process Prometheus scrapes must not also push
// them through the OpenTelemetry Collector, which Prometheus scrapes too:
// every series would be counted twice.
func pushesOTLPMetrics(env map[string]string) string {
	if env["OTEL_METRICS_EXPORTER"] == "none" {
		return ""
	}
	for _, k := range []string{"OTEL_METRICS_EXPORTER", "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"} {
		if v := env[k]; v != "" && v != "none" {
			return k
		}
	}
	return ""
}

// binaryKnows reports whether a binary links the package that registers
// a destination or collector type (workers/<type>, producer/collect/<type>).
func binaryKnows(t *testing.T, bin, pkg string) bool {
	t.Helper()
	cmd := exec.Command("go", "list", "-deps", binaries[bin])
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	return slices.Contains(strings.Fields(string(out)), "github.com/usagefleet/usagefleet/"+pkg)
}

func checkTypesLinked(t *testing.T, where string, w workerConfig) {
	t.Helper()
	for _, d := range w.cfg.Destinations {
		if !binaryKnows(t, "usage-worker", "workers/"+d.Type) {
			t.Errorf("%s: destination type %s: usage-worker does not link workers/%s (internal/fleet/destinations.go imports the types it knows)", where, d.Type, d.Type)
		}
	}
}

// TestSampleUsageFile checks the file compose publishes: every row good,
// and with a cost (the CloudZero destination needs one).
func TestSampleUsageFile(t *testing.T) {
	rows, errs, err := input.ReadFile(repoPath("deploy/compose/sample-usage.csv"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range errs {
		t.Error(e)
	}
	if len(rows) == 0 {
		t.Fatal("no rows")
	}
	var sum messages.Sum
	for _, r := range rows {
		if !r.Record.BilledCost.IsSet() {
			t.Errorf("line %d: no BilledCost: CloudZero would reject the record", r.Line)
		}
		sum.Add(r.Record.BilledCost)
	}
	t.Logf("%d records, cost %s", len(rows), sum.Decimal())
}
