package cloudzero

import (
	"strings"
	"testing"

	"github.com/usagefleet/usagefleet/internal/config"
	"github.com/usagefleet/usagefleet/workers"
)

// One CloudZero connection is one lease across the fleet, whatever the
// destination is called and however its URL is spelt: two workers with
// different configs must not send to it at once (the API forbids
// concurrent requests to one stream). Another connection, or a
// validate_only destination, has a lease of its own.
func TestLeaseKeyIsTheConnection(t *testing.T) {
	key := config.NewSecret("k")
	mk := func(name, base, conn string, validate bool) string {
		t.Helper()
		d, err := New(name, Settings{BaseURL: base, ConnectionID: conn, APIKey: key, ValidateOnly: validate})
		if err != nil {
			t.Fatal(err)
		}
		lk := d.LeaseKey(workers.Unit{Key: "2024-08-16T13"})
		if !strings.HasPrefix(lk, workers.FleetLeasePrefix) {
			t.Fatalf("%s: lease key %q is scoped by destination name", name, lk)
		}
		return lk
	}
	a := mk("cz", "", "conn-1", false)
	for _, c := range []struct{ name, base string }{
		{"cloudzero", DefaultBaseURL},
		{"other", strings.Replace(DefaultBaseURL, "https://", "HTTPS://", 1)},
		{"third", DefaultBaseURL + ":443/"},
		{"proxied", "http://127.0.0.1:8080"}, // another way to the same stream
	} {
		if got := mk(c.name, c.base, "conn-1", false); got != a {
			t.Errorf("%s (%s): lease %q, want %q (the same connection)", c.name, c.base, got, a)
		}
	}
	if b := mk("cz", "", "conn-2", false); b == a {
		t.Error("another connection shares the lease")
	}
	if v := mk("cz-check", "", "conn-1", true); v == a {
		t.Error("a validate_only destination shares the real connection's lease")
	}
}
