package deploy

import (
	"fmt"
	"path"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	sigsyaml "sigs.k8s.io/yaml"

	"github.com/usagefleet/usagefleet/producer/collect"
	"github.com/usagefleet/usagefleet/producer/gateway"
	"github.com/usagefleet/usagefleet/workers"
)

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
