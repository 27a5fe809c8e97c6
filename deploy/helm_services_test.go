package deploy

import (
	"fmt"
	"slices"
	"strconv"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/usagefleet/usagefleet/messages"
)

// checkServices: each Service selects the pods of one Deployment and
// targets a named port of its container.
func (r *release) checkServices(t *testing.T) {
	t.Helper()
	for name, svc := range r.services {
		var pods *appsv1.Deployment
		for _, d := range r.deployments {
			if labelsMatchStr(svc.Spec.Selector, d.Spec.Template.Labels) {
				if pods != nil {
					t.Errorf("Service %s selects the pods of %s and %s", name, pods.Name, d.Name)
				}
				pods = d
			}
		}
		if pods == nil {
			t.Errorf("Service %s selects no pods (%v)", name, svc.Spec.Selector)
			continue
		}
		for _, p := range svc.Spec.Ports {
			if !slices.ContainsFunc(pods.Spec.Template.Spec.Containers[0].Ports, func(cp corev1.ContainerPort) bool { return cp.Name == p.TargetPort.StrVal }) {
				t.Errorf("Service %s port %s targets %q, no named port of %s", name, p.Name, p.TargetPort.String(), pods.Name)
			}
		}
	}
}

// checkAutoscalers: KEDA reads the worker's append consumer in the
// fleet's stream and account; HPAs stay within sane bounds; a PDB never
// holds back every replica the autoscaler keeps.
func (r *release) checkAutoscalers(t *testing.T) {
	t.Helper()
	natsCfg := r.nats
	minOf := map[string]int32{}
	for name, so := range r.scaled {
		ref := so.Spec.ScaleTargetRef
		if r.deployments[ref.Name] == nil || ref.Kind != "Deployment" {
			t.Errorf("ScaledObject %s scales %s %s, which the chart does not render", name, ref.Kind, ref.Name)
		}
		if so.Spec.MinReplicaCount == nil || so.Spec.MaxReplicaCount == nil || *so.Spec.MaxReplicaCount < *so.Spec.MinReplicaCount {
			t.Fatalf("ScaledObject %s: replicas %v..%v", name, so.Spec.MinReplicaCount, so.Spec.MaxReplicaCount)
		}
		minOf[ref.Name] = *so.Spec.MinReplicaCount
		if len(so.Spec.Triggers) == 0 {
			t.Errorf("ScaledObject %s has no trigger", name)
		}
		for _, tr := range so.Spec.Triggers {
			md := tr.Metadata
			if tr.Type != "nats-jetstream" || md["stream"] != messages.StreamUsage || md["account"] != fleetAccount || natsCfg.users["worker"] != fleetAccount {
				t.Errorf("ScaledObject %s: trigger %s on stream %s in account %s; want nats-jetstream on %s in %s", name, tr.Type, md["stream"], md["account"], messages.StreamUsage, fleetAccount)
			}
			if portOf(t, "http://"+md["natsServerMonitoringEndpoint"]) != natsCfg.nodes[0].opts.HTTPPort {
				t.Errorf("ScaledObject %s: natsServerMonitoringEndpoint %s; NATS monitors on %d", name, md["natsServerMonitoringEndpoint"], natsCfg.nodes[0].opts.HTTPPort)
			}
			if lag, err := strconv.Atoi(md["lagThreshold"]); err != nil || lag <= 0 {
				t.Errorf("ScaledObject %s: lagThreshold %q", name, md["lagThreshold"])
			}
		}
	}
	for name, h := range r.hpas {
		if r.deployments[h.Spec.ScaleTargetRef.Name] == nil || h.Spec.ScaleTargetRef.Kind != "Deployment" {
			t.Errorf("HorizontalPodAutoscaler %s scales %v, which the chart does not render", name, h.Spec.ScaleTargetRef)
		}
		if h.Spec.MinReplicas == nil || *h.Spec.MinReplicas < 2 || h.Spec.MaxReplicas < *h.Spec.MinReplicas {
			t.Errorf("HorizontalPodAutoscaler %s: replicas %v..%d; want at least 2 (one is no redundancy)", name, h.Spec.MinReplicas, h.Spec.MaxReplicas)
		}
		if len(h.Spec.Metrics) == 0 {
			t.Errorf("HorizontalPodAutoscaler %s scales on nothing", name)
		}
		minOf[h.Spec.ScaleTargetRef.Name] = *h.Spec.MinReplicas
	}
	for name, pdb := range r.pdbs {
		sel, _ := metav1.LabelSelectorAsMap(pdb.Spec.Selector)
		for dn, d := range r.deployments {
			if !labelsMatchStr(sel, d.Spec.Template.Labels) {
				continue
			}
			least := minOf[dn]
			if d.Spec.Replicas != nil {
				least = *d.Spec.Replicas
			}
			if pdb.Spec.MinAvailable == nil || pdb.Spec.MinAvailable.IntVal < 1 || pdb.Spec.MinAvailable.IntVal >= least {
				t.Errorf("PodDisruptionBudget %s: minAvailable %v with at least %d replicas of %s: a node drain would block or take every pod", name, pdb.Spec.MinAvailable, least, dn)
			}
			if pdb.Spec.UnhealthyPodEvictionPolicy == nil || *pdb.Spec.UnhealthyPodEvictionPolicy != policyv1.AlwaysAllow {
				t.Errorf("PodDisruptionBudget %s: unhealthyPodEvictionPolicy is not AlwaysAllow: a paused destination makes every worker unready and node drains would stall", name)
			}
		}
	}
}

