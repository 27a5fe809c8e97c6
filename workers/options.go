package workers

import (
	"log/slog"
	"time"

	"github.com/usagefleet/usagefleet/messages"
)

// FlushPolicy says when a dirty unit is due: MaxDelay after it first became
// dirty, after Quiet without new data, or once MaxRecords records wait.
type FlushPolicy struct {
	MaxDelay   time.Duration // default 10s
	Quiet      time.Duration // default 2s
	MaxRecords int           // default 200000
}

// RetryPolicy is the exponential backoff with jitter between tries of a
// failed job. Transient failures are retried without limit.
type RetryPolicy struct {
	Initial time.Duration // default 500ms
	Max     time.Duration // default 60s
}

// Options configure a Pool. Zero values take the defaults.
type Options struct {
	Feeds         []string      // feeds the destination serves (required)
	Flush         FlushPolicy   // Replace destinations
	Workers       int           // jobs in parallel (default 4)
	MaxAckPending int           // consumer max ack pending (default 20000 Replace, 64 Append)
	AckWait       time.Duration // consumer ack wait; heartbeats every third (default 30s)
	Retry         RetryPolicy
	LeaseTTL      time.Duration // the lease bucket TTL; Run reads the bucket's own (default 40s)
	PauseProbe    time.Duration // a paused destination tries again after this (default 30s)
	DrainTimeout  time.Duration // time in-flight jobs get on shutdown (default 20s)
	HTTPTimeout   time.Duration // the per-request deadline: the destination-level http_timeout (default 30s)
	// NoResponseRetries is how many times Do resends a request that got no
	// response (timeout, reset) before the job fails (default 3).
	NoResponseRetries int
	WorkerID          string // lease owner; default host-pid-random
	// SourceKeys binds each source to the public keys that may sign its
	// parts (config sources:); when set, a part that is not signed by its
	// source is dead-lettered (see sources.go). Nil: sources are not bound.
	SourceKeys messages.SourceKeys
	// NewerSchemaMaxHold is how long after it was stored a part of a newer
	// schema than this worker reads may hold its unit (default 24h); then
	// it is dead-lettered and the unit is delivered without it.
	NewerSchemaMaxHold time.Duration
	// ConsumerInactive, when set, lets the server delete the destination's
	// durable consumer once no worker has pulled from it that long: for a
	// destination that runs once (a validate-only dry run), so it does not
	// stay behind.
	ConsumerInactive time.Duration
	Logger           *slog.Logger
}

func (o *Options) defaults(sem Semantics) {
	if o.Flush.MaxDelay <= 0 {
		o.Flush.MaxDelay = 10 * time.Second
	}
	if o.Flush.Quiet <= 0 {
		o.Flush.Quiet = 2 * time.Second
	}
	if o.Flush.MaxRecords <= 0 {
		o.Flush.MaxRecords = 200000
	}
	if o.Workers <= 0 {
		o.Workers = 4
	}
	if o.MaxAckPending <= 0 {
		if sem == Replace {
			o.MaxAckPending = 20000
		} else {
			o.MaxAckPending = 64
		}
	}
	if o.AckWait <= 0 {
		o.AckWait = 30 * time.Second
	}
	if o.Retry.Initial <= 0 {
		o.Retry.Initial = 500 * time.Millisecond
	}
	if o.Retry.Max <= 0 {
		o.Retry.Max = 60 * time.Second
	}
	if o.LeaseTTL <= 0 {
		o.LeaseTTL = 40 * time.Second
	}
	if o.PauseProbe <= 0 {
		o.PauseProbe = 30 * time.Second
	}
	if o.DrainTimeout <= 0 {
		o.DrainTimeout = 20 * time.Second
	}
	if o.HTTPTimeout <= 0 {
		o.HTTPTimeout = 30 * time.Second
	}
	if o.NoResponseRetries <= 0 {
		o.NoResponseRetries = 3
	}
	if o.NewerSchemaMaxHold <= 0 {
		o.NewerSchemaMaxHold = 24 * time.Hour
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
}
