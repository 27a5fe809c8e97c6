package workers

import (
	"context"
	"errors"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

func leaseKeyName(dest, lease string) string { return dest + "." + lease }

// acquire takes the lease, or reports that another worker holds it.
func (p *Pool) acquire(ctx context.Context, key string) (uint64, bool, error) {
	rev, err := p.lease.Create(ctx, key, []byte(p.opts.WorkerID))
	if err == nil {
		return rev, true, nil
	}
	if errors.Is(err, jetstream.ErrKeyExists) {
		return 0, false, nil
	}
	return 0, false, err
}

// keepLease renews the lease until the returned stop is called; if renewal
// fails the lease may be someone else's now, so the job is cancelled. stop
// waits for the renewer and returns the lease's last revision.
func (p *Pool) keepLease(ctx context.Context, key string, rev uint64, cancel context.CancelFunc) (stop func() uint64) {
	cur := rev
	quit := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(p.opts.LeaseTTL / 4)
		defer t.Stop()
		for {
			select {
			case <-quit:
				return
			case <-ctx.Done():
				return
			case <-t.C:
			}
			r, err := p.lease.Update(ctx, key, []byte(p.opts.WorkerID), cur)
			if err != nil {
				if ctx.Err() == nil {
					p.log.Error("lost unit lease: abandoning the job", "lease", key, "err", err)
				}
				cancel()
				return
			}
			cur = r
		}
	}()
	return func() uint64 {
		close(quit)
		<-done
		return cur
	}
}
