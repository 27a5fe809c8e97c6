package cloudzero

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/usagefleet/usagefleet/workers"
)

// An API that echoes the key as its 400's error type: the type is carried
// in workers.Error.Err, whose text the error prints, so an echoed key is
// not kept as a type (the message is redacted by apiMessage; the
// usage-worker echo test checks logs, DEAD and ACKS end to end). A real
// type is kept, for isolate.
func TestErrorTypeIsNotAnEchoedKey(t *testing.T) {
	d, err := New("cz", Settings{BaseURL: "http://127.0.0.1:9", ConnectionID: testConn, APIKey: newSecret()})
	if err != nil {
		t.Fatal(err)
	}
	answer := func(typ string) []byte {
		b, _ := json.Marshal(map[string]any{"error": map[string]any{"type": typ, "message": "refused"}})
		return b
	}
	for _, echoed := range []string{testKey, "key-" + testKey, testKey + ".v2"} {
		raw := answer(echoed)
		if errorType(raw) == "" {
			t.Fatalf("%q is not read as a type at all: the check proves nothing", echoed)
		}
		typ := d.errorType(raw)
		we := &workers.Error{Class: workers.ClassReject, Status: 400, Message: d.apiMessage(raw)}
		if typ != "" {
			we.Err = apiErrorType(typ)
		}
		if text := we.Error(); strings.Contains(text, testKey) {
			t.Errorf("the error shows the key: %s", text)
		}
	}
	typ := d.errorType(answer("invalid_request"))
	we := &workers.Error{Class: workers.ClassReject, Status: 400, Err: apiErrorType(typ)}
	if !wholeRequest(we) || !errors.Is(we, workers.ErrRejected) {
		t.Errorf("the type invalid_request is lost: %q", typ)
	}
}
