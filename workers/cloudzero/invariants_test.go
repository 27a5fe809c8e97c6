package cloudzero

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/usagefleet/usagefleet/internal/broker/natstest"
	sandbox "github.com/usagefleet/usagefleet/internal/sandbox/cloudzero"
	"github.com/usagefleet/usagefleet/internal/sandbox/fault"
	"github.com/usagefleet/usagefleet/internal/usagegen"
	"github.com/usagefleet/usagefleet/workers/conformance"
)

// heldHarness is the conformance harness for the CloudZero emulator with a
// fault.Holder in front of it, so a test can hold an upload in flight.
func heldHarness(hold *fault.Holder, sb **confSandbox) conformance.Harness {
	return conformance.Harness{Start: func(t *testing.T) conformance.Sandbox {
		s := sandbox.New(sandbox.Config{Connections: map[string]string{testConn: testKey}, ProcessingDelay: time.Millisecond})
		ts := httptest.NewServer(hold.Wrap(s.Handler()))
		t.Cleanup(ts.Close)
		*sb = &confSandbox{s: s, url: ts.URL}
		return *sb
	}}
}

// nextHeld waits for the held request among the arrivals.
func nextHeld(t *testing.T, hold *fault.Holder, within time.Duration) *fault.Held {
	t.Helper()
	deadline := time.After(within)
	for {
		select {
		case hr := <-hold.Arrived():
			if hr.Held() {
				t.Cleanup(hr.Drop) // before the server's Close waits for it
				return hr
			}
		case <-deadline:
			t.Fatalf("no upload arrived to hold within %s", within)
		}
	}
}

// "A part is acked only after an upload that saw it": an hour's replace
// upload is held at the API while a new part of the same hour arrives at
// the worker. The upload then succeeds; it was rebuilt before the new part
// was stored, so it must not settle that part: the hour stays dirty and is
// uploaded again, and the API ends up with both parts. Guards the check in
// settleUnit (settle.go) that skips a part stored after the covered
// position (seq > covered): without it the new part is acked by an upload
// that never carried it, and the hour stays short for good.
func TestHeldReplaceDoesNotSettleANewerPart(t *testing.T) {
	hold := fault.NewHolder(http.MethodPost, "/v2/connections/billing/anycost/")
	var sb *confSandbox
	e := conformance.NewEnv(t, heldHarness(hold, &sb))
	hold.HoldNext(1)
	pool := e.StartPool("dest", conformance.FastOptions())
	hour := time.Date(2024, 8, 16, 10, 0, 0, 0, time.UTC)
	e.Publish("first", usagegen.Generate(40, usagegen.Options{Seed: 1, Start: hour, Hours: 1}), 40)
	held := nextHeld(t, hold, 30*time.Second)

	e.Publish("late", usagegen.Generate(15, usagegen.Options{Seed: 2, Start: hour, Hours: 1}), 15)
	for deadline := time.Now().Add(30 * time.Second); pool.Stats().Received < 2; {
		if time.Now().After(deadline) {
			t.Fatal("the worker never received the late part")
		}
		time.Sleep(5 * time.Millisecond)
	}
	held.Release()
	<-held.Done()
	e.WaitExact(30 * time.Second)

	replaces := 0
	for _, r := range sb.s.Requests(testConn) {
		if r.Applied && r.Operation == sandbox.OpReplaceHourly {
			replaces++
		}
	}
	if replaces < 2 {
		t.Fatalf("%d applied replace uploads of the hour, want the held one and one with the late part", replaces)
	}
	if n := hold.Overlaps(); n != 0 {
		t.Fatalf("%d requests overlapped another at the API", n)
	}
}

// No upload outlives the lease it was sent under: with an http_timeout
// (30 s) longer than the lease TTL (10 s), an upload the API never
// answers is abandoned by its worker before the lease can expire, while
// a second worker waits for the lease and sends nothing until then.
// Guards the lease on the job's context (withLease in runReplace) that
// the pool's transport bounds every request by.
func TestUploadEndsBeforeItsLeaseExpires(t *testing.T) {
	if testing.Short() {
		t.Skip("waits out a lease TTL")
	}
	hold := fault.NewHolder(http.MethodPost, "/v2/connections/billing/anycost/")
	var sb *confSandbox
	e := conformance.NewEnv(t, heldHarness(hold, &sb))
	hold.HoldNext(1)
	for _, id := range []string{"a", "b"} {
		opts := conformance.FastOptions()
		opts.WorkerID, opts.HTTPTimeout = id, 30*time.Second
		e.StartPool("dest", opts)
	}
	hour := time.Date(2024, 8, 16, 10, 0, 0, 0, time.UTC)
	e.Publish("first", usagegen.Generate(40, usagegen.Options{Seed: 1, Start: hour, Hours: 1}), 40)
	held := nextHeld(t, hold, 30*time.Second)
	select {
	case <-held.Gone():
	case <-time.After(2 * natstestLeaseTTL):
		t.Fatalf("an unanswered upload was still in flight %s after it was sent, past its lease TTL of %s", 2*natstestLeaseTTL, natstestLeaseTTL)
	}
	if d := time.Since(held.At); d > natstestLeaseTTL {
		t.Fatalf("the upload was abandoned %s after it was sent, after its lease could expire (TTL %s)", d, natstestLeaseTTL)
	}
	held.Drop()
	e.WaitExact(time.Minute)
	if n := hold.Overlaps(); n != 0 {
		t.Fatalf("%d requests arrived while another was in flight at the API", n)
	}
}

const natstestLeaseTTL = natstest.LeaseTTL
