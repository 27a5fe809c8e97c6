package gateway

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestNodeCloudEventsSDKExample runs examples/node (the official
// CloudEvents JavaScript SDK) against a gateway on loopback, when node and
// npm are installed and the package installs.
func TestNodeCloudEventsSDKExample(t *testing.T) {
	node, err1 := exec.LookPath("node")
	if err1 != nil {
		t.Skip("node is not installed: the CloudEvents JavaScript SDK example is not checked")
	}
	// Its syntax, whatever else is missing.
	if out, err := exec.Command(node, "--check", filepath.Join("examples", "node", "send.js")).CombinedOutput(); err != nil {
		t.Fatalf("node --check examples/node/send.js: %v\n%s", err, out)
	}
	if testing.Short() {
		t.Skip("-short: running the Node example needs npm install")
	}
	npm, err2 := exec.LookPath("npm")
	if err2 != nil {
		t.Skip("npm is not installed: the CloudEvents JavaScript SDK example is not run")
	}
	dir := t.TempDir()
	for _, f := range []string{"package.json", "send.js"} {
		b, err := os.ReadFile(filepath.Join("examples", "node", f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	install := exec.CommandContext(ctx, npm, "install", "--no-audit", "--no-fund", "--loglevel=error")
	install.Dir = dir
	if out, err := install.CombinedOutput(); err != nil {
		t.Skipf("npm install of the example failed (no registry?), not run: %v\n%s", err, out)
	}
	e := start(t, nil)
	runNode := func(runID string) string {
		cmd := exec.CommandContext(ctx, node, "send.js")
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GATEWAY_URL="+e.url, "GATEWAY_KEY="+testKey, "RUN_ID="+runID)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("node send.js: %v\n%s", err, out)
		}
		return string(out)
	}
	out := runNode("r1")
	if n := recordCount(e.stored()); n != 5 {
		t.Fatalf("the example stored %d records, want 5:\n%s", n, out)
	}
	if c := totalCost(e.stored()); !decEq(c, "1.25") {
		t.Errorf("the example's records cost %s, want 1.25", c)
	}
	// Run again with the same ids: every event is a duplicate, nothing new.
	out = runNode("r1")
	if !strings.Contains(out, `"duplicate"`) || strings.Contains(out, `"stored"`) {
		t.Errorf("the repeat was not answered duplicate:\n%s", out)
	}
	if n := recordCount(e.stored()); n != 5 {
		t.Fatalf("after the repeat %d records, want 5", n)
	}
}
