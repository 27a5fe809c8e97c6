package telemetry_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel"
	colmetricpb "go.opentelemetry.io/proto/otlp/collector/metrics/v1"
	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	"google.golang.org/protobuf/proto"

	"github.com/usagefleet/usagefleet/internal/telemetry"
)

// TestMain clears every OTEL_* variable the test process inherited, so no
// test of this package sends telemetry to a collector configured on the
// machine it runs on; the tests that export set their own, on loopback.
func TestMain(m *testing.M) {
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); strings.HasPrefix(k, "OTEL_") {
			os.Unsetenv(k)
		}
	}
	os.Exit(m.Run())
}

// otlpReceiver is an OTLP/HTTP receiver on loopback: it decodes what it is
// sent on /v1/traces and /v1/metrics and keeps the span and metric names
// with their resources' service names.
type otlpReceiver struct {
	*httptest.Server
	mu       sync.Mutex
	requests map[string]int      // by path
	spans    map[string][]string // span name -> service names
	metrics  map[string][]string // metric name -> service names
	errs     []error
}

func startReceiver(t *testing.T) *otlpReceiver {
	t.Helper()
	r := &otlpReceiver{requests: map[string]int{}, spans: map[string][]string{}, metrics: map[string][]string{}}
	r.Server = httptest.NewServer(http.HandlerFunc(r.serve)) // 127.0.0.1, a random port
	t.Cleanup(r.Close)
	return r
}

