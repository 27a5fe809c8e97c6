package ops

import (
	"context"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/usagefleet/usagefleet/internal/broker/natstest"
	"github.com/usagefleet/usagefleet/internal/fleet"
	sbcz "github.com/usagefleet/usagefleet/internal/sandbox/cloudzero"
	sbhook "github.com/usagefleet/usagefleet/internal/sandbox/webhook"
	"github.com/usagefleet/usagefleet/internal/usagegen"
	"github.com/usagefleet/usagefleet/messages"
	"github.com/usagefleet/usagefleet/producer"
)

const (
	czConn = "conn-ops"
	czKey  = "cz-ops-key"
)

// rig is a running fleet (embedded nats-server, a CloudZero destination
// "cz" on feed cloud, a webhook destination "hook" on feed hooks) against
// the sandboxes, and an Env on it.
type rig struct {
	t       *testing.T
	srv     *natstest.Server
	cz      *sbcz.Server
	czURL   string
	hook    *sbhook.Server
	fleet   *fleet.Fleet
	env     *Env
	prod    *producer.Producer
	stopped chan struct{}
}

func newRig(t *testing.T, extraDests string) *rig {
	t.Helper()
	t.Setenv("UF_OPS_CZ_KEY", czKey)
	r := &rig{t: t, srv: natstest.Start(t), stopped: make(chan struct{})}
	r.cz = sbcz.New(sbcz.Config{Connections: map[string]string{czConn: czKey}})
	czs := httptest.NewServer(r.cz.Handler())
	t.Cleanup(czs.Close)
	r.czURL = czs.URL
	r.hook = sbhook.New(sbhook.Config{})
	hs := httptest.NewServer(r.hook.Handler())
	t.Cleanup(hs.Close)
	cfg, err := fleet.Parse([]byte(fmt.Sprintf(`
nats: {url: %q}
streams: {lease_ttl: 10s}
worker: {drain_timeout: 2s, id: ops-test}
destinations:
  - name: cz
    type: cloudzero
    feeds: [cloud]
    flush: {max_delay: 300ms, quiet: 50ms}
    retry: {initial: 20ms, max: 200ms}
    pause_probe: 200ms
    settings: {base_url: %q, connection_id: %s, api_key: {env: UF_OPS_CZ_KEY}}
  - name: hook
    type: webhook
    feeds: [hooks]
    retry: {initial: 20ms, max: 200ms}
    settings: {url: %q}
%s`, r.srv.URL, r.czURL, czConn, hs.URL+"/ingest", extraDests)))
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	ctx, cancel := context.WithCancel(context.Background())
	r.fleet, err = fleet.Start(ctx, cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(r.stopped)
		_ = r.fleet.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-r.stopped
		r.fleet.Close()
	})
	dests, err := BuildDests(cfg)
	if err != nil {
		t.Fatal(err)
	}
	nc := r.srv.Connect(t)
	r.env = &Env{NC: nc, JS: mustJS(t, nc), Dests: dests}
	if r.prod, err = producer.New(nc, producer.Options{}); err != nil {
		t.Fatal(err)
	}
	return r
}

func (r *rig) publish(feed, id string, recs []messages.UsageRecord) {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := r.prod.Publish(ctx, &messages.Batch{ID: id, Feed: feed, Source: "svc", Records: recs}); err != nil {
		r.t.Fatal(err)
	}
}

// waitFor polls cond until it holds (at most 30 s).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func records(n, hours int, seed uint64, start time.Time) []messages.UsageRecord {
	return usagegen.Generate(n, usagegen.Options{Seed: seed, Start: start, Hours: hours})
}

func (r *rig) usageLastSeq() uint64 {
	r.t.Helper()
	st, err := r.env.JS.Stream(context.Background(), messages.StreamUsage)
	if err != nil {
		r.t.Fatal(err)
	}
	info, err := st.Info(context.Background())
	if err != nil {
		r.t.Fatal(err)
	}
	return info.State.LastSeq
}

func (r *rig) dead(dest string) []DeadEntry {
	r.t.Helper()
	es, err := ListDead(context.Background(), r.env.JS, DeadFilter{Destination: dest})
	if err != nil {
		r.t.Fatal(err)
	}
	return es
}

// acks counts the ack events of dest stored on subject acks.<source>.<dest>.
func (r *rig) acks(source, dest string) uint64 {
	r.t.Helper()
	st, err := r.env.JS.Stream(context.Background(), messages.StreamAcks)
	if err != nil {
		r.t.Fatal(err)
	}
	subj := messages.AckSubject(source, dest)
	info, err := st.Info(context.Background(), jetstreamSubjects(subj))
	if err != nil {
		r.t.Fatal(err)
	}
	return info.State.Subjects[subj]
}
