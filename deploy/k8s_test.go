package deploy

import (
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/usagefleet/usagefleet/messages"
	"github.com/usagefleet/usagefleet/producer/collect"
	"github.com/usagefleet/usagefleet/workers"
)

// manifests is every object under deploy/k8s, by kind and name.
type manifests struct {
	ns      string
	objects map[string]map[string]any // "Kind/name" → object
	kust    map[string]any
}

func loadManifests(t *testing.T) manifests {
	t.Helper()
	k := manifests{objects: map[string]map[string]any{}, kust: yamlDoc(t, "deploy/k8s/kustomization.yaml")}
	k.ns = str(k.kust, "namespace")
	files, err := filepath.Glob(repoPath("deploy/k8s/*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var resources []string
	for _, f := range files {
		base := filepath.Base(f)
		if base == "kustomization.yaml" {
			continue
		}
		resources = append(resources, base)
		for _, o := range yamlDocs(t, "deploy/k8s/"+base) {
			key := str(o, "kind") + "/" + str(o, "metadata", "name")
			if str(o, "apiVersion") == "" || str(o, "kind") == "" || str(o, "metadata", "name") == "" {
				t.Errorf("%s: an object without apiVersion, kind or name", base)
			}
			if _, dup := k.objects[key]; dup {
				t.Errorf("%s: %s is defined twice", base, key)
			}
			k.objects[key] = o
		}
	}
	slices.Sort(resources)
	listed := slices.Sorted(slices.Values(strs(list(k.kust, "resources"))))
	if !slices.Equal(listed, resources) {
		t.Errorf("kustomization.yaml lists %v; the directory holds %v", listed, resources)
	}
	return k
}

func (k manifests) get(t *testing.T, kind, name string) map[string]any {
	t.Helper()
	o := k.objects[kind+"/"+name]
	if o == nil {
		t.Fatalf("no %s %s in deploy/k8s", kind, name)
	}
	return o
}

// secretData is a Secret's values (stringData, or data's keys).
func secretData(o map[string]any) map[string]string {
	out := map[string]string{}
	for k, v := range obj(o, "stringData") {
		out[k] = fmt.Sprint(v)
	}
	for k := range obj(o, "data") {
		if _, ok := out[k]; !ok {
			out[k] = "x"
		}
	}
	return out
}

// podChecks holds what both Deployments must get right: the config file
// from a ConfigMap key, the environment from Secret keys, a restricted
// security context, an image the Dockerfile builds.
type pod struct {
	container map[string]any
	spec      map[string]any
	labels    map[string]any
	inv       invocation
	config    []byte            // the file --config names, from its ConfigMap
	env       map[string]string // the container's environment; secrets with their Secret values
	secretEnv []string          // variables that come from a Secret
}

func (k manifests) pod(t *testing.T, deployment, bin string) pod {
	t.Helper()
	d := k.get(t, "Deployment", deployment)
	p := pod{spec: obj(d, "spec", "template", "spec"), labels: obj(d, "spec", "template", "metadata", "labels"), env: map[string]string{}}
	for key, v := range obj(d, "spec", "selector", "matchLabels") {
		if p.labels[key] != v {
			t.Errorf("Deployment %s: the selector's %s=%v does not match the pod template's labels", deployment, key, v)
		}
	}
	cs := list(p.spec, "containers")
	if len(cs) != 1 {
		t.Fatalf("Deployment %s: %d containers", deployment, len(cs))
	}
	p.container = cs[0].(map[string]any)
	img := str(p.container, "image")
	if img != "usagefleet/"+bin {
		t.Errorf("Deployment %s: image %q; want usagefleet/%s (the tag comes from kustomization.yaml)", deployment, img, bin)
	}
	if !slices.ContainsFunc(list(k.kust, "images"), func(i any) bool { return str(i, "name") == img }) {
		t.Errorf("kustomization.yaml pins no tag for %s", img)
	}
	argv := strs(list(p.container, "args"))
	if cmd := list(p.container, "command"); cmd != nil {
		t.Errorf("Deployment %s overrides the image's ENTRYPOINT (%v)", deployment, cmd)
	}
	inv, ok := parseInvocation(t, "Deployment "+deployment, bin, argv)
	if !ok {
		t.FailNow()
	}
	p.inv = inv

	// --config is a ConfigMap key mounted at that path.
	cfgPath := inv.flags["config"]
	for _, vm := range list(p.container, "volumeMounts") {
		mount := str(vm, "mountPath")
		if !strings.HasPrefix(cfgPath, strings.TrimSuffix(mount, "/")+"/") {
			continue
		}
		for _, v := range list(p.spec, "volumes") {
			if str(v, "name") != str(vm, "name") {
				continue
			}
			cmName := str(v, "configMap", "name")
			if cmName == "" {
				t.Fatalf("Deployment %s: %s is not a ConfigMap volume", deployment, mount)
			}
			cm := k.get(t, "ConfigMap", cmName)
			for _, it := range list(v, "configMap", "items") {
				if filepath.ToSlash(filepath.Join(mount, str(it, "path"))) != cfgPath {
					continue
				}
				data, ok := obj(cm, "data")[str(it, "key")].(string)
				if !ok {
					t.Fatalf("Deployment %s mounts key %s of ConfigMap %s, which has no such key", deployment, str(it, "key"), cmName)
				}
				p.config = []byte(data)
			}
		}
	}
	if p.config == nil {
		t.Fatalf("Deployment %s: --config %s is not a mounted ConfigMap key", deployment, cfgPath)
	}

	for _, e := range list(p.container, "env") {
		name := str(e, "name")
		if ref := obj(e, "valueFrom", "secretKeyRef"); ref != nil {
			sec := k.get(t, "Secret", str(ref, "name"))
			val, ok := secretData(sec)[str(ref, "key")]
			if !ok {
				t.Errorf("Deployment %s: env %s from key %s of Secret %s, which has no such key", deployment, name, str(ref, "key"), str(ref, "name"))
			}
			p.env[name] = val
			p.secretEnv = append(p.secretEnv, name)
			continue
		}
		v, ok := at(e, "value").(string)
		if !ok {
			t.Errorf("Deployment %s: env %s has a value that is not a string (Kubernetes refuses it)", deployment, name)
		}
		p.env[name] = v
	}
	slices.Sort(p.secretEnv)

	// The restricted Pod Security Standard (the namespace enforces it).
	sc, csc := obj(p.spec, "securityContext"), obj(p.container, "securityContext")
	if at(sc, "runAsNonRoot") != true || str(sc, "seccompProfile", "type") != "RuntimeDefault" {
		t.Errorf("Deployment %s: pod securityContext %v; want runAsNonRoot and the RuntimeDefault seccomp profile", deployment, sc)
	}
	if at(csc, "allowPrivilegeEscalation") != false || at(csc, "readOnlyRootFilesystem") != true || !slices.Equal(strs(list(csc, "capabilities", "drop")), []string{"ALL"}) {
		t.Errorf("Deployment %s: container securityContext %v; want no privilege escalation, a read-only root, every capability dropped", deployment, csc)
	}
	user := strings.TrimSpace(strings.Split(lastOf(dockerfile(t)[bin].instr("USER")), ":")[0])
	if fmt.Sprint(at(sc, "runAsUser")) != user {
		t.Errorf("Deployment %s: runAsUser %v; the image's USER is %s", deployment, at(sc, "runAsUser"), user)
	}

	// Memory: a limit, a request under it, GOMEMLIMIT under the limit.
	lim := str(p.container, "resources", "limits", "memory")
	req := str(p.container, "resources", "requests", "memory")
	if lim == "" || req == "" {
		t.Fatalf("Deployment %s: memory request %q limit %q", deployment, req, lim)
	}
	if quantity(t, req) > quantity(t, lim) {
		t.Errorf("Deployment %s: memory request %s above the limit %s", deployment, req, lim)
	}
	if g := p.env["GOMEMLIMIT"]; g == "" || quantity(t, g) >= quantity(t, lim) {
		t.Errorf("Deployment %s: GOMEMLIMIT %q; want one below the memory limit %s", deployment, g, lim)
	}
	return p
}

// checkMetricsPort checks that a Deployment's metrics listener (port) is
// probed and scraped: a containerPort named metrics on it; startup and
// liveness probes on /healthz, readiness on /readyz, all on that port; the
// pod template annotated for Prometheus; and a Service that selects the
// pods, exposes the port and carries the same annotations (for
// annotation-based scraping, or a ServiceMonitor on port "metrics").
func (k manifests) checkMetricsPort(t *testing.T, deployment string, p pod, port int) {
	t.Helper()
	var cport any
	for _, cp := range list(p.container, "ports") {
		if str(cp, "name") == "metrics" {
			cport = at(cp, "containerPort")
		}
	}
	if cport != port {
		t.Errorf("Deployment %s: containerPort metrics %v; the process listens on %d", deployment, cport, port)
	}
	for _, probe := range []struct{ name, path string }{{"startupProbe", "/healthz"}, {"livenessProbe", "/healthz"}, {"readinessProbe", "/readyz"}} {
		pr := obj(p.container, probe.name, "httpGet")
		if str(pr, "path") != probe.path || (str(pr, "port") != "metrics" && str(pr, "port") != fmt.Sprint(port)) {
			t.Errorf("Deployment %s: %s %v; want GET %s on the metrics port %d", deployment, probe.name, pr, probe.path, port)
		}
	}
	scrapeAnnotations := func(what string, o map[string]any) {
		t.Helper()
		a := obj(o, "metadata", "annotations")
		if a["prometheus.io/scrape"] != "true" || a["prometheus.io/port"] != fmt.Sprint(port) || a["prometheus.io/path"] != "/metrics" {
			t.Errorf("%s: prometheus.io annotations %v; want scrape \"true\", port %d, path /metrics", what, a, port)
		}
	}
	scrapeAnnotations("Deployment "+deployment+" pod template", obj(k.get(t, "Deployment", deployment), "spec", "template"))
	var svcs []string
	for _, key := range sortedKeys(k.objects) {
		svc := k.objects[key]
		if str(svc, "kind") != "Service" || !labelsMatch(obj(svc, "spec", "selector"), p.labels) {
			continue
		}
		for _, sp := range list(svc, "spec", "ports") {
			if at(sp, "port") == port && (str(sp, "targetPort") == "metrics" || str(sp, "targetPort") == fmt.Sprint(port)) {
				svcs = append(svcs, key)
				scrapeAnnotations(key, svc)
			}
		}
	}
	if len(svcs) == 0 {
		t.Errorf("Deployment %s: no Service selects its pods with port %d (targetPort metrics): Prometheus has nothing to discover it by", deployment, port)
	}
}

func lastOf(v []string) string {
	if len(v) == 0 {
		return ""
	}
	return v[len(v)-1]
}

func labelsMatch(selector, labels map[string]any) bool {
	if len(selector) == 0 {
		return false
	}
	for k, v := range selector {
		if labels[k] != v {
			return false
		}
	}
	return true
}

func TestKubernetes(t *testing.T) {
	k := loadManifests(t)
	natsCfg := loadNATSConfigs(t)

	t.Run("objects", func(t *testing.T) {
		for key, o := range k.objects {
			if str(o, "kind") != "Namespace" && str(o, "metadata", "namespace") != k.ns {
				t.Errorf("%s is in namespace %q; kustomization.yaml says %q", key, str(o, "metadata", "namespace"), k.ns)
			}
			for _, field := range []string{"labels", "annotations"} {
				for lk, lv := range obj(o, "metadata", field) {
					if _, ok := lv.(string); !ok {
						t.Errorf("%s: %s %s=%v is not a string (Kubernetes refuses it)", key, field, lk, lv)
					}
				}
			}
			if str(o, "kind") == "Secret" {
				for sk, sv := range secretData(o) {
					if !strings.Contains(sv, "REPLACE-ME") {
						t.Errorf("%s: %s does not look like a placeholder: real secrets do not belong in the repository", key, sk)
					}
				}
			}
		}
		if k.objects["Namespace/"+k.ns] == nil {
			t.Errorf("no Namespace %s", k.ns)
		}
	})

	p := k.pod(t, "usage-worker", "usage-worker")
	if p.inv.command != "run" {
		t.Fatalf("the worker Deployment runs %q", p.inv.command)
	}
	w := loadWorkerConfig(t, "ConfigMap usage-worker-config", p.config, p.env)
	worker := k.get(t, "Deployment", "usage-worker")

	t.Run("worker", func(t *testing.T) {
		checkTypesLinked(t, "ConfigMap usage-worker-config", w)
		if !slices.Equal(p.secretEnv, w.envRefs) {
			t.Errorf("the Deployment fills %v from Secrets; the config names %v", p.secretEnv, w.envRefs)
		}
		sec := k.get(t, "Secret", "usage-worker-secrets")
		if keys := sortedKeys(secretData(sec)); !slices.Equal(keys, w.envRefs) {
			t.Errorf("Secret usage-worker-secrets holds %v; the config names %v", keys, w.envRefs)
		}
		if w.cfg.Streams.Replicas != 3 {
			t.Errorf("streams.replicas %d; the cluster has 3 nodes", w.cfg.Streams.Replicas)
		}
		if w.cfg.NATS.User != "worker" || !natsCfg.hasUser(w.cfg.NATS.User) {
			t.Errorf("nats.user %q; want the NATS worker user", w.cfg.NATS.User)
		}
		checkNATSURL(t, "ConfigMap usage-worker-config", w.cfg.NATS.URL, nil, natsCfg.port)
		if v := pushesOTLPMetrics(p.env); v != "" {
			t.Errorf("the worker is scraped and also pushes its metrics over OTLP (%s): Prometheus would count them twice", v)
		}
		// Real endpoints only: the sandbox emulators are loopback test doubles.
		for _, d := range list(w.raw, "destinations") {
			for _, key := range []string{"url", "base_url"} {
				u := str(d, "settings", key)
				if u == "" {
					continue
				}
				pu, err := url.Parse(u)
				if err != nil {
					t.Errorf("destination %s: settings.%s %q: %v", str(d, "name"), key, u, err)
					continue
				}
				if ip := net.ParseIP(pu.Hostname()); pu.Scheme != "https" || pu.Hostname() == "localhost" || (ip != nil && ip.IsLoopback()) {
					t.Errorf("destination %s: settings.%s %q; want the API's https endpoint", str(d, "name"), key, u)
				}
			}
		}

		lim := quantity(t, str(p.container, "resources", "limits", "memory"))
		req := quantity(t, str(p.container, "resources", "requests", "memory"))
		if req < 128<<20 || lim > 256<<20 {
			t.Errorf("memory %d-%d bytes; the worker is sized for 128Mi-256Mi", req, lim)
		}

		// One port: metrics, health and readiness, where the config listens.
		var port any
		for _, cp := range list(p.container, "ports") {
			if str(cp, "name") == "metrics" {
				port = at(cp, "containerPort")
			}
		}
		if port != w.metrics {
			t.Errorf("containerPort metrics %v; the config listens on %d", port, w.metrics)
		}
		for probe, path := range map[string]string{"readinessProbe": "/readyz", "livenessProbe": "/healthz", "startupProbe": "/healthz"} {
			pr := obj(p.container, probe, "httpGet")
			if str(pr, "path") != path || (str(pr, "port") != "metrics" && str(pr, "port") != fmt.Sprint(w.metrics)) {
				t.Errorf("%s %v; want GET %s on the metrics port", probe, pr, path)
			}
		}
		grace, _ := at(p.spec, "terminationGracePeriodSeconds").(int)
		drain := w.cfg.Worker.DrainTimeout.D(20 * time.Second)
		if time.Duration(grace)*time.Second < drain+10*time.Second {
			t.Errorf("terminationGracePeriodSeconds %d; want well above worker.drain_timeout %v (the drain, then handing messages back)", grace, drain)
		}
	})

	t.Run("metrics Service", func(t *testing.T) {
		svc := k.get(t, "Service", "usage-worker-metrics")
		if !labelsMatch(obj(svc, "spec", "selector"), p.labels) {
			t.Errorf("the Service selects %v; the worker pods are %v", obj(svc, "spec", "selector"), p.labels)
		}
		ports := list(svc, "spec", "ports")
		if len(ports) != 1 || (str(ports[0], "targetPort") != "metrics" && str(ports[0], "targetPort") != fmt.Sprint(w.metrics)) || at(ports[0], "port") != w.metrics {
			t.Errorf("Service ports %v; want the metrics port %d", ports, w.metrics)
		}
		for _, o := range []map[string]any{svc, obj(worker, "spec", "template")} {
			if a := obj(o, "metadata", "annotations"); a["prometheus.io/port"] != fmt.Sprint(w.metrics) || a["prometheus.io/path"] != "/metrics" {
				t.Errorf("prometheus.io annotations %v; want port %d, path /metrics", a, w.metrics)
			}
		}
	})

	t.Run("PodDisruptionBudget", func(t *testing.T) {
		pdb := k.get(t, "PodDisruptionBudget", "usage-worker")
		if !labelsMatch(obj(pdb, "spec", "selector", "matchLabels"), p.labels) {
			t.Errorf("the PDB selects %v; the worker pods are %v", obj(pdb, "spec", "selector", "matchLabels"), p.labels)
		}
		if str(pdb, "spec", "unhealthyPodEvictionPolicy") != "AlwaysAllow" {
			t.Error("unhealthyPodEvictionPolicy is not AlwaysAllow: a paused destination makes every worker unready, and node drains would stall on the budget")
		}
		// KEDA keeps at least minReplicaCount workers.
		least, _ := at(k.get(t, "ScaledObject", "usage-worker"), "spec", "minReplicaCount").(int)
		minAv, ok := at(pdb, "spec", "minAvailable").(int)
		if !ok || minAv < 1 || minAv >= least {
			t.Errorf("minAvailable %v with at least %v replicas: a node drain would block or take every worker", at(pdb, "spec", "minAvailable"), least)
		}
	})

	t.Run("KEDA ScaledObject", func(t *testing.T) {
		so := k.get(t, "ScaledObject", "usage-worker")
		ref := obj(so, "spec", "scaleTargetRef")
		if str(ref, "name") != "usage-worker" || (str(ref, "kind") != "" && str(ref, "kind") != "Deployment") {
			t.Errorf("scaleTargetRef %v; want the worker Deployment", ref)
		}
		minR, _ := at(so, "spec", "minReplicaCount").(int)
		maxR, _ := at(so, "spec", "maxReplicaCount").(int)
		pdbMin, _ := at(k.get(t, "PodDisruptionBudget", "usage-worker"), "spec", "minAvailable").(int)
		if minR <= pdbMin || maxR < minR {
			t.Errorf("replicas %d to %d; want a minimum above the PDB's %d", minR, maxR, pdbMin)
		}
		triggers := list(so, "spec", "triggers")
		if len(triggers) == 0 {
			t.Fatal("no triggers")
		}
		for _, tr := range triggers {
			if str(tr, "type") != "nats-jetstream" {
				t.Errorf("trigger type %s", str(tr, "type"))
				continue
			}
			md := obj(tr, "metadata")
			for mk, mv := range md {
				if _, ok := mv.(string); !ok {
					t.Errorf("trigger metadata %s=%v is not a string (KEDA refuses it)", mk, mv)
				}
			}
			if md["stream"] != messages.StreamUsage {
				t.Errorf("stream %v; the parts are in %s", md["stream"], messages.StreamUsage)
			}
			if md["account"] != fleetAccount || natsCfg.users["worker"] != fleetAccount {
				t.Errorf("account %v; the streams live in %s", md["account"], fleetAccount)
			}
			if ep := str(md, "natsServerMonitoringEndpoint"); portOf(t, "http://"+ep) != natsCfg.nodes[0].opts.HTTPPort {
				t.Errorf("natsServerMonitoringEndpoint %s; NATS monitors on %d", ep, natsCfg.nodes[0].opts.HTTPPort)
			}
			if lag, err := strconv.Atoi(str(md, "lagThreshold")); err != nil || lag <= 0 {
				t.Errorf("lagThreshold %v", md["lagThreshold"])
			}
			consumer := str(md, "consumer")
			found := false
			for i := range w.cfg.Destinations {
				dc := &w.cfg.Destinations[i]
				if workers.ConsumerName(dc.Name) != consumer {
					continue
				}
				found = true
				// Replicas add throughput to an append destination only,
				// and only while the consumer lets them hold messages:
				// each holds up to about 2x its workers (buffer) plus its
				// workers (in flight).
				if sem := w.semantics(t, dc); sem != workers.Append {
					t.Errorf("KEDA scales on %s, a replace destination: its consumer holds parts ack-pending until each flush, and more replicas do not upload a unit faster", consumer)
				}
				nw := dc.Workers
				if nw == 0 {
					nw = 4 // the pool's default
				}
				perReplica := 3 * nw
				if dc.MaxAckPending < maxR*perReplica {
					t.Errorf("%s: max_ack_pending %d caps the fleet below %d replicas x %d messages: replicas past %d would idle", dc.Name, dc.MaxAckPending, maxR, perReplica, max(1, dc.MaxAckPending/perReplica))
				}
			}
			if !found {
				t.Errorf("consumer %s is not uf_<a destination of the worker config>", consumer)
			}
		}
	})

	t.Run("collector", func(t *testing.T) {
		cp := k.pod(t, "usage-collector", "usage-producer")
		if cp.inv.command != "collect" {
			t.Fatalf("the collector Deployment runs %q", cp.inv.command)
		}
		refs := envRefs(t, cp.config)
		if !slices.Equal(cp.secretEnv, refs) {
			t.Errorf("the collector Deployment fills %v from Secrets; its config names %v", cp.secretEnv, refs)
		}
		setenv(t, cp.env)
		cfg, err := collect.ParseConfig(cp.config)
		if err != nil {
			t.Fatalf("ConfigMap usage-collector-config: %v", err)
		}
		if cfg.NATS.User != "collector" || !natsCfg.hasUser(cfg.NATS.User) {
			t.Errorf("nats.user %q; want the NATS collector user", cfg.NATS.User)
		}
		for _, cc := range cfg.Collectors {
			checkCollectorFeed(t, "ConfigMap usage-collector-config", cc.Name, cc.Feed, w)
			if !binaryKnows(t, "usage-producer", "producer/collect/"+cc.Type) {
				t.Errorf("collector type %s: usage-producer does not link producer/collect/%s", cc.Type, cc.Type)
			}
		}
		d := k.get(t, "Deployment", "usage-collector")
		if r := at(d, "spec", "replicas"); r != 1 || str(d, "spec", "strategy", "type") != "Recreate" {
			t.Errorf("collector replicas %v strategy %q; want 1 and Recreate (one run per checkpoint)", r, str(d, "spec", "strategy", "type"))
		}
		// collect --metrics-listen: /metrics, /healthz, /readyz.
		if l := cp.inv.flags["metrics-listen"]; l == "" {
			t.Error("the collector runs without --metrics-listen: nothing to probe or scrape")
		} else {
			k.checkMetricsPort(t, "usage-collector", cp, portOf(t, l))
		}
		if v := pushesOTLPMetrics(cp.env); v != "" {
			t.Errorf("the collector is scraped and also pushes its metrics over OTLP (%s): Prometheus would count them twice", v)
		}
	})

	t.Run("placeholders are marked", func(t *testing.T) {
		for _, f := range []string{"deploy/k8s/worker-secret.yaml", "deploy/k8s/collector.yaml", "deploy/k8s/worker-configmap.yaml"} {
			if !strings.Contains(string(readFile(t, f)), "REPLACE") {
				t.Errorf("%s marks nothing to replace", f)
			}
		}
		if _, err := os.Stat(repoPath("deploy/README.md")); err != nil {
			t.Error(err)
		}
	})
}

// TestKubernetesAutoscaledReplicas: a Deployment that a ScaledObject or an
// HPA scales sets no replicas, or every kubectl apply would reset the
// count the autoscaler chose (and KEDA and the manifest would fight over
// it); one that nothing scales sets them.
func TestKubernetesAutoscaledReplicas(t *testing.T) {
	k := loadManifests(t)
	owners := map[string]string{}
	for _, key := range sortedKeys(k.objects) {
		o := k.objects[key]
		if kind := str(o, "kind"); kind == "ScaledObject" || kind == "HorizontalPodAutoscaler" {
			ref := obj(o, "spec", "scaleTargetRef")
			if rk := str(ref, "kind"); rk != "" && rk != "Deployment" {
				continue
			}
			owners[str(ref, "name")] = key
		}
	}
	if owners["usage-worker"] == "" || owners["usage-gateway"] == "" {
		t.Errorf("scaled Deployments %v; want the worker (KEDA) and the gateway (HPA)", owners)
	}
	for _, key := range sortedKeys(k.objects) {
		d := k.objects[key]
		if str(d, "kind") != "Deployment" {
			continue
		}
		name := str(d, "metadata", "name")
		r := at(d, "spec", "replicas")
		if owner := owners[name]; owner != "" && r != nil {
			t.Errorf("Deployment %s sets replicas %v and %s scales it", name, r, owner)
		} else if owner == "" && r == nil {
			t.Errorf("Deployment %s sets no replicas and nothing scales it", name)
		}
	}
}
