package deploy

import (
	"fmt"
	"go/ast"
	goparser "go/parser"
	"go/token"
	"io/fs"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/promql/parser"
	"helm.sh/helm/v4/pkg/chart/common"
	chartutil "helm.sh/helm/v4/pkg/chart/common/util"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	"helm.sh/helm/v4/pkg/engine"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	sigsyaml "sigs.k8s.io/yaml"

	"github.com/usagefleet/usagefleet/messages"
	"github.com/usagefleet/usagefleet/producer/collect"
	"github.com/usagefleet/usagefleet/producer/gateway"
	"github.com/usagefleet/usagefleet/workers"
)

const chartDir = "deploy/helm/usagefleet"

// scaledObject is KEDA's keda.sh/v1alpha1 ScaledObject, the fields of its
// CRD that a chart sets (KEDA's Go module links its whole operator: too
// heavy for a test). Decoded strictly like the others: a misspelt field
// fails.
type scaledObject struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		ScaleTargetRef struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
			Name       string `json:"name"`
		} `json:"scaleTargetRef"`
		PollingInterval  *int32 `json:"pollingInterval"`
		CooldownPeriod   *int32 `json:"cooldownPeriod"`
		MinReplicaCount  *int32 `json:"minReplicaCount"`
		MaxReplicaCount  *int32 `json:"maxReplicaCount"`
		IdleReplicaCount *int32 `json:"idleReplicaCount"`
		Advanced         *struct {
			HorizontalPodAutoscalerConfig *struct {
				Name     string                                         `json:"name"`
				Behavior *autoscalingv2.HorizontalPodAutoscalerBehavior `json:"behavior"`
			} `json:"horizontalPodAutoscalerConfig"`
			RestoreToOriginalReplicaCount bool `json:"restoreToOriginalReplicaCount"`
		} `json:"advanced"`
		Triggers []struct {
			Type     string            `json:"type"`
			Name     string            `json:"name"`
			Metadata map[string]string `json:"metadata"`
		} `json:"triggers"`
	} `json:"spec"`
}

// release is one rendering of the chart: every object, decoded into its
// Kubernetes (or KEDA, Prometheus Operator) type.
type release struct {
	name, ns    string
	nats        *natsConfigs // deploy/nats, read once by the calling test
	deployments map[string]*appsv1.Deployment
	configMaps  map[string]*corev1.ConfigMap
	services    map[string]*corev1.Service
	pdbs        map[string]*policyv1.PodDisruptionBudget
	hpas        map[string]*autoscalingv2.HorizontalPodAutoscaler
	netpols     map[string]*networkingv1.NetworkPolicy
	scaled      map[string]*scaledObject
	monitors    map[string]*monitoringv1.ServiceMonitor
	rules       map[string]*monitoringv1.PrometheusRule
	kinds       []string // "Kind/name", sorted
}

