package bench

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/usagefleet/usagefleet/messages"
)

// Raw fetch-and-ack: the ceiling a drain is measured against. A durable
// pull consumer on the bench feed receives every message of the backlog
// (payload included: the bytes cross the wire once, as in a drain) and
// acks it, and does nothing else. It runs in a worker child like the
// drain, over the same link (the delay proxy too), so the two are
// comparable.

const rawConsumer = "bench_raw"

// rawPullBytes bounds what one pull asks for: the client's defaults (500
// messages) would buffer about 150 MB of 1,000-record parts.
const rawPullBytes = 64 << 20

func rawChild(ctx context.Context, nc *nats.Conn, spec childSpec, say func(childReport), next func() string) error {
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	if err := js.DeleteConsumer(ctx, messages.StreamUsage, rawConsumer); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return fmt.Errorf("removing the previous raw consumer: %w", err)
	}
	cons, err := js.CreateConsumer(ctx, messages.StreamUsage, jetstream.ConsumerConfig{
		Durable:       rawConsumer,
		FilterSubject: feedSubjects,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       time.Minute,
		MaxAckPending: 10_000,
	})
	if err != nil {
		return err
	}
	defer js.DeleteConsumer(context.Background(), messages.StreamUsage, rawConsumer)
	info, err := cons.Info(ctx)
	if err != nil {
		return err
	}
	if want := uint64(spec.Messages); info.NumPending != want {
		return fmt.Errorf("the backlog holds %d messages, want %d", info.NumPending, want)
	}
	say(childReport{Event: "ready"})
	if next() != "go" {
		return errors.New("no go")
	}
	cpu0, start := cpuSeconds(), time.Now()
	var got, size int64
	last := make(chan error, 1)
	cc, err := cons.Consume(func(m jetstream.Msg) {
		got++
		size += int64(len(m.Data()))
		if got != int64(spec.Messages) {
			m.Ack() // (one past the backlog is a redelivery: counted at the end)
			return
		}
		// The last ack waits for the server: acks of one connection are
		// handled in order, so every earlier one is in too.
		last <- m.DoubleAck(ctx)
	}, jetstream.PullMaxBytes(rawPullBytes))
	if err != nil {
		return err
	}
	defer cc.Stop()
	if spec.Messages > 0 {
		if err := <-last; err != nil {
			return fmt.Errorf("the last ack: %w", err)
		}
	}
	r := childReport{Event: "done", Seconds: time.Since(start).Seconds(), CPUSeconds: cpuSeconds() - cpu0, PeakRSSMB: peakRSSMB(), Messages: got, Bytes: size}
	if info, err = cons.Info(ctx); err != nil {
		return err
	}
	if info.NumAckPending != 0 || info.NumPending != 0 {
		return fmt.Errorf("raw: after the last ack the consumer has %d unacked and %d undelivered messages", info.NumAckPending, info.NumPending)
	}
	r.Redelivered = info.NumRedelivered
	say(r)
	return nil
}

// raw runs the raw consumer in a worker child over the worker's link and
// fills in its figures.
func raw(ctx context.Context, o Options, e *env, w *workload, res *Result) error {
	ch, err := startChild(ctx, childSpec{Role: "raw", NATSURL: e.workerURL, Messages: res.Messages})
	if err != nil {
		return err
	}
	defer ch.kill()
	if err := ch.send("go"); err != nil {
		return err
	}
	r, err := ch.await(ctx, "done", 10*time.Minute)
	if err != nil {
		return err
	}
	res.RawSeconds = r.Seconds
	res.RawRate = float64(w.wantRecords) / r.Seconds
	res.RawMBps = float64(r.Bytes) / 1e6 / r.Seconds
	res.RawCPUPerMillion = r.CPUSeconds / float64(w.wantRecords) * 1e6
	res.RawPeakRSSMB = r.PeakRSSMB
	exact := r.Messages == int64(res.Messages) && r.Redelivered == 0
	res.RawExact = &exact
	return nil
}
