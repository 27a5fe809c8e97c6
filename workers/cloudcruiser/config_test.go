package cloudcruiser

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/usagefleet/usagefleet/internal/config"
	"github.com/usagefleet/usagefleet/workers/workerstest"
)

func build(t *testing.T, doc string) (*Destination, error) {
	t.Helper()
	d, err := workerstest.Build(t, Type, "cc", doc)
	if err != nil {
		return nil, err
	}
	return d.(*Destination), nil
}

func TestConfigDefaults(t *testing.T) {
	t.Setenv("CC_TEST_TOKEN", testToken)
	d, err := build(t, "token: {env: CC_TEST_TOKEN}\n")
	if err != nil {
		t.Fatal(err)
	}
	if d.endpoint != "https://na1.cloudcruiser.com/api/upload/v1/schema/usage/daily/" {
		t.Fatalf("endpoint %s", d.endpoint)
	}
	if d.offset != 0 || d.loc != time.UTC || d.query != "" || d.timeout != 30*time.Second || d.contentLength {
		t.Fatalf("defaults: offset %d loc %v query %q timeout %s", d.offset, d.loc, d.query, d.timeout)
	}
	if d.m.def.ProviderType != "Public" || d.m.tagPrefix != "tag:" || d.m.omitTags || d.m.suffix != "Z" {
		t.Fatalf("mapping defaults: %+v", d.m)
	}
	if d.token.Value() != testToken {
		t.Fatal("token not resolved")
	}
	for _, s := range []string{d.String(), fmt.Sprintf("%v %+v %#v %s", d, d, d, d)} {
		if strings.Contains(s, testToken) {
			t.Fatalf("the token prints: %s", s)
		}
	}
}

