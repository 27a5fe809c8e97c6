package telemetry_test

import (
	"context"
	"fmt"
	"io"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"go.yaml.in/yaml/v3"

	"github.com/usagefleet/usagefleet/internal/broker/natstest"
	"github.com/usagefleet/usagefleet/internal/sandbox/cloudzero"
	"github.com/usagefleet/usagefleet/internal/sandbox/fault"
	"github.com/usagefleet/usagefleet/internal/sandbox/serve"
	"github.com/usagefleet/usagefleet/internal/telemetry"
	"github.com/usagefleet/usagefleet/internal/usagegen"
	"github.com/usagefleet/usagefleet/messages"
	"github.com/usagefleet/usagefleet/producer"
	"github.com/usagefleet/usagefleet/workers"
	_ "github.com/usagefleet/usagefleet/workers/cloudzero" // registers the cloudzero type
)

func attrs(kvs []attribute.KeyValue) map[string]string {
	out := map[string]string{}
	for _, kv := range kvs {
		out[string(kv.Key)] = kv.Value.Emit()
	}
	return out
}

// TestReplaceTraceAndFailureMetrics: through a replace destination (the
// CloudZero emulator), the trace started at Publish is the parent of the
// delivery, the unit rebuilds and every HTTP upload, with messaging
// semantic-convention attributes; and the failure metrics count what the
// run did: one 500 (an upload by status code, a retry, a cooldown) and one
// undecodable message (a dead letter).
func TestReplaceTraceAndFailureMetrics(t *testing.T) {
	ctx := context.Background()
	tel, err := telemetry.Setup(ctx, "telemetry-replace-test")
	if err != nil {
		t.Fatal(err)
	}
	defer tel.Shutdown(ctx)
	spans := tracetest.NewInMemoryExporter()
	otel.SetTracerProvider(sdktrace.NewTracerProvider(sdktrace.WithSyncer(spans)))

	ns := natstest.Start(t)
	const conn, key = "tel-conn", "tel-key-never-logged"
	sb, err := serve.Start(serve.Options{Only: []string{serve.CloudZero}, CloudZero: cloudzero.Config{Connections: map[string]string{conn: key}}})
	if err != nil {
		t.Fatal(err)
	}
	defer sb.Close()
	sb.CloudZero.Faults().Set(fault.Rule{Kind: fault.Status, Code: 500, Count: 1})
	t.Setenv("UF_TEL_TEST_CZ_KEY", key)
	var settings yaml.Node
	if err := yaml.Unmarshal([]byte(fmt.Sprintf("base_url: %s\nconnection_id: %s\napi_key: {env: UF_TEL_TEST_CZ_KEY}\n", sb.URLs[serve.CloudZero], conn)), &settings); err != nil {
		t.Fatal(err)
	}
	factory, ok := workers.Lookup("cloudzero")
	if !ok {
		t.Fatal("cloudzero is not registered")
	}
	dest, err := factory("cz", settings.Content[0], "destinations[0](cz).settings")
	if err != nil {
		t.Fatal(err)
	}
	pool, err := workers.NewPool(ns.Connect(t), dest, workers.Options{
		Feeds:    []string{"tel"},
		Flush:    workers.FlushPolicy{MaxDelay: 300 * time.Millisecond, Quiet: 100 * time.Millisecond},
		Retry:    workers.RetryPolicy{Initial: 50 * time.Millisecond, Max: 200 * time.Millisecond},
		LeaseTTL: natstest.LeaseTTL,
	})
	if err != nil {
		t.Fatal(err)
	}
	pctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { pool.Run(pctx); close(done) }()
	defer func() { stop(); <-done }()

	prod, _ := producer.New(ns.Connect(t), producer.Options{})
	recs := usagegen.Generate(600, usagegen.Options{Seed: 4, Hours: 2})
	res, err := prod.Publish(ctx, &messages.Batch{ID: "tel-replace", Feed: "tel", Source: "svc", Records: recs})
	if err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	sums, err := prod.Wait(wctx, res, []string{"cz"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if s := sums["cz"]; s.Records != len(recs) || !s.Cost.Equal(res.Cost) {
		t.Fatalf("summary %+v; published %d records costing %s", s, len(recs), res.Cost)
	}

	// Then an undecodable part (its payload is not msgpack, its headers
	// fine): dead-lettered when its hour is rebuilt, in a job (and a trace)
	// of its own.
	nc := ns.Connect(t)
	hour := time.Date(2024, 8, 1, 3, 0, 0, 0, time.UTC)
	h := messages.PartMeta{BatchID: "garbage", Part: 1, Feed: "tel", Source: "svc", Kind: messages.KindAppend, Hour: hour, Records: 1}.Header()
	if err := nc.PublishMsg(&nats.Msg{Subject: messages.UsageSubject("tel", hour), Header: h, Data: []byte{0x91, 0xc1}}); err != nil {
		t.Fatal(err)
	}
	js, _ := jetstream.New(nc)
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if st, err := js.Stream(ctx, messages.StreamDead); err == nil {
			if info, err := st.Info(ctx); err == nil && info.State.Msgs >= 1 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("the undecodable part was not dead-lettered")
		}
	}

	// The trace. A delivery span ends a moment after its acks are out:
	// wait until every parent a span names has ended too.
	var all tracetest.SpanStubs
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		all = spans.GetSpans()
		ids := map[trace.SpanID]bool{}
		for _, s := range all {
			ids[s.SpanContext.SpanID()] = true
		}
		dangling := false
		for _, s := range all {
			dangling = dangling || (s.Parent.IsValid() && !ids[s.Parent.SpanID()])
		}
		if !dangling || time.Now().After(deadline) {
			break
		}
	}
	byID := map[trace.SpanID]tracetest.SpanStub{}
	var publish *tracetest.SpanStub
	for i, s := range all {
		byID[s.SpanContext.SpanID()] = s
		if s.Name == "publish tel" {
			publish = &all[i]
		}
	}
	if publish == nil {
		t.Fatalf("no publish span among %d spans", len(all))
	}
	if a := attrs(publish.Attributes); a["messaging.system"] != "nats" || a["messaging.operation.type"] != "publish" || publish.SpanKind != trace.SpanKindProducer {
		t.Errorf("publish span: kind %v, attributes %v", publish.SpanKind, a)
	}
	descends := func(s tracetest.SpanStub) ([]string, bool) {
		chain := []string{s.Name}
		for p := s.Parent; p.IsValid(); {
			if p.SpanID() == publish.SpanContext.SpanID() {
				return chain, true
			}
			ps, ok := byID[p.SpanID()]
			if !ok {
				return chain, false
			}
			chain = append(chain, ps.Name)
			p = ps.Parent
		}
		return chain, false
	}
	var delivers, rebuilds, uploads, failed, allUploads int
	for _, s := range all {
		if s.SpanKind == trace.SpanKindClient {
			allUploads++
		}
		if s.SpanContext.TraceID() != publish.SpanContext.TraceID() {
			continue // the undecodable part's job (its hour is cleared: one more upload)
		}
		switch {
		case s.Name == "deliver cz":
			delivers++
			a := attrs(s.Attributes)
			if s.SpanKind != trace.SpanKindConsumer || a["messaging.system"] != "nats" || a["messaging.operation.type"] != "process" ||
				a["messaging.consumer.group.name"] != workers.ConsumerName("cz") || !strings.HasPrefix(a["messaging.destination.name"], "usage.tel.") {
				t.Errorf("deliver span: kind %v, attributes %v", s.SpanKind, a)
			}
		case strings.HasPrefix(s.Name, "rebuild "):
			rebuilds++
		case s.SpanKind == trace.SpanKindClient:
			uploads++
			if attrs(s.Attributes)["http.response.status_code"] == "500" {
				failed++
			}
		default:
			continue
		}
		if chain, ok := descends(s); !ok {
			t.Errorf("span %q does not descend from the publish span: %v", s.Name, chain)
		}
	}
	if delivers == 0 || rebuilds < 2 || uploads < 2 || failed != 1 {
		t.Fatalf("spans: %d deliver, %d rebuild (want one per hour, twice: the first try failed), %d upload (%d with status 500, want 1)", delivers, rebuilds, uploads, failed)
	}

	// The metrics.
	hnd := telemetry.Health(tel.Metrics, func(context.Context) error { return nil })
	var text string
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		rec := httptest.NewRecorder()
		hnd.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
		b, _ := io.ReadAll(rec.Body)
		text = string(b)
		if v, ok := metricValue(text, `usagefleet_records_out_total{destination="cz",.*outcome="delivered"`); (ok && v >= float64(len(recs))) || time.Now().After(deadline) {
			break
		}
	}
	exact := map[string]float64{
		`usagefleet_records_out_total{destination="cz",.*outcome="delivered"`:             float64(len(recs)),
		`usagefleet_uploads_total{destination="cz",.*outcome="failure",status_code="500"`: 1,
		`usagefleet_uploads_total{destination="cz",.*outcome="success",status_code="200"`: float64(allUploads - 1),
		`usagefleet_dead_letters_total{destination="cz"`:                                  1,
		`usagefleet_retries_total{destination="cz"`:                                       1,
		`usagefleet_destination_paused{destination="cz"`:                                  0,
	}
	for pat, want := range exact {
		if got, ok := metricValue(text, pat); !ok || got != want {
			t.Errorf("%s = %v (found %v), want %v\n%s", pat, got, ok, want, grep(text, "usagefleet_"))
		}
	}
	for _, name := range []string{`usagefleet_cooldown_active{destination="cz"`, `usagefleet_consumer_ack_pending{destination="cz"`, `usagefleet_consumer_pending{destination="cz"`, `usagefleet_unit_oldest_age_seconds{destination="cz"`, `usagefleet_request_body_bytes_total{destination="cz"`} {
		if !strings.Contains(text, name) {
			t.Errorf("metric %s missing\n%s", name, grep(text, "usagefleet_"))
		}
	}
	if strings.Contains(text, key) {
		t.Error("the API key is in the metrics")
	}
}
