package deploy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	sbacronis "github.com/usagefleet/usagefleet/internal/sandbox/acronis"
	"github.com/usagefleet/usagefleet/producer/collect"
)

func TestCompose(t *testing.T) {
	c := loadCompose(t)
	stages := dockerfile(t)
	natsCfg := loadNATSConfigs(t)

	t.Run("images are the Dockerfile's targets", func(t *testing.T) {
		for _, name := range sortedKeys(c.services) {
			bin := c.binaryOf(name)
			build := obj(c.services, name, "build")
			if bin == "" {
				if build != nil {
					t.Errorf("service %s builds an image not named usagefleet/<binary>", name)
				}
				continue
			}
			if _, ok := binaries[bin]; !ok || stages[bin] == nil {
				t.Errorf("service %s: image %s is no Dockerfile target", name, str(c.services, name, "image"))
			}
			if build == nil {
				t.Errorf("service %s: no build: compose would pull %s", name, str(c.services, name, "image"))
				continue
			}
			if got := str(build, "target"); got != bin {
				t.Errorf("service %s: image usagefleet/%s built from target %q", name, bin, got)
			}
			if str(build, "context") != "." || str(build, "dockerfile") != "deploy/Dockerfile" {
				t.Errorf("service %s: build %v; want context . and dockerfile deploy/Dockerfile", name, build)
			}
		}
	})

	t.Run("every bind-mounted file exists", func(t *testing.T) {
		for _, name := range sortedKeys(c.services) {
			for _, v := range strs(list(c.services, name, "volumes")) {
				src, _, _ := strings.Cut(v, ":")
				if strings.HasPrefix(src, "./") {
					if _, err := os.Stat(repoPath(src)); err != nil {
						t.Errorf("service %s mounts %s: %v", name, src, err)
					}
				}
			}
			for _, f := range strs(list(c.services, name, "env_file")) {
				if _, err := os.Stat(repoPath(f)); err != nil {
					t.Errorf("service %s: env_file %s: %v", name, f, err)
				}
			}
		}
	})

	t.Run("the NATS services run the deploy/nats configs", func(t *testing.T) {
		svcs := c.natsServices()
		if len(svcs) != 3 {
			t.Fatalf("NATS services %v; want 3", svcs)
		}
		for _, name := range svcs {
			argv := strs(list(c.services, name, "command"))
			if len(argv) != 2 || argv[0] != "--config" {
				t.Fatalf("service %s: command %v; want [--config FILE]", name, argv)
			}
			conf := c.mount(name, argv[1])
			nc := natsCfg.byFile[conf]
			if nc == nil {
				t.Fatalf("service %s runs %s, mounted from %q: not a deploy/nats config", name, argv[1], conf)
			}
			if nc.opts.ServerName != name {
				t.Errorf("service %s runs server_name %s: the routes name the nodes by service", name, nc.opts.ServerName)
			}
			if inc := c.mount(name, filepath.ToSlash(filepath.Join(filepath.Dir(argv[1]), "accounts.conf"))); inc != "deploy/nats/accounts.conf" {
				t.Errorf("service %s: accounts.conf is not mounted next to its config (include ./accounts.conf)", name)
			}
			data := false
			for _, v := range strs(list(c.services, name, "volumes")) {
				src, dst, _ := strings.Cut(v, ":")
				if !strings.HasPrefix(src, "./") && strings.HasPrefix(nc.opts.StoreDir, strings.TrimSuffix(dst, "/")+"/") {
					data = true
				}
			}
			if !data {
				t.Errorf("service %s: no volume holds the JetStream store %s: a restart would lose every stream", name, nc.opts.StoreDir)
			}
			hc := strings.Join(strs(list(c.services, name, "healthcheck", "test")), " ")
			if !strings.Contains(hc, fmt.Sprintf(":%d/healthz", nc.opts.HTTPPort)) {
				t.Errorf("service %s: healthcheck %q does not ask the monitoring port %d", name, hc, nc.opts.HTTPPort)
			}
			for _, r := range nc.opts.Routes {
				if !slices.Contains(svcs, r.Hostname()) {
					t.Errorf("%s routes to %s, which is no NATS service", conf, r.Host)
				}
			}
			// The TLS files: the service mounts a directory at /etc/nats/tls
			// (deploy/nats/dev-tls); start the config on those files.
			env := c.env(t, name)
			tlsDir := c.mount(name, "/etc/nats/tls")
			if tlsDir == "" {
				t.Errorf("service %s: nothing mounted at /etc/nats/tls, where $NATS_TLS_* point", name)
			}
			for _, k := range []string{"NATS_TLS_CERT", "NATS_TLS_KEY", "NATS_TLS_CA"} {
				if v, ok := strings.CutPrefix(env[k], "/etc/nats/tls/"); ok && tlsDir != "" {
					// Absolute: NATS parses a variable's value as config, and
					// a value starting with "." reads as a number.
					abs, err := filepath.Abs(repoPath(tlsDir + "/" + v))
					if err != nil {
						t.Fatal(err)
					}
					env[k] = abs
				}
			}
			setenv(t, env)
			if _, err := natsProcess(conf); err != nil {
				t.Errorf("service %s: its environment does not start %s: %v", name, conf, err)
			}
		}
	})

	sandbox, sbOK := c.invocation(t, "sandbox")
	sbEnv := c.env(t, "sandbox")
	sbPort := func(emu string) int {
		p, err := strconv.Atoi(sandbox.flags[emu+"-port"])
		if err != nil {
			t.Fatalf("the sandbox command sets no --%s-port: the configs could not know where it listens", emu)
		}
		return p
	}

	t.Run("the sandbox stays on loopback and the workers share its namespace", func(t *testing.T) {
		if !sbOK {
			t.FailNow()
		}
		if h := sandbox.flags["host"]; h != "127.0.0.1" && h != "" {
			t.Errorf("sandbox --host %s: the emulators refuse anything but loopback", h)
		}
		for _, name := range sortedKeys(c.services) {
			nm := str(c.services, name, "network_mode")
			if nm == "" {
				continue
			}
			owner, ok := strings.CutPrefix(nm, "service:")
			if !ok || c.services[owner] == nil {
				t.Errorf("service %s: network_mode %q names no service", name, nm)
			}
			for _, k := range []string{"ports", "networks", "hostname"} {
				if at(c.services, name, k) != nil {
					t.Errorf("service %s shares %s's network namespace and cannot set %s", name, owner, k)
				}
			}
			if _, ok := obj(c.services, name, "depends_on")[owner]; !ok {
				t.Errorf("service %s shares %s's namespace but does not depend on it", name, owner)
			}
		}
		for _, env := range []string{"cloudzero-key-env", "webhook-token-env", "cloudcruiser-token-env", "acronis-secret-env"} {
			if v := sandbox.flags[env]; v != "" {
				if _, ok := sbEnv[v]; !ok {
					t.Errorf("sandbox --%s=%s: the sandbox's environment does not set it (it would fall back to its default)", env, v)
				}
			}
		}
	})

	workerSvcs := c.servicesRunning("run")
	var ws []workerConfig
	// The ports taken in the sandbox's network namespace, and by whom.
	listens := map[int]string{}
	for _, emu := range []string{"acronis", "cloudcruiser", "cloudzero", "here", "webhook"} {
		if p := sandbox.flags[emu+"-port"]; p != "" {
			n, _ := strconv.Atoi(p)
			listens[n] = "sandbox " + emu
		}
	}
	t.Run("workers", func(t *testing.T) {
		if len(workerSvcs) < 2 {
			t.Fatalf("worker services %v; want at least 2", workerSvcs)
		}
		for _, name := range workerSvcs {
			inv, ok := c.invocation(t, name)
			if !ok {
				continue
			}
			conf := c.mount(name, inv.flags["config"])
			if conf == "" {
				t.Fatalf("service %s: --config %s is not mounted from the repository", name, inv.flags["config"])
			}
			env := c.env(t, name)
			w := loadWorkerConfig(t, conf, readFile(t, conf), env)
			ws = append(ws, w)
			checkTypesLinked(t, conf, w)
			if str(c.services, name, "network_mode") != "service:sandbox" {
				t.Errorf("service %s does not share the sandbox's network namespace: the emulators are on its loopback only", name)
			}
			if other, dup := listens[w.metrics]; dup {
				t.Errorf("service %s: metrics port %d is taken by %s in the shared namespace", name, w.metrics, other)
			}
			listens[w.metrics] = name
			if w.cfg.Streams.Replicas != 3 {
				t.Errorf("%s: streams.replicas %d on a 3-node cluster", conf, w.cfg.Streams.Replicas)
			}
			checkNATSURL(t, conf, w.cfg.NATS.URL, c.natsServices(), natsCfg.port)
			if !natsCfg.hasUser(w.cfg.NATS.User) {
				t.Errorf("%s: nats.user %q is no NATS user", conf, w.cfg.NATS.User)
			}
			if w.cfg.NATS.User != "worker" {
				t.Errorf("%s: the worker logs in as %q, not worker: the permissions are per role", conf, w.cfg.NATS.User)
			}
			grace, err := time.ParseDuration(str(c.services, name, "stop_grace_period"))
			if drain := w.cfg.Worker.DrainTimeout.D(20 * time.Second); err != nil || grace <= drain {
				t.Errorf("service %s: stop_grace_period %q; want above worker.drain_timeout %v", name, str(c.services, name, "stop_grace_period"), drain)
			}
			for _, d := range w.destinationsOfType("cloudzero") {
				if u := str(d, "settings", "base_url"); hostOf(t, u) != "127.0.0.1" || portOf(t, u) != sbPort("cloudzero") {
					t.Errorf("%s: destination %s base_url %s; the CloudZero emulator is on 127.0.0.1:%d", conf, str(d, "name"), u, sbPort("cloudzero"))
				}
				if got, want := str(d, "settings", "connection_id"), sandbox.flags["cloudzero-connection"]; got != want {
					t.Errorf("%s: connection_id %q; the sandbox serves %q", conf, got, want)
				}
				if got, want := str(d, "settings", "api_key", "env"), sandbox.flags["cloudzero-key-env"]; got != want {
					t.Errorf("%s: api_key from $%s; the sandbox accepts $%s", conf, got, want)
				}
			}
			for _, d := range w.destinationsOfType("cloudcruiser") {
				if u := str(d, "settings", "base_url"); hostOf(t, u) != "127.0.0.1" || portOf(t, u) != sbPort("cloudcruiser") {
					t.Errorf("%s: destination %s base_url %q; the Cloud Cruiser emulator is on 127.0.0.1:%d", conf, str(d, "name"), u, sbPort("cloudcruiser"))
				}
				if got, want := str(d, "settings", "token", "env"), sandbox.flags["cloudcruiser-token-env"]; got == "" || got != want {
					t.Errorf("%s: destination %s token from $%s; the sandbox accepts $%s (set --cloudcruiser-token-env)", conf, str(d, "name"), got, want)
				}
			}
			for _, d := range w.destinationsOfType("webhook") {
				if u := str(d, "settings", "url"); hostOf(t, u) != "127.0.0.1" || portOf(t, u) != sbPort("webhook") {
					t.Errorf("%s: destination %s url %s; the webhook emulator is on 127.0.0.1:%d", conf, str(d, "name"), u, sbPort("webhook"))
				}
				if got, want := str(d, "settings", "token", "env"), sandbox.flags["webhook-token-env"]; got != want {
					t.Errorf("%s: token from $%s; the sandbox requires $%s", conf, got, want)
				}
			}
		}
		// The replicas run the same configuration but for the port.
		for _, w := range ws[1:] {
			a, b := stripMetrics(ws[0].raw), stripMetrics(w.raw)
			ja, _ := json.Marshal(a)
			jb, _ := json.Marshal(b)
			if !bytes.Equal(ja, jb) {
				t.Errorf("%s and %s differ in more than worker.metrics", ws[0].name, w.name)
			}
		}
	})

	t.Run("publish-sample", func(t *testing.T) {
		inv, ok := c.invocation(t, "publish-sample")
		if !ok || inv.command != "publish" {
			t.Fatalf("publish-sample runs %q", inv.command)
		}
		env := c.env(t, "publish-sample")
		feed := inv.flags["feed"]
		for _, w := range ws {
			if !slices.Contains(w.feeds(), feed) {
				t.Errorf("--feed %s: no destination of %s serves it", feed, w.name)
			}
			for _, d := range strings.Split(inv.flags["dest"], ",") {
				if w.destination(d) == nil {
					t.Errorf("--dest %s: %s has no such destination", d, w.name)
				}
			}
		}
		if !natsCfg.hasUser(inv.flags["user"]) || inv.flags["user"] != "producer" {
			t.Errorf("--user %q; want the NATS producer user", inv.flags["user"])
		}
		if _, ok := env[inv.flags["password-env"]]; !ok {
			t.Errorf("--password-env %s: not in the service's environment", inv.flags["password-env"])
		}
		checkNATSURL(t, "publish-sample $NATS_URL", env["NATS_URL"], c.natsServices(), natsCfg.port)
		if len(inv.args) == 0 {
			t.Fatal("publishes no file")
		}
		for _, f := range inv.args {
			if c.mount("publish-sample", f) == "" {
				t.Errorf("publishes %s, which is not mounted", f)
			}
		}
	})

	collectorMetrics := 0 // the collector's --metrics-listen port
	t.Run("collector", func(t *testing.T) {
		inv, ok := c.invocation(t, "collector")
		if !ok || inv.command != "collect" {
			t.Fatalf("collector runs %q", inv.command)
		}
		if l := inv.flags["metrics-listen"]; l == "" {
			t.Error("the collector runs without --metrics-listen: nothing serves its /metrics, /healthz and /readyz")
		} else {
			collectorMetrics = portOf(t, l)
			if other, dup := listens[collectorMetrics]; dup {
				t.Errorf("the collector's --metrics-listen %s: port %d is taken by %s in the shared namespace", l, collectorMetrics, other)
			}
			listens[collectorMetrics] = "collector"
		}
		conf := c.mount("collector", inv.flags["config"])
		if conf == "" {
			t.Fatalf("--config %s is not mounted", inv.flags["config"])
		}
		b := readFile(t, conf)
		env := c.env(t, "collector")
		setenv(t, env)
		cfg, err := collect.ParseConfig(devTLSHere(t, b))
		if err != nil {
			t.Fatalf("%s: %v", conf, err)
		}
		for _, ref := range envRefs(t, b) {
			if _, ok := env[ref]; !ok {
				t.Errorf("%s names {env: %s}, which the collector's environment does not set", conf, ref)
			}
		}
		if cfg.NATS.User != "collector" || !natsCfg.hasUser(cfg.NATS.User) {
			t.Errorf("%s: nats.user %q; want the NATS collector user", conf, cfg.NATS.User)
		}
		checkNATSURL(t, conf, cfg.NATS.URL, c.natsServices(), natsCfg.port)
		if str(c.services, "collector", "network_mode") != "service:sandbox" {
			t.Error("the collector does not share the sandbox's namespace: the Acronis emulator is on its loopback only")
		}
		var raw map[string]any
		if err := yaml.Unmarshal(b, &raw); err != nil {
			t.Fatal(err)
		}
		for _, cc := range list(raw, "collectors") {
			if !binaryKnows(t, "usage-producer", "producer/collect/"+str(cc, "type")) {
				t.Errorf("%s: collector type %s: usage-producer does not link producer/collect/%s", conf, str(cc, "type"), str(cc, "type"))
			}
			for _, w := range ws {
				checkCollectorFeed(t, conf, str(cc, "name"), str(cc, "feed"), w)
			}
			if str(cc, "type") != "acronis" {
				continue
			}
			if u := str(cc, "settings", "base_url"); hostOf(t, u) != "127.0.0.1" || portOf(t, u) != sbPort("acronis") {
				t.Errorf("%s: base_url %s; the Acronis emulator is on 127.0.0.1:%d", conf, u, sbPort("acronis"))
			}
			if got, want := str(cc, "settings", "client_id"), sandbox.flags["acronis-client-id"]; got != want {
				t.Errorf("%s: client_id %q; the sandbox accepts %q", conf, got, want)
			}
			if got, want := str(cc, "settings", "client_secret", "env"), sandbox.flags["acronis-secret-env"]; got != want {
				t.Errorf("%s: client_secret from $%s; the sandbox reads $%s", conf, got, want)
			}
			emu := sbacronis.New(sbacronis.Config{ClientID: sandbox.flags["acronis-client-id"], ClientSecret: sbEnv[sandbox.flags["acronis-secret-env"]]})
			if got := str(cc, "settings", "tenant_id"); got != emu.RootTenantID() {
				t.Errorf("%s: tenant_id %s; the emulator's client belongs to %s", conf, got, emu.RootTenantID())
			}
		}
	})

	t.Run("telemetry endpoints", func(t *testing.T) {
		otel := yamlDoc(t, "deploy/otel/collector.yaml")
		httpPort := portOf(t, str(otel, "receivers", "otlp", "protocols", "http", "endpoint"))
		grpcPort := portOf(t, str(otel, "receivers", "otlp", "protocols", "grpc", "endpoint"))
		otelSvc := ""
		for _, name := range sortedKeys(c.services) {
			if c.mount(name, "/etc/otelcol/config.yaml") == "deploy/otel/collector.yaml" {
				otelSvc = name
			}
		}
		if otelSvc == "" {
			t.Fatal("no service runs deploy/otel/collector.yaml")
		}
		for _, name := range sortedKeys(c.services) {
			env := c.env(t, name)
			for _, k := range []string{"OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"} {
				v := env[k]
				if v == "" {
					continue
				}
				want := httpPort
				if env["OTEL_EXPORTER_OTLP_PROTOCOL"] == "grpc" {
					want = grpcPort
				}
				if hostOf(t, v) != otelSvc || portOf(t, v) != want {
					t.Errorf("service %s: %s=%s; the collector is %s:%d", name, k, v, otelSvc, want)
				}
			}
		}
		prom := yamlDoc(t, "deploy/prometheus/prometheus.yml")
		targets := map[string][]string{}
		scrapedBy := map[string]string{} // target -> job
		for _, sc := range list(prom, "scrape_configs") {
			job := str(sc, "job_name")
			for _, st := range list(sc, "static_configs") {
				targets[job] = append(targets[job], strs(list(st, "targets"))...)
				for _, tg := range strs(list(st, "targets")) {
					if p := str(sc, "metrics_path"); p == "" || p == "/metrics" {
						scrapedBy[tg] = job
					}
				}
			}
		}
		// The collector's listener, in the sandbox's namespace.
		if collectorMetrics == 0 {
			t.Error("the collector serves no metrics port for Prometheus to scrape")
		} else {
			host := "collector"
			if owner, ok := strings.CutPrefix(str(c.services, "collector", "network_mode"), "service:"); ok {
				host = owner
			}
			tg := fmt.Sprintf("%s:%d", host, collectorMetrics)
			if scrapedBy[tg] == "" {
				t.Errorf("Prometheus does not scrape the collector's /metrics at %s (collect --metrics-listen): scraped are %v", tg, sortedKeys(scrapedBy))
			} else if scrapedBy[tg] == "usage-worker" {
				t.Errorf("Prometheus scrapes the collector at %s as job usage-worker", tg)
			}
		}
		// The gateway serves /metrics on its API listener.
		gwListen := str(yamlDoc(t, "deploy/compose/gateway.yaml"), "listen")
		if gwListen == "" || c.services["gateway"] == nil {
			t.Error("no gateway service with a listen address")
		} else if tg := fmt.Sprintf("gateway:%d", portOf(t, gwListen)); scrapedBy[tg] != "usage-gateway" {
			t.Errorf("Prometheus does not scrape the gateway's /metrics at %s as job usage-gateway: scraped are %v", tg, scrapedBy)
		}
		// What Prometheus scrapes is not pushed over OTLP as well.
		for _, name := range append(slices.Clone(workerSvcs), "collector", "gateway") {
			if v := pushesOTLPMetrics(c.env(t, name)); v != "" {
				t.Errorf("service %s is scraped and also pushes its metrics over OTLP (%s): Prometheus would count them twice; set OTEL_EXPORTER_OTLP_TRACES_ENDPOINT only", name, v)
			}
		}
		var want []string
		for _, w := range ws {
			want = append(want, fmt.Sprintf("sandbox:%d", w.metrics))
		}
		slices.Sort(want)
		got := slices.Sorted(slices.Values(targets["usage-worker"]))
		if !slices.Equal(got, want) {
			t.Errorf("Prometheus scrapes the workers at %v; they listen at %v (in the sandbox's namespace)", got, want)
		}
		promPort := portOf(t, str(otel, "exporters", "prometheus", "endpoint"))
		if !slices.Contains(targets["otel-collector"], fmt.Sprintf("%s:%d", otelSvc, promPort)) {
			t.Errorf("Prometheus does not scrape the collector's exporter at %s:%d: %v", otelSvc, promPort, targets["otel-collector"])
		}
		for job, ts := range targets {
			for _, tg := range ts {
				if h := hostOf(t, tg); h != "localhost" && c.services[h] == nil {
					t.Errorf("job %s scrapes %s, which is no service", job, tg)
				}
			}
		}
	})
}
