package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/usagefleet/usagefleet/internal/ops"
	sbcz "github.com/usagefleet/usagefleet/internal/sandbox/cloudzero"
	"github.com/usagefleet/usagefleet/internal/sandbox/fault"
	"github.com/usagefleet/usagefleet/internal/usagegen"
	"github.com/usagefleet/usagefleet/messages"
	"github.com/usagefleet/usagefleet/producer"
)

// TestOperatorCommands runs the worker as a process would (embedded NATS on
// a fixed port, CloudZero sandbox) and the operator commands against it:
// reconcile balances, then reports the unit the sandbox lost (deleted
// through its admin endpoint) and exits 1; status names the destination
// paused on refused credentials and exits 1; /metrics has the build info.
func TestOperatorCommands(t *testing.T) {
	ops.StatusEvery = 100 * time.Millisecond
	t.Setenv("UF_OPS_CMD_KEY", "cz-key")
	cz := sbcz.New(sbcz.Config{Connections: map[string]string{"conn": "cz-key"}})
	czs := httptest.NewServer(cz.Handler())
	defer czs.Close()
	natsPort, metricsPort := freePort(t), freePort(t)
	path := writeConfig(t, fmt.Sprintf(`
nats: {data_dir: %q, port: %d}
streams: {lease_ttl: 10s}
worker: {drain_timeout: 2s, metrics: {listen: "127.0.0.1:%d"}, reconcile: {every: 1h}}
destinations:
  - name: cz
    type: cloudzero
    feeds: [cloud]
    flush: {max_delay: 300ms, quiet: 50ms}
    pause_probe: 200ms
    settings: {base_url: %q, connection_id: conn, api_key: {env: UF_OPS_CMD_KEY}}
`, filepath.Join(t.TempDir(), "nats"), natsPort, metricsPort, czs.URL))

	ctx, stop := context.WithCancel(context.Background())
	var logs syncBuffer
	exit := make(chan int, 1)
	go func() { exit <- cmdRun(ctx, []string{"--config", path}, &logs) }()
	defer func() {
		stop()
		<-exit
	}()
	base := fmt.Sprintf("http://127.0.0.1:%d", metricsPort)
	poll(t, "/readyz", func() bool { c, _ := httpGet(base + "/readyz"); return c == 200 })
	if _, body := httpGet(base + "/metrics"); !strings.Contains(body, "usagefleet_build_info{") || !strings.Contains(body, `goversion="`+runtime.Version()+`"`) {
		t.Fatalf("/metrics has no usagefleet_build_info with the Go version:\n%.2000s", body)
	}
	if _, body := httpGet(base + "/metrics"); !strings.Contains(body, `usagefleet_reconcile_errors_total{destination="cz"} 0`) || !strings.Contains(body, "go_goroutines ") || !strings.Contains(body, "process_cpu_seconds_total ") {
		t.Fatalf("/metrics lacks the scheduled reconciliation's series or the Go and process collectors:\n%.3000s", body)
	}

	nc, err := nats.Connect(fmt.Sprintf("nats://127.0.0.1:%d", natsPort))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	prod, err := producer.New(nc, producer.Options{})
	if err != nil {
		t.Fatal(err)
	}
	h0 := time.Date(2026, 5, 4, 8, 0, 0, 0, time.UTC)
	recs := usagegen.Generate(30, usagegen.Options{Seed: 5, Start: h0, Hours: 2})
	if _, err := prod.Publish(ctx, &messages.Batch{ID: "b1", Feed: "cloud", Source: "svc", Records: recs}); err != nil {
		t.Fatal(err)
	}
	poll(t, "the sandbox to hold every record", func() bool {
		n := 0
		for _, h := range cz.Hours("conn") {
			n += h.Rows
		}
		return n == 30
	})
	rec := []string{"reconcile", "--config", path, "--dest", "cz", "--from", "2026-05-04T08", "--to", "2026-05-04T10"}
	poll(t, "reconcile to balance (acks published)", func() bool {
		code, _, _ := runCmd(rec...)
		return code == 0
	})

	// The sandbox loses hour 08.
	req, _ := http.NewRequest(http.MethodDelete, czs.URL+"/_sandbox/hours/conn/"+h0.Format(time.RFC3339), nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("DELETE /_sandbox/hours: %v %v", resp, err)
	}
	resp.Body.Close()
	code, out, errs := runCmd(rec...)
	if code != 1 || !strings.Contains(out, "h2026-05-04T08") || !strings.Contains(out, "mismatch") || !strings.Contains(out, "1 mismatch(es)") {
		t.Fatalf("reconcile after the loss: exit %d\n%s%s", code, out, errs)
	}
	code, out, _ = runCmd(append(rec, "--format", "csv")...)
	if code != 1 || !strings.Contains(out, "cz,h2026-05-04T08,mismatch,") {
		t.Fatalf("reconcile --format csv: exit %d\n%s", code, out)
	}

	code, out, errs = runCmd("status", "--config", path)
	if code != 0 || !strings.Contains(out, "nothing needs attention") {
		t.Fatalf("status of a healthy fleet: exit %d\n%s%s", code, out, errs)
	}
	if code, out, errs = runCmd("dead", "list", "--config", path, "--dest", "cz"); code != 0 || !strings.Contains(out, "0 dead letter(s)") {
		t.Fatalf("dead list: exit %d\n%s%s", code, out, errs)
	}

	// The API refuses the unit of hour 12 once (415: refused whole; a 400
	// would be isolated to a row): a dead letter, which status
	// reports; replayed, the unit is rebuilt from the stream and held whole.
	rules, err := fault.ParseSpec("415x1") // the request refused whole (a 400 is isolated to its row)
	if err != nil {
		t.Fatal(err)
	}
	cz.Faults().Set(rules...)
	h12 := h0.Add(4 * time.Hour)
	more := usagegen.Generate(9, usagegen.Options{Seed: 7, Start: h12, Hours: 1})
	if _, err := prod.Publish(ctx, &messages.Batch{ID: "b-refused", Feed: "cloud", Source: "svc", Records: more}); err != nil {
		t.Fatal(err)
	}
	poll(t, "the dead letter", func() bool {
		code, out, _ = runCmd("dead", "list", "--config", path, "--dest", "cz", "--batch", "b-refused")
		return code == 0 && strings.Contains(out, "1 dead letter(s)")
	})
	seq := strings.Fields(strings.Split(out, "\n")[1])[0]
	code, out, _ = runCmd("status", "--config", path)
	if code != 1 || !strings.Contains(out, "cz: 1 dead letter(s) since") || !strings.Contains(out, "(415)") {
		t.Fatalf("status with a dead letter: exit %d\n%s", code, out)
	}
	code, out, _ = runCmd("status", "--config", path, "--json")
	var st0 ops.Status
	if err := json.Unmarshal([]byte(out), &st0); err != nil || code != 1 || st0.Destinations[0].LastUpload.IsZero() || st0.Destinations[0].DeadSince != 1 {
		t.Fatalf("status --json with a dead letter: exit %d, %v\n%s", code, err, out)
	}
	if code, out, errs = runCmd("dead", "show", "--config", path, seq); code != 0 || strings.Count(out, "  record ") != 9 {
		t.Fatalf("dead show %s: exit %d\n%s%s", seq, code, out, errs)
	}
	if code, out, errs = runCmd("dead", "replay", "--config", path, "--dry-run", seq); code != 0 || !strings.Contains(out, "would replay rebuild-unit") || cz.Hours("conn")[h12].Rows != 1 {
		t.Fatalf("dead replay --dry-run: exit %d\n%s%s", code, out, errs)
	}
	if code, out, errs = runCmd("dead", "replay", "--config", path, seq); code != 0 || !strings.Contains(out, "replayed rebuild-unit") {
		t.Fatalf("dead replay: exit %d\n%s%s", code, out, errs)
	}
	want := usagegen.Total(more)
	poll(t, "the replayed unit", func() bool {
		h := cz.Hours("conn")[h12]
		return h.Rows == 9 && h.Cost.Equal(want.Cost.Big())
	})
	poll(t, "reconcile of the replayed unit to balance", func() bool {
		code, _, _ := runCmd("reconcile", "--config", path, "--dest", "cz", "--from", "2026-05-04T12", "--to", "2026-05-04T13")
		return code == 0
	})

	// Credentials revoked: the next upload gets 403 and the destination pauses.
	cz.SetKey("conn", "")
	if _, err := prod.Publish(ctx, &messages.Batch{ID: "b2", Feed: "cloud", Source: "svc", Records: usagegen.Generate(3, usagegen.Options{Seed: 6, Start: h0, Hours: 1})}); err != nil {
		t.Fatal(err)
	}
	poll(t, "status to name the paused destination", func() bool {
		code, out, _ = runCmd("status", "--config", path)
		return code == 1 && strings.Contains(out, "PAUSED") && strings.Contains(out, "cz: paused: auth")
	})
	wctx, wcancel := context.WithCancel(ctx)
	w := &watchWriter{n: 2, cancel: wcancel}
	var werr syncBuffer
	if code := cmdStatus(wctx, []string{"--config", path, "--watch", "50ms"}, w, &werr); code != 1 || strings.Count(w.String(), "PAUSED") < 2 {
		t.Fatalf("status --watch: exit %d, want 1 after two refreshes naming the paused destination\n%s%s", code, w.String(), werr.String())
	}
	code, out, _ = runCmd("status", "--config", path, "--json")
	var st ops.Status
	if err := json.Unmarshal([]byte(out), &st); err != nil || code != 1 || len(st.Destinations) != 1 || !st.Destinations[0].Paused || st.Destinations[0].AckPending == 0 || st.Destinations[0].OldestUnit != "h2026-05-04T08" || st.Destinations[0].OldestAge <= 0 {
		t.Fatalf("status --json: exit %d, %v\n%s", code, err, out)
	}
}

