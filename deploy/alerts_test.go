package deploy

import (
	"regexp"
	"slices"
	"strings"
	"testing"
)

// The alert rules (issue 15): loaded by prometheus.yml, mounted beside it in
// compose, one rule per question (a paused destination, old units, dead
// letters, reconciliation mismatches), and every series they read is one a
// usagefleet binary exports (its name is in the source that defines it).
func TestAlertRules(t *testing.T) {
	prom := yamlDoc(t, "deploy/prometheus/prometheus.yml")
	if !slices.Contains(strs(list(prom, "rule_files")), "alerts.yml") {
		t.Fatalf("prometheus.yml rule_files %v does not load alerts.yml", list(prom, "rule_files"))
	}
	if !strings.Contains(string(readFile(t, "docker-compose.yml")), "./deploy/prometheus/alerts.yml:/etc/prometheus/alerts.yml:ro") {
		t.Error("docker-compose.yml does not mount alerts.yml beside prometheus.yml")
	}
	rules := yamlDoc(t, "deploy/prometheus/alerts.yml")
	exprs := map[string]string{}
	for _, g := range list(rules, "groups") {
		for _, r := range list(g, "rules") {
			name, expr := str(r, "alert"), str(r, "expr")
			if name == "" || expr == "" || str(r, "annotations", "summary") == "" || str(r, "labels", "severity") == "" {
				t.Errorf("rule %v: want alert, expr, labels.severity and annotations.summary", r)
			}
			exprs[name] = expr
		}
	}
	for alert, metric := range map[string]string{
		"UsagefleetDestinationPaused":        "usagefleet_destination_paused",
		"UsagefleetUnitsWaitTooLong":         "usagefleet_unit_oldest_age_seconds",
		"UsagefleetDeadLettersGrowing":       "usagefleet_dead_letters_total",
		"UsagefleetReconciliationMismatch":   "usagefleet_reconcile_units_out_of_balance",
		"UsagefleetReconciliationNotRunning": "usagefleet_reconcile_last_run_timestamp_seconds",
	} {
		if !strings.Contains(exprs[alert], metric) {
			t.Errorf("alert %s: expr %q does not read %s", alert, exprs[alert], metric)
		}
	}
	// OpenTelemetry instruments (workers/metrics.go) are exported with dots
	// as underscores and a unit suffix; Prometheus ones (internal/ops) by
	// their own name.
	src := string(readFile(t, "workers/metrics.go")) + string(readFile(t, "internal/ops/reconcileloop.go"))
	for alert, expr := range exprs {
		for _, m := range regexp.MustCompile(`usagefleet_[a-z_]+`).FindAllString(expr, -1) {
			otelName := strings.ReplaceAll(strings.TrimSuffix(strings.TrimSuffix(m, "_total"), "_seconds"), "_", ".")
			if !strings.Contains(src, `"`+m+`"`) && !strings.Contains(strings.ReplaceAll(src, "_", "."), `"`+otelName+`"`) {
				t.Errorf("alert %s reads %s, which no usagefleet binary exports", alert, m)
			}
		}
	}
}
