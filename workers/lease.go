package workers

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// leaseStore is what a unit lease needs of the lease bucket: writes that
// succeed only against the revision the writer expects, and entries that
// expire a TTL after their last write. Production uses the JetStream KV
// bucket (kvLeases); the lease's own tests use an in-memory store.
type leaseStore interface {
	// Create writes key if it is absent (or expired), else errLeaseHeld.
	Create(ctx context.Context, key string, value []byte) (rev uint64, err error)
	// Update rewrites key if its revision is still last.
	Update(ctx context.Context, key string, value []byte, last uint64) (rev uint64, err error)
	// Delete removes key if its revision is still last.
	Delete(ctx context.Context, key string, last uint64) error
}

// errLeaseHeld: another worker holds the lease.
var errLeaseHeld = errors.New("lease held by another worker")

// errLeaseLost: a renewal failed, so the lease may be someone else's now.
var errLeaseLost = errors.New("unit lease lost")

// kvLeases is the lease bucket (messages.BucketLeases): its TTL is the
// lease's, and a revision check makes every write conditional.
type kvLeases struct{ kv jetstream.KeyValue }

func (s kvLeases) Create(ctx context.Context, key string, value []byte) (uint64, error) {
	rev, err := s.kv.Create(ctx, key, value)
	if errors.Is(err, jetstream.ErrKeyExists) {
		return 0, errLeaseHeld
	}
	return rev, err
}

func (s kvLeases) Update(ctx context.Context, key string, value []byte, last uint64) (uint64, error) {
	return s.kv.Update(ctx, key, value, last)
}

func (s kvLeases) Delete(ctx context.Context, key string, last uint64) error {
	return s.kv.Delete(ctx, key, jetstream.LastRevision(last))
}

// FleetLeasePrefix starts a lease key that is the same for every
// destination that returns it (a shared external resource, such as one
// CloudZero connection: endpoint.LeaseKey): the pool uses it as it is,
// where any other key is scoped by the destination's name.
const FleetLeasePrefix = "conn-"

func leaseKeyName(dest, lease string) string {
	if strings.HasPrefix(lease, FleetLeasePrefix) {
		return lease
	}
	return dest + "." + lease
}

// unitLease is a held lease that serialises the uploads of a unit (or of
// a destination's lease key) across the fleet. The same type serves
// replace and append jobs: acquire, keep (renew until released, cancel
// the job when a renewal fails), bound (every request sent under it ends
// before it can expire), release.
//
// The rule that makes recovery after a crash short and keeps it safe: a
// request is only sent with a deadline that ends before the lease can
// expire (bound), and the lease is renewed just before a request when
// less than a whole request deadline (http_timeout) of it is left. So
// once the lease has expired, every request its holder started has been
// abandoned by its client, and the next worker may send: the TTL only
// needs to exceed http_timeout by a margin, and a dead worker's units
// wait about that long, not a fixed couple of minutes.
type unitLease struct {
	store leaseStore
	key   string
	owner []byte
	log   *slog.Logger
	ttl   time.Duration
	now   func() time.Time // time.Now; the tests' clock

	mu    sync.Mutex // serialises writes: the renewer's and bound's
	rev   uint64     // the last revision written
	until time.Time  // the lease is ours at least until then
	lost  bool       // a renewal failed: nothing more is sent under it
	// quiet: a request sent under the lease got no answer (its client
	// gave up, the connection broke), so the API may still be working on
	// it until then (now + the guard): nothing more is sent under the
	// lease before, and release leaves the entry to expire instead of
	// deleting it, so no other worker sends either.
	quiet time.Time
	onEnd func()        // the job's cancel, called when the lease is lost
	quit  chan struct{} // closed by release
	done  chan struct{} // closed when the renewer has ended
}

// acquireLease takes key for owner, for ttl (the lease bucket's TTL). It
// returns errLeaseHeld when another worker holds it.
func acquireLease(ctx context.Context, store leaseStore, key, owner string, ttl time.Duration, log *slog.Logger) (*unitLease, error) {
	return acquireLeaseAt(ctx, store, key, owner, ttl, time.Now, log)
}

