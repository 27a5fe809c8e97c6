package deploy

import (
	"fmt"
	"path"
	"slices"
	"strings"
	"testing"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
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
	sigsyaml "sigs.k8s.io/yaml"
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
