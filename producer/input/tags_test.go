package input

import (
	"reflect"
	"testing"

	"github.com/usagefleet/usagefleet/messages"
)

var keyValueCases = []string{
	`{"user:team":"platform","user:env":"prod","tier":1,"managed":true}`,
	` { "a" : "x, y" , "b":null,"c":false,"d":-0.5e+3 } `,
	`{}`,
	`{"a":"é ✓"}`,
	`{"a":"\"quoted\""}`,
	`{"a":"x","a":"y"}`,
	`{"a":{"b":1}}`,
	`{"a":[1]}`,
	`{"a":01}`,
	`{"a":1.}`,
	`{"a":tru}`,
	`{"a":"x"} trailing`,
	`{"a":"x",}`,
	`{"a" "x"}`,
	`[1,2]`,
	`{"a":"x"`,
	"{\"a\":\"tab\there\"}",
	"{\"a\":\"\xff\"}",
}

// Where the fast path reads a Tags cell it reads exactly what
// messages.ParseKeyValue reads, and it leaves every object ParseKeyValue
// refuses to ParseKeyValue (so the error is its own).
func TestFastKeyValueAgreesWithParseKeyValue(t *testing.T) {
	for _, s := range keyValueCases {
		checkKeyValue(t, s)
	}
}

func checkKeyValue(t *testing.T, s string) {
	m, types, ok := fastKeyValue(s, nil, nil)
	want, wantTypes, err := messages.ParseKeyValue([]byte(s))
	if !ok {
		return
	}
	if err != nil {
		t.Fatalf("%q: fast path read %v, ParseKeyValue refuses it: %v", s, m, err)
	}
	if !reflect.DeepEqual(m, want) || !reflect.DeepEqual(types, wantTypes) {
		t.Fatalf("%q: fast %v %v, ParseKeyValue %v %v", s, m, types, want, wantTypes)
	}
}

func FuzzFastKeyValue(f *testing.F) {
	for _, s := range keyValueCases {
		f.Add(s)
	}
	f.Fuzz(checkKeyValue)
}
