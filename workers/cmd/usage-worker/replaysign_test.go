package main

import (
	"context"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/usagefleet/usagefleet/internal/sandbox/fault"
	sbhook "github.com/usagefleet/usagefleet/internal/sandbox/webhook"
	"github.com/usagefleet/usagefleet/internal/usagegen"
	"github.com/usagefleet/usagefleet/messages"
	"github.com/usagefleet/usagefleet/producer"
)

// dead replay where the worker config binds sources: without a replay key
// it refuses up front (a dry run too), naming what to do; with
// --signing-key-file the refused records arrive once, and a second replay
// changes nothing. The seed never appears in what it prints.
func TestDeadReplaySigned(t *testing.T) {
	teamA, _ := nkeys.CreateUser()
	op, _ := nkeys.CreateUser()
	pubA, _ := teamA.PublicKey()
	pubOp, _ := op.PublicKey()
	seed, _ := op.Seed()
	seedFile := filepath.Join(t.TempDir(), "replay.seed")
	if err := os.WriteFile(seedFile, append(seed, '\n'), 0o600); err != nil {
		t.Fatal(err)
	}
	hook := sbhook.New(sbhook.Config{})
	hs := httptest.NewServer(hook.Handler())
	defer hs.Close()
	natsPort := freePort(t)
	path := writeConfig(t, fmt.Sprintf(`
nats: {data_dir: %q, port: %d}
streams: {lease_ttl: 10s}
sources: {team-a: [%s], uf-replay: [%s]}
worker: {drain_timeout: 2s, metrics: {listen: "127.0.0.1:0"}}
destinations:
  - name: hook
    type: webhook
    feeds: [hooks]
    retry: {initial: 20ms, max: 200ms}
    settings: {url: %q}
`, filepath.Join(t.TempDir(), "nats"), natsPort, pubA, pubOp, hs.URL+"/ingest"))
	faults := hook.Faults()
	rules, err := fault.ParseSpec("400x1")
	if err != nil {
		t.Fatal(err)
	}
	faults.Set(rules...)

	ctx, stop := context.WithCancel(context.Background())
	var logs syncBuffer
	exit := make(chan int, 1)
	go func() { exit <- cmdRun(ctx, []string{"--config", path}, &logs) }()
	defer func() {
		stop()
		<-exit
	}()
	var nc *nats.Conn
	poll(t, "the worker's NATS", func() bool {
		nc, err = nats.Connect(fmt.Sprintf("nats://127.0.0.1:%d", natsPort))
		return err == nil
	})
	defer nc.Close()
	prod, err := producer.New(nc, producer.Options{SigningKey: teamA})
	if err != nil {
		t.Fatal(err)
	}
	recs := usagegen.Generate(6, usagegen.Options{Seed: 8, Start: time.Date(2026, 5, 4, 8, 0, 0, 0, time.UTC), Hours: 1})
	pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	poll(t, "the streams", func() bool {
		_, err := prod.Publish(pctx, &messages.Batch{ID: "b1", Feed: "hooks", Source: "team-a", Records: recs})
		return err == nil
	})
	poll(t, "the dead letter", func() bool {
		code, out, _ := runCmd("dead", "list", "--config", path, "--dest", "hook")
		return code == 0 && strings.Contains(out, "1 dead letter(s)")
	})

	for _, dry := range []bool{true, false} {
		args := []string{"dead", "replay", "--config", path, "--dest", "hook"}
		if dry {
			args = append(args, "--dry-run")
		}
		code, out, errs := runCmd(args...)
		if code != exitAttention || !strings.Contains(errs, "sources are bound: replays must be signed: add uf-replay keys and pass --signing-key-file") || out != "" {
			t.Fatalf("replay (dry run %v) without a key: exit %d, stdout %q, stderr %q", dry, code, out, errs)
		}
	}
	code, out, errs := runCmd("dead", "replay", "--config", path, "--dest", "hook", "--signing-key-file", seedFile)
	if code != exitOK || !strings.Contains(out, "replayed redeliver") || strings.Contains(out+errs, string(seed)) {
		t.Fatalf("replay: exit %d, stdout %q, stderr %q", code, out, errs)
	}
	poll(t, "the records at the receiver", func() bool { return hook.Stats().Records == 6 })
	t.Setenv(envReplayKeyFile, seedFile)
	code, out, errs = runCmd("dead", "replay", "--config", path, "--dest", "hook")
	if code != exitOK || !strings.Contains(out, "already replayed") {
		t.Fatalf("second replay (key from $%s): exit %d, stdout %q, stderr %q", envReplayKeyFile, code, out, errs)
	}
	// Nothing more arrives (waited a bounded 500 ms: the first replay took
	// well under that to arrive).
	time.Sleep(500 * time.Millisecond)
	if n := hook.Stats().Records; n != 6 {
		t.Fatalf("the receiver holds %d records, want 6", n)
	}
	if strings.Contains(logs.String(), string(seed)) {
		t.Fatal("the seed is in the worker's logs")
	}
}
