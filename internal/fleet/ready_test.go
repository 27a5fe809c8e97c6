package fleet

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/usagefleet/usagefleet/internal/broker/natstest"
	"github.com/usagefleet/usagefleet/messages"
	"github.com/usagefleet/usagefleet/workers"
)

// Someone paused the destination's consumer on the server (a role that
// could, until 2030): nothing is delivered, and /readyz must say so.
func TestReadyFailsWhileTheConsumerIsPaused(t *testing.T) {
	t.Setenv("UF_TEST_HOOK_TOKEN", "tok-123")
	ns := natstest.Start(t)
	cfg, err := Parse([]byte(strings.Replace(goodConfig, "  data_dir: /tmp/x", "  url: "+ns.URL, 1) + "streams: {lease_ttl: 10s}\n"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	f, err := Start(ctx, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- f.Run(runCtx) }()
	defer func() { stop(); <-done }()
	for {
		err := f.Ready(ctx)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("never ready: %v", err)
		}
		time.Sleep(50 * time.Millisecond) // polling the server's state, not synchronising
	}
	js, _ := jetstream.New(ns.Connect(t))
	if _, err := js.PauseConsumer(ctx, messages.StreamUsage, workers.ConsumerName("hook"), time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)); err != nil {
		t.Fatal(err)
	}
	err = f.Ready(ctx)
	if err == nil || !strings.Contains(err.Error(), "consumer uf_hook is paused on the server until 2030-01-01T00:00:00Z") {
		t.Fatalf("Ready with a paused consumer: %v", err)
	}
	if _, err := js.ResumeConsumer(ctx, messages.StreamUsage, workers.ConsumerName("hook")); err != nil {
		t.Fatal(err)
	}
	if err := f.Ready(ctx); err != nil {
		t.Fatalf("Ready after resume: %v", err)
	}
}