func (r *otlpReceiver) serve(w http.ResponseWriter, req *http.Request) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.requests[req.URL.Path]++
	body, err := io.ReadAll(req.Body)
	if err == nil && req.Header.Get("Content-Encoding") == "gzip" {
		var zr *gzip.Reader
		if zr, err = gzip.NewReader(bytes.NewReader(body)); err == nil {
			body, err = io.ReadAll(zr)
		}
	}
	if err != nil {
		r.errs = append(r.errs, err)
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if ct := req.Header.Get("Content-Type"); req.Method != http.MethodPost || ct != "application/x-protobuf" {
		r.errs = append(r.errs, errors.New(req.Method+" "+req.URL.Path+" "+ct))
		http.Error(w, "want a POST of application/x-protobuf", http.StatusUnsupportedMediaType)
		return
	}
	var reply proto.Message
	switch req.URL.Path {
	case "/v1/traces":
		var m coltracepb.ExportTraceServiceRequest
		if err := proto.Unmarshal(body, &m); err != nil {
			r.errs = append(r.errs, err)
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		for _, rs := range m.ResourceSpans {
			svc := serviceName(rs.GetResource().GetAttributes())
			for _, ss := range rs.ScopeSpans {
				for _, s := range ss.Spans {
					r.spans[s.Name] = append(r.spans[s.Name], svc)
				}
			}
		}
		reply = &coltracepb.ExportTraceServiceResponse{}
	case "/v1/metrics":
		var m colmetricpb.ExportMetricsServiceRequest
		if err := proto.Unmarshal(body, &m); err != nil {
			r.errs = append(r.errs, err)
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		for _, rm := range m.ResourceMetrics {
			svc := serviceName(rm.GetResource().GetAttributes())
			for _, sm := range rm.ScopeMetrics {
				for _, mt := range sm.Metrics {
					r.metrics[mt.Name] = append(r.metrics[mt.Name], svc)
				}
			}
		}
		reply = &colmetricpb.ExportMetricsServiceResponse{}
	default:
		http.NotFound(w, req)
		return
	}
	out, _ := proto.Marshal(reply)
	w.Header().Set("Content-Type", "application/x-protobuf")
	w.Write(out)
}

func serviceName(attrs []*commonpb.KeyValue) string {
	for _, kv := range attrs {
		if kv.Key == "service.name" {
			return kv.GetValue().GetStringValue()
		}
	}
	return ""
}

// emit makes one span and one counter increment through the global
// providers Setup installed, then flushes them with Shutdown.
func emit(t *testing.T, tel *telemetry.Telemetry) {
	t.Helper()
	if err := emitErr(t, tel); err != nil {
		t.Fatalf("shutdown (flushing the exporters): %v", err)
	}
}

func emitErr(t *testing.T, tel *telemetry.Telemetry) error {
	t.Helper()
	ctx := context.Background()
	_, span := otel.Tracer("usagefleet/telemetry-test").Start(ctx, "otlp-test-span")
	span.End()
	c, err := otel.Meter("usagefleet/telemetry-test").Int64Counter("usagefleet.test.otlp")
	if err != nil {
		t.Fatal(err)
	}
	c.Add(ctx, 3)
	sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	return tel.Shutdown(sctx)
}

// TestOTLPExportFollowsTheEnvironment configures Setup with the standard
// OTEL_* variables pointing at an OTLP/HTTP receiver on loopback and
// checks what reaches it: spans (with the service name) when traces are
// configured, metrics when they are, and nothing for an exporter set to
// "none".
func TestOTLPExportFollowsTheEnvironment(t *testing.T) {
	for _, tt := range []struct {
		name            string
		env             func(url string) map[string]string
		traces, metrics bool
		service         string // the service name the exports carry ("": otlp-test-svc)
	}{
		{
			name:    "OTEL_EXPORTER_OTLP_ENDPOINT: traces and metrics",
			env:     func(u string) map[string]string { return map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": u} },
			traces:  true,
			metrics: true,
		},
		{
			name: "OTEL_TRACES_EXPORTER=otlp with a traces endpoint: traces only",
			env: func(u string) map[string]string {
				return map[string]string{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": u + "/v1/traces", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}
			},
			traces: true,
		},
		{
			name: "OTEL_TRACES_EXPORTER=otlp, OTEL_METRICS_EXPORTER=none, one endpoint",
			env: func(u string) map[string]string {
				return map[string]string{"OTEL_TRACES_EXPORTER": "otlp", "OTEL_METRICS_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": u}
			},
			traces: true,
		},
		{
			name: "OTEL_SERVICE_NAME names the service",
			env: func(u string) map[string]string {
				return map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": u, "OTEL_SERVICE_NAME": "billing-fleet-eu"}
			},
			traces:  true,
			metrics: true,
			service: "billing-fleet-eu",
		},
		{
			name: "both exporters none, an endpoint set: nothing",
			env: func(u string) map[string]string {
				return map[string]string{"OTEL_TRACES_EXPORTER": "none", "OTEL_METRICS_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": u}
			},
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			rcv := startReceiver(t)
			for k, v := range tt.env(rcv.URL) {
				t.Setenv(k, v)
			}
			tel, err := telemetry.Setup(context.Background(), "otlp-test-svc")
			if err != nil {
				t.Fatal(err)
			}
			if tel.TracesExported != tt.traces {
				t.Fatalf("TracesExported %v, want %v", tel.TracesExported, tt.traces)
			}
			emit(t, tel)

			rcv.mu.Lock()
			defer rcv.mu.Unlock()
			if len(rcv.errs) > 0 {
				t.Fatalf("the receiver could not read what it was sent: %v", rcv.errs)
			}
			gotTraces, gotMetrics := rcv.requests["/v1/traces"] > 0, rcv.requests["/v1/metrics"] > 0
			if gotTraces != tt.traces || gotMetrics != tt.metrics {
				t.Fatalf("requests %v; want traces %v, metrics %v", rcv.requests, tt.traces, tt.metrics)
			}
			for p := range rcv.requests {
				if p != "/v1/traces" && p != "/v1/metrics" {
					t.Errorf("a request to %s", p)
				}
			}
			want := tt.service
			if want == "" {
				want = "otlp-test-svc"
			}
			if tt.traces {
				if svc := rcv.spans["otlp-test-span"]; len(svc) != 1 || svc[0] != want {
					t.Fatalf("span otlp-test-span arrived %d times with service names %v; spans %v", len(svc), svc, rcv.spans)
				}
			}
			if tt.metrics {
				if svc := rcv.metrics["usagefleet.test.otlp"]; len(svc) == 0 || svc[0] != want {
					t.Fatalf("metric usagefleet.test.otlp arrived with service names %v; metrics %v", svc, rcv.metrics)
				}
			}
		})
	}
}

// TestNothingExportedWithoutOTELVariables: with no OTEL_* variable set,
// Setup builds no exporter: spans and metrics made and flushed contact
// nothing. Checked where a wrongly built OTLP exporter would go, the OTLP
// default endpoints (localhost:4317 for gRPC, localhost:4318 for HTTP), by
// listening there on loopback and counting connections; and the metrics
// stay readable on the Prometheus handler.
func TestNothingExportedWithoutOTELVariables(t *testing.T) {
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); strings.HasPrefix(k, "OTEL_") {
			t.Fatalf("%s is set (TestMain clears them)", k)
		}
	}
	var mu sync.Mutex
	conns := map[string]int{}
	listening := 0
	for _, addr := range []string{"127.0.0.1:4317", "127.0.0.1:4318", "[::1]:4317", "[::1]:4318"} {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			t.Logf("not watching %s: %v", addr, err)
			continue
		}
		listening++
		t.Cleanup(func() { ln.Close() })
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				mu.Lock()
				conns[addr]++
				mu.Unlock()
				c.Close()
			}
		}()
	}
	if listening == 0 {
		t.Skip("the OTLP default ports are all taken on this machine: nothing to watch")
	}

	tel, err := telemetry.Setup(context.Background(), "otlp-test-svc")
	if err != nil {
		t.Fatal(err)
	}
	if tel.TracesExported {
		t.Fatal("TracesExported with no OTEL_* variable")
	}
	// Read the metrics locally before Shutdown stops the reader.
	c, err := otel.Meter("usagefleet/telemetry-test").Int64Counter("usagefleet.test.local")
	if err != nil {
		t.Fatal(err)
	}
	c.Add(context.Background(), 2)
	rec := httptest.NewRecorder()
	tel.Metrics.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if !strings.Contains(rec.Body.String(), "usagefleet_test_local_total") {
		t.Fatalf("the Prometheus handler does not show the counter:\n%s", rec.Body.String())
	}
	err = emitErr(t, tel)
	// Shutdown returns once the exporters (if any) flushed or gave up;
	// give a late dial a moment all the same.
	time.Sleep(200 * time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	if len(conns) > 0 {
		t.Fatalf("with no OTEL_* variable set, something connected to the OTLP default endpoints: %v (shutdown: %v)", conns, err)
	}
	if err != nil {
		t.Fatalf("shutdown: %v", err)
	}
}
