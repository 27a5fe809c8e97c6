package deploy

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/usagefleet/usagefleet/producer/gateway"
)

// TestKubernetesGateway checks the ingest gateway's manifests: the config
// parses with its Secret's values, every secret it names comes from the
// Secret, it logs in as the NATS gateway user, the probes and the Service
// reach its port, the HPA scales its Deployment, and the kubelet waits for
// its drain.
func TestKubernetesGateway(t *testing.T) {
	k := loadManifests(t)
	natsCfg := loadNATSConfigs(t)
	p := k.pod(t, "usage-gateway", "usage-gateway")
	if p.inv.command != "serve" {
		t.Fatalf("the gateway Deployment runs %q", p.inv.command)
	}
	for name, v := range p.env {
		t.Setenv(name, v)
	}
	cfg, err := gateway.Parse(p.config)
	if err != nil {
		t.Fatalf("ConfigMap usage-gateway-config: %v", err)
	}
	var refs []string
	if cfg.NATS.Password.Env != "" {
		refs = append(refs, cfg.NATS.Password.Env)
	}
	for _, key := range cfg.Keys {
		refs = append(refs, key.Secret.Env)
	}
	slices.Sort(refs)
	if !slices.Equal(p.secretEnv, refs) {
		t.Errorf("the Deployment fills %v from Secrets; the config names %v", p.secretEnv, refs)
	}
	if keys := sortedKeys(secretData(k.get(t, "Secret", "usage-gateway-secrets"))); !slices.Equal(keys, refs) {
		t.Errorf("Secret usage-gateway-secrets holds %v; the config names %v", keys, refs)
	}
	if cfg.NATS.User != "gateway" || !natsCfg.hasUser(cfg.NATS.User) {
		t.Errorf("nats.user %q; want the NATS gateway user", cfg.NATS.User)
	}
	if cfg.Streams.Replicas != 3 {
		t.Errorf("streams.replicas %d; the cluster has 3 nodes", cfg.Streams.Replicas)
	}
	checkNATSURL(t, "ConfigMap usage-gateway-config", cfg.NATS.URL, nil, natsCfg.port)

	// The listener is the container port the probes and the Service use.
	port := 0
	fmt.Sscanf(cfg.Listen, ":%d", &port)
	var portName string
	for _, cp := range list(p.container, "ports") {
		if at(cp, "containerPort") == port {
			portName = str(cp, "name")
		}
	}
	if portName == "" {
		t.Fatalf("listen %s is no container port", cfg.Listen)
	}
	for probe, path := range map[string]string{"startupProbe": "/healthz", "livenessProbe": "/healthz", "readinessProbe": "/readyz"} {
		if str(p.container, probe, "httpGet", "path") != path || str(p.container, probe, "httpGet", "port") != portName {
			t.Errorf("%s: %v; want GET %s on port %s", probe, obj(p.container, probe), path, portName)
		}
	}
	svc := k.get(t, "Service", "usage-gateway")
	for key, v := range obj(svc, "spec", "selector") {
		if p.labels[key] != v {
			t.Errorf("Service usage-gateway selects %s=%v; the pods are labelled %v", key, v, p.labels)
		}
	}
	if ports := list(svc, "spec", "ports"); len(ports) != 1 || str(ports[0], "targetPort") != portName {
		t.Errorf("Service usage-gateway ports %v; want one to %s", ports, portName)
	}
	hpa := k.get(t, "HorizontalPodAutoscaler", "usage-gateway")
	if str(hpa, "apiVersion") != "autoscaling/v2" || str(hpa, "spec", "scaleTargetRef", "kind") != "Deployment" || str(hpa, "spec", "scaleTargetRef", "name") != "usage-gateway" {
		t.Errorf("the HPA scales %v", obj(hpa, "spec", "scaleTargetRef"))
	}
	if lo, hi := at(hpa, "spec", "minReplicas"), at(hpa, "spec", "maxReplicas"); lo != 2 || hi != 10 {
		t.Errorf("HPA replicas %v..%v; want 2..10 (one replica is no redundancy)", lo, hi)
	}
	grace := at(p.spec, "terminationGracePeriodSeconds")
	drain := time.Duration(cfg.DrainTimeout)
	if g, ok := grace.(int); !ok || time.Duration(g)*time.Second <= drain {
		t.Errorf("terminationGracePeriodSeconds %v is not above drain_timeout %v: the kubelet would kill in-flight requests", grace, drain)
	}
}
