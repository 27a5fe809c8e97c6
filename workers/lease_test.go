package workers

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/usagefleet/usagefleet/internal/broker/natstest"
)

// memLeases is an in-memory leaseStore with the lease bucket's rules:
// every write is conditional on the revision, and an entry expires ttl
// after its last write, by a clock the test moves.
type memLeases struct {
	mu      sync.Mutex
	ttl     time.Duration
	now     time.Time
	seq     uint64
	entries map[string]memLease
	// gate, when set, holds every Update until the test sends a token,
	// and renewed then gets its outcome: the test decides when the
	// renewer writes, and by which clock.
	gate    chan struct{}
	renewed chan error
}

type memLease struct {
	owner   string
	rev     uint64
	written time.Time
}

func newMemLeases(ttl time.Duration) *memLeases {
	return &memLeases{ttl: ttl, now: time.Date(2024, 8, 16, 13, 0, 0, 0, time.UTC), entries: map[string]memLease{}}
}

func (m *memLeases) advance(d time.Duration) {
	m.mu.Lock()
	m.now = m.now.Add(d)
	m.mu.Unlock()
}

// live is the entry of key, if it has not expired.
func (m *memLeases) live(key string) (memLease, bool) {
	e, ok := m.entries[key]
	if !ok || !m.now.Before(e.written.Add(m.ttl)) {
		return memLease{}, false
	}
	return e, true
}

func (m *memLeases) Create(_ context.Context, key string, value []byte) (uint64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.live(key); ok {
		return 0, errLeaseHeld
	}
	m.seq++
	m.entries[key] = memLease{owner: string(value), rev: m.seq, written: m.now}
	return m.seq, nil
}

