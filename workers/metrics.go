package workers

import (
	"context"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
)

// Metric names, per OpenTelemetry conventions (Prometheus renders dots as
// underscores and adds _total and unit suffixes: usagefleet_records_in_total).
const (
	MetricRecordsIn      = "usagefleet.records.in"
	MetricRecordsOut     = "usagefleet.records.out"
	MetricStreamRead     = "usagefleet.stream.read"
	MetricBodyBytes      = "usagefleet.request.body"
	MetricUploads        = "usagefleet.uploads"
	MetricRetries        = "usagefleet.retries"
	MetricCooldown       = "usagefleet.cooldown.active"
	MetricPaused         = "usagefleet.destination.paused"
	MetricUnitOldestAge  = "usagefleet.unit.oldest_age"
	MetricConsumerPend   = "usagefleet.consumer.pending"
	MetricConsumerAckPnd = "usagefleet.consumer.ack_pending"
	MetricDeadLetters    = "usagefleet.dead_letters"
	MetricLeaseConflicts = "usagefleet.lease.conflicts"
)

const instrumentation = "github.com/usagefleet/usagefleet/workers"

type instruments struct {
	attrs          metric.MeasurementOption
	recordsIn      metric.Int64Counter
	recordsOut     metric.Int64Counter
	streamRead     metric.Int64Counter
	bodyBytes      metric.Int64Counter
	uploads        metric.Int64Counter
	retries        metric.Int64Counter
	deadLetters    metric.Int64Counter
	leaseConflicts metric.Int64Counter
	tracer         trace.Tracer
	reg            metric.Registration
}

func (p *Pool) initMetrics() {
	m := otel.Meter(instrumentation)
	in := &instruments{attrs: metric.WithAttributes(attribute.String("destination", p.dest.Name())), tracer: otel.Tracer(instrumentation)}
	in.recordsIn, _ = m.Int64Counter(MetricRecordsIn, metric.WithDescription("records taken from the stream"), metric.WithUnit("{record}"))
	in.recordsOut, _ = m.Int64Counter(MetricRecordsOut, metric.WithDescription("records settled, by outcome (delivered, rejected)"), metric.WithUnit("{record}"))
	in.streamRead, _ = m.Int64Counter(MetricStreamRead, metric.WithDescription("payload bytes read from the stream (replace destinations read a unit's parts at each rebuild)"), metric.WithUnit("By"))
	in.bodyBytes, _ = m.Int64Counter(MetricBodyBytes, metric.WithDescription("request body bytes sent"), metric.WithUnit("By"))
	in.uploads, _ = m.Int64Counter(MetricUploads, metric.WithDescription("HTTP requests by outcome and status code"), metric.WithUnit("{request}"))
	in.retries, _ = m.Int64Counter(MetricRetries, metric.WithDescription("job tries that failed and will be retried"), metric.WithUnit("{retry}"))
	in.deadLetters, _ = m.Int64Counter(MetricDeadLetters, metric.WithDescription("dead-letter messages published"), metric.WithUnit("{message}"))
	in.leaseConflicts, _ = m.Int64Counter(MetricLeaseConflicts, metric.WithDescription("jobs deferred because another worker held the lease"), metric.WithUnit("{conflict}"))
	cool, _ := m.Int64ObservableGauge(MetricCooldown, metric.WithDescription("1 while the destination cools down after 429/5xx"))
	paused, _ := m.Int64ObservableGauge(MetricPaused, metric.WithDescription("1 while the destination is paused: its credentials were refused (401/403) or it answered a status configured to pause on"))
	age, _ := m.Float64ObservableGauge(MetricUnitOldestAge, metric.WithDescription("age of the oldest dirty unit"), metric.WithUnit("s"))
	pend, _ := m.Int64ObservableGauge(MetricConsumerPend, metric.WithDescription("messages in the stream not yet delivered to the destination's consumer"), metric.WithUnit("{message}"))
	ackp, _ := m.Int64ObservableGauge(MetricConsumerAckPnd, metric.WithDescription("messages delivered and not yet acked"), metric.WithUnit("{message}"))
	in.reg, _ = m.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		isPaused, _, coolUntil := p.gate.state()
		o.ObserveInt64(cool, b2i(time.Now().Before(coolUntil)), in.attrs.(metric.ObserveOption))
		o.ObserveInt64(paused, b2i(isPaused), in.attrs.(metric.ObserveOption))
		p.mu.Lock()
		oldest := time.Duration(0)
		for _, us := range p.dirty {
			if d := time.Since(us.flush.first); d > oldest {
				oldest = d
			}
		}
		np, nack := p.consumerPending, p.consumerAckPending
		p.mu.Unlock()
		o.ObserveFloat64(age, oldest.Seconds(), in.attrs.(metric.ObserveOption))
		o.ObserveInt64(pend, int64(np), in.attrs.(metric.ObserveOption))
		o.ObserveInt64(ackp, int64(nack), in.attrs.(metric.ObserveOption))
		return nil
	}, cool, paused, age, pend, ackp)
	p.metrics = in
}

func b2i(b bool) int64 {
	if b {
		return 1
	}
	return 0
}

func (in *instruments) add(ctx context.Context, c metric.Int64Counter, n int64, extra ...attribute.KeyValue) {
	if len(extra) == 0 {
		c.Add(ctx, n, in.attrs.(metric.AddOption))
		return
	}
	c.Add(ctx, n, in.attrs.(metric.AddOption), metric.WithAttributes(extra...))
}
