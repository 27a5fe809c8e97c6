package workers

import (
	"context"
	"errors"
	"log/slog"
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

func leaseKeyName(dest, lease string) string { return dest + "." + lease }

// unitLease is a held lease that serialises the uploads of a unit (or of
// a destination's lease key) across the fleet. The same type serves
// replace and append jobs: acquire, keep (renew until released, cancel
// the job when a renewal fails), release.
type unitLease struct {
	store leaseStore
	key   string
	owner []byte
	log   *slog.Logger

	rev  uint64        // the last revision written; the renewer's until stop
	quit chan struct{} // closed by release
	done chan struct{} // closed when the renewer has ended
}

// acquireLease takes key for owner. It returns errLeaseHeld when another
// worker holds it.
func acquireLease(ctx context.Context, store leaseStore, key, owner string, log *slog.Logger) (*unitLease, error) {
	rev, err := store.Create(ctx, key, []byte(owner))
	if err != nil {
		return nil, err
	}
	return &unitLease{store: store, key: key, owner: []byte(owner), log: log, rev: rev}, nil
}

// keep renews the lease every interval until release (or until ctx ends).
// If a renewal fails the lease may be someone else's now (it expired and
// was taken), so the job must stop: lost is called (the job's cancel).
func (l *unitLease) keep(ctx context.Context, every time.Duration, lost context.CancelFunc) {
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
			r, err := l.store.Update(ctx, l.key, l.owner, l.rev)
			if err != nil {
				if ctx.Err() == nil {
					l.log.Error("lost unit lease: abandoning the job", "lease", l.key, "err", err)
				}
				lost()
				return
			}
			l.rev = r
		}
	}()
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
	_ = l.store.Delete(ctx, l.key, l.rev)
}

// takeLease acquires the lease key for this pool's worker (errLeaseHeld
// when another worker holds it) and keeps it renewed, every quarter of the
// lease TTL, until release; a failed renewal cancels lost.
func (p *Pool) takeLease(ctx context.Context, key string, lost context.CancelFunc) (*unitLease, error) {
	l, err := acquireLease(ctx, p.leases, key, p.opts.WorkerID, p.log)
	if err != nil {
		return nil, err
	}
	l.keep(ctx, p.opts.LeaseTTL/4, lost)
	return l, nil
}