func (m *memLeases) Update(ctx context.Context, key string, value []byte, last uint64) (uint64, error) {
	if m.gate != nil {
		select {
		case <-m.gate:
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
	rev, err := m.update(key, value, last)
	if m.renewed != nil {
		m.renewed <- err
	}
	return rev, err
}

func (m *memLeases) update(key string, value []byte, last uint64) (uint64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.live(key)
	if !ok || e.rev != last {
		return 0, fmt.Errorf("wrong last sequence: %d", e.rev)
	}
	m.seq++
	m.entries[key] = memLease{owner: string(value), rev: m.seq, written: m.now}
	return m.seq, nil
}

func (m *memLeases) Delete(_ context.Context, key string, last uint64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	e, ok := m.live(key)
	if !ok || e.rev != last {
		return fmt.Errorf("wrong last sequence: %d", e.rev)
	}
	delete(m.entries, key)
	return nil
}

func (m *memLeases) holder(key string) string {
	m.mu.Lock()
	defer m.mu.Unlock()
	e, _ := m.live(key)
	return e.owner
}

// The lease's rules, step by step against the in-memory store: who holds
// the key after each step, and whether a step that acquires gets it.
func TestUnitLease(t *testing.T) {
	const ttl = time.Minute
	type step struct {
		do     string // "a"/"b" acquire as that worker, "release a", "advance"
		by     time.Duration
		got    bool   // for an acquire: whether it gets the lease
		holder string // who holds the key after the step
	}
	for _, tc := range []struct {
		name  string
		steps []step
	}{
		{"one holder at a time", []step{{do: "a", got: true, holder: "a"}, {do: "b", got: false, holder: "a"}, {do: "a", got: false, holder: "a"}}},
		{"release frees it at once", []step{{do: "a", got: true, holder: "a"}, {do: "release a", holder: ""}, {do: "b", got: true, holder: "b"}}},
		{"held until the TTL", []step{{do: "a", got: true, holder: "a"}, {do: "advance", by: ttl - time.Nanosecond, holder: "a"}, {do: "b", got: false, holder: "a"}}},
		{"expiry lets another take over", []step{{do: "a", got: true, holder: "a"}, {do: "advance", by: ttl, holder: ""}, {do: "b", got: true, holder: "b"}}},
		{"a late release leaves the new holder's lease", []step{{do: "a", got: true, holder: "a"}, {do: "advance", by: ttl}, {do: "b", got: true, holder: "b"}, {do: "release a", holder: "b"}, {do: "a", got: false, holder: "b"}}},
		{"released twice", []step{{do: "a", got: true, holder: "a"}, {do: "release a", holder: ""}, {do: "b", got: true, holder: "b"}, {do: "release a", holder: "b"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			store := newMemLeases(ttl)
			held := map[string]*unitLease{}
			for i, s := range tc.steps {
				switch s.do {
				case "a", "b":
					l, err := acquireLease(context.Background(), store, "cz.conn", s.do, ttl, quietLog)
					if got := err == nil; got != s.got {
						t.Fatalf("step %d: %s acquired %v (err %v), want %v", i, s.do, got, err, s.got)
					}
					if err != nil && !errors.Is(err, errLeaseHeld) {
						t.Fatalf("step %d: a held lease gave %v, want errLeaseHeld", i, err)
					}
					if err == nil {
						held[s.do] = l
					}
				case "release a":
					held["a"].release()
				case "advance":
					store.advance(s.by)
				}
				if h := store.holder("cz.conn"); h != s.holder {
					t.Fatalf("step %d (%s): held by %q, want %q", i, s.do, h, s.holder)
				}
			}
		})
	}
}

// keep renews the lease, so it outlives its TTL while the job runs; once
// another worker has taken it over (it expired), the renewal fails and the
// job is cancelled, and the old holder's release leaves the new lease.
func TestUnitLeaseKeepAndTakeover(t *testing.T) {
	const ttl = time.Minute
	store := newMemLeases(ttl)
	store.gate, store.renewed = make(chan struct{}), make(chan error)
	renew := func() error { store.gate <- struct{}{}; return <-store.renewed }
	a, err := acquireLease(context.Background(), store, "k", "a", ttl, quietLog)
	if err != nil {
		t.Fatal(err)
	}
	jctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	a.keep(jctx, time.Millisecond, cancel)

	store.advance(ttl * 3 / 4)
	if err := renew(); err != nil { // at +45s: valid until +105s
		t.Fatalf("renewal: %v", err)
	}
	store.advance(ttl / 2) // +75s: past the first TTL
	if _, err := acquireLease(context.Background(), store, "k", "b", ttl, quietLog); !errors.Is(err, errLeaseHeld) {
		t.Fatalf("b took a renewed lease: %v", err)
	}
	if err := renew(); err != nil {
		t.Fatalf("renewal: %v", err)
	}
	if jctx.Err() != nil {
		t.Fatal("the job was cancelled while its lease was kept")
	}

	// The renewer stalls (a partitioned worker): the lease expires and b
	// takes it; a's next renewal fails and cancels a's job.
	store.advance(2 * ttl)
	b, err := acquireLease(context.Background(), store, "k", "b", ttl, quietLog)
	if err != nil {
		t.Fatalf("b could not take an expired lease: %v", err)
	}
	if err := renew(); err == nil {
		t.Fatal("a renewed a lease b holds")
	}
	<-jctx.Done()
	a.release()
	if h := store.holder("k"); h != "b" {
		t.Fatalf("after a's late release the lease is held by %q, want b", h)
	}
	b.release()
	if h := store.holder("k"); h != "" {
		t.Fatalf("after b's release the lease is held by %q", h)
	}
}

// The same lease against the real lease bucket (embedded nats-server
// JetStream KV, with a short TTL): one holder at a time, kept past its
// TTL while renewed, freed by release, taken over once it expires, and a
// late release does not delete the new holder's lease.
func TestUnitLeaseJetStreamKV(t *testing.T) {
	srv := natstest.Start(t)
	js, err := jetstream.New(srv.Connect(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const ttl = time.Second
	kv, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "lease_test", TTL: ttl, History: 1})
	if err != nil {
		t.Fatal(err)
	}
	store := kvLeases{kv}
	held := func(who string) {
		t.Helper()
		if _, err := acquireLease(ctx, store, "d.conn", who, ttl, quietLog); !errors.Is(err, errLeaseHeld) {
			t.Fatalf("%s: %v, want errLeaseHeld", who, err)
		}
	}
	a, err := acquireLease(ctx, store, "d.conn", "a", ttl, quietLog)
	if err != nil {
		t.Fatal(err)
	}
	held("b")
	jctx, jcancel := context.WithCancel(ctx)
	defer jcancel()
	a.keep(jctx, ttl/4, jcancel)
	// Renewed, it outlives its TTL twice over.
	for end := time.Now().Add(2 * ttl); time.Now().Before(end); {
		held("b")
		time.Sleep(ttl / 10)
	}
	if jctx.Err() != nil {
		t.Fatal("the renewal failed: the job was cancelled")
	}
	a.release()
	b, err := acquireLease(ctx, store, "d.conn", "b", ttl, quietLog)
	if err != nil {
		t.Fatalf("released, the lease is still held: %v", err)
	}
	// b is not renewed: once it expires c takes it over.
	var c *unitLease
	for deadline := time.Now().Add(10 * ttl); ; {
		if c, err = acquireLease(ctx, store, "d.conn", "c", ttl, quietLog); err == nil {
			break
		}
		if !errors.Is(err, errLeaseHeld) || time.Now().After(deadline) {
			t.Fatalf("an unrenewed lease did not expire: %v", err)
		}
		time.Sleep(ttl / 10)
	}
	b.release() // late: it must not delete c's lease
	held("d")
	e, err := kv.Get(ctx, "d.conn")
	if err != nil || string(e.Value()) != "c" {
		t.Fatalf("after b's late release: %v %q, want c's lease", err, e.Value())
	}
	c.release()
	if _, err := acquireLease(ctx, store, "d.conn", "d", ttl, quietLog); err != nil {
		t.Fatalf("after c's release: %v", err)
	}
}

var quietLog = slog.New(slog.DiscardHandler)

// A fleet-wide lease key (a shared external resource) is used as it is;
// any other is scoped by the destination's name.
func TestLeaseKeyName(t *testing.T) {
	for _, c := range []struct{ dest, lease, want string }{
		{"a", FleetLeasePrefix + "x", FleetLeasePrefix + "x"},
		{"b", FleetLeasePrefix + "x", FleetLeasePrefix + "x"},
		{"a", "2024-08-16", "a.2024-08-16"},
		{"b", "2024-08-16", "b.2024-08-16"},
	} {
		if got := leaseKeyName(c.dest, c.lease); got != c.want {
			t.Errorf("leaseKeyName(%q, %q) = %q, want %q", c.dest, c.lease, got, c.want)
		}
	}
}