func acquireLeaseAt(ctx context.Context, store leaseStore, key, owner string, ttl time.Duration, now func() time.Time, log *slog.Logger) (*unitLease, error) {
	// The entry is written after this instant, so it expires after
	// sent+ttl: the lease is ours until then whatever the round trip took.
	sent := now()
	rev, err := store.Create(ctx, key, []byte(owner))
	if err != nil {
		return nil, err
	}
	return &unitLease{store: store, key: key, owner: []byte(owner), log: log, ttl: ttl, now: now, rev: rev, until: sent.Add(ttl)}, nil
}

// renew rewrites the lease (l.mu held). A failure marks it lost for good
// and ends the job: the entry may have expired and been taken since.
func (l *unitLease) renew(ctx context.Context) error {
	if l.lost {
		return errLeaseLost
	}
	sent := l.now()
	// A renewal that hangs must fail while the lease still holds, so the
	// job stops before another worker may take over.
	rctx, cancel := context.WithTimeout(ctx, l.ttl/4)
	defer cancel()
	r, err := l.store.Update(rctx, l.key, l.owner, l.rev)
	if err != nil {
		l.lost = true
		if ctx.Err() == nil {
			l.log.Error("lost unit lease: abandoning the job", "lease", l.key, "err", err)
		}
		if l.onEnd != nil {
			l.onEnd()
		}
		return fmt.Errorf("%w: %s: %v", errLeaseLost, l.key, err)
	}
	l.rev, l.until = r, sent.Add(l.ttl)
	return nil
}

