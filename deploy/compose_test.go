package deploy

import (
	"encoding/json"
	"fmt"
	"net/url"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// TestDockerComposeConfig asks the docker CLI to validate the compose
// file, where it can do so without an engine.
func TestDockerComposeConfig(t *testing.T) {
	if _, err := exec.LookPath("docker"); err != nil {
		t.Skip("no docker CLI here: docker-compose.yml is checked by TestCompose only")
	}
	if out, err := exec.Command("docker", "compose", "version").CombinedOutput(); err != nil {
		t.Skipf("the docker CLI here has no compose plugin (%s): docker-compose.yml is checked by TestCompose only", firstLine(out))
	}
	// config reads and interpolates the files; it needs no engine.
	cmd := exec.Command("docker", "compose", "config", "-q")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("docker compose config -q: %v\n%s", err, out)
	}
}

func firstLine(b []byte) string {
	line, _, _ := strings.Cut(strings.TrimSpace(string(b)), "\n")
	return line
}

// compose is docker-compose.yml with what its services refer to.
type compose struct {
	doc      map[string]any
	services map[string]any
}

func loadCompose(t *testing.T) compose {
	t.Helper()
	doc := yamlDoc(t, "docker-compose.yml")
	c := compose{doc: doc, services: obj(doc, "services")}
	if len(c.services) == 0 {
		t.Fatal("docker-compose.yml: no services")
	}
	return c
}

// env is what a service's processes see: its env_file entries, then its
// environment.
func (c compose) env(t *testing.T, svc string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, f := range strs(list(c.services, svc, "env_file")) {
		for k, v := range envFile(t, f) {
			out[k] = v
		}
	}
	for k, v := range obj(c.services, svc, "environment") {
		out[k] = fmt.Sprint(v)
	}
	return out
}

// mount returns the host file (relative to the repository) bind-mounted
// at target in svc's container, or "".
func (c compose) mount(svc, target string) string {
	for _, v := range strs(list(c.services, svc, "volumes")) {
		parts := strings.Split(v, ":")
		if len(parts) >= 2 && parts[1] == target && strings.HasPrefix(parts[0], "./") {
			return strings.TrimPrefix(parts[0], "./")
		}
	}
	return ""
}

// binaryOf is the usagefleet binary a service runs (from its image), or "".
func (c compose) binaryOf(svc string) string {
	img := str(c.services, svc, "image")
	name, ok := strings.CutPrefix(img, "usagefleet/")
	if !ok {
		return ""
	}
	name, _, _ = strings.Cut(name, ":")
	return name
}

func (c compose) invocation(t *testing.T, svc string) (invocation, bool) {
	t.Helper()
	bin := c.binaryOf(svc)
	if bin == "" {
		t.Fatalf("service %s runs no usagefleet image", svc)
	}
	return parseInvocation(t, "compose service "+svc, bin, strs(list(c.services, svc, "command")))
}

// servicesRunning lists the services whose command is cmd, sorted.
func (c compose) servicesRunning(cmd string) []string {
	var out []string
	for _, name := range sortedKeys(c.services) {
		if c.binaryOf(name) != "" {
			if argv := strs(list(c.services, name, "command")); len(argv) > 0 && argv[0] == cmd {
				out = append(out, name)
			}
		}
	}
	return out
}

func (c compose) natsServices() []string {
	var out []string
	for _, name := range sortedKeys(c.services) {
		if strings.HasPrefix(str(c.services, name, "image"), "nats:") {
			out = append(out, name)
		}
	}
	return out
}

func stripMetrics(raw map[string]any) map[string]any {
	b, _ := json.Marshal(raw)
	var cp map[string]any
	_ = json.Unmarshal(b, &cp)
	if w, ok := cp["worker"].(map[string]any); ok {
		delete(w, "metrics")
	}
	return cp
}

// checkNATSURL checks a comma-separated NATS URL list names NATS servers
// on their client port, all of them when there are several.
func checkNATSURL(t *testing.T, where, urls string, servers []string, port int) {
	t.Helper()
	var hosts []string
	for _, u := range strings.Split(urls, ",") {
		pu, err := url.Parse(strings.TrimSpace(u))
		if err != nil || pu.Scheme != "nats" {
			t.Errorf("%s: NATS URL %q", where, u)
			continue
		}
		if pu.User != nil {
			t.Errorf("%s: credentials in the NATS URL: use user and password: {env: ...}", where)
		}
		if p, _ := strconv.Atoi(pu.Port()); p != port {
			t.Errorf("%s: %s: the servers listen on %d", where, u, port)
		}
		hosts = append(hosts, pu.Hostname())
	}
	if len(servers) > 0 {
		slices.Sort(hosts)
		if !slices.Equal(hosts, servers) {
			t.Errorf("%s: NATS URL lists %v; list every node (%v) so a client fails over", where, hosts, servers)
		}
	}
}
