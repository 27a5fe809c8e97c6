package workers

import (
	"context"
	"sort"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/usagefleet/usagefleet/messages"
)

// traceOf is the trace context the producer put in a part's headers
// (kept with the pending part, which does not keep its headers).
func traceOf(h map[string][]string) trace.SpanContext {
	return trace.SpanContextFromContext(otel.GetTextMapPropagator().Extract(context.Background(), messages.HeaderCarrier(h)))
}

// startSpan starts the span of a delivery. Its parent is the trace context
// the producer put in the headers of the job's first part (so the trace
// started at Publish continues into the rebuild and every upload); the
// other parts are links.
func (p *Pool) startSpan(ctx context.Context, name string, g *replaceJob) (context.Context, trace.Span) {
	var seqs []uint64
	p.mu.Lock()
	for _, us := range g.units {
		for seq := range us.seqs {
			seqs = append(seqs, seq)
		}
	}
	sort.Slice(seqs, func(i, j int) bool { return seqs[i] < seqs[j] })
	var parent context.Context
	var links []trace.Link
	var first *pendingMsg
	for _, seq := range seqs {
		pm := p.pending[seq]
		if pm == nil {
			continue
		}
		sc := pm.trace
		if !sc.IsValid() {
			continue
		}
		if parent == nil {
			parent, first = trace.ContextWithRemoteSpanContext(context.Background(), sc), pm
			continue
		}
		if len(links) < 64 {
			links = append(links, trace.Link{SpanContext: sc})
		}
	}
	p.mu.Unlock()
	if parent != nil {
		ctx = trace.ContextWithRemoteSpanContext(ctx, trace.SpanContextFromContext(parent))
	}
	attrs := []attribute.KeyValue{
		attribute.String("messaging.system", "nats"),
		attribute.String("messaging.operation.type", "process"),
		attribute.String("messaging.consumer.group.name", ConsumerName(p.dest.Name())),
		attribute.String("usagefleet.destination", p.dest.Name()),
	}
	if first != nil {
		attrs = append(attrs,
			attribute.String("messaging.destination.name", messages.UsageSubject(first.meta.Feed, first.meta.Hour)),
			attribute.String("messaging.message.id", first.meta.MsgID()),
			attribute.Int("messaging.batch.message_count", len(seqs)))
	}
	return p.metrics.tracer.Start(ctx, name, trace.WithSpanKind(trace.SpanKindConsumer), trace.WithLinks(links...), trace.WithAttributes(attrs...))
}