// keep renews the lease every interval until release (or until ctx ends).
// If a renewal fails the lease may be someone else's now (it expired and
// was taken), so the job must stop: lost is called (the job's cancel),
// which abandons any request it has in flight.
func (l *unitLease) keep(ctx context.Context, every time.Duration, lost context.CancelFunc) {
	l.mu.Lock()
	l.onEnd = lost
	l.mu.Unlock()
	l.quit, l.done = make(chan struct{}), make(chan struct{})
	go func() {
		defer close(l.done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-l.quit:
				return
			case <-ctx.Done():
				return
			case <-t.C:
			}
			l.mu.Lock()
			err := l.renew(ctx)
			l.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
}

// bound is called before each request sent under the lease: need is the
// longest a request may take (http_timeout) and guard the time the API
// may go on with a request after its client gave up. It renews the lease
// first when less than need+guard of it is left, and returns the deadline
// the request must end by: guard before the lease can expire. An error
// means the lease is lost (and the job cancelled): send nothing.
func (l *unitLease) bound(ctx context.Context, need, guard time.Duration) (time.Time, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.lost {
		return time.Time{}, errLeaseLost
	}
	if l.until.Sub(l.now()) < need+guard {
		if err := l.renew(ctx); err != nil {
			return time.Time{}, err
		}
	}
	return l.until.Add(-guard), nil
}

// release stops the renewal and deletes the lease if it is still ours (by
// revision): one that expired, or that another worker has taken since, is
// left alone.
func (l *unitLease) release() {
	if l.quit != nil {
		close(l.quit)
		<-l.done
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.lost {
		return
	}
	l.lost = true // nothing is sent under a released lease
	if l.now().Before(l.quiet) {
		return // the API may still be working on an abandoned request: let the entry expire
	}
	_ = l.store.Delete(ctx, l.key, l.rev)
}

// unanswered records that a request sent under the lease got no answer:
// the API may go on with it for up to guard.
func (l *unitLease) unanswered(guard time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.quiet = l.now().Add(guard)
}

// waitQuiet waits until an abandoned request's guard has passed.
func (l *unitLease) waitQuiet(ctx context.Context) error {
	l.mu.Lock()
	d := l.quiet.Sub(l.now())
	l.mu.Unlock()
	if d <= 0 {
		return nil
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

// leaseGuard is how long before its lease expires a request sent under
// it must have ended, for the API to notice its client has gone: half the
// margin of the TTL over the request deadline, and at least a tenth of
// the TTL (a request renews the lease first when less than
// requestTimeout+leaseGuard of it is left).
func leaseGuard(ttl, requestTimeout time.Duration) time.Duration {
	return max((ttl-requestTimeout)/2, ttl/10)
}

// takeLease acquires the lease key for this pool's worker (errLeaseHeld
// when another worker holds it) and keeps it renewed, every quarter of the
// lease TTL, until release; a failed renewal cancels lost. Requests sent
// with the returned context (withLease) are bounded by the lease.
func (p *Pool) takeLease(ctx context.Context, key string, lost context.CancelFunc) (*unitLease, error) {
	ttl := p.leaseTTL()
	l, err := acquireLease(ctx, p.leases, key, p.opts.WorkerID, ttl, p.log)
	if err != nil {
		return nil, err
	}
	every := p.renewEvery
	if every <= 0 {
		every = ttl / 4
	}
	l.keep(ctx, every, lost)
	return l, nil
}

// leaseTTL is the lease bucket's TTL as Run read it, else Options.LeaseTTL.
func (p *Pool) leaseTTL() time.Duration {
	if p.bucketTTL > 0 {
		return p.bucketTTL
	}
	return p.opts.LeaseTTL
}

// openLeases opens the lease bucket and takes its TTL from the bucket
// itself: a lease is only as long as the bucket keeps it, whatever this
// worker was configured with, and a worker that thought its lease longer
// than it is would send when another already may.
func (p *Pool) openLeases(ctx context.Context, kv jetstream.KeyValue) error {
	st, err := kv.Status(ctx)
	if err != nil {
		return fmt.Errorf("lease bucket status: %w", err)
	}
	p.leases = kvLeases{kv}
	ttl := st.TTL()
	if ttl <= 0 {
		return fmt.Errorf("lease bucket %s has no TTL: a crashed worker's leases would never expire (run the worker once with streams.lease_ttl set, or recreate the bucket)", st.Bucket())
	}
	if ttl != p.opts.LeaseTTL {
		p.log.Warn("the lease bucket's TTL differs from streams.lease_ttl: using the bucket's", "bucket_ttl", ttl, "lease_ttl", p.opts.LeaseTTL)
	}
	if ttl <= p.opts.HTTPTimeout {
		p.log.Warn("the lease TTL is not above http_timeout: requests are cut short to end before the lease can expire", "lease_ttl", ttl, "http_timeout", p.opts.HTTPTimeout)
	}
	p.bucketTTL = ttl
	return nil
}

type leaseCtxKey struct{}

// withLease marks ctx as running under l: every request the pool's
// client sends with it is bounded by the lease (leaseTransport).
func withLease(ctx context.Context, l *unitLease) context.Context {
	return context.WithValue(ctx, leaseCtxKey{}, l)
}

// leaseTransport is the pool's HTTP transport: a request sent under a
// lease renews it first when need be (unitLease.bound) and is cancelled
// when its deadline, before the lease can expire, passes.
type leaseTransport struct {
	next http.RoundTripper
	p    *Pool
}

func (t leaseTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	l, _ := req.Context().Value(leaseCtxKey{}).(*unitLease)
	if l == nil {
		return t.next.RoundTrip(req)
	}
	ttl := l.ttl
	guard := leaseGuard(ttl, t.p.opts.HTTPTimeout)
	// A request of this lease that got no answer may still be at work at
	// the API: the next one waits for it as another worker would (the
	// soak test saw a retry overlap a timed-out upload of its date).
	err := l.waitQuiet(req.Context())
	var deadline time.Time
	if err == nil {
		deadline, err = l.bound(req.Context(), t.p.opts.HTTPTimeout, guard)
	}
	if err != nil {
		if req.Body != nil {
			_ = req.Body.Close() // as a RoundTripper must, even on error
		}
		return nil, err
	}
	ctx, cancel := context.WithDeadline(req.Context(), deadline)
	resp, err := t.next.RoundTrip(req.WithContext(ctx))
	if err != nil {
		cancel()
		l.unanswered(guard)
		return nil, err
	}
	resp.Body = &cancelOnClose{ReadCloser: resp.Body, cancel: cancel}
	return resp, nil
}

// cancelOnClose ends a request's lease deadline once its answer is read.
type cancelOnClose struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (c *cancelOnClose) Close() error {
	err := c.ReadCloser.Close()
	c.cancel()
	return err
}
