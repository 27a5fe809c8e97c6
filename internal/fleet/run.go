package fleet

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/usagefleet/usagefleet/internal/broker"
	"github.com/usagefleet/usagefleet/internal/config"
	"github.com/usagefleet/usagefleet/messages"
	"github.com/usagefleet/usagefleet/workers"
)

// Fleet is a running worker process: its NATS connection (and embedded
// server, if any) and its pools.
type Fleet struct {
	NC       *nats.Conn
	Embedded *broker.Embedded // nil when connected to a cluster
	Pools    map[string]*workers.Pool
	log      *slog.Logger
}

// Start connects (or starts the embedded server), creates or updates the
// streams and builds the pools. Run them with Run.
func Start(ctx context.Context, cfg *Config, log *slog.Logger) (*Fleet, error) {
	f := &Fleet{Pools: map[string]*workers.Pool{}, log: log}
	for _, notice := range cfg.Deprecated() {
		log.Warn("deprecated setting: " + notice)
	}
	for _, notice := range cfg.Advisories() {
		log.Warn(notice)
	}
	var err error
	if cfg.NATS.URL == "" {
		f.Embedded, err = broker.StartEmbedded(cfg.NATS.DataDir, cfg.NATS.Port)
		if err != nil {
			return nil, err
		}
		log.Info("embedded NATS server started", "url", f.Embedded.URL, "data_dir", orDefault(cfg.NATS.DataDir, "data/nats"))
		f.NC, err = nats.Connect(f.Embedded.URL, nats.Name("usage-worker"), nats.MaxReconnects(-1))
	} else {
		f.NC, err = broker.Connect(ctx, cfg.NATS, "usage-worker")
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	js, err := jetstream.New(f.NC)
	if err != nil {
		f.Close()
		return nil, err
	}
	if err := ensureStreams(ctx, js, cfg, log); err != nil {
		f.Close()
		return nil, err
	}
	for _, b := range cfg.built {
		b.opts.Logger = log
		p, err := workers.NewPool(f.NC, b.dest, b.opts)
		if err != nil {
			f.Close()
			return nil, err
		}
		f.Pools[b.dest.Name()] = p
	}
	return f, nil
}

// ensureStreams creates or updates the streams, tried again while it
// fails: each try has 10 s of its own (on a young cluster one lost reply
// must not use up the whole start-up deadline), and the waits between
// tries grow from 1 s (doubling, jittered by half, capped at 10 s) until
// the next would end more than 90 s after the first try began. A refused
// streams: setting is not tried again.
func ensureStreams(ctx context.Context, js jetstream.JetStream, cfg *Config, log *slog.Logger) error {
	attempts := 0
	var last error
	_, err := backoff.Retry(ctx, func() (struct{}, error) {
		attempts++
		actx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		last = broker.EnsureStreams(actx, js, cfg.Streams)
		var cerr *config.Error
		if errors.As(last, &cerr) {
			return struct{}{}, backoff.Permanent(last)
		}
		return struct{}{}, last
	}, backoff.WithBackOff(&backoff.ExponentialBackOff{
		InitialInterval:     time.Second,
		RandomizationFactor: 0.5,
		Multiplier:          2,
		MaxInterval:         10 * time.Second,
	}), backoff.WithMaxElapsedTime(90*time.Second), backoff.WithNotify(func(err error, d time.Duration) {
		log.Warn("creating streams failed, retrying", "attempt", attempts, "err", err, "retry_in", d)
	}))
	var cerr *config.Error
	if err == nil || errors.As(err, &cerr) {
		return err
	}
	return fmt.Errorf("creating streams (%d attempts): %w", attempts, last)
}

// Run runs every pool until ctx ends and they have drained.
func (f *Fleet) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	errs := make(chan error, len(f.Pools))
	for name, p := range f.Pools {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := p.Run(ctx); err != nil {
				errs <- fmt.Errorf("destination %s: %w", name, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	var all []error
	for err := range errs {
		all = append(all, err)
	}
	return errors.Join(all...)
}

// Close closes the connection and stops the embedded server.
func (f *Fleet) Close() {
	if f.NC != nil {
		f.NC.Drain()
		f.NC.Close()
	}
	if f.Embedded != nil {
		f.Embedded.Close()
	}
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// Ready reports why the process is not ready: not connected to NATS, the
// streams missing, a destination's consumer paused on the server (nats
// consumer pause: nothing is delivered until it resumes), a destination
// paused because its credentials were refused, or one that cannot store its
// dead letters. The answer is served unauthenticated on /readyz: it names
// the destination, never the API's reply (which may echo what it was sent);
// the reason is in the log.
func (f *Fleet) Ready(ctx context.Context) error {
	if f.NC == nil || !f.NC.IsConnected() {
		return errors.New("not connected to NATS")
	}
	js, err := jetstream.New(f.NC)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	for _, s := range []string{messages.StreamUsage, messages.StreamAcks, messages.StreamDead} {
		if _, err := js.Stream(ctx, s); err != nil {
			return fmt.Errorf("stream %s: %w", s, err)
		}
	}
	names := make([]string, 0, len(f.Pools))
	for name := range f.Pools {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if paused, _ := f.Pools[name].Paused(); paused {
			return fmt.Errorf("destination %s paused: the API refused its credentials, or answered a status it is configured to pause on (pause_statuses); the log and usage-worker status have the API's answer", name)
		}
		c, err := js.Consumer(ctx, messages.StreamUsage, workers.ConsumerName(name))
		if err != nil {
			return fmt.Errorf("destination %s: consumer %s: %w", name, workers.ConsumerName(name), err)
		}
		if i := c.CachedInfo(); i.Paused {
			return fmt.Errorf("destination %s: consumer %s is paused on the server until %s: nothing is delivered (nats consumer resume %s %s)", name, workers.ConsumerName(name), i.Config.PauseUntil.UTC().Format(time.RFC3339), messages.StreamUsage, workers.ConsumerName(name))
		}
		if failing, why := f.Pools[name].DeadLettersFailing(); failing {
			return fmt.Errorf("destination %s cannot store dead letters %s", name, why)
		}
	}
	return nil
}
