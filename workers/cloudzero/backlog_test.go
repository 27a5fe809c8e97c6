package cloudzero

import (
	"context"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	sandbox "github.com/usagefleet/usagefleet/internal/sandbox/cloudzero"
	"github.com/usagefleet/usagefleet/internal/usagegen"
	"github.com/usagefleet/usagefleet/messages"
	"github.com/usagefleet/usagefleet/workers/conformance"
)

// A backlog stored longer than the quiet period before the pool starts is
// sent as soon as the pool has read it: its units have been quiet since
// they were stored, and the pool does not wait out the quiet period again
// from the moment it read them. Data published while the pool runs still
// waits for it.
//
// Both halves compare when requests leave the pool's gate (Pool.Sent)
// with the earliest moment the other behaviour could have sent them, so a
// slow machine cannot fail a correct pool by being slow: a pool that
// waited for quiet from its read sends nothing before it started plus the
// quiet period, and one that did not wait sends live data before it was
// published plus the quiet period.
func TestBacklogIsSentOnceRead(t *testing.T) {
	s := sandbox.New(sandbox.Config{Connections: map[string]string{testConn: testKey}})
	ts := httptest.NewServer(s.Handler())
	t.Cleanup(ts.Close)
	e := conformance.NewEnv(t, conformance.Harness{Start: func(t *testing.T) conformance.Sandbox { return &confSandbox{s: s, url: ts.URL} }})
	start := time.Date(2024, 8, 1, 0, 0, 0, 0, time.UTC)
	e.Publish("backlog", usagegen.Generate(600, usagegen.Options{Seed: 3, Start: start, Hours: 6}), 100)

	const quiet = 5 * time.Second
	time.Sleep(quiet + 500*time.Millisecond) // the backlog ages
	opts := conformance.FastOptions()
	opts.Feeds = []string{e.Feed}
	opts.Flush.Quiet, opts.Flush.MaxDelay = quiet, 2*quiet
	began := time.Now()
	p := e.StartPool("a", opts)
	e.WaitExact(time.Minute)
	backlog := p.Sent()
	if len(backlog) == 0 {
		t.Fatal("no request seen leaving the pool's gate")
	}
	for _, at := range backlog {
		if !at.Before(began.Add(quiet)) {
			t.Fatalf("a backlog request left %v after the pool started: the pool waited for quiet (%v) again", at.Sub(began).Round(time.Millisecond), quiet)
		}
	}

	// New data, published while the pool runs, is quiet for no one yet.
	published := time.Now()
	e.Publish("live", usagegen.Generate(50, usagegen.Options{Seed: 4, Start: start.Add(10 * time.Hour), Hours: 1}), 50)
	e.WaitExact(time.Minute)
	live := p.Sent()[len(backlog):]
	if len(live) == 0 {
		t.Fatal("no request seen leaving the pool's gate for the live data")
	}
	if first := live[0]; first.Before(published.Add(quiet)) {
		t.Fatalf("live data left %v after it was published, with a %v quiet period: it was sent before it was quiet", first.Sub(published).Round(time.Millisecond), quiet)
	}
	if got := len(s.Hours(testConn)); got != 7 {
		t.Fatalf("the emulator holds %d hours, want the backlog's 6 and the live one", got)
	}
}

// A part of a newer schema than this worker reads is not bad data: it is
// neither dead-lettered nor left out of its hour. The hour waits (sending
// it without the part would replace it with less than the stream holds)
// while other hours flow.
func TestNewerSchemaPartHoldsItsHour(t *testing.T) {
	s := sandbox.New(sandbox.Config{Connections: map[string]string{testConn: testKey}})
	ts := httptest.NewServer(s.Handler())
	t.Cleanup(ts.Close)
	e := conformance.NewEnv(t, conformance.Harness{Start: func(t *testing.T) conformance.Sandbox { return &confSandbox{s: s, url: ts.URL} }})
	start := time.Date(2024, 8, 1, 0, 0, 0, 0, time.UTC)
	nc := e.NS.Connect(t)
	newer := messages.PartMeta{BatchID: "from-the-future", Part: 1, Feed: e.Feed, Source: "svc", Kind: messages.KindAppend, Hour: start.Add(time.Hour), Records: 1}.Header()
	newer.Set(messages.HdrSchema, "9")
	if err := nc.PublishMsg(&nats.Msg{Subject: messages.UsageSubject(e.Feed, start.Add(time.Hour)), Header: newer, Data: []byte{0x90}}); err != nil {
		t.Fatal(err)
	}
	recs := usagegen.Generate(300, usagegen.Options{Seed: 5, Start: start, Hours: 3})
	e.Publish("now", recs, 300)
	opts := conformance.FastOptions()
	opts.Feeds = []string{e.Feed}
	e.StartPool("a", opts)

	deadline := time.Now().Add(20 * time.Second)
	for len(s.Hours(testConn)) < 2 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(2 * time.Second) // the held hour would be sent by now
	hours := s.Hours(testConn)
	if len(hours) != 2 {
		t.Fatalf("the emulator holds %d hours, want 2 (hours 0 and 2; hour 1 waits for a worker that reads its newer part)", len(hours))
	}
	if _, ok := hours[start.Add(time.Hour)]; ok {
		t.Fatal("the hour with a part of a newer schema was sent without it")
	}
	js, _ := jetstream.New(nc)
	if st, err := js.Stream(context.Background(), messages.StreamDead); err == nil {
		if info, err := st.Info(context.Background()); err == nil && info.State.Msgs != 0 {
			t.Fatalf("%d dead letters: a part of a newer schema is not bad data", info.State.Msgs)
		}
	}
}
