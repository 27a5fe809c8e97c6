package producer

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/usagefleet/usagefleet/messages"
)

// setupHint says how a fleet's streams come to exist.
const setupHint = "start a usage-worker against this server once (it creates the streams and buckets, broker.EnsureStreams), or check the server URL and account"

// digest is the content of a split batch: every part's routing metadata
// and payload, in order. Splitting is deterministic, so a repeat of the
// batch has the same digest.
func digest(parts []SplitPart) string {
	h := sha256.New()
	for _, sp := range parts {
		m := sp.Meta
		fmt.Fprintf(h, "%d|%s|%d|%s|%s|%d|%d|%d|", m.Part, m.Kind, m.Hour.Unix(), m.Period.String(), strconv.FormatInt(m.Generation, 10), m.Records, m.Schema, len(sp.Payload))
		h.Write(sp.Payload)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// claim records the batch's digest under its id, or checks that the id's
// earlier claim has the same digest. Transient failures (a node loss, a
// leader election) are retried with backoff, each try under its own
// deadline, as long as parts are (Options.RetryMaxElapsed): a create that
// timed out may have been stored, and then the next try finds its own
// digest.
func (p *Producer) claim(ctx context.Context, b *messages.Batch, parts []SplitPart) error {
	return p.claimDigest(ctx, b, digest(parts))
}

// claimDigest is claim with the digest computed already (a Spool computes
// it part by part as it cuts them).
func (p *Producer) claimDigest(ctx context.Context, b *messages.Batch, sum string) error {
	key := messages.BatchKey(b.Source, b.Feed, b.ID)
	bo := backoff.NewExponentialBackOff()
	bo.InitialInterval = 100 * time.Millisecond
	bo.MaxInterval = 5 * time.Second
	var conflict error
	op := func() error {
		tctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		kv, err := p.batchBucket(tctx)
		if errors.Is(err, ErrStreamMissing) {
			return backoff.Permanent(err)
		}
		if err == nil {
			_, err = kv.Create(tctx, key, []byte(sum))
		}
		if err == nil {
			return nil
		}
		if errors.Is(err, jetstream.ErrKeyExists) {
			var e jetstream.KeyValueEntry
			if e, err = kv.Get(tctx, key); err == nil {
				if string(e.Value()) == sum {
					return nil // a repeat: the parts are deduplicated by their ids
				}
				conflict = fmt.Errorf("batch %q of source %s, feed %s: %w (first published %s): nothing was published; use a new batch id",
					b.ID, b.Source, b.Feed, ErrBatchConflict, e.Created().UTC().Format(time.RFC3339))
				return backoff.Permanent(conflict)
			}
			// Not found: expired between the two calls, or a replica that
			// has not seen it yet. Try again.
		}
		if ctx.Err() != nil {
			return backoff.Permanent(ctx.Err())
		}
		p.log.Warn("claiming batch id failed, retrying", "batch", b.ID, "err", err)
		return err
	}
	if _, err := backoff.Retry(ctx, func() (struct{}, error) { return struct{}{}, op() }, backoff.WithBackOff(bo), backoff.WithMaxElapsedTime(p.opts.RetryMaxElapsed)); err != nil {
		if conflict != nil || errors.Is(err, ErrStreamMissing) {
			return err
		}
		return fmt.Errorf("claiming batch id %q: %w", b.ID, err)
	}
	return nil
}

// batchBucket binds the claims bucket once.
func (p *Producer) batchBucket(ctx context.Context) (jetstream.KeyValue, error) {
	p.kvMu.Lock()
	defer p.kvMu.Unlock()
	if p.batches != nil {
		return p.batches, nil
	}
	kv, err := p.js.KeyValue(ctx, messages.BucketBatches)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return nil, fmt.Errorf("bucket %s: %w on this server: %s", messages.BucketBatches, ErrStreamMissing, setupHint)
	}
	if errors.Is(err, jetstream.ErrJetStreamNotEnabled) || errors.Is(err, jetstream.ErrJetStreamNotEnabledForAccount) {
		return nil, fmt.Errorf("JetStream is not enabled for this account: %w", ErrStreamMissing)
	}
	if err != nil {
		return nil, fmt.Errorf("bucket %s: %w", messages.BucketBatches, err)
	}
	p.batches = kv
	return kv, nil
}

// checkStream reports ErrStreamMissing when the server has no USAGE stream.
// Other answers (a timeout in a failover) are not conclusive: nil.
func (p *Producer) checkStream(ctx context.Context) error {
	cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	_, err := p.js.Stream(cctx, messages.StreamUsage)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return fmt.Errorf("stream %s: %w on this server (nothing stores usage.>): %s", messages.StreamUsage, ErrStreamMissing, setupHint)
	}
	return nil
}