// renderChart renders the chart as `helm template usagefleet
// deploy/helm/usagefleet -n billing` does with these values on top of
// values.yaml (validated against values.schema.json).
func renderChart(t *testing.T, overrides map[string]any) (*release, error) {
	t.Helper()
	ch, err := loader.Load(repoPath(chartDir))
	if err != nil {
		t.Fatalf("loading the chart: %v", err)
	}
	caps := common.DefaultCapabilities.Copy()
	caps.APIVersions = append(caps.APIVersions, "keda.sh/v1alpha1", "monitoring.coreos.com/v1")
	opts := common.ReleaseOptions{Name: "usagefleet", Namespace: "billing", IsInstall: true, Revision: 1}
	vals, err := chartutil.ToRenderValues(ch, overrides, opts, caps)
	if err != nil {
		return nil, err
	}
	files, err := engine.Render(ch, vals)
	if err != nil {
		return nil, err
	}
	r := &release{
		name: opts.Name, ns: opts.Namespace,
		deployments: map[string]*appsv1.Deployment{}, configMaps: map[string]*corev1.ConfigMap{},
		services: map[string]*corev1.Service{}, pdbs: map[string]*policyv1.PodDisruptionBudget{},
		hpas: map[string]*autoscalingv2.HorizontalPodAutoscaler{}, netpols: map[string]*networkingv1.NetworkPolicy{},
		scaled: map[string]*scaledObject{}, monitors: map[string]*monitoringv1.ServiceMonitor{},
		rules: map[string]*monitoringv1.PrometheusRule{},
	}
	for _, file := range sortedKeys(files) {
		if path.Ext(file) != ".yaml" {
			continue // NOTES.txt, _helpers.tpl
		}
		for i, doc := range strings.Split(files[file], "\n---") {
			if strings.TrimSpace(stripComments(doc)) == "" {
				continue
			}
			where := fmt.Sprintf("%s (document %d)", file, i+1)
			var tm metav1.TypeMeta
			if err := sigsyaml.Unmarshal([]byte(doc), &tm); err != nil {
				t.Fatalf("%s: %v\n%s", where, err, doc)
			}
			var into interface{ GetName() string }
			var apiVersion string
			switch tm.Kind {
			case "Deployment":
				into, apiVersion = &appsv1.Deployment{}, "apps/v1"
			case "ConfigMap":
				into, apiVersion = &corev1.ConfigMap{}, "v1"
			case "Service":
				into, apiVersion = &corev1.Service{}, "v1"
			case "PodDisruptionBudget":
				into, apiVersion = &policyv1.PodDisruptionBudget{}, "policy/v1"
			case "HorizontalPodAutoscaler":
				into, apiVersion = &autoscalingv2.HorizontalPodAutoscaler{}, "autoscaling/v2"
			case "NetworkPolicy":
				into, apiVersion = &networkingv1.NetworkPolicy{}, "networking.k8s.io/v1"
			case "ScaledObject":
				into, apiVersion = &scaledObject{}, "keda.sh/v1alpha1"
			case "ServiceMonitor":
				into, apiVersion = &monitoringv1.ServiceMonitor{}, "monitoring.coreos.com/v1"
			case "PrometheusRule":
				into, apiVersion = &monitoringv1.PrometheusRule{}, "monitoring.coreos.com/v1"
			default:
				// A Secret above all: the chart refers to Secrets, it never holds one.
				t.Fatalf("%s: the chart renders a %s, which this test does not know", where, tm.Kind)
			}
			if tm.APIVersion != apiVersion {
				t.Errorf("%s: %s apiVersion %q; want %s", where, tm.Kind, tm.APIVersion, apiVersion)
			}
			// Strict: an unknown or duplicate field fails, as the API
			// server's field validation would refuse it.
			if err := sigsyaml.UnmarshalStrict([]byte(doc), into); err != nil {
				t.Fatalf("%s: %s does not decode strictly: %v\n%s", where, tm.Kind, err, doc)
			}
			name := into.GetName()
			key := tm.Kind + "/" + name
			if slices.Contains(r.kinds, key) {
				t.Errorf("%s: %s rendered twice", where, key)
			}
			r.kinds = append(r.kinds, key)
			switch o := into.(type) {
			case *appsv1.Deployment:
				r.deployments[name] = o
			case *corev1.ConfigMap:
				r.configMaps[name] = o
			case *corev1.Service:
				r.services[name] = o
			case *policyv1.PodDisruptionBudget:
				r.pdbs[name] = o
			case *autoscalingv2.HorizontalPodAutoscaler:
				r.hpas[name] = o
			case *networkingv1.NetworkPolicy:
				r.netpols[name] = o
			case *scaledObject:
				r.scaled[name] = o
			case *monitoringv1.ServiceMonitor:
				r.monitors[name] = o
			case *monitoringv1.PrometheusRule:
				r.rules[name] = o
			}
		}
	}
	slices.Sort(r.kinds)
	return r, nil
}

