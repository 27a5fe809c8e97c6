package workers

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/usagefleet/usagefleet/internal/broker/natstest"
	"github.com/usagefleet/usagefleet/internal/sandbox/fault"
)

func (m *memLeases) clock() time.Time {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.now
}

// Before each request the lease is renewed when less than a request
// deadline (need) plus the guard is left, and the request's deadline ends
// guard before the lease can expire. Guards unitLease.bound.
func TestLeaseBoundRenewsBeforeARequest(t *testing.T) {
	const ttl, need = 40 * time.Second, 30 * time.Second
	guard := leaseGuard(ttl, need)
	if guard != 5*time.Second {
		t.Fatalf("guard %s, want half the margin, 5s", guard)
	}
	store := newMemLeases(ttl)
	l, err := acquireLeaseAt(context.Background(), store, "k", "a", ttl, store.clock, quietLog)
	if err != nil {
		t.Fatal(err)
	}
	cancelled := false
	l.onEnd = func() { cancelled = true }
	for i, s := range []struct {
		advance time.Duration
		renewed bool // the step renewed the lease
		lost    bool // bound refused: the lease is lost
	}{
		{0, false, false},
		{4 * time.Second, false, false}, // 36s left: enough for a request and its guard
		{2 * time.Second, true, false},  // 34s left: renewed first
		{39 * time.Second, true, false}, // 1s left (the renewer stalled): renewed in time
		{41 * time.Second, false, true}, // expired in the bucket: the renewal fails
		{0, false, true},                // and stays lost
	} {
		store.advance(s.advance)
		rev := l.rev
		dl, err := l.bound(context.Background(), need, guard)
		now := store.clock()
		if s.lost {
			if !errors.Is(err, errLeaseLost) {
				t.Fatalf("step %d: bound gave %v, want errLeaseLost", i, err)
			}
			if !cancelled {
				t.Fatalf("step %d: a lost lease did not cancel its job", i)
			}
			continue
		}
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		if got := l.rev != rev; got != s.renewed {
			t.Fatalf("step %d: renewed %v, want %v", i, got, s.renewed)
		}
		if left := dl.Sub(now); left < need {
			t.Fatalf("step %d: a request may only run %s, less than its deadline %s", i, left, need)
		}
		if exp := store.entries["k"].written.Add(ttl); !dl.Before(exp) || exp.Sub(dl) < guard {
			t.Fatalf("step %d: the request deadline %s is not %s before the lease expires at %s", i, dl, guard, exp)
		}
	}
}

// A request sent under a lease that is not renewed (the renewer never
// renews) ends before the lease expires, so a second worker that takes
// the expired lease never sends while the first's request is in flight.
// Guards the deadline leaseTransport puts on every request.
func TestLeaseDeadlineEndsRequestBeforeExpiry(t *testing.T) {
	srv := natstest.Start(t)
	js, err := jetstream.New(srv.Connect(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const ttl, need = 3 * time.Second, time.Second
	kv, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "lease_bound", TTL: ttl, History: 1})
	if err != nil {
		t.Fatal(err)
	}
	store := kvLeases{kv}
	hold := fault.NewHolder("", "")
	hold.HoldNext(1)
	api := httptest.NewServer(hold.Wrap(http.NotFoundHandler()))
	defer api.Close()
	// No client timeout: only the lease bounds the request.
	client := &http.Client{Transport: leaseTransport{next: http.DefaultTransport, p: &Pool{opts: Options{HTTPTimeout: need}}}}

	a, err := acquireLease(ctx, store, "d.conn", "a", ttl, quietLog)
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequestWithContext(withLease(ctx, a), http.MethodPost, api.URL, http.NoBody)
	sent := make(chan error, 1)
	go func() {
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		sent <- err
	}()
	held := <-hold.Arrived()
	defer held.Drop()
	// B tries the lease until it gets it: by then A's request must be over.
	for {
		_, err := acquireLease(ctx, store, "d.conn", "b", ttl, quietLog)
		if err == nil {
			break
		}
		if !errors.Is(err, errLeaseHeld) {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	select {
	case <-held.Gone():
	default:
		t.Fatal("B took the expired lease while A's request under it was still in flight")
	}
	if err := <-sent; !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("A's request ended with %v, want its lease deadline", err)
	}
}

// When a renewal fails, the job is cancelled and the request it has in
// flight is abandoned at once, long before its own deadline. Guards the
// call of the job's cancel in unitLease.renew.
func TestLeaseLostAbandonsRequest(t *testing.T) {
	const ttl = time.Hour // nothing but the lost renewal may end the request
	store := newMemLeases(ttl)
	hold := fault.NewHolder("", "")
	hold.HoldNext(1)
	api := httptest.NewServer(hold.Wrap(http.NotFoundHandler()))
	defer api.Close()
	client := &http.Client{Transport: leaseTransport{next: http.DefaultTransport, p: &Pool{opts: Options{HTTPTimeout: time.Minute}}}}

	a, err := acquireLease(context.Background(), store, "k", "a", ttl, quietLog)
	if err != nil {
		t.Fatal(err)
	}
	jctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	store.gate, store.renewed = make(chan struct{}), make(chan error, 8)
	a.keep(jctx, time.Millisecond, cancel)
	req, _ := http.NewRequestWithContext(withLease(jctx, a), http.MethodPost, api.URL, http.NoBody)
	sent := make(chan error, 1)
	go func() {
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		sent <- err
	}()
	held := <-hold.Arrived()
	defer held.Drop()
	store.gate <- struct{}{} // one renewal goes through
	if err := <-store.renewed; err != nil {
		t.Fatal(err)
	}
	store.advance(2 * ttl) // the renewer was cut off: the entry expired
	store.gate <- struct{}{}
	if err := <-store.renewed; err == nil {
		t.Fatal("renewed an expired lease")
	}
	select {
	case <-held.Gone():
	case <-time.After(10 * time.Second):
		t.Fatal("the lease was lost but the request under it was not abandoned")
	}
	if err := <-sent; err == nil {
		t.Fatal("the abandoned request succeeded")
	}
	if _, err := a.bound(context.Background(), time.Second, 0); !errors.Is(err, errLeaseLost) {
		t.Fatalf("bound after the loss: %v, want errLeaseLost", err)
	}
}
