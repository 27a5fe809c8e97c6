package gateway

import (
	"mime"
	"net/http/httptest"
	"testing"
)

// mediaType's shortcut for the usual names says what mime.ParseMediaType
// says.
func TestMediaType(t *testing.T) {
	for _, ct := range []string{
		"application/cloudevents+json", "application/cloudevents-batch+json", "application/x-ndjson", "application/json", "text/csv",
		"application/json; charset=utf-8", "Application/JSON", " application/json", "text/csv;header=present", "", "not a type", "application/",
	} {
		r := httptest.NewRequest("POST", "/v1/events", nil)
		r.Header.Set("Content-Type", ct)
		want, _, err := mime.ParseMediaType(ct)
		if err != nil {
			want = ""
		}
		if got := mediaType(r); got != want {
			t.Errorf("%q: %q, want %q", ct, got, want)
		}
	}
}
