package cloudcruiser

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/usagefleet/usagefleet/internal/config"
	"github.com/usagefleet/usagefleet/messages"
)

// Extra typed field types [DOC: the seed, "extraTypedFields includes the
// value type for each field: FLOAT, INT or STRING"]. How a collection
// declares them is not documented [INFER]; the file carries each as a flat
// key whose JSON value has the type: FLOAT a JSON number, INT a JSON
// integer, STRING a JSON string, as the documented FLOAT and INT fields
// (CPU Utilization, Storage Read Bytes) are written.
const (
	TypeFloat  = "FLOAT"
	TypeInt    = "INT"
	TypeString = "STRING"
)

// The extra FLOAT fields the costs beside BilledCost go to. Cloud
// Cruiser documents one cost field, Cost (BilledCost); the others have no
// documented field, so they are extra typed fields of these names [INFER].
const (
	FieldEffectiveCost = "Effective Cost"
	FieldListCost      = "List Cost"
)

// ExtraField is one entry of `extra_fields:`: which x_ column or tag is
// sent, under which field name, as which type.
type ExtraField struct {
	// From is "x_<Name>" (an extension column) or "tag:<key>" (a tag;
	// tag_prefix does not apply to it).
	From string `yaml:"from"`
	// Name is the Cloud Cruiser field name; default From for an x_
	// column, tag_prefix + key for a tag.
	Name string `yaml:"name"`
	// Type is FLOAT, INT or STRING; default: INT for an int column, FLOAT
	// for a decimal one, STRING otherwise.
	Type string `yaml:"type"`
}

// extraField is a checked ExtraField.
type extraField struct {
	ext  string // the Ext key (without x_), or ""
	tag  string // the tag key, when ext is ""
	name string // JSON-encoded field name, with its quotes
	typ  string // "" = by the column's kind
}

// compileExtra checks `extra_fields:`. key is its config path.
func compileExtra(list []ExtraField, tagPrefix, key string) ([]extraField, error) {
	seen := map[string]bool{}
	out := make([]extraField, 0, len(list))
	for i, e := range list {
		k := fmt.Sprintf("%s[%d]", key, i)
		var f extraField
		name := e.Name
		switch {
		case strings.HasPrefix(e.From, "x_") && len(e.From) > 2:
			f.ext = e.From[2:]
			if name == "" {
				name = e.From
			}
		case strings.HasPrefix(e.From, "tag:") && len(e.From) > 4:
			f.tag = e.From[4:]
			if name == "" {
				name = tagPrefix + f.tag
			}
		default:
			return nil, config.Errorf(k+".from", "%q: want x_<Name> (an extension column) or tag:<key>", e.From)
		}
		switch e.Type {
		case "", TypeFloat, TypeInt, TypeString:
			f.typ = e.Type
		default:
			return nil, config.Errorf(k+".type", "%q: want FLOAT, INT or STRING", e.Type)
		}
		if strings.TrimSpace(name) == "" {
			return nil, config.Errorf(k+".name", "blank")
		}
		lower := strings.ToLower(name)
		if documented[lower] || lower == strings.ToLower(FieldEffectiveCost) || lower == strings.ToLower(FieldListCost) {
			return nil, config.Errorf(k+".name", "%q is a documented field (or a cost field this destination sends)", name)
		}
		if seen[lower] {
			return nil, config.Errorf(k+".name", "%q is sent twice", name)
		}
		seen[lower] = true
		f.name = string(messages.AppendJSONString(nil, name))
		out = append(out, f)
	}
	return out, nil
}

// appendTyped appends `,"name":value` for one configured extra field of
// r, converted to its type; a value that is absent or cannot be that type
// (a string that is no number for FLOAT, a fraction for INT) leaves the
// field out: a label never costs a record.
func appendTyped(dst []byte, f *extraField, r *messages.UsageRecord) []byte {
	var v messages.ExtValue
	if f.ext != "" {
		e, ok := r.Ext[f.ext]
		if !ok {
			return dst
		}
		v = e
	} else {
		s, ok := r.Tags[f.tag]
		if !ok {
			return dst
		}
		v = messages.ExtStr(s)
	}
	typ := f.typ
	if typ == "" {
		switch v.Kind {
		case messages.ExtInt:
			typ = TypeInt
		case messages.ExtDecimal:
			typ = TypeFloat
		default:
			typ = TypeString
		}
	}
	var val []byte
	switch typ {
	case TypeString:
		val = messages.AppendJSONString(nil, v.String())
	case TypeInt:
		switch v.Kind {
		case messages.ExtInt:
			val = strconv.AppendInt(nil, v.Int, 10)
		default:
			n, err := strconv.ParseInt(strings.TrimSpace(v.String()), 10, 64)
			if err != nil {
				return dst
			}
			val = strconv.AppendInt(nil, n, 10)
		}
	case TypeFloat:
		switch v.Kind {
		case messages.ExtInt:
			val = strconv.AppendInt(nil, v.Int, 10)
		case messages.ExtDecimal:
			if !decimalFits(v.Dec) {
				return dst
			}
			val = []byte(v.Dec.String())
		default:
			d, err := messages.ParseDecimal(strings.TrimSpace(v.Str))
			if err != nil || !decimalFits(d) {
				return dst
			}
			val = []byte(d.String())
		}
	}
	dst = append(dst, ',')
	dst = append(dst, f.name...)
	dst = append(dst, ':')
	return append(dst, val...)
}