func stripComments(doc string) string {
	var b strings.Builder
	for _, l := range strings.Split(doc, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(l), "#") {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}

func mustRender(t *testing.T, overrides map[string]any) *release {
	t.Helper()
	r, err := renderChart(t, overrides)
	if err != nil {
		t.Fatalf("rendering the chart: %v", err)
	}
	return r
}

// set builds overrides from "a.b.c" paths.
func set(kv ...any) map[string]any {
	out := map[string]any{}
	for i := 0; i+1 < len(kv); i += 2 {
		keys := strings.Split(kv[i].(string), ".")
		m := out
		for _, k := range keys[:len(keys)-1] {
			next, ok := m[k].(map[string]any)
			if !ok {
				next = map[string]any{}
				m[k] = next
			}
			m = next
		}
		m[keys[len(keys)-1]] = kv[i+1]
	}
	return out
}

// scaler names what owns a Deployment's replicas, or "".
func (r *release) scaler(deployment string) string {
	for n, so := range r.scaled {
		if so.Spec.ScaleTargetRef.Name == deployment {
			return "ScaledObject/" + n
		}
	}
	for n, h := range r.hpas {
		if h.Spec.ScaleTargetRef.Kind == "Deployment" && h.Spec.ScaleTargetRef.Name == deployment {
			return "HorizontalPodAutoscaler/" + n
		}
	}
	return ""
}

func TestHelmChartVariants(t *testing.T) {
	const (
		worker    = "usagefleet-worker"
		collector = "usagefleet-collector"
		gw        = "usagefleet-gateway"
	)
	cases := []struct {
		name      string
		values    map[string]any
		want      []string // "Kind/name" rendered, besides the ConfigMaps, Deployments and Services of the components
		replicas  map[string]int32
		collector bool
		gateway   bool
	}{
		{
			name:     "defaults: KEDA scales the worker, an HPA the gateway",
			want:     []string{"ScaledObject/" + worker, "HorizontalPodAutoscaler/" + gw, "ServiceMonitor/" + worker, "ServiceMonitor/" + gw, "PrometheusRule/usagefleet", "NetworkPolicy/usagefleet", "NetworkPolicy/" + gw + "-ingress", "PodDisruptionBudget/" + worker, "PodDisruptionBudget/" + gw},
			gateway:  true,
			replicas: map[string]int32{},
		},
		{
			name:     "an HPA instead of KEDA",
			values:   set("worker.autoscaling.mode", "hpa"),
			want:     []string{"HorizontalPodAutoscaler/" + worker, "HorizontalPodAutoscaler/" + gw, "ServiceMonitor/" + worker, "ServiceMonitor/" + gw, "PrometheusRule/usagefleet", "NetworkPolicy/usagefleet", "NetworkPolicy/" + gw + "-ingress", "PodDisruptionBudget/" + worker, "PodDisruptionBudget/" + gw},
			gateway:  true,
			replicas: map[string]int32{},
		},
		{
			name:     "no autoscaling: the Deployments set their replicas",
			values:   set("worker.autoscaling.mode", "none", "worker.replicas", 3, "gateway.autoscaling.enabled", false),
			want:     []string{"ServiceMonitor/" + worker, "ServiceMonitor/" + gw, "PrometheusRule/usagefleet", "NetworkPolicy/usagefleet", "NetworkPolicy/" + gw + "-ingress", "PodDisruptionBudget/" + worker, "PodDisruptionBudget/" + gw},
			gateway:  true,
			replicas: map[string]int32{worker: 3, gw: 2},
		},
		{
			name:     "gateway off",
			values:   set("gateway.enabled", false),
			want:     []string{"ScaledObject/" + worker, "ServiceMonitor/" + worker, "PrometheusRule/usagefleet", "NetworkPolicy/usagefleet", "PodDisruptionBudget/" + worker},
			replicas: map[string]int32{},
		},
		{
			name:     "ServiceMonitor and PrometheusRule off, NetworkPolicy off",
			values:   set("metrics.serviceMonitor.enabled", false, "metrics.prometheusRule.enabled", false, "networkPolicy.enabled", false),
			want:     []string{"ScaledObject/" + worker, "HorizontalPodAutoscaler/" + gw, "PodDisruptionBudget/" + worker, "PodDisruptionBudget/" + gw},
			gateway:  true,
			replicas: map[string]int32{},
		},
		{
			name:      "collector on, NATS by .creds file with a CA",
			values:    set("collector.enabled", true, "worker.nats.credsSecret", "nats-worker-creds", "collector.nats.credsSecret", "nats-collector-creds", "gateway.nats.credsSecret", "nats-gateway-creds", "nats.tls.caSecret", "nats-ca", "otel.tracesEndpoint", "http://otel-collector.observability.svc:4318/v1/traces"),
			want:      []string{"ScaledObject/" + worker, "HorizontalPodAutoscaler/" + gw, "ServiceMonitor/" + worker, "ServiceMonitor/" + collector, "ServiceMonitor/" + gw, "PrometheusRule/usagefleet", "NetworkPolicy/usagefleet", "NetworkPolicy/" + gw + "-ingress", "PodDisruptionBudget/" + worker, "PodDisruptionBudget/" + gw},
			collector: true,
			gateway:   true,
			replicas:  map[string]int32{collector: 1},
		},
	}
	// Read once here: the TLS files go to a temporary directory named
	// after the test, and NATS cannot parse a path with the subtests' ":".
	natsCfg := loadNATSConfigs(t)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := mustRender(t, tc.values)
			r.nats = natsCfg
			want := slices.Clone(tc.want)
			want = append(want, "ConfigMap/"+worker, "Deployment/"+worker, "Service/"+worker+"-metrics")
			if tc.collector {
				want = append(want, "ConfigMap/"+collector, "Deployment/"+collector, "Service/"+collector+"-metrics")
			}
			if tc.gateway {
				want = append(want, "ConfigMap/"+gw, "Deployment/"+gw, "Service/"+gw)
			}
			slices.Sort(want)
			if !slices.Equal(r.kinds, want) {
				t.Errorf("rendered %v\nwant     %v", r.kinds, want)
			}
			for name, d := range r.deployments {
				owner := r.scaler(name)
				switch {
				case owner != "" && d.Spec.Replicas != nil:
					t.Errorf("Deployment %s sets replicas %d and %s scales it: every upgrade would reset what the autoscaler chose", name, *d.Spec.Replicas, owner)
				case owner == "" && d.Spec.Replicas == nil:
					t.Errorf("Deployment %s sets no replicas and nothing scales it", name)
				case owner == "" && *d.Spec.Replicas != tc.replicas[name]:
					t.Errorf("Deployment %s: replicas %d; want %d", name, *d.Spec.Replicas, tc.replicas[name])
				}
			}
			r.checkPods(t)
			r.checkConfigs(t)
			r.checkServices(t)
			r.checkAutoscalers(t)
			r.checkNetworkPolicies(t)
			r.checkMonitors(t)
			for _, pr := range r.rules {
				checkAlertRules(t, pr)
			}
		})
	}
}

