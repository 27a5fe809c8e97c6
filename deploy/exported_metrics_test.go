package deploy

import (
	"go/ast"
	goparser "go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
)

var (
	exportedOnce sync.Once
	exportedSet  map[string][]string
	exportedErr  error
	// otelInstrument is an OpenTelemetry meter's instrument constructor.
	otelInstrument = regexp.MustCompile(`^(Int64|Float64)(Observable)?(Counter|UpDownCounter|Gauge|Histogram)$`)
)

// exportedMetrics reads the module's Go sources (tests aside) for the
// metrics it registers and returns their Prometheus names, as the
// OpenTelemetry Prometheus exporter writes them (dots to underscores, the
// unit s or By as _seconds or _bytes, _total on counters, _bucket, _sum
// and _count on histograms), with prometheus client_golang's names as
// they are. The labels are fleetMetrics' where it knows the metric.
func exportedMetrics(t *testing.T) map[string][]string {
	t.Helper()
	exportedOnce.Do(func() { exportedSet, exportedErr = readExportedMetrics() })
	if exportedErr != nil {
		t.Fatal(exportedErr)
	}
	// The reader is right about the metrics the dashboard charts, which
	// are checked against a live /metrics elsewhere.
	for n := range fleetMetrics {
		if _, ok := exportedSet[n]; !ok {
			t.Fatalf("reading the sources found no %s (found %v): the reader is wrong", n, sortedKeys(exportedSet))
		}
	}
	return exportedSet
}

func readExportedMetrics() (map[string][]string, error) {
	out := map[string][]string{}
	add := func(n string) { out[n] = fleetMetrics[n] }
	fset := token.NewFileSet()
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if n := d.Name(); n == ".git" || n == "testdata" || n == "node_modules" {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
			return nil
		}
		f, err := goparser.ParseFile(fset, p, nil, 0)
		if err != nil {
			return err
		}
		consts := packageConsts(fset, filepath.Dir(p))
		strOf := func(e ast.Expr) string {
			switch x := e.(type) {
			case *ast.BasicLit:
				if s, err := strconv.Unquote(x.Value); err == nil {
					return s
				}
			case *ast.Ident:
				return consts[x.Name]
			}
			return ""
		}
		ast.Inspect(f, func(n ast.Node) bool {
			switch x := n.(type) {
			case *ast.CallExpr:
				sel, ok := x.Fun.(*ast.SelectorExpr)
				if !ok || len(x.Args) == 0 {
					return true
				}
				m := otelInstrument.FindStringSubmatch(sel.Sel.Name)
				name := strOf(x.Args[0])
				if m == nil || !strings.HasPrefix(name, "usagefleet.") {
					return true
				}
				prom := strings.ReplaceAll(name, ".", "_")
				for _, a := range x.Args[1:] {
					if c, ok := a.(*ast.CallExpr); ok && len(c.Args) == 1 {
						if s, ok := c.Fun.(*ast.SelectorExpr); ok && s.Sel.Name == "WithUnit" {
							// The exporter adds a unit the name does not already end with.
							switch u := strOf(c.Args[0]); {
							case u == "s" && !strings.HasSuffix(prom, "_seconds"):
								prom += "_seconds"
							case u == "By" && !strings.HasSuffix(prom, "_bytes"):
								prom += "_bytes"
							}
						}
					}
				}
				switch m[3] {
				case "Counter":
					add(prom + "_total")
				case "Histogram":
					for _, suf := range []string{"", "_bucket", "_sum", "_count"} {
						add(prom + suf)
					}
				default:
					add(prom)
				}
			case *ast.CompositeLit:
				sel, ok := x.Type.(*ast.SelectorExpr)
				if !ok || !strings.HasSuffix(sel.Sel.Name, "Opts") {
					return true
				}
				for _, el := range x.Elts {
					if kv, ok := el.(*ast.KeyValueExpr); ok {
						if k, ok := kv.Key.(*ast.Ident); ok && k.Name == "Name" {
							if s := strOf(kv.Value); strings.HasPrefix(s, "usagefleet_") {
								add(s)
							}
						}
					}
				}
			}
			return true
		})
		return nil
	})
	return out, err
}

var (
	constsMu sync.Mutex
	constsOf = map[string]map[string]string{}
)

// packageConsts maps the string constants declared in a directory's Go
// files (tests aside) to their values.
func packageConsts(fset *token.FileSet, dir string) map[string]string {
	constsMu.Lock()
	defer constsMu.Unlock()
	if c, ok := constsOf[dir]; ok {
		return c
	}
	c := map[string]string{}
	files, _ := filepath.Glob(filepath.Join(dir, "*.go"))
	for _, fn := range files {
		if strings.HasSuffix(fn, "_test.go") {
			continue
		}
		f, err := goparser.ParseFile(fset, fn, nil, 0)
		if err != nil {
			continue
		}
		for _, decl := range f.Decls {
			gd, ok := decl.(*ast.GenDecl)
			if !ok || gd.Tok != token.CONST {
				continue
			}
			for _, spec := range gd.Specs {
				vs := spec.(*ast.ValueSpec)
				for i, name := range vs.Names {
					if i < len(vs.Values) {
						if lit, ok := vs.Values[i].(*ast.BasicLit); ok && lit.Kind == token.STRING {
							c[name.Name], _ = strconv.Unquote(lit.Value)
						}
					}
				}
			}
		}
	}
	constsOf[dir] = c
	return c
}
