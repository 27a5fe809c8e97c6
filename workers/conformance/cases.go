package conformance

import (
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/usagefleet/usagefleet/internal/broker/natstest"
	"github.com/usagefleet/usagefleet/internal/sandbox/fault"
	"github.com/usagefleet/usagefleet/messages"
	"github.com/usagefleet/usagefleet/producer"
)

var t0 = time.Date(2024, 8, 30, 0, 0, 0, 0, time.UTC) // spans a month boundary

func testReplace(t *testing.T, h Harness) {
	e := NewEnv(t, h)
	e.StartPool("dest", FastOptions())
	e.Publish("r", h.Records(h.n(6000), 11, t0, 72), 500)
	e.WaitExact(time.Minute)
}

func testLate(t *testing.T, h Harness) {
	e := NewEnv(t, h)
	e.StartPool("dest", FastOptions())
	e.Publish("first", h.Records(h.n(2000), 21, t0, 6), 400)
	e.WaitExact(time.Minute)
	// Late data for hours already delivered: each unit is sent whole again.
	e.Publish("late", h.Records(h.n(300), 22, t0, 6), 100)
	e.WaitExact(time.Minute)
}

func testSnapshot(t *testing.T, h Harness) {
	e := NewEnv(t, h)
	e.StartPool("dest", FastOptions())
	period := messages.Period{Start: t0, End: t0.Add(48 * time.Hour)}
	e.Publish("app", h.Records(h.n(500), 31, t0, 48), 250)
	e.PublishSnapshot("report", period, 1, h.Records(h.n(1500), 32, t0, 48))
	e.WaitExact(time.Minute)
	// A re-collection: generation 2 replaces 1 everywhere, also emptying
	// hours where it has nothing.
	e.PublishSnapshot("report", period, 2, h.Records(h.n(700), 33, t0, 12))
	e.WaitExact(time.Minute)
	// An incomplete generation (parts but no closing marker) changes nothing.
	recs := h.Records(h.n(200), 34, t0, 48)
	b := &messages.Batch{ID: "snap-incomplete", Feed: e.Feed, Source: "report", Snapshot: &messages.Snapshot{Period: period, Generation: 3}, Records: recs}
	parts, err := producer.Split(b, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	nc := e.NS.Connect(t)
	for _, p := range parts {
		if err := nc.PublishMsg(&nats.Msg{Subject: messages.UsageSubject(e.Feed, p.Meta.Hour), Header: p.Meta.Header(), Data: p.Payload}); err != nil {
			t.Fatal(err)
		}
	}
	nc.Flush()
	time.Sleep(time.Second)
	e.Publish("app2", h.Records(h.n(100), 35, t0, 48), 100) // and the fleet keeps going
	e.WaitExact(time.Minute)
}

func testAmbiguous(t *testing.T, h Harness) {
	e := NewEnv(t, h)
	// The first request is always hit (a destination with few, large units
	// may send only a handful of requests), then 20% of the rest.
	e.SB.Faults().Set(
		fault.Rule{Kind: fault.ApplyThenStatus, Code: 500, Count: 1},
		fault.Rule{Kind: fault.ApplyThenStatus, Code: 500, Rate: 0.2},
	)
	e.StartPool("dest", FastOptions())
	e.Publish("amb", h.Records(h.n(4000), 41, t0, 48), 250)
	e.WaitExact(2 * time.Minute)
	if e.SB.Faults().Injected()[fault.ApplyThenStatus] == 0 {
		t.Fatal("no ambiguous fault fired: the check proved nothing")
	}
}

func testAuth(t *testing.T, h Harness) {
	e := NewEnv(t, h)
	e.SB.SetAuth(false)
	p := e.StartPool("dest", FastOptions())
	e.Publish("auth", h.Records(h.n(1000), 51, t0, 24), 250)
	deadline := time.Now().Add(30 * time.Second)
	for {
		if paused, _ := p.Paused(); paused {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the pool did not pause on refused credentials")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if got := e.SB.Totals(t); Diff(nil, got) != "" {
		t.Fatalf("data arrived with revoked credentials: %v", got)
	}
	if st := p.Stats(); st.DeadLetters != 0 {
		t.Fatalf("an auth failure dead-lettered %d messages", st.DeadLetters)
	}
	e.SB.SetAuth(true)
	e.WaitExact(time.Minute)
	// The upload lands a moment before the pool records its success.
	for deadline := time.Now().Add(10 * time.Second); ; {
		paused, _ := p.Paused()
		if !paused {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("still paused after the credentials came back and data was delivered")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// retryAfter is the Retry-After of the 429 testRetryAfter injects: far
// above FastOptions' retry backoff, so only honouring it explains a wait.
const retryAfter = 3 * time.Second

// testRetryAfter checks that a 429's Retry-After holds every uploader of
// the destination. What the pool controls is when a request leaves its
// cooldown gate, so that is what is checked (Pool.Sent), against when the
// pool applied the cooldown; the sandbox's arrival times also hold a lease
// renewal, the dial and the server's scheduling, none of which the gate
// bounds. A request that left the gate before the pool knew of the 429 may
// still reach the sandbox after it.
func testRetryAfter(t *testing.T, h Harness) {
	e := NewEnv(t, h)
	// The first request is answered 429 with Retry-After: every uploader
	// of the destination must hold off that long.
	e.SB.Faults().Set(fault.Rule{Kind: fault.Status, Code: 429, RetryAfter: fmt.Sprint(int(retryAfter / time.Second)), Count: 1})
	p := e.StartPool("dest", FastOptions())
	e.Publish("ra", h.Records(h.n(2000), 71, t0, 48), 250)
	// The first cooldown the pool applies is the 429's (it answered the
	// first request); the gate keeps its end, until, once it is over.
	var until time.Time
	for deadline := time.Now().Add(30 * time.Second); until.IsZero(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the pool applied no cooldown: did the 429 fire?")
		}
		until = p.CooldownUntil()
	}
	// Data of other units that comes during the cooldown is due during it
	// too (the units of the first data wait for their retry anyway): the
	// pool must hold it back as well. It is published a while into the
	// cooldown, so that a pool that sent it at once would send it well
	// past the slack below (on a slow machine it may come after the
	// cooldown: the check is then weaker, never wrong).
	time.Sleep(500 * time.Millisecond)
	e.Publish("ra-during", h.Records(h.n(500), 72, t0.Add(96*time.Hour), 24), 250)
	e.WaitExact(time.Minute)
	if e.SB.Faults().Injected()[fault.Status] != 1 {
		t.Fatal("the 429 fired more than once")
	}
	var the429 time.Time
	for _, r := range e.SB.RequestLog() {
		if r.Status == 429 {
			the429 = r.Start
		}
	}
	if the429.IsZero() {
		t.Fatal("no 429 in the sandbox's request log")
	}
	// The cooldown was applied retryAfter before it ends. (The sandbox
	// runs in this process: its times and the pool's are the same clock.)
	if until.Before(the429.Add(retryAfter)) {
		t.Fatalf("the pool's cooldown ends %s after the 429 arrived, short of its Retry-After of %s", until.Sub(the429).Round(time.Millisecond), retryAfter)
	}
	applied := until.Add(-retryAfter)
	sent := p.Sent()
	if len(sent) == 0 {
		t.Fatal("no request seen leaving the gate (does the destination set its own before-send hook?)")
	}
	after := 0
	for _, s := range sent {
		// Between reading the gate and the hook there is only a request
		// clone: the slack is for a goroutine descheduled there.
		if s.After(applied.Add(200*time.Millisecond)) && s.Before(until) {
			t.Fatalf("a request left the gate %s after the pool applied the 429's Retry-After of %s", s.Sub(applied).Round(time.Millisecond), retryAfter)
		}
		if !s.Before(until) {
			after++
		}
	}
	if after == 0 {
		t.Fatal("no request after the Retry-After")
	}
}

// holdFor is how long the sandbox holds worker A's upload in testCrash: far
// longer than the suite needs to see it arrive and kill A, and shorter than
// the lease TTL that worker B waits out, so the held request is over before
// B uploads.
const holdFor = natstest.LeaseTTL / 2

// testCrash kills worker A while one of its uploads is in flight at the
// sandbox (held there by a timeout fault) and it holds that unit's lease.
// Worker B, started after the kill, must wait for A's lease to expire (A
// can neither finish nor release it) and then leave every unit exact.
// It takes about natstest.LeaseTTL plus a few seconds.
func testCrash(t *testing.T, h Harness) {
	e := NewEnv(t, h)
	optsA := FastOptions()
	optsA.WorkerID = "conformance-worker-a"
	// A dead process drains nothing: what is left of A after its kill
	// (a job blocked on its closed NATS connection, say) is cancelled soon.
	optsA.DrainTimeout = time.Second
	a := e.StartPool("dest", optsA)
	// A first delivers a wave whole (uploaded and acked): B must later send
	// those units again with their late data.
	e.Publish("crash1", h.Records(h.n(1000), 61, t0, 36), 500)
	e.WaitExact(time.Minute)

	leases := watchLeases(t, e)
	// A's next upload is held at the sandbox, unanswered and unapplied.
	e.SB.Faults().Set(fault.Rule{Kind: fault.Timeout, Delay: holdFor, Count: 1})
	e.Publish("crash2", h.Records(h.n(4000), 62, t0, 72), 1000)
	deadline := time.Now().Add(30 * time.Second)
	for e.SB.Faults().Injected()[fault.Timeout] == 0 {
		if time.Now().After(deadline) {
			t.Fatal("worker A never got an upload under way")
		}
		time.Sleep(2 * time.Millisecond)
	}
	// Killed at once (the hold lasts holdFor: the request is in flight).
	killed := time.Now()
	a.Kill()
	// The leases A died with, as the bucket holds them: at least the one
	// of the unit whose upload was in flight.
	held := leasesOf(t, e, optsA.WorkerID)
	if len(held) == 0 {
		t.Fatal("worker A held no unit lease when it was killed with an upload in flight")
	}

	optsB := FastOptions()
	optsB.WorkerID = "conformance-worker-b"
	b := e.StartPool("dest", optsB)
	e.WaitExact(2 * time.Minute)
	if v := e.SB.ConcurrencyViolations(); v != 0 {
		t.Fatalf("%d concurrent requests where the API forbids them", v)
	}

	// B had to wait for each lease A held to expire: A could not release
	// it (no delete), and B's take-over came a full TTL after A's last
	// renewal.
	evs := leases()
	firstB := time.Time{}
	for _, ev := range evs {
		if ev.op == jetstream.KeyValuePut && ev.owner == optsB.WorkerID && (firstB.IsZero() || ev.at.Before(firstB)) {
			firstB = ev.at
		}
	}
	taken := 0
	for key, la := range held {
		for _, ev := range evs {
			if ev.key != key || ev.rev <= la.rev {
				continue
			}
			if ev.op != jetstream.KeyValuePut {
				t.Fatalf("the lease %s that A died with was deleted (%v): released, not left to expire", key, ev.op)
			}
			if ev.owner != optsB.WorkerID {
				t.Fatalf("the lease %s that A died with was next taken by %q", key, ev.owner)
			}
			if gap := ev.at.Sub(la.at); gap < natstest.LeaseTTL-50*time.Millisecond {
				t.Fatalf("B took the lease %s %s after A last renewed it, inside its TTL of %s: B did not wait for it to expire", key, gap.Round(time.Millisecond), natstest.LeaseTTL)
			}
			t.Logf("B took over lease %s %s after A's last renewal (TTL %s), %s after the kill", key, ev.at.Sub(la.at).Round(time.Millisecond), natstest.LeaseTTL, ev.at.Sub(killed).Round(time.Millisecond))
			taken++
			break
		}
	}
	if taken == 0 {
		t.Fatalf("B never took over a lease A died with (%d held): the check proved nothing", len(held))
	}
	// The uploads land a moment before B counts its jobs done (it settles
	// the parts first): wait for the count rather than read it early.
	for deadline := time.Now().Add(time.Minute); b.Stats().Jobs == 0; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("worker B delivered every unit but never finished a job: %+v", b.Stats())
		}
	}
	if st := b.Stats(); st.LeaseConflict == 0 {
		t.Fatalf("worker B never found A's lease held: %+v", st)
	}
	// Nothing reached the sandbox between the kill and B's first lease
	// but what A had sent before it was killed. Requests are counted, not
	// timed: a request A wrote before the kill may reach the sandbox's
	// handler late on a loaded machine. B sent nothing before it held a
	// lease (the server stamps the lease, on this machine's clock).
	for _, at := range b.Sent() {
		if at.Before(firstB) {
			t.Fatalf("B sent a request %s before it first held a lease", firstB.Sub(at).Round(time.Millisecond))
		}
	}
	before := 0
	for _, r := range e.SB.RequestLog() {
		if r.Start.Before(firstB) {
			before++
		}
	}
	if sent := a.SentBeforeCut(); before > sent {
		t.Fatalf("%d requests reached the sandbox before B held any lease, but A sent only %d before it was killed: the killed worker kept sending", before, sent)
	}
}