// checkPods: the restricted Pod Security Standard, probes on a named
// container port, bounded memory, credentials from Secrets only, and
// arguments the binary accepts.
func (r *release) checkPods(t *testing.T) {
	t.Helper()
	user := strings.TrimSpace(strings.Split(lastOf(dockerfile(t)["usage-worker"].instr("USER")), ":")[0])
	for name, d := range r.deployments {
		spec := d.Spec.Template.Spec
		where := "Deployment " + name
		sel, err := metav1.LabelSelectorAsMap(d.Spec.Selector)
		if err != nil || !labelsMatchStr(sel, d.Spec.Template.Labels) {
			t.Errorf("%s: the selector %v does not select its pods %v", where, d.Spec.Selector, d.Spec.Template.Labels)
		}
		if d.Spec.Template.Labels["app.kubernetes.io/part-of"] != "usagefleet" {
			t.Errorf("%s: pods not labelled part-of usagefleet", where)
		}
		psc := spec.SecurityContext
		if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault || psc.RunAsUser == nil || fmt.Sprint(*psc.RunAsUser) != user {
			t.Errorf("%s: pod securityContext %+v; want non-root (the images' user %s) and the RuntimeDefault seccomp profile", where, psc, user)
		}
		if spec.AutomountServiceAccountToken == nil || *spec.AutomountServiceAccountToken {
			t.Errorf("%s mounts a service account token: nothing in it talks to the Kubernetes API", where)
		}
		if len(spec.Containers) != 1 {
			t.Fatalf("%s: %d containers", where, len(spec.Containers))
		}
		c := spec.Containers[0]
		csc := c.SecurityContext
		if csc == nil || csc.ReadOnlyRootFilesystem == nil || !*csc.ReadOnlyRootFilesystem || csc.AllowPrivilegeEscalation == nil || *csc.AllowPrivilegeEscalation || csc.Capabilities == nil || !slices.Equal(csc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
			t.Errorf("%s: container securityContext %+v; want a read-only root, no privilege escalation, every capability dropped", where, csc)
		}
		if !strings.HasPrefix(c.Image, "usagefleet/") || !strings.HasSuffix(c.Image, ":0.1.0") {
			t.Errorf("%s: image %s; want usagefleet/<binary> pinned to the chart's appVersion", where, c.Image)
		}
		bin := strings.TrimSuffix(strings.TrimPrefix(c.Image, "usagefleet/"), ":0.1.0")
		if _, ok := binaries[bin]; !ok {
			t.Errorf("%s: image %s is no Dockerfile target", where, c.Image)
		}
		if len(c.Command) > 0 {
			t.Errorf("%s overrides the image's ENTRYPOINT", where)
		}
		if _, ok := parseInvocation(t, where, bin, c.Args); !ok {
			continue
		}

		// Memory: a limit, a request under it, GOMEMLIMIT under the limit.
		lim, req := c.Resources.Limits.Memory(), c.Resources.Requests.Memory()
		if lim.IsZero() || req.IsZero() || req.Cmp(*lim) > 0 {
			t.Errorf("%s: memory request %v limit %v; want both, the request under the limit", where, req, lim)
		}
		env := map[string]corev1.EnvVar{}
		for _, e := range c.Env {
			env[e.Name] = e
		}
		if g := env["GOMEMLIMIT"].Value; g == "" || quantity(t, g) >= lim.Value() {
			t.Errorf("%s: GOMEMLIMIT %q; want one below the memory limit %v", where, g, lim)
		}

		// Probes: started and alive on /healthz, ready on /readyz, on a
		// named port of the container.
		ports := map[string]int32{}
		for _, p := range c.Ports {
			ports[p.Name] = p.ContainerPort
		}
		for _, p := range []struct {
			name  string
			probe *corev1.Probe
			path  string
		}{{"startupProbe", c.StartupProbe, "/healthz"}, {"livenessProbe", c.LivenessProbe, "/healthz"}, {"readinessProbe", c.ReadinessProbe, "/readyz"}} {
			if p.probe == nil || p.probe.HTTPGet == nil {
				t.Errorf("%s: no %s", where, p.name)
				continue
			}
			g := p.probe.HTTPGet
			if _, ok := ports[g.Port.StrVal]; g.Path != p.path || g.Port.Type != intstr.String || !ok {
				t.Errorf("%s: %s GET %s on %v; want %s on a named container port (%v)", where, p.name, g.Path, g.Port.String(), p.path, ports)
			}
		}

		// Secrets only by reference: every variable is a plain setting
		// or comes from a Secret key; no Secret volume but NATS's files.
		for _, e := range c.Env {
			switch {
			case e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil:
				if e.ValueFrom.SecretKeyRef.Name == "" || e.ValueFrom.SecretKeyRef.Key == "" {
					t.Errorf("%s: env %s from Secret %q key %q", where, e.Name, e.ValueFrom.SecretKeyRef.Name, e.ValueFrom.SecretKeyRef.Key)
				}
			case e.ValueFrom != nil:
				t.Errorf("%s: env %s comes from %+v; want a Secret key or a plain setting", where, e.Name, e.ValueFrom)
			case e.Name != "GOMEMLIMIT" && !strings.HasPrefix(e.Name, "OTEL_"):
				t.Errorf("%s: env %s=%q is written into the manifest; credentials come from existingSecret, settings belong to the config", where, e.Name, e.Value)
			}
		}
		for _, v := range spec.Volumes {
			if v.Secret != nil && v.Name != "nats-creds" && v.Name != "nats-tls" {
				t.Errorf("%s: Secret volume %s", where, v.Name)
			}
		}
	}
}

