package gateway

import (
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/metric"
)

// metrics are OpenTelemetry instruments on the global meter provider (the
// binary's telemetry.Setup exports them on /metrics as Prometheus
// usagefleet_gateway_*).
type metrics struct {
	requests   metric.Int64Counter     // by route and status code
	records    metric.Int64Counter     // records stored (new)
	bytes      metric.Int64Counter     // request body bytes as received
	duration   metric.Float64Histogram // by route
	rejections metric.Int64Counter     // by reason
	replays    metric.Int64Counter     // idempotent repeats answered from JetStream
}

func newMetrics() *metrics {
	m := otel.Meter(instrumentation)
	c := func(name, desc string) metric.Int64Counter {
		x, _ := m.Int64Counter(name, metric.WithDescription(desc))
		return x
	}
	h, _ := m.Float64Histogram("usagefleet.gateway.request.duration", metric.WithDescription("time to answer a request"), metric.WithUnit("s"),
		metric.WithExplicitBucketBoundaries(0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
	return &metrics{
		requests:   c("usagefleet.gateway.requests", "HTTP requests answered, by route and status"),
		records:    c("usagefleet.gateway.records", "records stored through the gateway"),
		bytes:      c("usagefleet.gateway.bytes", "request body bytes received"),
		duration:   h,
		rejections: c("usagefleet.gateway.rejections", "requests or events refused, by reason"),
		replays:    c("usagefleet.gateway.replays", "idempotent repeats (every part was already stored)"),
	}
}
