package fleet

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/usagefleet/usagefleet/workers"
)

// usage-worker run --validate-only: every CloudZero destination runs as
// <name>-validate against validate_billing_drop, on a consumer of its own
// (never the real destination's: reading and acking that one would keep
// the data from the real upload) that the server deletes after the run;
// no other destination runs, so a dry run sends nothing real anywhere.
func TestLoadValidateOnly(t *testing.T) {
	t.Setenv("UF_TEST_HOOK_TOKEN", "tok-123")
	t.Setenv("UF_TEST_CZ_KEY", "cz-key")
	doc := goodConfig + `  - name: cz
    type: cloudzero
    feeds: [cloud]
    settings:
      base_url: http://127.0.0.1:9
      connection_id: conn-1
      api_key: {env: UF_TEST_CZ_KEY}
`
	path := filepath.Join(t.TempDir(), "worker.yaml")
	if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	full, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(full.built) != 2 || full.built[1].opts.ConsumerInactive != 0 {
		t.Fatalf("a normal load: %+v", full.built)
	}
	dry, err := LoadValidateOnly(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(dry.built) != 1 {
		t.Fatalf("validate-only runs %d destinations; want the CloudZero one alone", len(dry.built))
	}
	b := dry.built[0]
	if b.dest.Name() != "cz-validate" || workers.ConsumerName(b.dest.Name()) == workers.ConsumerName("cz") {
		t.Fatalf("validate-only destination %q: want cz-validate on a consumer of its own", b.dest.Name())
	}
	if b.opts.ConsumerInactive != time.Hour {
		t.Fatalf("consumer inactive threshold %v; want an hour", b.opts.ConsumerInactive)
	}
	tg, ok := b.dest.(workers.Targeter)
	if !ok {
		t.Fatal("the CloudZero destination names no target")
	}
	if id, _ := tg.Target(); !strings.Contains(id, "validate_billing_drop") {
		t.Fatalf("target %q: want the validation endpoint", id)
	}

	hookOnly := filepath.Join(t.TempDir(), "hook.yaml")
	if err := os.WriteFile(hookOnly, []byte(goodConfig), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadValidateOnly(hookOnly); err == nil || !strings.Contains(err.Error(), "no destination of type cloudzero") {
		t.Fatalf("validate-only without CloudZero: err = %v", err)
	}
}
