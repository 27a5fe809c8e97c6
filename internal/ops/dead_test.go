package ops

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/usagefleet/usagefleet/internal/broker/natstest"
	"github.com/usagefleet/usagefleet/messages"
)

// Reading the dead letters leaves no consumer behind on DEAD (issue 12:
// ordered consumers lingered until their inactivity threshold).
func TestListDeadLeavesNoConsumer(t *testing.T) {
	srv := natstest.Start(t)
	nc := srv.Connect(t)
	js := mustJS(t, nc)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, b := range []string{"b1", "b2", "b3"} {
		data, _ := json.Marshal(messages.DeadLetter{Destination: "hook", Source: "svc", BatchID: b, Reason: "no", Time: time.Now()})
		if _, err := js.PublishMsg(ctx, &nats.Msg{Subject: messages.DeadSubject("hook", "svc"), Data: data}); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 5; i++ {
		if es, err := ListDead(ctx, js, DeadFilter{Destination: "hook"}); err != nil || len(es) != 3 {
			t.Fatalf("ListDead: %d entries, %v", len(es), err)
		}
	}
	st, err := js.Stream(ctx, messages.StreamDead)
	if err != nil {
		t.Fatal(err)
	}
	// The client deletes an ordered consumer's earlier instances on its
	// own goroutines: wait for them, well below the inactivity threshold.
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		info, err := st.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if info.State.Consumers == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d consumers left on %s after 5 listings", info.State.Consumers, messages.StreamDead)
		}
	}
}
