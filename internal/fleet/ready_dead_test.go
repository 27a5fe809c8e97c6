package fleet

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/usagefleet/usagefleet/messages"
)

// /readyz does not stay green while dead letters cannot be stored (issue
// 12): here DEAD refuses every message (a max message size of 16 bytes),
// an undecodable part comes, and the worker is not ready until DEAD takes
// its dead letter.
func TestNotReadyWhileDeadLettersCannotBeStored(t *testing.T) {
	cfg, err := Parse([]byte(`
nats:
  data_dir: ` + t.TempDir() + `
destinations:
  - name: hook
    type: webhook
    feeds: [cloud]
    retry: {initial: 20ms, max: 200ms}
    settings:
      url: http://127.0.0.1:9/ingest
`))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	f, err := Start(ctx, cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	js, err := jetstream.New(f.NC)
	if err != nil {
		t.Fatal(err)
	}
	dead, err := js.Stream(ctx, messages.StreamDead)
	if err != nil {
		t.Fatal(err)
	}
	conf := dead.CachedInfo().Config
	refusing := conf
	refusing.MaxMsgSize = 16
	if _, err := js.UpdateStream(ctx, refusing); err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- f.Run(runCtx) }()
	defer func() { stop(); <-done }()
	waitReady := func(want bool, what string) {
		t.Helper()
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			err := f.Ready(ctx)
			if (err == nil) == want && (want || strings.Contains(err.Error(), "destination hook cannot store dead letters")) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: Ready = %v", what, err)
			}
		}
	}
	// Ready once Run has created the destination's consumer.
	waitReady(true, "before anything went wrong")
	hour := time.Date(2024, 8, 16, 13, 0, 0, 0, time.UTC)
	if _, err := js.PublishMsg(ctx, &nats.Msg{Subject: messages.UsageSubject("cloud", hour), Header: nats.Header{"Nats-Msg-Id": {"junk"}}, Data: []byte("junk")}); err != nil {
		t.Fatal(err)
	}
	waitReady(false, "DEAD refuses the dead letter")
	if _, err := js.UpdateStream(ctx, conf); err != nil {
		t.Fatal(err)
	}
	// Offered again after the retry policy's max, the part is dead-lettered.
	waitReady(true, "DEAD takes dead letters again")
}
