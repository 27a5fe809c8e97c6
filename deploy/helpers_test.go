package deploy

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"

	"go.yaml.in/yaml/v3"
)

// root is the repository root, seen from this package's directory (where
// go test runs it).
const root = ".."

// The binaries with an image: Dockerfile target, image name, main package.
// usage-sandbox serves the API emulators for the compose stack only.
var binaries = map[string]string{
	"usage-worker":   "./workers/cmd/usage-worker",
	"usage-producer": "./producer/cmd/usage-producer",
	"usage-gateway":  "./producer/cmd/usage-gateway",
	"usage-sandbox":  "./internal/cmd/usage-sandbox",
}

// flagsOnly are the binaries that take flags and no command.
var flagsOnly = map[string]bool{"usage-sandbox": true}

func repoPath(rel string) string { return filepath.Join(root, filepath.FromSlash(rel)) }

func readFile(t *testing.T, rel string) []byte {
	t.Helper()
	b, err := os.ReadFile(repoPath(rel))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// yamlDocs decodes every document of a YAML file (Kubernetes manifests
// hold several), skipping empty ones.
func yamlDocs(t *testing.T, rel string) []map[string]any {
	t.Helper()
	docs, err := decodeYAMLDocs(readFile(t, rel))
	if err != nil {
		t.Fatalf("%s: %v", rel, err)
	}
	return docs
}

func decodeYAMLDocs(b []byte) ([]map[string]any, error) {
	dec := yaml.NewDecoder(bytes.NewReader(b))
	var docs []map[string]any
	for {
		var m map[string]any
		err := dec.Decode(&m)
		if errors.Is(err, io.EOF) {
			return docs, nil
		}
		if err != nil {
			return nil, err
		}
		if m != nil {
			docs = append(docs, m)
		}
	}
}

func yamlDoc(t *testing.T, rel string) map[string]any {
	t.Helper()
	docs := yamlDocs(t, rel)
	if len(docs) != 1 {
		t.Fatalf("%s: %d YAML documents, want 1", rel, len(docs))
	}
	return docs[0]
}

// at, obj, list and str walk decoded YAML: at(v, "a", "b") follows keys
// through maps; a missing key gives nil (and "" from str).
func at(v any, keys ...string) any {
	for _, k := range keys {
		mm, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = mm[k]
	}
	return v
}

func obj(v any, keys ...string) map[string]any {
	r, _ := at(v, keys...).(map[string]any)
	return r
}

func list(v any, keys ...string) []any {
	r, _ := at(v, keys...).([]any)
	return r
}

func str(v any, keys ...string) string {
	switch x := at(v, keys...).(type) {
	case string:
		return x
	case nil:
		return ""
	default:
		return fmt.Sprint(x)
	}
}

func strs(v []any) []string {
	out := make([]string, len(v))
	for i, x := range v {
		out[i] = fmt.Sprint(x)
	}
	return out
}

// envFile reads a docker env file (NAME=value lines, # comments).
func envFile(t *testing.T, rel string) map[string]string {
	t.Helper()
	out := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(readFile(t, rel)))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok || k == "" {
			t.Fatalf("%s:%d: want NAME=value", rel, n)
		}
		if _, dup := out[k]; dup {
			t.Fatalf("%s:%d: %s is set twice", rel, n, k)
		}
		out[k] = v
	}
	return out
}

// setenv sets every variable for the rest of the test.
func setenv(t *testing.T, env map[string]string) {
	t.Helper()
	for k, v := range env {
		t.Setenv(k, v)
	}
}

