package gateway

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// A JSON Schema checker for the subset openapi.yaml uses ($ref, type,
// required, properties, additionalProperties, items, enum, const, oneOf),
// so the tests check every answer's body against the document, field by
// field: a field a handler answers that the document does not list fails
// (the response schemas say additionalProperties: false).

type apiDoc struct {
	raw map[string]any
}

func loadDoc(t *testing.T) apiDoc {
	t.Helper()
	var m map[string]any
	if err := yaml.Unmarshal(OpenAPI(), &m); err != nil {
		t.Fatal(err)
	}
	return apiDoc{m}
}

func (d apiDoc) resolve(s map[string]any) map[string]any {
	for {
		ref, ok := s["$ref"].(string)
		if !ok {
			return s
		}
		var cur any = d.raw
		for _, p := range strings.Split(strings.TrimPrefix(ref, "#/"), "/") {
			cur = cur.(map[string]any)[p]
		}
		s = cur.(map[string]any)
	}
}

// responseSchema is the schema of path/method/status for media type mt
// (nil when the document gives none).
func (d apiDoc) responseSchema(path, method, status, mt string) map[string]any {
	op, _ := d.raw["paths"].(map[string]any)[path].(map[string]any)[method].(map[string]any)
	if op == nil {
		return nil
	}
	resp, _ := op["responses"].(map[string]any)[status].(map[string]any)
	if resp == nil {
		return nil
	}
	resp = d.resolve(resp)
	c, _ := resp["content"].(map[string]any)[mt].(map[string]any)
	if c == nil {
		return nil
	}
	s, _ := c["schema"].(map[string]any)
	return s
}

// check returns every way v breaks schema s, with JSON paths.
func (d apiDoc) check(s map[string]any, v any, at string) []string {
	s = d.resolve(s)
	var errs []string
	fail := func(format string, args ...any) { errs = append(errs, at+": "+fmt.Sprintf(format, args...)) }
	if alts, ok := s["oneOf"].([]any); ok {
		n := 0
		var why []string
		for _, a := range alts {
			e := d.check(a.(map[string]any), v, at)
			if len(e) == 0 {
				n++
			}
			why = append(why, e...)
		}
		if n != 1 {
			fail("matches %d of oneOf's %d schemas: %v", n, len(alts), why)
		}
		return errs
	}
	if c, ok := s["const"]; ok && fmt.Sprint(c) != fmt.Sprint(v) {
		fail("%v, want %v", v, c)
	}
	if en, ok := s["enum"].([]any); ok {
		found := false
		for _, e := range en {
			found = found || fmt.Sprint(e) == fmt.Sprint(v)
		}
		if !found {
			fail("%v is not one of %v", v, en)
		}
	}
	typ, _ := s["type"].(string)
	switch typ {
	case "object":
		m, ok := v.(map[string]any)
		if !ok {
			fail("want an object, got %T", v)
			return errs
		}
		props, _ := s["properties"].(map[string]any)
		req, _ := s["required"].([]any)
		for _, r := range req {
			if _, ok := m[r.(string)]; !ok {
				fail("required member %q is missing", r)
			}
		}
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			if ps, ok := props[k].(map[string]any); ok {
				errs = append(errs, d.check(ps, m[k], at+"."+k)...)
				continue
			}
			switch ap := s["additionalProperties"].(type) {
			case bool:
				if !ap {
					fail("member %q is not in the document", k)
				}
			case map[string]any:
				errs = append(errs, d.check(ap, m[k], at+"."+k)...)
			}
		}
	case "array":
		a, ok := v.([]any)
		if !ok {
			fail("want an array, got %T", v)
			return errs
		}
		if is, ok := s["items"].(map[string]any); ok {
			for i, e := range a {
				errs = append(errs, d.check(is, e, fmt.Sprintf("%s[%d]", at, i))...)
			}
		}
	case "string":
		if _, ok := v.(string); !ok {
			fail("want a string, got %T", v)
		}
	case "integer":
		if f, ok := v.(float64); !ok || f != float64(int64(f)) {
			fail("want an integer, got %v", v)
		}
	case "boolean":
		if _, ok := v.(bool); !ok {
			fail("want a boolean, got %T", v)
		}
	}
	return errs
}

// checkBody checks a JSON body against the response schema of path,
// method and status for its media type.
func (d apiDoc) checkBody(t *testing.T, path, method string, status int, mt string, body []byte) {
	t.Helper()
	s := d.responseSchema(path, method, fmt.Sprint(status), mt)
	if s == nil {
		t.Errorf("%s %s %d %s: the document has no schema", method, path, status, mt)
		return
	}
	var v any
	if err := json.Unmarshal(body, &v); err != nil {
		t.Errorf("%s %s %d: body is not JSON: %v", method, path, status, err)
		return
	}
	for _, e := range d.check(s, v, "body") {
		t.Errorf("%s %s %d: %s\n%s", method, path, status, e, body)
	}
}