// checkNetworkPolicies: the fleet policy selects every pod of the release
// and lets the monitoring namespaces reach exactly the ports they scrape;
// the gateway's own policy opens its API port on the gateway pods only.
func (r *release) checkNetworkPolicies(t *testing.T) {
	t.Helper()
	if len(r.netpols) == 0 {
		return
	}
	fleet := r.netpols["usagefleet"]
	if fleet == nil {
		t.Fatal("no NetworkPolicy usagefleet")
	}
	sel, _ := metav1.LabelSelectorAsMap(&fleet.Spec.PodSelector)
	var scraped []string
	for name, d := range r.deployments {
		if !labelsMatchStr(sel, d.Spec.Template.Labels) {
			t.Errorf("NetworkPolicy usagefleet does not select %s's pods", name)
		}
		for _, p := range d.Spec.Template.Spec.Containers[0].Ports {
			scraped = append(scraped, fmt.Sprint(p.ContainerPort))
		}
	}
	if len(fleet.Spec.Ingress) != 1 || len(fleet.Spec.Ingress[0].From) != 1 || fleet.Spec.Ingress[0].From[0].NamespaceSelector == nil {
		t.Fatalf("NetworkPolicy usagefleet ingress %+v; want one rule from the monitoring namespaces", fleet.Spec.Ingress)
	}
	var open []string
	for _, p := range fleet.Spec.Ingress[0].Ports {
		open = append(open, p.Port.String())
	}
	slices.Sort(open)
	slices.Sort(scraped)
	if !slices.Equal(open, scraped) {
		t.Errorf("the monitoring namespaces reach ports %v; the pods listen on %v", open, scraped)
	}
	var egress []string
	for _, e := range fleet.Spec.Egress {
		for _, p := range e.Ports {
			egress = append(egress, p.Port.String())
		}
	}
	for _, want := range []string{"53", "443", "4222"} {
		if !slices.Contains(egress, want) {
			t.Errorf("NetworkPolicy usagefleet: no egress to port %s (egress %v)", want, egress)
		}
	}
	for name, np := range r.netpols {
		if name == "usagefleet" {
			continue
		}
		gw := r.deployments["usagefleet-gateway"]
		if gw == nil {
			t.Errorf("NetworkPolicy %s without the gateway", name)
			continue
		}
		sel, _ := metav1.LabelSelectorAsMap(&np.Spec.PodSelector)
		for dn, d := range r.deployments {
			if labelsMatchStr(sel, d.Spec.Template.Labels) != (dn == gw.Name) {
				t.Errorf("NetworkPolicy %s: selects %s: %v", name, dn, labelsMatchStr(sel, d.Spec.Template.Labels))
			}
		}
		if len(np.Spec.Ingress) != 1 || len(np.Spec.Ingress[0].Ports) != 1 || np.Spec.Ingress[0].Ports[0].Port.IntValue() != int(gw.Spec.Template.Spec.Containers[0].Ports[0].ContainerPort) {
			t.Errorf("NetworkPolicy %s ingress %+v; want the gateway's port", name, np.Spec.Ingress)
		}
	}
}
