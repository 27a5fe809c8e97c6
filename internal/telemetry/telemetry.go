// Package telemetry sets up OpenTelemetry for the binaries: metrics through
// the OpenTelemetry SDK with a Prometheus endpoint (and OTLP when
// configured), traces exported per the standard OTEL_* environment
// variables, W3C trace context propagation, and the health endpoints.
//
// Nothing is exported over the network unless OTEL_TRACES_EXPORTER,
// OTEL_METRICS_EXPORTER or OTEL_EXPORTER_OTLP_ENDPOINT (or its per-signal
// variants) is set; the Prometheus endpoint is served on the configured
// listener only.
package telemetry

import (
	"context"
	"errors"
	"net/http"
	"os"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/contrib/exporters/autoexport"
	"go.opentelemetry.io/otel"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/propagation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	semconv "go.opentelemetry.io/otel/semconv/v1.26.0"
)

// Telemetry holds the providers; Shutdown flushes them.
type Telemetry struct {
	Metrics  http.Handler // Prometheus exposition of every usagefleet metric
	Registry *prometheus.Registry
	// TracesExported says spans leave the process (an exporter is
	// configured by the OTEL_* environment). Without one, spans are
	// recorded and dropped: a hot path may skip making its own.
	TracesExported bool
	shutdown       []func(context.Context) error
}

func envSet(keys ...string) bool {
	for _, k := range keys {
		if v := os.Getenv(k); v != "" && v != "none" {
			return true
		}
	}
	return false
}

// Setup installs global meter and tracer providers for service.
func Setup(ctx context.Context, service string) (*Telemetry, error) {
	res := Resource(service)
	t := &Telemetry{Registry: prometheus.NewRegistry()}
	// The Go runtime and the process (CPU, memory, file descriptors) beside
	// usagefleet's own, and the build: what every Go service exports.
	t.Registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), BuildInfoCollector())
	exp, err := otelprom.New(otelprom.WithRegisterer(t.Registry))
	if err != nil {
		return nil, err
	}
	mopts := []sdkmetric.Option{sdkmetric.WithResource(res), sdkmetric.WithReader(exp)}
	if envSet("OTEL_METRICS_EXPORTER", "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT") {
		r, err := autoexport.NewMetricReader(ctx)
		if err != nil {
			return nil, err
		}
		mopts = append(mopts, sdkmetric.WithReader(r))
	}
	mp := sdkmetric.NewMeterProvider(mopts...)
	otel.SetMeterProvider(mp)
	t.shutdown = append(t.shutdown, mp.Shutdown)
	t.Metrics = promhttp.HandlerFor(t.Registry, promhttp.HandlerOpts{})

	topts := []sdktrace.TracerProviderOption{sdktrace.WithResource(res)}
	// OTEL_TRACES_EXPORTER=none beside an endpoint (for metrics) exports
	// no span: autoexport's exporter for it drops them.
	t.TracesExported = envSet("OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") &&
		os.Getenv("OTEL_TRACES_EXPORTER") != "none"
	if t.TracesExported {
		se, err := autoexport.NewSpanExporter(ctx)
		if err != nil {
			return nil, err
		}
		topts = append(topts, sdktrace.WithBatcher(se))
	}
	tp := sdktrace.NewTracerProvider(topts...)
	otel.SetTracerProvider(tp)
	otel.SetTextMapPropagator(propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{}))
	t.shutdown = append(t.shutdown, tp.Shutdown)
	return t, nil
}

// Resource is the OpenTelemetry resource of service, as the specification
// orders it: the binary's name and build version are defaults;
// OTEL_RESOURCE_ATTRIBUTES overrides them (service.version, say, or
// service.name); OTEL_SERVICE_NAME overrides service.name again.
func Resource(service string) *resource.Resource {
	// Schemaless: the SDK's default resource carries the SDK's semconv
	// schema URL, and merging a resource with another schema URL fails,
	// which used to drop the service name (everything was exported as
	// unknown_service:<binary>).
	defaults := resource.NewSchemaless(semconv.ServiceName(service), semconv.ServiceVersion(ReadBuild().Version))
	// Read anew (resource.Default() is computed once per process):
	// OTEL_RESOURCE_ATTRIBUTES, then OTEL_SERVICE_NAME, over the SDK's.
	env, err := resource.New(context.Background(), resource.WithTelemetrySDK(), resource.WithFromEnv())
	if err != nil && env == nil {
		return defaults
	}
	res, err := resource.Merge(defaults, env)
	if err != nil {
		return defaults
	}
	return res
}

// Shutdown flushes and stops the providers.
func (t *Telemetry) Shutdown(ctx context.Context) error {
	var errs []error
	for _, f := range t.shutdown {
		errs = append(errs, f(ctx))
	}
	return errors.Join(errs...)
}

// Health serves /healthz (the process answers) and /readyz (ready reports
// nil), and /metrics, on one mux.
func Health(metrics http.Handler, ready func(context.Context) error) *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) {
		if err := ready(r.Context()); err != nil {
			http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ready\n"))
	})
	if metrics != nil {
		mux.Handle("/metrics", metrics)
	}
	return mux
}
