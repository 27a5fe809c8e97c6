package ops

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sort"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/usagefleet/usagefleet/workers"
)

// BucketStatus holds what only a running worker knows of its destinations
// (paused, cooldown, last upload, counters), one key per destination and
// worker: <destination>.<worker id>. Entries expire after StatusTTL, so a
// worker that died stops being reported.
const BucketStatus = "uf_status"

// StatusTTL is the bucket's max age.
const StatusTTL = 2 * time.Minute

// StatusEvery is the writers' period (a variable for tests).
var StatusEvery = 15 * time.Second

// DestState is one worker's view of one destination.
type DestState struct {
	Destination   string        `json:"destination"`
	Worker        string        `json:"worker"`
	Paused        bool          `json:"paused"`
	PauseReason   string        `json:"pause_reason,omitempty"`
	CooldownUntil time.Time     `json:"cooldown_until,omitzero"`
	LastUpload    time.Time     `json:"last_upload,omitzero"`
	Stats         workers.Stats `json:"stats"`
	Updated       time.Time     `json:"updated"`
}

// PoolStates reads the state the pools expose: paused and why, the end of
// the destination's cooldown (a 429 or 503 with Retry-After, repeated
// failures), the counters. The last successful upload is read by status
// from the ACKS stream (the newest ack event of the destination).
func PoolStates(worker string, pools map[string]*workers.Pool) func() []DestState {
	if worker == "" {
		host, _ := os.Hostname()
		worker = fmt.Sprintf("%s-%d", host, os.Getpid())
	}
	return func() []DestState {
		names := make([]string, 0, len(pools))
		for n := range pools {
			names = append(names, n)
		}
		sort.Strings(names)
		out := make([]DestState, 0, len(names))
		for _, n := range names {
			p := pools[n]
			paused, why := p.Paused()
			s := DestState{Destination: n, Worker: worker, Paused: paused, PauseReason: why, Stats: p.Stats()}
			if u := p.CooldownUntil(); u.After(time.Now()) {
				s.CooldownUntil = u.UTC()
			}
			out = append(out, s)
		}
		return out
	}
}

// StatusWriter writes states() to BucketStatus every StatusEvery until ctx
// ends (creating the bucket if needed). Write errors are logged, never
// fatal: status is for people, delivery does not depend on it.
func StatusWriter(ctx context.Context, nc *nats.Conn, states func() []DestState, log *slog.Logger) {
	js, err := jetstream.New(nc)
	if err != nil {
		log.Warn("status writer", "err", err)
		return
	}
	var kv jetstream.KeyValue
	t := time.NewTicker(StatusEvery)
	defer t.Stop()
	for {
		if kv == nil {
			var err error
			kv, err = statusBucket(ctx, js, true)
			if err != nil && ctx.Err() == nil {
				log.Warn("status bucket", "bucket", BucketStatus, "err", err)
			}
		}
		if kv != nil {
			if err := WriteStates(ctx, kv, states()); err != nil && ctx.Err() == nil {
				log.Warn("writing status", "bucket", BucketStatus, "err", err)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// WriteStates writes each state under <destination>.<worker>.
func WriteStates(ctx context.Context, kv jetstream.KeyValue, states []DestState) error {
	var errs []error
	now := time.Now().UTC()
	for _, s := range states {
		s.Updated = now
		b, err := json.Marshal(s)
		if err != nil {
			return err
		}
		if _, err := kv.Put(ctx, s.Destination+"."+kvSafe(s.Worker), b); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func statusBucket(ctx context.Context, js jetstream.JetStream, create bool) (jetstream.KeyValue, error) {
	kv, err := js.KeyValue(ctx, BucketStatus)
	if err == nil || !create || !errors.Is(err, jetstream.ErrBucketNotFound) {
		return kv, err
	}
	return js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: BucketStatus, Description: "worker-reported destination state (paused, cooldown, last upload)", TTL: StatusTTL, History: 1})
}

// kvSafe maps a worker id to a KV key token.
func kvSafe(s string) string {
	b := []byte(s)
	for i, c := range b {
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '-', c == '_', c == '=':
		default:
			b[i] = '_'
		}
	}
	if len(b) == 0 {
		return "_"
	}
	return string(b)
}