// envRefs lists the environment variables a config names as secrets:
// every mapping {env: NAME} (optionally with file:).
func envRefs(t *testing.T, doc []byte) []string {
	t.Helper()
	var n yaml.Node
	if err := yaml.Unmarshal(doc, &n); err != nil {
		t.Fatal(err)
	}
	set := map[string]bool{}
	var walk func(*yaml.Node)
	walk = func(n *yaml.Node) {
		if n.Kind == yaml.MappingNode {
			secret := len(n.Content) > 0
			var env string
			for i := 0; i+1 < len(n.Content); i += 2 {
				switch n.Content[i].Value {
				case "env":
					env = n.Content[i+1].Value
				case "file":
				default:
					secret = false
				}
			}
			if secret && env != "" {
				set[env] = true
			}
		}
		for _, c := range n.Content {
			walk(c)
		}
	}
	walk(&n)
	return sortedKeys(set)
}

func sortedKeys[V any](mm map[string]V) []string {
	out := make([]string, 0, len(mm))
	for k := range mm {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// portOf returns the port of a listen address or URL host (":9090",
// "127.0.0.1:18084", "http://x:4318/v1/traces").
func portOf(t *testing.T, addr string) int {
	t.Helper()
	if u, err := url.Parse(addr); err == nil && u.Host != "" {
		addr = u.Host
	}
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("%q: %v", addr, err)
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatalf("%q: port %q", addr, p)
	}
	return n
}

func hostOf(t *testing.T, addr string) string {
	t.Helper()
	if u, err := url.Parse(addr); err == nil && u.Host != "" {
		addr = u.Host
	}
	h, _, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("%q: %v", addr, err)
	}
	return h
}

// quantity parses a Kubernetes memory quantity (Ki, Mi, Gi, k, M, G, or
// plain bytes) and GOMEMLIMIT (KiB, MiB, GiB, B).
func quantity(t *testing.T, q string) int64 {
	t.Helper()
	units := []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"Ki", 1 << 10}, {"Mi", 1 << 20}, {"Gi", 1 << 30}, {"k", 1e3}, {"M", 1e6}, {"G", 1e9}, {"B", 1}}
	for _, u := range units {
		if n, ok := strings.CutSuffix(q, u.suffix); ok {
			v, err := strconv.ParseInt(n, 10, 64)
			if err != nil {
				t.Fatalf("quantity %q: %v", q, err)
			}
			return v * u.mult
		}
	}
	v, err := strconv.ParseInt(q, 10, 64)
	if err != nil {
		t.Fatalf("quantity %q: %v", q, err)
	}
	return v
}

// The binaries, built once per test run, and what their commands accept.

var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
)

