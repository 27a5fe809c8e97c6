package deploy

import (
	"slices"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/promql/parser"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// checkMonitors: each ServiceMonitor finds a Service of the release and
// scrapes /metrics on one of its named ports.
func (r *release) checkMonitors(t *testing.T) {
	t.Helper()
	for name, sm := range r.monitors {
		sel, _ := metav1.LabelSelectorAsMap(&sm.Spec.Selector)
		var svcs []*corev1.Service
		for _, svc := range r.services {
			if labelsMatchStr(sel, svc.Labels) {
				svcs = append(svcs, svc)
			}
		}
		if len(svcs) != 1 {
			t.Errorf("ServiceMonitor %s selects %d Services; want one", name, len(svcs))
			continue
		}
		for _, ep := range sm.Spec.Endpoints {
			if ep.Path != "/metrics" || !slices.ContainsFunc(svcs[0].Spec.Ports, func(p corev1.ServicePort) bool { return p.Name == ep.Port }) {
				t.Errorf("ServiceMonitor %s: endpoint %s on port %q; Service %s has %v", name, ep.Path, ep.Port, svcs[0].Name, svcs[0].Spec.Ports)
			}
		}
	}
	for name := range r.deployments {
		if len(r.monitors) > 0 && r.monitors[name] == nil {
			t.Errorf("no ServiceMonitor scrapes %s", name)
		}
	}
}

// wantAlerts are the alerts the chart must carry (issue 15 item 6).
// Their names are those of deploy/prometheus/alerts.yml (compose).
var wantAlerts = []string{"UsagefleetDeadLettersGrowing", "UsagefleetDestinationPaused", "UsagefleetReconciliationMismatch", "UsagefleetUnitsWaitTooLong"}

// checkAlertRules parses every expression with Prometheus's own PromQL
// parser and checks that it selects only series the code exports (read
// from its sources) and groups by labels those series carry.
func checkAlertRules(t *testing.T, pr *monitoringv1.PrometheusRule) {
	t.Helper()
	exported := exportedMetrics(t)
	p := parser.NewParser(parser.Options{})
	var alerts []string
	for _, g := range pr.Spec.Groups {
		for _, rule := range g.Rules {
			alerts = append(alerts, rule.Alert)
			expr := rule.Expr.String()
			if rule.For != nil {
				if _, err := model.ParseDuration(string(*rule.For)); err != nil {
					t.Errorf("alert %s: for %q: %v", rule.Alert, *rule.For, err)
				}
			}
			if rule.Labels["severity"] == "" || rule.Annotations["summary"] == "" || rule.Annotations["description"] == "" {
				t.Errorf("alert %s: want a severity, a summary and a description", rule.Alert)
			}
			e, err := p.ParseExpr(expr)
			if err != nil {
				t.Errorf("alert %s: %q: %v", rule.Alert, expr, err)
				continue
			}
			var names []string
			var labels []string
			parser.Inspect(e, func(n parser.Node, _ []parser.Node) error {
				switch x := n.(type) {
				case *parser.VectorSelector:
					names = append(names, x.Name)
				case *parser.AggregateExpr:
					labels = append(labels, x.Grouping...)
				}
				return nil
			})
			if len(names) == 0 {
				t.Errorf("alert %s: %q selects no series", rule.Alert, expr)
			}
			for _, n := range names {
				own, ok := exported[n]
				if !ok {
					t.Errorf("alert %s: %s is not a metric the code exports (%v)", rule.Alert, n, sortedKeys(exported))
					continue
				}
				if ok && len(own) > 0 && !slices.Contains(own, "destination") {
					t.Errorf("alert %s: %s has no destination label", rule.Alert, n)
				}
			}
			for _, l := range labels {
				if l != "destination" && l != "namespace" {
					t.Errorf("alert %s groups by %s: the alert's labels are the destination and its namespace", rule.Alert, l)
				}
			}
		}
	}
	slices.Sort(alerts)
	if !slices.Equal(alerts, wantAlerts) {
		t.Errorf("PrometheusRule %s alerts %v; want %v", pr.Name, alerts, wantAlerts)
	}
}
