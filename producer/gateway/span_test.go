package gateway

import (
	"testing"

	"go.opentelemetry.io/otel"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

// A request's server span is named as the HTTP conventions say, method
// and route ("POST /v1/events": the pattern, which holds the method), and
// the answer to a single event is JSON.
func TestServerSpanNamedByRoute(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	prev := otel.GetTracerProvider()
	otel.SetTracerProvider(tp)
	t.Cleanup(func() { otel.SetTracerProvider(prev) })
	e := start(t, nil)
	r := e.do("POST", "/v1/events", []byte(ce("span-1", "/svc/span", usageData)), auth("Content-Type", "application/cloudevents+json"))
	if r.code != 200 || r.h.Get("Content-Type") != "application/json" {
		t.Fatalf("%d %q %s", r.code, r.h.Get("Content-Type"), r.body)
	}
	var names []string
	for _, s := range rec.Ended() {
		if s.SpanKind() == trace.SpanKindServer {
			names = append(names, s.Name())
		}
	}
	if len(names) != 1 || names[0] != "POST /v1/events" {
		t.Errorf("server spans %q, want one named \"POST /v1/events\"", names)
	}
}