// binary builds every binary (once) and returns the path of name.
func binary(t *testing.T, name string) string {
	t.Helper()
	buildOnce.Do(func() {
		binDir, buildErr = os.MkdirTemp("", "usagefleet-deploy-bin-")
		if buildErr != nil {
			return
		}
		args := []string{"build", "-o", binDir + string(filepath.Separator)}
		for _, n := range sortedKeys(binaries) {
			args = append(args, binaries[n])
		}
		cmd := exec.Command("go", args...)
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return filepath.Join(binDir, name)
}

// flagSet is what a command accepts: flag name → it takes a value.
type flagSet map[string]bool

var (
	flagsMu    sync.Mutex
	flagsCache = map[string]flagSet{}
)

// flagLine is one flag in the flag package's usage output: "  -name type"
// (takes a value) or "  -name" / "  -v\tusage" (boolean).
var flagLine = regexp.MustCompile(`(?m)^  -([A-Za-z0-9][A-Za-z0-9_.-]*)( [^\t\n]+)?`)

// commandFlags runs "<binary> <command> -h" ("<binary> -h" for a command
// "" of a flags-only binary) and reads the flags from the usage it prints;
// nil when the binary does not know the command.
func commandFlags(t *testing.T, bin, command string) flagSet {
	t.Helper()
	key := bin + " " + command
	flagsMu.Lock()
	defer flagsMu.Unlock()
	if fs, ok := flagsCache[key]; ok {
		return fs
	}
	args := []string{command, "-h"}
	if command == "" {
		args = args[1:]
	}
	out, _ := exec.Command(binary(t, bin), args...).CombinedOutput()
	if bytes.Contains(out, []byte("unknown command")) {
		flagsCache[key] = nil
		return nil
	}
	fs := flagSet{}
	for _, mm := range flagLine.FindAllStringSubmatch(string(out), -1) {
		fs[mm[1]] = mm[2] != ""
	}
	if len(fs) == 0 {
		t.Fatalf("%s %s -h printed no flags:\n%s", bin, command, out)
	}
	flagsCache[key] = fs
	return fs
}

// invocation is a command line a container runs.
type invocation struct {
	command string            // "" for a flags-only binary
	flags   map[string]string // a boolean flag maps to "true"
	args    []string
}

// parseInvocation checks argv against what bin's command accepts: the
// command exists and every flag is one of its flags. It returns ok=false
// (and has reported why) when it cannot.
func parseInvocation(t *testing.T, where, bin string, argv []string) (invocation, bool) {
	t.Helper()
	inv := invocation{flags: map[string]string{}}
	rest := argv
	if !flagsOnly[bin] {
		if len(argv) == 0 {
			t.Errorf("%s: runs %s without a command", where, bin)
			return invocation{}, false
		}
		inv.command, rest = argv[0], argv[1:]
	}
	fs := commandFlags(t, bin, inv.command)
	if fs == nil {
		t.Errorf("%s: %s has no command %q", where, bin, inv.command)
		return inv, false
	}
	for i := 0; i < len(rest); i++ {
		a := rest[i]
		if a == "--" {
			inv.args = append(inv.args, rest[i+1:]...)
			break
		}
		if !strings.HasPrefix(a, "-") || a == "-" {
			inv.args = append(inv.args, a)
			continue
		}
		name, val, hasVal := strings.Cut(strings.TrimLeft(a, "-"), "=")
		takes, known := fs[name]
		if !known {
			t.Errorf("%s: %s %s has no flag -%s (it has %v)", where, bin, inv.command, name, sortedKeys(fs))
			return inv, false
		}
		switch {
		case hasVal:
		case takes:
			if i+1 >= len(rest) {
				t.Errorf("%s: -%s needs a value", where, name)
				return inv, false
			}
			i++
			val = rest[i]
		default:
			val = "true"
		}
		inv.flags[name] = val
	}
	return inv, true
}

// Dockerfile stages.

type stage struct {
	name, base string
	lines      []string // instructions, continuation lines joined
}

func dockerfile(t *testing.T) map[string]*stage {
	t.Helper()
	var lines []string
	var cur strings.Builder
	for _, raw := range strings.Split(string(readFile(t, "deploy/Dockerfile")), "\n") {
		line := strings.TrimSpace(raw)
		if strings.HasPrefix(line, "#") || (line == "" && cur.Len() == 0) {
			continue
		}
		if c, ok := strings.CutSuffix(line, `\`); ok {
			cur.WriteString(c + " ")
			continue
		}
		cur.WriteString(line)
		lines = append(lines, strings.TrimSpace(cur.String()))
		cur.Reset()
	}
	stages := map[string]*stage{}
	var st *stage
	for _, line := range lines {
		f := strings.Fields(line)
		if strings.EqualFold(f[0], "FROM") {
			args := f[1:]
			for len(args) > 0 && strings.HasPrefix(args[0], "--") {
				args = args[1:]
			}
			st = &stage{base: args[0]}
			if len(args) == 3 && strings.EqualFold(args[1], "AS") {
				st.name = args[2]
				stages[st.name] = st
			}
			continue
		}
		if st != nil {
			st.lines = append(st.lines, line)
		}
	}
	return stages
}

// instr returns the arguments of every instruction of kind in st.
func (st *stage) instr(kind string) []string {
	var out []string
	for _, line := range st.lines {
		k, rest, _ := strings.Cut(line, " ")
		if strings.EqualFold(k, kind) {
			out = append(out, strings.TrimSpace(rest))
		}
	}
	return out
}