func labelsMatchStr(selector, labels map[string]string) bool {
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

// podConfig returns the config file a Deployment's --config names, from
// the ConfigMap key mounted there, and the environment it runs with (each
// Secret key a stand-in value).
func (r *release) podConfig(t *testing.T, deployment string) (inv invocation, cfg []byte, env map[string]string, secretEnv []string) {
	t.Helper()
	d := r.deployments[deployment]
	if d == nil {
		t.Fatalf("no Deployment %s", deployment)
	}
	c := d.Spec.Template.Spec.Containers[0]
	bin := strings.TrimSuffix(strings.TrimPrefix(c.Image, "usagefleet/"), ":0.1.0")
	inv, ok := parseInvocation(t, "Deployment "+deployment, bin, c.Args)
	if !ok {
		t.FailNow()
	}
	cfgPath := inv.flags["config"]
	for _, vm := range c.VolumeMounts {
		if !strings.HasPrefix(cfgPath, strings.TrimSuffix(vm.MountPath, "/")+"/") {
			continue
		}
		for _, v := range d.Spec.Template.Spec.Volumes {
			if v.Name != vm.Name || v.ConfigMap == nil {
				continue
			}
			cm := r.configMaps[v.ConfigMap.Name]
			if cm == nil {
				t.Fatalf("Deployment %s mounts ConfigMap %s, which the chart does not render", deployment, v.ConfigMap.Name)
			}
			for _, it := range v.ConfigMap.Items {
				if path.Join(vm.MountPath, it.Path) == cfgPath {
					data, ok := cm.Data[it.Key]
					if !ok {
						t.Fatalf("Deployment %s mounts key %s of ConfigMap %s, which has no such key", deployment, it.Key, cm.Name)
					}
					cfg = []byte(data)
				}
			}
		}
	}
	if cfg == nil {
		t.Fatalf("Deployment %s: --config %s is not a mounted ConfigMap key", deployment, cfgPath)
	}
	env = map[string]string{}
	for _, e := range c.Env {
		if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
			env[e.Name] = "stand-in-secret-" + strings.ToLower(e.Name) // at least 16 characters, as API keys must be
			secretEnv = append(secretEnv, e.Name)
			continue
		}
		env[e.Name] = e.Value
	}
	slices.Sort(secretEnv)
	return inv, cfg, env, secretEnv
}

