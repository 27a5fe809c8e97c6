package messages

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"unicode/utf8"
)

// ParseKeyValue reads a FOCUS Key-Value Format value (Tags, SkuPriceDetails,
// AllocatedTags): a JSON object whose values are strings, numbers,
// booleans or null, never objects or arrays, with unique keys
// (specification/attributes/key_value_format.md, FOCUS 1.0 to 1.2). It
// returns the values as text (see UsageRecord.Tags) and the types of the
// ones that are not strings (nil when all are). Invalid UTF-8 is refused,
// not replaced.
func ParseKeyValue(b []byte) (map[string]string, map[string]TagType, error) {
	if !utf8.Valid(b) {
		return nil, nil, errors.New("invalid UTF-8")
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	tok, err := dec.Token()
	if err != nil {
		return nil, nil, fmt.Errorf("want a JSON object, got %s", clip(b))
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, nil, fmt.Errorf("want a JSON object, got %s", clip(b))
	}
	vals := map[string]string{}
	var types map[string]TagType
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, nil, fmt.Errorf("invalid JSON object %s", clip(b))
		}
		k := tok.(string)
		if _, dup := vals[k]; dup {
			return nil, nil, fmt.Errorf("key %s appears twice", quoteClip(k))
		}
		tok, err = dec.Token()
		if err != nil {
			return nil, nil, fmt.Errorf("invalid JSON object %s", clip(b))
		}
		var typ TagType
		switch v := tok.(type) {
		case string:
			vals[k] = v
		case json.Number:
			vals[k], typ = string(v), TagNumber
		case bool:
			vals[k], typ = "false", TagBool
			if v {
				vals[k] = "true"
			}
		case nil:
			vals[k], typ = "", TagNull
		default: // a delimiter: an object or an array
			return nil, nil, fmt.Errorf("key %s: a value is a string, number, boolean or null, not an object or array", quoteClip(k))
		}
		if typ != 0 {
			if types == nil {
				types = map[string]TagType{}
			}
			types[k] = typ
		}
	}
	if _, err := dec.Token(); err != nil {
		return nil, nil, fmt.Errorf("invalid JSON object %s", clip(b))
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, nil, fmt.Errorf("more than one JSON value in %s", clip(b))
	}
	return vals, types, nil
}

// isJSONNumber is the JSON number grammar:
// -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func isJSONNumber(s string) bool {
	i := 0
	if i < len(s) && s[i] == '-' {
		i++
	}
	digits := func() int {
		n := 0
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
			n++
		}
		return n
	}
	switch {
	case i < len(s) && s[i] == '0':
		i++
	case digits() == 0:
		return false
	}
	if i < len(s) && s[i] == '.' {
		i++
		if digits() == 0 {
			return false
		}
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		if digits() == 0 {
			return false
		}
	}
	return i == len(s)
}

// appendTagValue appends a tag's JSON value.
func appendTagValue(dst []byte, v string, t TagType) []byte {
	switch t {
	case TagNumber, TagBool:
		return append(dst, v...)
	case TagNull:
		return append(dst, "null"...)
	}
	return AppendJSONString(dst, v)
}
