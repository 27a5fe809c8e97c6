package ops

import (
	"context"
	"encoding/json"
	"log/slog"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/usagefleet/usagefleet/internal/broker/natstest"
	"github.com/usagefleet/usagefleet/internal/fleet"
	"github.com/usagefleet/usagefleet/internal/sandbox/fault"
	"github.com/usagefleet/usagefleet/messages"
)

// Status reads what workers wrote to uf_status, collector checkpoints and
// the dead letters; dead list filters them.
func TestStatusAndDeadList(t *testing.T) {
	srv := natstest.Start(t)
	nc := srv.Connect(t)
	js := mustJS(t, nc)
	ctx := context.Background()
	cfg, err := fleet.Parse([]byte(`
destinations:
  - {name: hook, type: webhook, feeds: [hooks], settings: {url: "http://127.0.0.1:9/a"}}
`))
	if err != nil {
		t.Fatal(err)
	}
	dests, err := BuildDests(cfg)
	if err != nil {
		t.Fatal(err)
	}
	env := &Env{NC: nc, JS: js, Dests: dests}
	now := time.Now().UTC()

	st, err := env.Status(ctx, StatusOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !st.NeedsAttention() || !strings.Contains(strings.Join(st.Attention, "\n"), "no consumer uf_hook") {
		t.Fatalf("a destination no worker ever served: %v", st.Attention)
	}

	kv, err := statusBucket(ctx, js, true)
	if err != nil {
		t.Fatal(err)
	}
	if err := WriteStates(ctx, kv, []DestState{{Destination: "hook", Worker: "w1.example", Paused: true, PauseReason: "auth Unauthorized (401)"}}); err != nil {
		t.Fatal(err)
	}
	ck, _ := json.Marshal(map[string]any{"collector": "acr", "type": "acronis", "account": "t1", "generation": 3,
		"last_run": now.Add(-time.Hour), "last_period": map[string]any{"start": now.Add(-48 * time.Hour).Truncate(time.Hour), "end": now.Add(-24 * time.Hour).Truncate(time.Hour)}})
	cks, err := js.KeyValue(ctx, messages.BucketCheckpoints)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cks.Put(ctx, "acr", ck); err != nil {
		t.Fatal(err)
	}
	pub := func(dl messages.DeadLetter) {
		b, _ := json.Marshal(dl)
		if _, err := js.PublishMsg(ctx, &nats.Msg{Subject: messages.DeadSubject(dl.Destination, dl.Source), Data: b}); err != nil {
			t.Fatal(err)
		}
	}
	pub(messages.DeadLetter{Destination: "_collect", Source: "acr", Reason: "line 7: column cost: not a number", Time: now})
	pub(messages.DeadLetter{Destination: "hook", Source: "svc", BatchID: "b1", Reason: "reject Bad Request (400): no", Time: now.Add(-3 * time.Hour)})
	pub(messages.DeadLetter{Destination: "hook", Source: "svc", BatchID: "b2", Reason: "reject Bad Request (400): no", Time: now})
	pub(messages.DeadLetter{Destination: "hook", Source: "other", BatchID: "b3", Reason: "undecodable: bad", Time: now})

	st, err = env.Status(ctx, StatusOptions{Since: 2 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	d := st.Destinations[0]
	if !d.Paused || d.PauseReason != "auth Unauthorized (401)" || len(d.Workers) != 1 || d.Workers[0] != "w1.example" {
		t.Fatalf("destination status %+v", d)
	}
	if d.DeadSince != 2 || d.DeadByReason["reject Bad Request (400): no"] != 1 || d.DeadByReason["undecodable: bad"] != 1 {
		t.Fatalf("dead letters since 2h: %d %v, want the two recent ones", d.DeadSince, d.DeadByReason)
	}
	if len(st.Collectors) != 1 || st.Collectors[0].Name != "acr" || st.Collectors[0].Generation != 3 || st.Collectors[0].RejectedRows != 1 || st.Collectors[0].LastPeriod == nil {
		t.Fatalf("collectors %+v", st.Collectors)
	}
	var b strings.Builder
	WriteStatus(&b, st)
	for _, want := range []string{"PAUSED", "hook paused: auth Unauthorized (401)", "acr", "acronis", "NEEDS ATTENTION", "collector acr: 1 rejected row(s)"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("status table lacks %q:\n%s", want, b.String())
		}
	}

	for name, tc := range map[string]struct {
		f    DeadFilter
		want []string // batches
	}{
		"by destination": {DeadFilter{Destination: "hook"}, []string{"b1", "b2", "b3"}},
		"by source":      {DeadFilter{Destination: "hook", Source: "svc"}, []string{"b1", "b2"}},
		"by batch":       {DeadFilter{Batch: "b2"}, []string{"b2"}},
		"by reason":      {DeadFilter{Reason: "UNDECODABLE"}, []string{"b3"}},
		"since":          {DeadFilter{Destination: "hook", Since: now.Add(-time.Hour)}, []string{"b2", "b3"}},
		"until":          {DeadFilter{Destination: "hook", Until: now.Add(-time.Hour)}, []string{"b1"}},
		"limit":          {DeadFilter{Destination: "hook", Limit: 1}, []string{"b3"}},
		"none":           {DeadFilter{Destination: "nobody"}, nil},
	} {
		got, err := ListDead(ctx, js, tc.f)
		if err != nil {
			t.Fatal(err)
		}
		var batches []string
		for _, e := range got {
			batches = append(batches, e.Letter.BatchID)
		}
		if strings.Join(batches, ",") != strings.Join(tc.want, ",") {
			t.Errorf("%s: got %v, want %v", name, batches, tc.want)
		}
	}
	e, err := GetDead(ctx, js, 3)
	if err != nil || e.Letter.BatchID != "b2" {
		t.Fatalf("GetDead(3) = %+v, %v", e, err)
	}
	if _, err := GetDead(ctx, js, 99); err == nil || !strings.Contains(err.Error(), "not in stream DEAD") {
		t.Fatalf("GetDead(99): %v", err)
	}
}

// status of a running fleet, from what its pools report: a destination the
// API refused our credentials is named paused (and needs a person); one
// answered 503 with Retry-After shows its cooldown.
func TestStatusNamesAPausedDestinationAndACooldown(t *testing.T) {
	r := newRig(t, "")
	old := StatusEvery
	StatusEvery = 50 * time.Millisecond
	t.Cleanup(func() { StatusEvery = old })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		StatusWriter(ctx, r.env.NC, PoolStates("w-status", r.fleet.Pools), slog.New(slog.DiscardHandler))
	}()
	t.Cleanup(func() { cancel(); <-done })

	r.cz.Faults().Set(fault.Rule{Kind: fault.Status, Code: 401, Message: "bad key"})
	r.hook.Faults().Set(fault.Rule{Kind: fault.Status, Code: 503, RetryAfter: "600"})
	start := time.Now().UTC().Truncate(time.Hour).Add(-2 * time.Hour)
	r.publish("cloud", "st-cz", records(5, 1, 1, start))
	r.publish("hooks", "st-hook", records(5, 1, 2, start))

	var st *Status
	waitFor(t, "status to report the pause and the cooldown", func() bool {
		var err error
		if st, err = r.env.Status(context.Background(), StatusOptions{}); err != nil {
			t.Fatal(err)
		}
		byName := map[string]DestStatus{}
		for _, d := range st.Destinations {
			byName[d.Name] = d
		}
		return byName["cz"].Paused && byName["hook"].CooldownUntil.After(st.Time.Add(time.Minute))
	})
	if !st.NeedsAttention() || !strings.Contains(strings.Join(st.Attention, "\n"), "cz: paused: ") {
		t.Fatalf("a paused destination does not need a person: %v", st.Attention)
	}
	var b strings.Builder
	WriteStatus(&b, st)
	if !regexp.MustCompile(`(?m)^cz\s.*PAUSED`).MatchString(b.String()) || !regexp.MustCompile(`(?m)^hook\s.*\s(9m\d+s|10m0s)\s`).MatchString(b.String()) {
		t.Fatalf("the table does not show the pause of cz and the cooldown of hook:\n%s", b.String())
	}
}
