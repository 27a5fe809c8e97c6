package config

import (
	"fmt"
	"reflect"
	"regexp"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// DecodeStrict decodes node into out, refusing unknown keys with their full
// path and line ("destinations[0](hook).settings.ur1 (line 10): field ur1
// not found (known: url, ...)"), and naming the key of a value that does
// not decode ("destinations[0].flush.max_delay (line 8): "5 seconds" is not
// a duration"). key is node's path ("" at the top of a file).
//
// It works on the original node, so every line is the line in the file (a
// re-encoded node would lose blank lines and shift them).
func DecodeStrict(node *yaml.Node, out any, key string) error {
	if node == nil || node.Kind == 0 {
		return nil
	}
	if node.Kind == yaml.DocumentNode && len(node.Content) == 1 {
		node = node.Content[0]
	}
	if err := checkKeys(node, reflect.TypeOf(out), key); err != nil {
		return err
	}
	if err := node.Decode(out); err != nil {
		// checkKeys decoded every leaf on its own, so this is rare (a
		// mapping where a list belongs, say): name the key of its line.
		line, msg := splitLine(yamlMsg(err))
		k := key
		if line > 0 {
			k = join(key, Locate(node, line))
		} else {
			line = node.Line
		}
		if k == "" {
			k = "config"
		}
		return &Error{Key: k, Line: line, Msg: msg}
	}
	return nil
}

func yamlMsg(err error) string {
	if te, ok := err.(*yaml.TypeError); ok {
		return strings.Join(te.Errors, "; ")
	}
	return err.Error()
}

var lineRE = regexp.MustCompile(`^(?:yaml: )?line (\d+): `)

// splitLine takes the leading "line N: " off a yaml message.
func splitLine(msg string) (int, string) {
	m := lineRE.FindStringSubmatch(msg)
	if m == nil {
		return 0, msg
	}
	n, _ := strconv.Atoi(m[1])
	return n, msg[len(m[0]):]
}

func join(key, sub string) string {
	switch {
	case sub == "":
		return key
	case key == "" || strings.HasPrefix(sub, "["):
		return key + sub
	}
	return key + "." + sub
}

var (
	unmarshalerType = reflect.TypeFor[yaml.Unmarshaler]()
	nodeType        = reflect.TypeFor[yaml.Node]()
)

// checkKeys walks node against t's yaml tags.
func checkKeys(node *yaml.Node, t reflect.Type, key string) error {
	if node == nil || node.Kind == 0 {
		return nil
	}
	for t.Kind() == reflect.Pointer {
		if t.Implements(unmarshalerType) {
			break
		}
		t = t.Elem()
	}
	if t == nodeType {
		return nil // decoded later by its owner (a destination's settings)
	}
	if node.Kind == yaml.AliasNode {
		node = node.Alias
	}
	leaf := reflect.PointerTo(t).Implements(unmarshalerType) || t.Implements(unmarshalerType)
	switch t.Kind() {
	case reflect.Struct, reflect.Slice, reflect.Array, reflect.Map:
	default:
		leaf = true
	}
	if leaf {
		// Decode the value on its own, so a bad one is named by its key.
		if err := node.Decode(reflect.New(t).Interface()); err != nil {
			line, msg := splitLine(yamlMsg(err))
			if line == 0 {
				line = node.Line
			}
			return &Error{Key: orConfig(key), Line: line, Msg: msg}
		}
		return nil
	}
	switch t.Kind() {
	case reflect.Struct:
		if node.Kind != yaml.MappingNode {
			return nil // node.Decode reports the mismatch
		}
		fields := map[string]reflect.Type{}
		var names []string
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			if !f.IsExported() {
				continue
			}
			name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			if name == "-" {
				continue
			}
			if name == "" {
				name = strings.ToLower(f.Name)
			}
			fields[name] = f.Type
			names = append(names, name)
		}
		for i := 0; i+1 < len(node.Content); i += 2 {
			k, v := node.Content[i], node.Content[i+1]
			ft, ok := fields[k.Value]
			if !ok {
				return &Error{Key: join(key, k.Value), Line: k.Line, Msg: "unknown key (known: " + strings.Join(names, ", ") + ")"}
			}
			if err := checkKeys(v, ft, join(key, k.Value)); err != nil {
				return err
			}
		}
	case reflect.Slice, reflect.Array:
		if node.Kind != yaml.SequenceNode {
			return nil
		}
		for i, v := range node.Content {
			if err := checkKeys(v, t.Elem(), fmt.Sprintf("%s[%d]", key, i)); err != nil {
				return err
			}
		}
	case reflect.Map:
		if node.Kind != yaml.MappingNode {
			return nil
		}
		for i := 0; i+1 < len(node.Content); i += 2 {
			if err := checkKeys(node.Content[i+1], t.Elem(), join(key, node.Content[i].Value)); err != nil {
				return err
			}
		}
	}
	return nil
}

func orConfig(key string) string {
	if key == "" {
		return "config"
	}
	return key
}

// Locate returns the path, relative to node, of the key written on line
// ("destinations[0].flush.max_delay"), or "" if no key is. When several
// keys share the line (a flow mapping such as {max_delay: 5s, quiet: x}),
// it returns the innermost path they have in common.
func Locate(node *yaml.Node, line int) string {
	var best [][]string
	var walk func(n *yaml.Node, path []string)
	walk = func(n *yaml.Node, path []string) {
		if n == nil {
			return
		}
		switch n.Kind {
		case yaml.DocumentNode:
			for _, c := range n.Content {
				walk(c, path)
			}
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				k, v := n.Content[i], n.Content[i+1]
				p := append(append([]string(nil), path...), k.Value)
				if k.Line == line {
					switch {
					case len(best) == 0 || len(p) > len(best[0]):
						best = [][]string{p}
					case len(p) == len(best[0]):
						best = append(best, p)
					}
				}
				walk(v, p)
			}
		case yaml.SequenceNode:
			for i, c := range n.Content {
				walk(c, append(append([]string(nil), path...), "["+strconv.Itoa(i)+"]"))
			}
		}
	}
	walk(node, nil)
	if len(best) == 0 {
		return ""
	}
	common := best[0]
	for _, p := range best[1:] {
		n := 0
		for n < len(common) && n < len(p) && common[n] == p[n] {
			n++
		}
		common = common[:n]
	}
	var b strings.Builder
	for _, s := range common {
		if b.Len() > 0 && !strings.HasPrefix(s, "[") {
			b.WriteByte('.')
		}
		b.WriteString(s)
	}
	return b.String()
}
