package config

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

type testSettings struct {
	URL     string            `yaml:"url"`
	Token   Secret            `yaml:"token"`
	Timeout Duration          `yaml:"timeout"`
	Retries int               `yaml:"retries"`
	Headers map[string]string `yaml:"headers"`
	Inner   struct {
		Quiet Duration `yaml:"quiet"`
		Max   Duration `yaml:"max"`
	} `yaml:"inner"`
	List []struct {
		Name string `yaml:"name"`
	} `yaml:"list"`
}

func node(t *testing.T, src string) *yaml.Node {
	t.Helper()
	var n yaml.Node
	if err := yaml.Unmarshal([]byte(src), &n); err != nil {
		t.Fatal(err)
	}
	return &n
}

// A blank line and a flow mapping before the bad key: the line must still
// be the file's, and the key its full path.
const settingsDoc = `url: http://x

token: {env: UF_CONFIG_TEST_TOKEN}

inner: {quiet: 1s}
list:
  - name: a
  - name: b
`

func TestDecodeStrictNamesKeyAndLine(t *testing.T) {
	t.Setenv("UF_CONFIG_TEST_TOKEN", "tok-secret-1")
	tests := []struct {
		name, add, want string
	}{
		{"unknown key", "retires: 3\n", "config: settings.retires (line 9): unknown key (known: url, token, timeout, retries, headers, inner, list)"},
		{"bad duration", "timeout: soon\n", `config: settings.timeout (line 9): "soon" is not a duration (like 30s, 5m)`},
		{"bad number", "retries: many\n", "config: settings.retries (line 9): cannot unmarshal !!str `many` into int"},
		{"bad map value", "headers: {a: [1]}\n", "config: settings.headers.a (line 9): cannot unmarshal !!seq into string"},
		{"unknown key in a list item", "  - nmae: c\n", "config: settings.list[2].nmae (line 9): unknown key (known: name)"},
		{"inline secret", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := settingsDoc + tt.add
			if tt.name == "inline secret" {
				src = strings.Replace(settingsDoc, "{env: UF_CONFIG_TEST_TOKEN}", "tok-secret-1", 1)
				tt.want = "config: settings.token (line 3): write a secret as {env: VARIABLE} or {file: PATH}, never inline (the value was not read)"
			}
			var s testSettings
			err := DecodeStrict(node(t, src), &s, "settings")
			if err == nil || !strings.HasPrefix(err.Error(), tt.want) {
				t.Fatalf("err = %v\nwant    %s", err, tt.want)
			}
			if strings.Contains(err.Error(), "tok-secret-1") {
				t.Fatalf("the secret is in the error: %v", err)
			}
		})
	}
	var s testSettings
	if err := DecodeStrict(node(t, settingsDoc), &s, "settings"); err != nil {
		t.Fatal(err)
	}
	if err := s.Token.Resolve("settings.token"); err != nil || s.Token.Value() != "tok-secret-1" || s.Inner.Quiet.D(0) != time.Second || len(s.List) != 2 {
		t.Fatalf("decoded %+v, %v", s, err)
	}
}

func TestDecodeNamesKeysOfASubNode(t *testing.T) {
	// A destination's settings node sits deep in a file: errors carry the
	// settings' own key and lines of the whole file.
	doc := node(t, "destinations:\n  - name: hook\n\n    settings:\n      url: http://x\n\n      tiemout: 1s\n")
	settings := doc.Content[0].Content[1].Content[0].Content[3]
	var s testSettings
	err := Decode(settings, &s, "destinations[0](hook).settings")
	want := "config: destinations[0](hook).settings.tiemout (line 7): unknown key"
	if err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Fatalf("err = %v, want %s...", err, want)
	}
}

func TestLocate(t *testing.T) {
	n := node(t, "a:\n  b: 1\n  c: {d: 2, e: 3}\n  f: {g: 4}\nlist:\n  - x: 1\n    y: 2\n")
	for line, want := range map[int]string{1: "a", 2: "a.b", 3: "a.c", 4: "a.f.g", 6: "list[0].x", 7: "list[0].y", 99: ""} {
		if got := Locate(n, line); got != want {
			t.Errorf("Locate(line %d) = %q, want %q", line, got, want)
		}
	}
}

func TestSecretResolve(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "tok")
	if err := os.WriteFile(file, []byte("  from-file-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty")
	os.WriteFile(empty, []byte("\n"), 0o600)
	t.Setenv("UF_CONFIG_TEST_SET", " from-env-secret ")
	t.Setenv("UF_CONFIG_TEST_BLANK", "  ")
	tests := []struct {
		s         Secret
		want, err string
	}{
		{Secret{Env: "UF_CONFIG_TEST_SET"}, "from-env-secret", ""},
		{Secret{File: file}, "from-file-secret", ""},
		{Secret{Env: "UF_CONFIG_TEST_UNSET_X"}, "", "config: k.token: environment variable UF_CONFIG_TEST_UNSET_X is not set"},
		{Secret{Env: "UF_CONFIG_TEST_BLANK"}, "", "config: k.token: environment variable UF_CONFIG_TEST_BLANK is not set"},
		{Secret{File: empty}, "", "config: k.token: secret file " + empty + " is empty"},
		{Secret{File: filepath.Join(dir, "missing")}, "", "config: k.token: reading secret file: "},
		{Secret{Env: "A", File: file}, "", "config: k.token: set env or file, not both"},
		{Secret{}, "", "config: k.token: required: set env (a variable name) or file (a path)"},
	}
	for _, tt := range tests {
		s := tt.s
		err := s.Resolve("k.token")
		if tt.err == "" {
			if err != nil || s.Value() != tt.want {
				t.Errorf("%+v: value %q, err %v; want %q", tt.s, s.Value(), err, tt.want)
			}
			continue
		}
		if err == nil || !strings.HasPrefix(err.Error(), tt.err) {
			t.Errorf("%+v: err %v, want %q", tt.s, err, tt.err)
		}
	}
}

func TestSecretNeverPrints(t *testing.T) {
	s := NewSecret("hunter2-secret")
	type holder struct {
		Token Secret `yaml:"token"`
	}
	h := holder{Token: s}
	out, err := yaml.Marshal(h)
	if err != nil {
		t.Fatal(err)
	}
	for _, text := range []string{s.String(), fmt.Sprint(s), fmt.Sprintf("%v %+v %#v %s", s, h, h, s), string(out)} {
		if strings.Contains(text, "hunter2") {
			t.Errorf("the secret prints: %s", text)
		}
	}
	if s.Value() != "hunter2-secret" {
		t.Fatal("Value must return the secret")
	}
}

func TestDuration(t *testing.T) {
	var v struct {
		D Duration `yaml:"d"`
	}
	if err := yaml.Unmarshal([]byte("d: 90s"), &v); err != nil || v.D.D(0) != 90*time.Second {
		t.Fatalf("%v %v", v.D, err)
	}
	for src, want := range map[string]string{"d: -1s": `"-1s" is negative`, "d: 10": `"10" is not a duration`, "d: [1]": "want a duration like 30s"} {
		err := yaml.Unmarshal([]byte(src), &v)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: err %v, want %q", src, err, want)
		}
	}
	if Duration(0).D(time.Minute) != time.Minute {
		t.Error("an unset Duration takes the default")
	}
}
