package gateway

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/usagefleet/usagefleet/messages"
)

func TestDrainAnswersLingeringEventsThenRefuses(t *testing.T) {
	e := start(t, nil)
	e.gw.linger = time.Hour // only Drain closes the group
	e.gw.pipeline = 0       // not the idle gateway's group commit either
	got := make(chan reply, 1)
	go func() {
		got <- e.do("POST", "/v1/events", []byte(ce("lingering", "/s", usageData)), auth("Content-Type", "application/cloudevents+json"))
	}()
	// The event is in the open group once the lingerer holds it.
	deadline := time.Now().Add(10 * time.Second)
	for {
		l := e.gw.lingererFor(lingerKey{testSource, testFeed})
		l.mu.Lock()
		n := len(l.group)
		l.mu.Unlock()
		if n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the event never reached its group")
		}
		time.Sleep(time.Millisecond)
	}
	e.gw.Drain()
	r := <-got
	if r.code != 200 {
		t.Fatalf("the in-flight event: %d %s", r.code, r.body)
	}
	if n := recordCount(e.stored()); n != 1 {
		t.Fatalf("%d records stored, want 1", n)
	}
	r = e.do("POST", "/v1/events", []byte(ce("late", "/s", usageData)), auth("Content-Type", "application/cloudevents+json"))
	if r.code != 503 || r.h.Get("Retry-After") == "" {
		t.Fatalf("after drain: %d %s", r.code, r.body)
	}
}

// The parts continue the caller's trace, whether the gateway records spans
// of its own or not (SkipSpans: no exporter, so none are started).
func TestTraceContinuesIntoTheParts(t *testing.T) {
	for _, skip := range []bool{false, true} {
		t.Run(fmt.Sprintf("SkipSpans=%v", skip), func(t *testing.T) {
			rec := tracetest.NewSpanRecorder()
			tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
			prevTP, prevProp := otel.GetTracerProvider(), otel.GetTextMapPropagator()
			otel.SetTracerProvider(tp)
			otel.SetTextMapPropagator(propagation.TraceContext{})
			t.Cleanup(func() { otel.SetTracerProvider(prevTP); otel.SetTextMapPropagator(prevProp) })
			e := start(t, func(c *Config) { c.SkipSpans = skip })
			const traceID = "4bf92f3577b34da6a3ce929d0e0e4736"
			tp0 := "00-" + traceID + "-00f067aa0ba902b7-01"
			r := e.do("POST", "/v1/usage", ndjson(2, "1"), auth("Content-Type", "application/x-ndjson", "traceparent", tp0))
			if r.code != 200 {
				t.Fatal(r.code, string(r.body))
			}
			r = e.do("POST", "/v1/events", []byte(ce("traced", "/s", usageData)), auth("Content-Type", "application/cloudevents+json", "traceparent", tp0))
			if r.code != 200 {
				t.Fatal(r.code, string(r.body))
			}
			js, _ := jetstream.New(e.nc)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			st, _ := js.Stream(ctx, messages.StreamUsage)
			for seq := uint64(1); seq <= 2; seq++ {
				m, err := st.GetMsg(ctx, seq)
				if err != nil {
					t.Fatal(err)
				}
				tpHdr := m.Header.Get("traceparent")
				if len(tpHdr) < 36 || tpHdr[3:35] != traceID {
					t.Errorf("part %d: traceparent %q does not continue trace %s", seq, tpHdr, traceID)
				}
			}
			var gw []string
			for _, s := range rec.Ended() {
				if s.SpanKind() == trace.SpanKindServer || s.Name() == "gateway group" {
					gw = append(gw, s.Name())
				}
			}
			if want := 3; !skip && len(gw) != want {
				t.Errorf("the gateway's spans %q, want %d (two requests, one group)", gw, want)
			}
			if skip && len(gw) != 0 {
				t.Errorf("SkipSpans, yet the gateway recorded spans %q", gw)
			}
		})
	}
}

// TestIdleLingerGroupsAreRemoved: a long-running gateway sees many (source,
// feed) pairs; once their groups are stored it keeps nothing for them.
func TestIdleLingerGroupsAreRemoved(t *testing.T) {
	e := start(t, nil)
	const feeds = 40
	for i := 0; i < feeds; i++ {
		r := e.do("POST", fmt.Sprintf("/v1/events?feed=f%d", i), []byte(ce(fmt.Sprintf("idle-%d", i), "/s", usageData)),
			map[string]string{"X-API-Key": otherKey, "Content-Type": "application/cloudevents+json"})
		if r.code != 200 {
			t.Fatalf("event %d: %d %s", i, r.code, r.body)
		}
	}
	// Every event was answered, so every group was closed and stored.
	n := 0
	e.gw.lingers.Range(func(_, _ any) bool { n++; return true })
	if n != 0 {
		t.Fatalf("%d linger groups are kept after %d feeds went quiet, want 0", n, feeds)
	}
}