// watchWriter cancels once it has seen n refreshes of status --watch.
type watchWriter struct {
	syncBuffer
	n      int
	cancel context.CancelFunc
}

func (w *watchWriter) Write(p []byte) (int, error) {
	n, err := w.syncBuffer.Write(p)
	if strings.Count(w.String(), "--- ") >= w.n {
		w.cancel()
	}
	return n, err
}

func TestOperatorCommandsUsage(t *testing.T) {
	for _, args := range [][]string{
		{"run", "-h"}, {"status", "-h"}, {"dead", "-h"}, {"dead", "list", "-h"}, {"dead", "replay", "-h"},
		{"reconcile", "-h"}, {"validate", "-h"}, {"version", "-h"}, {"help"},
	} {
		if code, out, errs := runCmd(args...); code != exitOK || (out == "" && args[0] != "run") { // run writes its usage to os.Stdout
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want 0 and the usage on stdout", args, code, out, errs)
		}
	}
	for _, args := range [][]string{
		{}, {"nope"}, {"status", "--bogus"}, {"status"}, {"dead"}, {"dead", "frob"}, {"dead", "replay", "--config", "x.yaml"},
		{"dead", "show", "--config", "x.yaml"}, {"dead", "show", "--config", "x.yaml", "abc"},
		{"reconcile", "--config", "x.yaml", "--dest", "cz"}, {"reconcile", "--config", "x.yaml", "--dest", "cz", "--from", "yesterday"},
		{"reconcile", "--config", "x.yaml", "--dest", "cz", "--from", "24h", "--format", "xml"}, {"validate"}, {"version", "extra"},
	} {
		if code, _, errs := runCmd(args...); code != exitUsage || errs == "" {
			t.Errorf("%v: exit %d, stderr %q; want %d and the problem on stderr", args, code, errs, exitUsage)
		}
	}
	code, out, _ := runCmd("version")
	if code != 0 || !strings.Contains(out, runtime.Version()) || !strings.Contains(out, "commit ") {
		t.Errorf("version: exit %d\n%s", code, out)
	}
	code, out, _ = runCmd("version", "--json")
	var b ops.Build
	if code != 0 || json.Unmarshal([]byte(out), &b) != nil || b.GoVersion != runtime.Version() {
		t.Errorf("version --json: exit %d %q", code, out)
	}
}

