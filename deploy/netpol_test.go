package deploy

import (
	"fmt"
	"slices"
	"testing"
)

// The pods serve /metrics and /readyz without authentication: a
// NetworkPolicy selects every usagefleet pod and lets in only the
// monitoring namespace, on the metrics ports the Deployments listen on.
func TestNetworkPolicyGuardsTheMetricsPorts(t *testing.T) {
	k := loadManifests(t)
	np := k.get(t, "NetworkPolicy", "usagefleet")
	sel := obj(np, "spec", "podSelector", "matchLabels")
	if str(sel, "app.kubernetes.io/part-of") != "usagefleet" || len(sel) != 1 {
		t.Fatalf("podSelector %v: want every usagefleet pod", sel)
	}
	types := strs(list(np, "spec", "policyTypes"))
	if !slices.Contains(types, "Ingress") || !slices.Contains(types, "Egress") {
		t.Errorf("policyTypes %v: want Ingress and Egress", types)
	}
	for _, d := range []string{"usage-worker", "usage-collector"} {
		labels := obj(k.get(t, "Deployment", d), "spec", "template", "metadata", "labels")
		if str(labels, "app.kubernetes.io/part-of") != "usagefleet" {
			t.Errorf("Deployment %s's pods are not selected by the NetworkPolicy (labels %v)", d, labels)
		}
	}
	ingress := list(np, "spec", "ingress")
	if len(ingress) != 1 {
		t.Fatalf("%d ingress rules; want one (monitoring only)", len(ingress))
	}
	rule := ingress[0].(map[string]any)
	for _, from := range list(rule, "from") {
		if ns := obj(from.(map[string]any), "namespaceSelector", "matchLabels"); str(ns, "usagefleet.io/monitoring") != "true" {
			t.Errorf("ingress from %v: want only the monitoring namespace", from)
		}
	}
	var ports []string
	for _, p := range list(rule, "ports") {
		ports = append(ports, fmt.Sprint(p.(map[string]any)["port"]))
	}
	slices.Sort(ports)
	if !slices.Equal(ports, []string{"9090", "9092"}) {
		t.Errorf("ingress ports %v; want the metrics ports 9090 and 9092 only", ports)
	}
}

// The gateway is selected by the fleet-wide policy too (it is part of
// usagefleet), so without a policy of its own its API would be closed:
// usage-gateway-ingress opens its API port, on the gateway pods only.
func TestNetworkPolicyOpensOnlyTheGatewayAPI(t *testing.T) {
	k := loadManifests(t)
	np := k.get(t, "NetworkPolicy", "usage-gateway-ingress")
	sel := obj(np, "spec", "podSelector", "matchLabels")
	gw := obj(k.get(t, "Deployment", "usage-gateway"), "spec", "template", "metadata", "labels")
	if len(sel) == 0 {
		t.Fatal("usage-gateway-ingress selects every pod; want the gateway pods only")
	}
	for key, v := range sel {
		if str(gw, key) != v {
			t.Errorf("podSelector %v does not select the gateway pods (labels %v)", sel, gw)
		}
	}
	for _, d := range []string{"usage-worker", "usage-collector"} {
		labels := obj(k.get(t, "Deployment", d), "spec", "template", "metadata", "labels")
		match := true
		for key, v := range sel {
			match = match && str(labels, key) == v
		}
		if match {
			t.Errorf("usage-gateway-ingress also selects %s", d)
		}
	}
	var ports []string
	for _, r := range list(np, "spec", "ingress") {
		for _, p := range list(r.(map[string]any), "ports") {
			ports = append(ports, fmt.Sprint(p.(map[string]any)["port"]))
		}
	}
	var container []string
	for _, c := range list(k.get(t, "Deployment", "usage-gateway"), "spec", "template", "spec", "containers") {
		for _, p := range list(c.(map[string]any), "ports") {
			container = append(container, fmt.Sprint(p.(map[string]any)["containerPort"]))
		}
	}
	if !slices.Equal(ports, container) {
		t.Errorf("gateway ingress ports %v; want the container's ports %v", ports, container)
	}
}