// checkConfigs parses each component's rendered config with the parser
// its binary uses, in the environment its Deployment gives it: every
// {env: NAME} is a Secret key, NATS credentials are the component's user.
func (r *release) checkConfigs(t *testing.T) {
	t.Helper()
	natsCfg := r.nats
	for name := range r.deployments {
		inv, cfg, env, secretEnv := r.podConfig(t, name)
		where := "ConfigMap " + name
		if refs := envRefs(t, cfg); !slices.Equal(refs, secretEnv) {
			t.Errorf("%s: the config names %v as {env: ...}; the Deployment fills %v from Secrets", where, refs, secretEnv)
		}
		var raw map[string]any
		if err := sigsyaml.Unmarshal(cfg, &raw); err != nil {
			t.Fatalf("%s: %v", where, err)
		}
		if creds := str(raw, "nats", "creds_file"); creds != "" {
			// The file is in the Secret volume: check the mount, since
			// the parser would stat a path that exists only in the pod.
			c := r.deployments[name].Spec.Template.Spec.Containers[0]
			if !slices.ContainsFunc(c.VolumeMounts, func(vm corev1.VolumeMount) bool {
				return vm.Name == "nats-creds" && path.Dir(creds) == vm.MountPath
			}) {
				t.Errorf("%s: nats.creds_file %s is not in the mounted nats-creds Secret", where, creds)
			}
			if ca := str(raw, "nats", "tls", "ca_file"); ca == "" || !slices.ContainsFunc(c.VolumeMounts, func(vm corev1.VolumeMount) bool { return vm.Name == "nats-tls" && path.Dir(ca) == vm.MountPath }) {
				t.Errorf("%s: nats.tls.ca_file %q is not in the mounted nats-tls Secret", where, ca)
			}
			if _, ok := env["NATS_PASSWORD"]; ok {
				t.Errorf("%s logs in with a .creds file and still gets NATS_PASSWORD", name)
			}
			continue
		}
		user := str(raw, "nats", "user")
		if !natsCfg.hasUser(user) {
			t.Errorf("%s: nats.user %q is no user of deploy/nats/accounts.conf", where, user)
		}
		switch inv.command {
		case "run":
			w := loadWorkerConfig(t, where, cfg, env)
			checkTypesLinked(t, where, w)
			if user != "worker" {
				t.Errorf("%s: nats.user %q; want the NATS worker user", where, user)
			}
			c := r.deployments[name].Spec.Template.Spec.Containers[0]
			if len(c.Ports) != 1 || c.Ports[0].Name != "metrics" || int(c.Ports[0].ContainerPort) != w.metrics {
				t.Errorf("%s: container ports %v; the config listens on %d", where, c.Ports, w.metrics)
			}
			grace := time.Duration(*r.deployments[name].Spec.Template.Spec.TerminationGracePeriodSeconds) * time.Second
			if drain := w.cfg.Worker.DrainTimeout.D(20 * time.Second); grace < drain+10*time.Second {
				t.Errorf("terminationGracePeriodSeconds %v; want well above worker.drain_timeout %v", grace, drain)
			}
			for _, so := range r.scaled {
				for _, tr := range so.Spec.Triggers {
					dest, ok := strings.CutPrefix(tr.Metadata["consumer"], "uf_")
					dc := w.destination(dest)
					if !ok || dc == nil || workers.ConsumerName(dest) != tr.Metadata["consumer"] {
						t.Errorf("ScaledObject %s: consumer %q is not uf_<a destination of the worker config>", so.Name, tr.Metadata["consumer"])
						continue
					}
					if w.semantics(t, dc) != workers.Append {
						t.Errorf("KEDA scales on %s, a replace destination: more replicas do not upload a unit faster", dest)
					}
				}
			}
		case "collect":
			setenv(t, env)
			cc, err := collect.ParseConfig(cfg)
			if err != nil {
				t.Fatalf("%s: %v", where, err)
			}
			if user != "collector" || cc.NATS.User != user {
				t.Errorf("%s: nats.user %q; want the NATS collector user", where, user)
			}
			if l := inv.flags["metrics-listen"]; l == "" {
				t.Errorf("%s: collect runs without --metrics-listen: nothing to probe or scrape", where)
			} else if c := r.deployments[name].Spec.Template.Spec.Containers[0]; len(c.Ports) != 1 || int(c.Ports[0].ContainerPort) != portOf(t, l) {
				t.Errorf("%s: container ports %v; --metrics-listen %s", where, c.Ports, l)
			}
			if d := r.deployments[name]; d.Spec.Strategy.Type != appsv1.RecreateDeploymentStrategyType {
				t.Errorf("collector strategy %q; want Recreate (one run per checkpoint)", d.Spec.Strategy.Type)
			}
		case "serve":
			setenv(t, env)
			gc, err := gateway.Parse(cfg)
			if err != nil {
				t.Fatalf("%s: %v", where, err)
			}
			if user != "gateway" || gc.NATS.User != user {
				t.Errorf("%s: nats.user %q; want the NATS gateway user", where, user)
			}
			c := r.deployments[name].Spec.Template.Spec.Containers[0]
			if len(c.Ports) != 1 || fmt.Sprintf(":%d", c.Ports[0].ContainerPort) != gc.Listen {
				t.Errorf("%s: container ports %v; the gateway listens on %s", where, c.Ports, gc.Listen)
			}
			grace := time.Duration(*r.deployments[name].Spec.Template.Spec.TerminationGracePeriodSeconds) * time.Second
			if grace <= time.Duration(gc.DrainTimeout) {
				t.Errorf("terminationGracePeriodSeconds %v is not above drain_timeout %v", grace, time.Duration(gc.DrainTimeout))
			}
		default:
			t.Errorf("Deployment %s runs %q", name, inv.command)
		}
	}
}

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