func TestValidate(t *testing.T) {
	t.Setenv("UF_VALIDATE_TOKEN", "tok")
	good := writeConfig(t, "destinations:\n  - name: hook\n    type: webhook\n    feeds: [cloud]\n    settings: {url: http://127.0.0.1:9/, token: {env: UF_VALIDATE_TOKEN}}\n")
	if code, out, errs := runCmd("validate", "--config", good); code != 0 || !strings.Contains(out, "ok (1 destination(s): hook/webhook)") {
		t.Fatalf("validate good: exit %d %q %q", code, out, errs)
	}
	bad := writeConfig(t, "destinations:\n  - name: hook\n    type: webhook\n    feeds: [cloud]\n    wokers: 2\n    settings: {url: http://127.0.0.1:9/}\n")
	code, _, errs := runCmd("validate", "--config", bad)
	if want := "config: destinations[0].wokers (line 5): unknown key"; code != 1 || !strings.Contains(errs, want) {
		t.Fatalf("validate bad: exit %d, stderr %q, want 1 and %q", code, errs, want)
	}
}

func runCmd(args ...string) (int, string, string) {
	var out, errb syncBuffer
	code := run(args, &out, &errb)
	return code, out.String(), errb.String()
}

func httpGet(url string) (int, string) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// poll waits until cond holds (at most 30 s).
func poll(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
