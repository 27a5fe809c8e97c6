package telemetry_test

import (
	"context"
	"io"
	"log/slog"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/usagefleet/usagefleet/internal/broker/natstest"
	"github.com/usagefleet/usagefleet/internal/config"
	sbwebhook "github.com/usagefleet/usagefleet/internal/sandbox/webhook"
	"github.com/usagefleet/usagefleet/internal/telemetry"
	"github.com/usagefleet/usagefleet/internal/usagegen"
	"github.com/usagefleet/usagefleet/messages"
	"github.com/usagefleet/usagefleet/producer"
	"github.com/usagefleet/usagefleet/workers"
	"github.com/usagefleet/usagefleet/workers/webhook"
)

func TestTraceAndMetricsFollowABatch(t *testing.T) {
	ctx := context.Background()
	tel, err := telemetry.Setup(ctx, "telemetry-test")
	if err != nil {
		t.Fatal(err)
	}
	defer tel.Shutdown(ctx)
	spans := tracetest.NewInMemoryExporter()
	otel.SetTracerProvider(sdktrace.NewTracerProvider(sdktrace.WithSyncer(spans)))

	ns := natstest.Start(t)
	sb := sbwebhook.New(sbwebhook.Config{MaxBodyBytes: 64 << 10})
	srv := httptest.NewServer(sb.Handler())
	defer srv.Close()
	dest, err := webhook.New("hook", webhook.Settings{URL: srv.URL + "/ingest", MaxBodyBytes: 64 << 10}, "test")
	if err != nil {
		t.Fatal(err)
	}
	pool, err := workers.NewPool(ns.Connect(t), dest, workers.Options{Feeds: []string{"tel"}, LeaseTTL: natstest.LeaseTTL})
	if err != nil {
		t.Fatal(err)
	}
	pctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { pool.Run(pctx); close(done) }()
	defer func() { stop(); <-done }()

	prod, _ := producer.New(ns.Connect(t), producer.Options{})
	recs := usagegen.Generate(1000, usagegen.Options{Seed: 3, Hours: 1})
	res, err := prod.Publish(ctx, &messages.Batch{ID: "tel-1", Feed: "tel", Source: "svc", Records: recs})
	if err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if _, err := prod.Wait(wctx, res, []string{"hook"}, nil); err != nil {
		t.Fatal(err)
	}

	// The trace: publish → deliver (via NATS headers) → HTTP uploads.
	var publish sdktrace.ReadOnlySpan
	byID := map[trace.SpanID]tracetest.SpanStub{}
	all := spans.GetSpans()
	for _, s := range all {
		byID[s.SpanContext.SpanID()] = s
	}
	for _, s := range all.Snapshots() {
		if s.Name() == "publish tel" {
			publish = s
		}
	}
	if publish == nil {
		t.Fatalf("no publish span among %d spans", len(all))
	}
	uploads := 0
	for _, s := range all {
		if s.SpanKind != trace.SpanKindClient {
			continue
		}
		uploads++
		if s.SpanContext.TraceID() != publish.SpanContext().TraceID() {
			t.Fatalf("upload span %q is in another trace", s.Name)
		}
		// Walk up: the deliver span, whose parent is the publish span.
		p := s.Parent
		chain := []string{s.Name}
		for p.IsValid() && p.SpanID() != publish.SpanContext().SpanID() {
			ps, ok := byID[p.SpanID()]
			if !ok {
				t.Fatalf("upload span's ancestry breaks at %v: %v", p.SpanID(), chain)
			}
			chain = append(chain, ps.Name)
			p = ps.Parent
		}
		if !p.IsValid() {
			t.Fatalf("publish span is not an ancestor of upload span: chain %v", chain)
		}
	}
	if uploads == 0 {
		t.Fatal("no HTTP client spans: uploads are not traced")
	}

	// The metrics, as Prometheus reads them. The ack event is stored a
	// moment before the pool counts the records out: poll briefly.
	h := telemetry.Health(tel.Metrics, func(context.Context) error { return nil })
	var text string
	for deadline := time.Now().Add(5 * time.Second); ; {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
		body, _ := io.ReadAll(rec.Body)
		text = string(body)
		if v, ok := metricValue(text, `usagefleet_records_out_total{destination="hook",.*outcome="delivered"`); (ok && v >= 1000) || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	want := map[string]float64{
		`usagefleet_records_in_total{destination="hook"`:                        1000,
		`usagefleet_records_out_total{destination="hook",.*outcome="delivered"`: 1000,
	}
	for pat, v := range want {
		got, ok := metricValue(text, pat)
		if !ok || got != v {
			t.Errorf("metric %s = %v (found %v), want %v\n%s", pat, got, ok, v, grep(text, "usagefleet_"))
		}
	}
	if n, ok := metricValue(text, `usagefleet_uploads_total{destination="hook",.*outcome="success"`); !ok || n != float64(uploads) {
		t.Errorf("uploads_total success = %v, %d upload spans", n, uploads)
	}
	if n, ok := metricValue(text, `usagefleet_stream_read_bytes_total{destination="hook"`); !ok || n <= 0 {
		t.Errorf("stream_read_bytes_total = %v (found %v): the parts' payload bytes were not counted", n, ok)
	}
	for _, name := range []string{"usagefleet_request_body_bytes_total", "usagefleet_consumer_pending", "usagefleet_destination_paused", "usagefleet_unit_oldest_age_seconds", "usagefleet_publish_duration_seconds_bucket"} {
		if !strings.Contains(text, name) {
			t.Errorf("metric %s missing\n%s", name, grep(text, "usagefleet_"))
		}
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/readyz", nil))
	if rec.Code != 200 {
		t.Errorf("/readyz = %d", rec.Code)
	}
	_ = config.Duration(0)
}

func metricValue(text, pattern string) (float64, bool) {
	re := regexp.MustCompile("(?m)^" + regexp.QuoteMeta(pattern[:strings.Index(pattern, "{")+1]) + ".*$")
	inner := regexp.MustCompile(pattern[strings.Index(pattern, "{")+1:])
	for _, line := range re.FindAllString(text, -1) {
		if !inner.MatchString(line) {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		return v, err == nil
	}
	return 0, false
}

func grep(text, sub string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, sub) && !strings.HasPrefix(l, "#") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

func TestLogHandlerAddsTraceIDs(t *testing.T) {
	var buf strings.Builder
	log := slog.New(telemetry.LogHandler(slog.NewJSONHandler(&buf, nil)))
	tp := sdktrace.NewTracerProvider()
	ctx, span := tp.Tracer("t").Start(context.Background(), "op")
	log.InfoContext(ctx, "uploaded", "unit", "h2024-08-16T13")
	span.End()
	log.Info("no span")
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if !strings.Contains(lines[0], `"trace_id":"`+span.SpanContext().TraceID().String()+`"`) {
		t.Fatalf("no trace id: %s", lines[0])
	}
	if strings.Contains(lines[1], "trace_id") {
		t.Fatalf("trace id without a span: %s", lines[1])
	}
}

// The resource as the OpenTelemetry specification orders it: the binary's
// name and version are defaults, OTEL_RESOURCE_ATTRIBUTES overrides them,
// OTEL_SERVICE_NAME overrides service.name again.
func TestResourceHonoursTheEnvironment(t *testing.T) {
	for name, tc := range map[string]struct {
		attrs, service string
		want           map[string]string
	}{
		"defaults":       {"", "", map[string]string{"service.name": "usage-worker", "service.version": telemetry.ReadBuild().Version}},
		"attributes":     {"service.version=v9.9.9,deployment.environment.name=prod,service.name=billing-worker", "", map[string]string{"service.name": "billing-worker", "service.version": "v9.9.9", "deployment.environment.name": "prod"}},
		"service name":   {"service.name=billing-worker", "from-env", map[string]string{"service.name": "from-env"}},
		"only a version": {"service.version=v1.2.3", "", map[string]string{"service.name": "usage-worker", "service.version": "v1.2.3"}},
	} {
		t.Run(name, func(t *testing.T) {
			t.Setenv("OTEL_RESOURCE_ATTRIBUTES", tc.attrs)
			t.Setenv("OTEL_SERVICE_NAME", tc.service)
			got := map[string]string{}
			for _, kv := range telemetry.Resource("usage-worker").Attributes() {
				got[string(kv.Key)] = kv.Value.Emit()
			}
			for k, v := range tc.want {
				if got[k] != v {
					t.Errorf("%s = %q, want %q (resource %v)", k, got[k], v, got)
				}
			}
		})
	}
}

// /metrics has the Go and process collectors and the build, beside the
// usagefleet instruments.
func TestMetricsHaveGoProcessAndBuild(t *testing.T) {
	tel, err := telemetry.Setup(context.Background(), "usage-test")
	if err != nil {
		t.Fatal(err)
	}
	defer tel.Shutdown(context.Background())
	rec := httptest.NewRecorder()
	tel.Metrics.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	for _, want := range []string{"go_goroutines ", "go_memstats_alloc_bytes ", "process_cpu_seconds_total ", "process_resident_memory_bytes ", `usagefleet_build_info{commit="`} {
		if !strings.Contains(rec.Body.String(), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}