func TestHelmChartRefuses(t *testing.T) {
	cases := []struct {
		name   string
		values map[string]any
		want   string
	}{
		{"a component without its Secret", set("worker.existingSecret", ""), "existingSecret"},
		{"a misspelt key", set("worker.replica", 3), "replica"},
		{"an autoscaler that is neither", set("worker.autoscaling.mode", "vpa"), "mode"},
		{"NATS settings in the config", set("worker.config.nats", map[string]any{"url": "nats://x:4222"}), "config"},
		{"a writable root", set("securityContext.readOnlyRootFilesystem", false), "readOnlyRootFilesystem"},
		{"root", set("podSecurityContext.runAsNonRoot", false), "runAsNonRoot"},
		{"no memory limit", set("gateway.resources.limits.memory", nil), "memory"},
		{"KEDA on a destination the worker lacks", set("worker.autoscaling.keda.destination", "nowhere"), `"nowhere" is not a destination`},
		{"an environment variable that is no name", set("worker.secretEnv", []any{"not a name"}), "secretEnv"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := renderChart(t, tc.values)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("rendered with %v: error %v; want one naming %q", tc.values, err, tc.want)
			}
		})
	}
}

var (
	exportedOnce sync.Once
	exportedSet  map[string][]string
	exportedErr  error
	// otelInstrument is an OpenTelemetry meter's instrument constructor.
	otelInstrument = regexp.MustCompile(`^(Int64|Float64)(Observable)?(Counter|UpDownCounter|Gauge|Histogram)$`)
)

// exportedMetrics reads the module's Go sources (tests aside) for the
// metrics it registers and returns their Prometheus names, as the
// OpenTelemetry Prometheus exporter writes them (dots to underscores, the
// unit s or By as _seconds or _bytes, _total on counters, _bucket, _sum
// and _count on histograms), with prometheus client_golang's names as
// they are. The labels are fleetMetrics' where it knows the metric.
func exportedMetrics(t *testing.T) map[string][]string {
	t.Helper()
	exportedOnce.Do(func() { exportedSet, exportedErr = readExportedMetrics() })
	if exportedErr != nil {
		t.Fatal(exportedErr)
	}
	// The reader is right about the metrics the dashboard charts, which
	// are checked against a live /metrics elsewhere.
	for n := range fleetMetrics {
		if _, ok := exportedSet[n]; !ok {
			t.Fatalf("reading the sources found no %s (found %v): the reader is wrong", n, sortedKeys(exportedSet))
		}
	}
	return exportedSet
}

