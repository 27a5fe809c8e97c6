package deploy

import (
	"encoding/json"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// The Prometheus names of the fleet's metrics (workers/metrics.go and the
// producer's publish histogram, through the OpenTelemetry Prometheus
// exporter), and the labels each carries besides the target's.
var fleetMetrics = map[string][]string{
	"usagefleet_records_in_total":         {"destination"},
	"usagefleet_records_out_total":        {"destination", "outcome"},
	"usagefleet_request_body_bytes_total": {"destination"},
	"usagefleet_stream_read_bytes_total":  {"destination"},
	"usagefleet_uploads_total":            {"destination", "outcome", "status_code"},
	"usagefleet_retries_total":            {"destination"},
	"usagefleet_cooldown_active":          {"destination"},
	"usagefleet_destination_paused":       {"destination"},
	"usagefleet_unit_oldest_age_seconds":  {"destination"},
	"usagefleet_consumer_pending":         {"destination"},
	"usagefleet_consumer_ack_pending":     {"destination"},
	"usagefleet_dead_letters_total":       {"destination"},
	"usagefleet_lease_conflicts_total":    {"destination"},
	"usagefleet_publish_duration_seconds": nil, // a histogram; producers have no destination
}

var histograms = map[string]bool{"usagefleet_publish_duration_seconds": true}

// metricName maps a histogram's series (_bucket, _sum, _count) to the
// histogram.
func metricName(series string) string {
	for _, suf := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(series, suf); ok && histograms[base] {
			return base
		}
	}
	return series
}

var (
	metricRE = regexp.MustCompile(`\busagefleet_[a-z_]+`)
	// selectorRE is a metric with its label matchers; byRE an aggregation's labels.
	selectorRE = regexp.MustCompile(`(usagefleet_[a-z_]+)\{([^}]*)\}`)
	byRE       = regexp.MustCompile(`\b(?:by|without)\s*\(([^)]*)\)`)
	matcherRE  = regexp.MustCompile(`([a-z_]+)\s*(?:=~|!~|!=|=)`)
)