func TestConfigEverything(t *testing.T) {
	dir := t.TempDir()
	tok := filepath.Join(dir, "tok")
	if err := os.WriteFile(tok, []byte(testToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	d, err := build(t, `
token: {file: `+tok+`}
base_url: http://127.0.0.1:8080/cc/
zone_offset: "+05:30"
defaults:
  provider_type: Private
  provider: Example Cloud
  product: Compute
  account_id: acct-1
  account_name: Account One
  meter_id: m-1
  meter_name: Meter One
  units: Hours
tag_prefix: "Tag "
omit_tags: true
http_timeout: 2m
content_length: true
`)
	if err != nil {
		t.Fatal(err)
	}
	if d.endpoint != "http://127.0.0.1:8080/cc/api/upload/v1/schema/usage/daily/" || d.query != "zoneOffset=%2B05:30" ||
		d.offset != 5*3600+1800 || d.timeout != 2*time.Minute || !d.contentLength || d.m.suffix != "+05:30" {
		t.Fatalf("settings: %s %q %d %s %v %q", d.endpoint, d.query, d.offset, d.timeout, d.contentLength, d.m.suffix)
	}
	want := Defaults{AccountID: "acct-1", AccountName: "Account One", Provider: "Example Cloud", ProviderType: "Private",
		Product: "Compute", MeterID: "m-1", MeterName: "Meter One", Units: "Hours"}
	if d.m.def != want || d.m.tagPrefix != "Tag " || !d.m.omitTags {
		t.Fatalf("mapping: %+v", d.m)
	}
}

func TestConfigErrorsNameTheKey(t *testing.T) {
	t.Setenv("CC_TEST_TOKEN", testToken)
	const tok = "token: {env: CC_TEST_TOKEN}\n"
	for _, c := range []struct{ doc, key, msg string }{
		{"", "destinations[0].settings.token", "required"},
		{"token: " + testToken + "\n", "destinations[0].settings.token", "literal token"},
		{"token: {env: CC_NOT_SET_ANYWHERE}\n", "destinations[0].settings.token", "CC_NOT_SET_ANYWHERE is not set"},
		{tok + "zone: -7\n", "destinations[0].settings.zone", "unknown key"},
		{tok + "base_url: ftp://x\n", ".base_url", "http(s)"},
		{tok + "base_url: https://u:p@x\n", ".base_url", "credentials"},
		{tok + "base_url: https://x/?a=b\n", ".base_url", "no query"},
		{tok + "zone_offset: \"7\"\n", ".zone_offset", "sign required"},
		{tok + "zone_offset: \"+19\"\n", ".zone_offset", "at most 18 hours"},
		{tok + "zone_offset: \"-07:60\"\n", ".zone_offset", "want a UTC offset"},
		{tok + "zone_offset: \"-07:1\"\n", ".zone_offset", "want a UTC offset"},
		{tok + "zone_offset: \"-07:00:00:00\"\n", ".zone_offset", "want a UTC offset"},
		{tok + "defaults: {provider_type: public}\n", ".defaults.provider_type", "Public or Private"},
		{tok + "defaults: {provider: \"  \"}\n", ".defaults.provider", "blank"},
		{tok + "defaults: {colour: red}\n", "destinations[0].settings.defaults.colour", "unknown key"},
		{tok + "tag_prefix: x_tag_\n", ".tag_prefix", "extension columns"},
		{tok + "http_timeout: soon\n", "destinations[0].settings", "not a duration"},
	} {
		_, err := build(t, c.doc)
		var ce *config.Error
		if !errors.As(err, &ce) || !strings.Contains(ce.Key, c.key) || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("%q: error %v, want key %s and %q", c.doc, err, c.key, c.msg)
			continue
		}
		if strings.Contains(err.Error(), testToken) {
			t.Errorf("%q: the error shows the token: %v", c.doc, err)
		}
	}
}

// YAML reads an unquoted -7 as a number; the offset must still parse.
func TestConfigZoneOffsetUnquoted(t *testing.T) {
	t.Setenv("CC_TEST_TOKEN", testToken)
	for doc, want := range map[string]int{"-7": -7 * 3600, "+5": 5 * 3600, "-07:00": -7 * 3600, "0": 0, "Z": 0, "UTC": 0} {
		d, err := build(t, "token: {env: CC_TEST_TOKEN}\nzone_offset: "+doc+"\n")
		if err != nil {
			t.Errorf("%s: %v", doc, err)
			continue
		}
		if d.offset != want {
			t.Errorf("%s: offset %d, want %d", doc, d.offset, want)
		}
	}
}

func TestParseZoneOffset(t *testing.T) {
	for in, want := range map[string]int{
		"": 0, "Z": 0, "UTC": 0, "0": 0, "+0": 0, "-0": 0, "+00:00": 0,
		"-7": -25200, "+3": 10800, "-07": -25200, "-07:00": -25200, "+05:30": 19800, "-07:01:30": -25290,
		"+18": 64800, "-18:00": -64800, "+12:45": 45900, "-9:30": -34200,
	} {
		got, err := ParseZoneOffset(in)
		if err != nil || got != want {
			t.Errorf("ParseZoneOffset(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"7", "+", "-", "+123", "+18:01", "+19", "-07:60", "-07:00:60", "+07:0", "+07:00:0", "+ 7", "−7", "+07:00:00:00", "+7h", "utc"} {
		if _, err := ParseZoneOffset(in); err == nil {
			t.Errorf("ParseZoneOffset(%q) accepted", in)
		}
	}
	for secs, want := range map[int]string{0: "+00:00", -25200: "-07:00", 19800: "+05:30", -25290: "-07:01:30", 45: "+00:00:45"} {
		if got := FormatZoneOffset(secs); got != want {
			t.Errorf("FormatZoneOffset(%d) = %q, want %q", secs, got, want)
		}
	}
}

// stall_timeout is the stall timeout; http_timeout in settings is its
// former name, still read, with a deprecation notice naming the key.
func TestConfigStallTimeoutAndItsFormerName(t *testing.T) {
	t.Setenv("CC_TEST_TOKEN", testToken)
	const tok = "token: {env: CC_TEST_TOKEN}\n"
	d, err := build(t, tok+"stall_timeout: 45s\n")
	if err != nil || d.timeout != 45*time.Second || len(d.Deprecated()) != 0 {
		t.Fatalf("stall_timeout: %v, timeout %s, notices %q", err, d.timeout, d.Deprecated())
	}
	d, err = build(t, tok+"http_timeout: 2m\n")
	if err != nil || d.timeout != 2*time.Minute {
		t.Fatalf("http_timeout: %v, timeout %s", err, d.timeout)
	}
	if n := d.Deprecated(); len(n) != 1 || !strings.Contains(n[0], "destinations[0].settings.http_timeout is deprecated") ||
		!strings.Contains(n[0], "destinations[0].settings.stall_timeout") {
		t.Fatalf("notices %q", n)
	}
	_, err = build(t, tok+"http_timeout: 2m\nstall_timeout: 1m\n")
	var ce *config.Error
	if !errors.As(err, &ce) || ce.Key != "destinations[0].settings.http_timeout" {
		t.Fatalf("both names: %v", err)
	}
}