func readExportedMetrics() (map[string][]string, error) {
	out := map[string][]string{}
	add := func(n string) { out[n] = fleetMetrics[n] }
	fset := token.NewFileSet()
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if n := d.Name(); n == ".git" || n == "testdata" || n == "node_modules" {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
			return nil
		}
		f, err := goparser.ParseFile(fset, p, nil, 0)
		if err != nil {
			return err
		}
		consts := packageConsts(fset, filepath.Dir(p))
		strOf := func(e ast.Expr) string {
			switch x := e.(type) {
			case *ast.BasicLit:
				if s, err := strconv.Unquote(x.Value); err == nil {
					return s
				}
			case *ast.Ident:
				return consts[x.Name]
			}
			return ""
		}
		ast.Inspect(f, func(n ast.Node) bool {
			switch x := n.(type) {
			case *ast.CallExpr:
				sel, ok := x.Fun.(*ast.SelectorExpr)
				if !ok || len(x.Args) == 0 {
					return true
				}
				m := otelInstrument.FindStringSubmatch(sel.Sel.Name)
				name := strOf(x.Args[0])
				if m == nil || !strings.HasPrefix(name, "usagefleet.") {
					return true
				}
				prom := strings.ReplaceAll(name, ".", "_")
				for _, a := range x.Args[1:] {
					if c, ok := a.(*ast.CallExpr); ok && len(c.Args) == 1 {
						if s, ok := c.Fun.(*ast.SelectorExpr); ok && s.Sel.Name == "WithUnit" {
							// The exporter adds a unit the name does not already end with.
							switch u := strOf(c.Args[0]); {
							case u == "s" && !strings.HasSuffix(prom, "_seconds"):
								prom += "_seconds"
							case u == "By" && !strings.HasSuffix(prom, "_bytes"):
								prom += "_bytes"
							}
						}
					}
				}
				switch m[3] {
				case "Counter":
					add(prom + "_total")
				case "Histogram":
					for _, suf := range []string{"", "_bucket", "_sum", "_count"} {
						add(prom + suf)
					}
				default:
					add(prom)
				}
			case *ast.CompositeLit:
				sel, ok := x.Type.(*ast.SelectorExpr)
				if !ok || !strings.HasSuffix(sel.Sel.Name, "Opts") {
					return true
				}
				for _, el := range x.Elts {
					if kv, ok := el.(*ast.KeyValueExpr); ok {
						if k, ok := kv.Key.(*ast.Ident); ok && k.Name == "Name" {
							if s := strOf(kv.Value); strings.HasPrefix(s, "usagefleet_") {
								add(s)
							}
						}
					}
				}
			}
			return true
		})
		return nil
	})
	return out, err
}

var (
	constsMu sync.Mutex
	constsOf = map[string]map[string]string{}
)

// packageConsts maps the string constants declared in a directory's Go
// files (tests aside) to their values.
func packageConsts(fset *token.FileSet, dir string) map[string]string {
	constsMu.Lock()
	defer constsMu.Unlock()
	if c, ok := constsOf[dir]; ok {
		return c
	}
	c := map[string]string{}
	files, _ := filepath.Glob(filepath.Join(dir, "*.go"))
	for _, fn := range files {
		if strings.HasSuffix(fn, "_test.go") {
			continue
		}
		f, err := goparser.ParseFile(fset, fn, nil, 0)
		if err != nil {
			continue
		}
		for _, decl := range f.Decls {
			gd, ok := decl.(*ast.GenDecl)
			if !ok || gd.Tok != token.CONST {
				continue
			}
			for _, spec := range gd.Specs {
				vs := spec.(*ast.ValueSpec)
				for i, name := range vs.Names {
					if i < len(vs.Values) {
						if lit, ok := vs.Values[i].(*ast.BasicLit); ok && lit.Kind == token.STRING {
							c[name.Name], _ = strconv.Unquote(lit.Value)
						}
					}
				}
			}
		}
	}
	constsOf[dir] = c
	return c
}
