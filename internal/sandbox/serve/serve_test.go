package serve

import (
	"net/http"
	"strings"
	"testing"
)

func TestStartServesEveryEmulatorOnLoopback(t *testing.T) {
	r, err := Start(Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if len(r.URLs) != len(Names()) {
		t.Fatalf("serving %v, want %v", r.URLs, Names())
	}
	for name, url := range r.URLs {
		if !strings.HasPrefix(url, "http://127.0.0.1:") {
			t.Errorf("%s at %s: not loopback", name, url)
		}
		resp, err := http.Get(url + "/_sandbox/stats")
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("%s admin stats: %d", name, resp.StatusCode)
		}
	}
}

func TestStartRefusesNonLoopbackHosts(t *testing.T) {
	for _, h := range []string{"0.0.0.0", "10.0.0.1", "example.com"} {
		if _, err := Start(Options{Host: h}); err == nil || !strings.Contains(err.Error(), "not a loopback address") {
			t.Errorf("host %q: err = %v", h, err)
		}
	}
	if _, err := Start(Options{Only: []string{"nope"}}); err == nil {
		t.Error("an unknown emulator was accepted")
	}
}
