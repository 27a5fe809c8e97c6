package workers

import (
	"context"
	"sort"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/usagefleet/usagefleet/messages"
)

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
	prop := otel.GetTextMapPropagator()
	for _, seq := range seqs {
		pm := p.pending[seq]
		if pm == nil {
			continue
		}
		pc := prop.Extract(context.Background(), messages.HeaderCarrier(pm.msg.Headers()))
		sc := trace.SpanContextFromContext(pc)
		if !sc.IsValid() {
			continue
		}
		if parent == nil {
			parent, first = pc, pm
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
			attribute.String("messaging.destination.name", first.msg.Subject()),
			attribute.String("messaging.message.id", first.meta.MsgID()),
			attribute.Int("messaging.batch.message_count", len(seqs)))
	}
	return p.metrics.tracer.Start(ctx, name, trace.WithSpanKind(trace.SpanKindConsumer), trace.WithLinks(links...), trace.WithAttributes(attrs...))
}