// TestDashboard checks the Grafana dashboard: it parses, its panels are
// laid out and take their datasource from the DS_PROMETHEUS variable, it
// charts every fleet metric, queries no other usagefleet metric, and
// groups and filters only by labels those metrics carry.
func TestDashboard(t *testing.T) {
	var dash map[string]any
	if err := json.Unmarshal(readFile(t, "deploy/grafana/usagefleet-dashboard.json"), &dash); err != nil {
		t.Fatal(err)
	}
	ds := yamlDoc(t, "deploy/grafana/provisioning/datasources/prometheus.yaml")
	dsUID := str(list(ds, "datasources")[0], "uid")
	if str(dash, "uid") == "" || str(dash, "title") == "" {
		t.Error("the dashboard has no uid or title")
	}
	// The datasource is a variable, so the dashboard imports into any
	// Grafana (helm chart, an existing Prometheus): DS_PROMETHEUS picks it,
	// defaulting to the one provisioned for compose, and every query uses
	// ${DS_PROMETHEUS}.
	const dsVar = "${DS_PROMETHEUS}"
	var exprs []string
	dsVars := 0
	for _, v := range list(dash, "templating", "list") {
		if str(v, "name") == "DS_PROMETHEUS" {
			dsVars++
			if str(v, "type") != "datasource" || str(v, "query") != "prometheus" || str(v, "current", "value") != dsUID {
				t.Errorf("variable DS_PROMETHEUS: type %q query %q current %q; want a prometheus datasource variable defaulting to %q", str(v, "type"), str(v, "query"), str(v, "current", "value"), dsUID)
			}
			continue
		}
		if q := str(v, "query", "query"); q != "" {
			exprs = append(exprs, q)
		}
		if u := str(v, "datasource", "uid"); u != dsVar {
			t.Errorf("variable %s uses datasource %q; want %s", str(v, "name"), u, dsVar)
		}
	}
	if dsVars != 1 {
		t.Errorf("%d DS_PROMETHEUS variables; want one", dsVars)
	}
	ids := map[float64]bool{}
	for _, p := range list(dash, "panels") {
		title := str(p, "title")
		id, _ := at(p, "id").(float64)
		if ids[id] {
			t.Errorf("panel %q: id %v used twice", title, id)
		}
		ids[id] = true
		g := obj(p, "gridPos")
		if g == nil || at(g, "x").(float64)+at(g, "w").(float64) > 24 {
			t.Errorf("panel %q: gridPos %v", title, g)
		}
		if str(p, "type") == "row" {
			continue
		}
		if u := str(p, "datasource", "uid"); u != dsVar {
			t.Errorf("panel %q uses datasource %q; want %s", title, u, dsVar)
		}
		targets := list(p, "targets")
		if len(targets) == 0 {
			t.Errorf("panel %q queries nothing", title)
		}
		for _, tg := range targets {
			exprs = append(exprs, str(tg, "expr"))
			if u := str(tg, "datasource", "uid"); u != "" && u != dsVar {
				t.Errorf("panel %q: a query uses datasource %q; want %s", title, u, dsVar)
			}
		}
	}
	charted := map[string]bool{}
	for _, e := range exprs {
		names := metricRE.FindAllString(e, -1)
		if len(names) == 0 {
			t.Errorf("query %q uses no usagefleet metric", e)
		}
		var labels []string
		for _, n := range names {
			n = metricName(n)
			if _, ok := fleetMetrics[n]; !ok {
				t.Errorf("query %q: %s is not a metric the fleet exports", e, n)
				continue
			}
			charted[n] = true
			labels = append(labels, fleetMetrics[n]...)
		}
		if strings.Contains(e, "_bucket") {
			labels = append(labels, "le")
		}
		for _, sm := range selectorRE.FindAllStringSubmatch(e, -1) {
			own := fleetMetrics[metricName(sm[1])]
			for _, mm := range matcherRE.FindAllStringSubmatch(sm[2], -1) {
				if !slices.Contains(own, mm[1]) {
					t.Errorf("query %q: %s has no label %s", e, sm[1], mm[1])
				}
			}
		}
		for _, bm := range byRE.FindAllStringSubmatch(e, -1) {
			for _, lbl := range strings.Split(bm[1], ",") {
				lbl = strings.TrimSpace(lbl)
				if lbl != "" && !slices.Contains(labels, lbl) && lbl != "instance" && lbl != "job" {
					t.Errorf("query %q groups by %s, which its metrics do not carry", e, lbl)
				}
			}
		}
	}
	for _, n := range sortedKeys(fleetMetrics) {
		if !charted[n] {
			t.Errorf("no panel charts %s", n)
		}
	}

	// Grafana finds the file where compose mounts it.
	prov := yamlDoc(t, "deploy/grafana/provisioning/dashboards/usagefleet.yaml")
	dir := str(list(prov, "providers")[0], "options", "path")
	c := loadCompose(t)
	found := false
	for _, name := range sortedKeys(c.services) {
		if c.mount(name, dir+"/usagefleet-dashboard.json") == "deploy/grafana/usagefleet-dashboard.json" {
			found = true
		}
	}
	if !found {
		t.Errorf("no service mounts the dashboard into %s, where the provisioning looks", dir)
	}
}

// TestOTelCollectorPipelines checks every pipeline of the collector config
// uses only components it defines, and that it takes OTLP over both
// protocols, exports metrics to Prometheus and traces to debug.
func TestOTelCollectorPipelines(t *testing.T) {
	cfg := yamlDoc(t, "deploy/otel/collector.yaml")
	for _, ext := range strs(list(cfg, "service", "extensions")) {
		if at(cfg, "extensions", ext) == nil && !strings.Contains(ext, "/") {
			t.Errorf("service.extensions names %s, which is not defined", ext)
		}
	}
	pipes := obj(cfg, "service", "pipelines")
	for name, p := range pipes {
		for _, kind := range []string{"receivers", "processors", "exporters"} {
			for _, c := range strs(list(p, kind)) {
				if _, ok := obj(cfg, kind)[c]; !ok {
					t.Errorf("pipeline %s uses %s %s, which is not defined", name, kind, c)
				}
			}
		}
		if !slices.Contains(strs(list(p, "receivers")), "otlp") {
			t.Errorf("pipeline %s does not receive OTLP", name)
		}
	}
	if at(cfg, "receivers", "otlp", "protocols", "grpc") == nil || at(cfg, "receivers", "otlp", "protocols", "http") == nil {
		t.Error("OTLP is not received over both gRPC and HTTP")
	}
	if !slices.Contains(strs(list(pipes, "metrics", "exporters")), "prometheus") {
		t.Error("metrics are not exported to Prometheus")
	}
	if !slices.Contains(strs(list(pipes, "traces", "exporters")), "debug") {
		t.Error("traces do not go to the debug exporter")
	}
	if procs := strs(list(pipes, "metrics", "processors")); !slices.Contains(procs, "batch") || procs[len(procs)-1] != "batch" {
		t.Errorf("metrics processors %v; batch goes last", procs)
	}
}
