package gateway

import (
	"context"
	"testing"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
)

// The per-request counters (observed from atomics) count what was asked
// and read: requests by route and code, body bytes as received.
func TestRequestMetrics(t *testing.T) {
	rd := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(rd))
	prev := otel.GetMeterProvider()
	otel.SetMeterProvider(mp)
	t.Cleanup(func() { otel.SetMeterProvider(prev) })
	// The global provider's first SetMeterProvider also takes the
	// instruments of the gateways other tests made (the global delegate):
	// what this test counts is the difference.
	e := start(t, nil)
	requests0, bytes0 := collectRequestMetrics(t, rd)
	var sent int64
	for _, id := range []string{"m-1", "m-2"} {
		body := []byte(ce(id, "/svc/metrics", usageData))
		sent += int64(len(body))
		if r := e.do("POST", "/v1/events", body, auth("Content-Type", "application/cloudevents+json")); r.code != 200 {
			t.Fatal(r.code, string(r.body))
		}
	}
	if r := e.do("POST", "/v1/events", []byte(ce("m-3", "/s", usageData)), map[string]string{"Content-Type": "application/cloudevents+json"}); r.code != 401 {
		t.Fatal(r.code, string(r.body))
	}
	requests, bytes := collectRequestMetrics(t, rd)
	for k, n := range requests0 {
		if requests[k] -= n; requests[k] == 0 {
			delete(requests, k)
		}
	}
	want := map[[2]string]int64{{"events", "200"}: 2, {"events", "401"}: 1}
	for k, n := range want {
		if requests[k] != n {
			t.Errorf("requests %v: %d, want %d (all: %v)", k, requests[k], n, requests)
		}
	}
	if len(requests) != len(want) {
		t.Errorf("requests %v, want %v", requests, want)
	}
	if bytes-bytes0 != sent {
		t.Errorf("bytes grew by %d, want %d", bytes-bytes0, sent)
	}
}

// collectRequestMetrics reads the requests counter (by route and code)
// and the bytes counter, checking both are cumulative monotonic sums.
func collectRequestMetrics(t *testing.T, rd sdkmetric.Reader) (map[[2]string]int64, int64) {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := rd.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	requests := map[[2]string]int64{}
	var bytes int64
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			s, ok := m.Data.(metricdata.Sum[int64])
			if !ok || m.Name != "usagefleet.gateway.requests" && m.Name != "usagefleet.gateway.bytes" {
				continue
			}
			if !s.IsMonotonic || s.Temporality != metricdata.CumulativeTemporality {
				t.Errorf("%s is not a cumulative monotonic counter: %+v", m.Name, s)
			}
			for _, dp := range s.DataPoints {
				if m.Name == "usagefleet.gateway.bytes" {
					bytes += dp.Value
					continue
				}
				route, _ := dp.Attributes.Value(attribute.Key("route"))
				code, _ := dp.Attributes.Value(attribute.Key("code"))
				requests[[2]string{route.AsString(), code.AsString()}] += dp.Value
			}
		}
	}
	return requests, bytes
}
