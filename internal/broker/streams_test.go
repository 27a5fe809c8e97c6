package broker_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/usagefleet/usagefleet/internal/broker"
	"github.com/usagefleet/usagefleet/internal/broker/natstest"
	"github.com/usagefleet/usagefleet/internal/config"
	"github.com/usagefleet/usagefleet/messages"
)

// A worker's streams: settings never shrink the shared streams (one worker
// with usage_max_age: 1m purged every stored part), and change them only
// when the operator says so with update: true.
func TestEnsureStreamsNeverShrinksAndChangesOnlyOnPurpose(t *testing.T) {
	s := natstest.Start(t) // USAGE with the defaults: 62 days, 48h window
	js, err := jetstream.New(s.Connect(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := js.Publish(ctx, messages.UsageSubjects[:len(messages.UsageSubjects)-1]+"f.2026.01.01.00", []byte("x")); err != nil {
		t.Fatal(err)
	}
	d := func(v time.Duration) config.Duration { return config.Duration(v) }
	for _, tt := range []struct {
		name string
		o    broker.StreamOptions
		want string // "" = accepted
	}{
		{"defaults adopt the server's settings", broker.StreamOptions{}, ""},
		{"a shorter retention is refused", broker.StreamOptions{UsageMaxAge: d(time.Minute)}, "streams.usage_max_age: 1m0s would shrink stream USAGE's max age"},
		{"even with update", broker.StreamOptions{UsageMaxAge: d(time.Minute), Update: true}, "never shrinks"},
		{"a shorter duplicate window is refused", broker.StreamOptions{DuplicateWindow: d(time.Minute), Update: true}, "streams.duplicate_window: 1m0s would shrink"},
		{"a longer retention without update is refused", broker.StreamOptions{UsageMaxAge: d(100 * 24 * time.Hour)}, "set streams.update: true"},
		{"the same settings written out are fine", broker.StreamOptions{UsageMaxAge: d(broker.DefaultUsageMaxAge), DuplicateWindow: d(broker.DefaultDuplicateWindow)}, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := broker.EnsureStreams(ctx, js, tt.o)
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("got %v, want an error containing %q", err, tt.want)
			}
			info, err := js.Stream(ctx, messages.StreamUsage)
			if err != nil {
				t.Fatal(err)
			}
			c := info.CachedInfo()
			if c.Config.MaxAge != broker.DefaultUsageMaxAge || c.Config.Duplicates != broker.DefaultDuplicateWindow || c.State.Msgs != 1 {
				t.Fatalf("USAGE changed: max age %v, window %v, %d messages", c.Config.MaxAge, c.Config.Duplicates, c.State.Msgs)
			}
		})
	}
	// An explicit, growing change with update applies.
	if err := broker.EnsureStreams(ctx, js, broker.StreamOptions{UsageMaxAge: d(100 * 24 * time.Hour), Update: true}); err != nil {
		t.Fatal(err)
	}
	info, err := js.Stream(ctx, messages.StreamUsage)
	if err != nil {
		t.Fatal(err)
	}
	if got := info.CachedInfo().Config.MaxAge; got != 100*24*time.Hour {
		t.Fatalf("max age %v after an explicit update, want 2400h", got)
	}
}
