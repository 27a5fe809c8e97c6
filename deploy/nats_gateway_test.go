package deploy

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/usagefleet/usagefleet/internal/config"
	sbwebhook "github.com/usagefleet/usagefleet/internal/sandbox/webhook"
	"github.com/usagefleet/usagefleet/messages"
	"github.com/usagefleet/usagefleet/producer/gateway"
	"github.com/usagefleet/usagefleet/workers"
	"github.com/usagefleet/usagefleet/workers/webhook"
)

// TestNATSConfigRunsTheGateway: on the cluster from deploy/nats, the
// gateway user creates its R3 stream, stores a batch and an event (claims
// and batch records included), and reads what the destination did; it is
// refused changing the fleet's streams.
func TestNATSConfigRunsTheGateway(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-node cluster from the deploy configs")
	}
	dc := startDeployCluster(t, loadNATSConfigs(t))
	ctx := context.Background()
	worker := dc.login(t, "worker")
	worker.ensureStreams(ctx, t)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	sb := sbwebhook.New(sbwebhook.Config{Token: "s3cret"})
	srv := httptest.NewServer(sb.Handler())
	t.Cleanup(srv.Close)
	dest, err := webhook.New("hook", webhook.Settings{URL: srv.URL + "/ingest", Token: config.NewSecret("s3cret")}, "test")
	if err != nil {
		t.Fatal(err)
	}
	pool, err := workers.NewPool(worker.nc, dest, workers.Options{Feeds: []string{"cloud"}, LeaseTTL: 10 * time.Second, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	pctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- pool.Run(pctx) }()
	t.Cleanup(func() { stop(); <-done })

	gw := dc.login(t, "gateway")
	cfg := &gateway.Config{Keys: []gateway.KeyConfig{{Name: "k", Secret: config.NewSecret("deploy-gateway-key-0123"), Sources: []string{"deploy-gw"}, Feeds: []string{"cloud"}}}}
	cfg.Streams.Replicas = 3
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	gctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	g, err := gateway.New(gctx, cfg, gw.nc, quiet)
	if err != nil {
		t.Fatalf("the gateway user cannot set up its stream: %v", err)
	}
	hs := httptest.NewServer(g.Handler(nil))
	t.Cleanup(hs.Close)
	post := func(path, ct, body string, hdr ...string) map[string]any {
		t.Helper()
		req, _ := http.NewRequest("POST", hs.URL+path, bytes.NewReader([]byte(body)))
		req.Header.Set("Authorization", "Bearer deploy-gateway-key-0123")
		req.Header.Set("Content-Type", ct)
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			t.Fatalf("POST %s as the gateway user: %d %s", path, resp.StatusCode, b)
		}
		var v map[string]any
		json.Unmarshal(b, &v)
		return v
	}
	rec := `{"ChargePeriodStart":"2026-03-01T10:00:00Z","BilledCost":"0.5","BillingCurrency":"USD"}`
	a := post("/v1/usage", "application/x-ndjson", rec+"\n"+rec, "Idempotency-Key", "deploy-1")
	ev := `{"specversion":"1.0","id":"d1","source":"/deploy","type":"usage","data":` + rec + `}`
	for _, want := range []string{"stored", "duplicate"} {
		if r := post("/v1/events", "application/cloudevents+json", ev); r["status"] != want {
			t.Fatalf("event: %v, want %s", r, want)
		}
	}
	req, _ := http.NewRequest("GET", hs.URL+a["status_url"].(string)+"?wait=30s", nil)
	req.Header.Set("X-API-Key", "deploy-gateway-key-0123")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var st gateway.BatchStatus
	json.NewDecoder(resp.Body).Decode(&st)
	resp.Body.Close()
	if !st.Settled || len(st.Destinations) != 1 || st.Destinations[0].Records != 2 || !st.Destinations[0].Cost["USD"].Equal(messages.MustDecimal("1")) {
		t.Fatalf("status as the gateway user: %d %+v", resp.StatusCode, st)
	}
	// Not the fleet's streams.
	sctx, scancel := context.WithTimeout(ctx, 10*time.Second)
	defer scancel()
	if err := gw.js.DeleteStream(sctx, messages.StreamUsage); err == nil {
		t.Error("the gateway user deleted USAGE")
	}
	if _, err := gw.js.UpdateStream(sctx, jetstream.StreamConfig{Name: messages.StreamAcks, Subjects: []string{messages.AcksSubjects}, Replicas: 3}); err == nil {
		t.Error("the gateway user changed ACKS")
	}
}
