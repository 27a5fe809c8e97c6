package endpoint

import "testing"

func TestNormalizeOneSpellingPerConnection(t *testing.T) {
	const want = "https://api.cloudzero.com/v2/connections/billing/anycost/c1/billing_drops"
	same := []string{
		want,
		"HTTPS://API.CloudZero.com/v2/connections/billing/anycost/c1/billing_drops",
		"https://api.cloudzero.com:443/v2/connections/billing/anycost/c1/billing_drops",
		"https://api.cloudzero.com./v2/connections/billing/anycost/c1/billing_drops/",
		"https://api.cloudzero.com//v2/connections/billing/./anycost/c1/billing_drops",
		"https://api.cloudzero.com/v2/connections/billing/anycost/%63%31/billing_drops",
		"https://user@api.cloudzero.com/v2/connections/billing/anycost/c1/billing_drops",
	}
	for _, s := range same {
		if got := Normalize(s); got != want {
			t.Errorf("Normalize(%q) = %q, want %q", s, got, want)
		}
		if LeaseKey(s) != LeaseKey(want) {
			t.Errorf("LeaseKey(%q) differs from LeaseKey(%q)", s, want)
		}
	}
	different := []string{
		"http://api.cloudzero.com/v2/connections/billing/anycost/c1/billing_drops",
		"https://api.cloudzero.com:8443/v2/connections/billing/anycost/c1/billing_drops",
		"https://api.cloudzero.com/v2/connections/billing/anycost/C1/billing_drops",
		"https://api.cloudzero.com/v2/connections/billing/anycost/c2/billing_drops",
	}
	for _, s := range different {
		if Normalize(s) == want || LeaseKey(s) == LeaseKey(want) {
			t.Errorf("%q is a different connection but normalises to the same", s)
		}
	}
	if got := Normalize("HTTP://127.0.0.1:80"); got != "http://127.0.0.1" {
		t.Errorf("got %q", got)
	}
	if got := Normalize("http://[::1]:80/x"); got != "http://[::1]/x" {
		t.Errorf("got %q", got)
	}
	if got := Normalize("not a url"); got != "not a url" {
		t.Errorf("got %q", got)
	}
	for _, c := range LeaseKey(want) {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			t.Fatalf("lease key %q has %q", LeaseKey(want), c)
		}
	}
}
