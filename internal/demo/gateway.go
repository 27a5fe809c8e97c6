package demo

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/usagefleet/usagefleet/internal/config"
	"github.com/usagefleet/usagefleet/messages"
	"github.com/usagefleet/usagefleet/producer"
	"github.com/usagefleet/usagefleet/producer/gateway"
)

// The demo publishes every other batch through usage-gateway, as a service
// in another language would: NDJSON over HTTP on loopback, with an API key
// and an Idempotency-Key. The gateway answers with the stored parts, which
// the demo follows to their acks like the batches it publishes itself; the
// reconciliation counts both.

type demoGateway struct {
	url, key string
	client   *http.Client
	stop     func()
}

func (r *run) startGateway(ctx context.Context) (*demoGateway, error) {
	key := randomSecret()
	cfg := &gateway.Config{Keys: []gateway.KeyConfig{{Name: "demo", Secret: config.NewSecret(key), Sources: []string{demoSource}, Feeds: []string{demoSource}}}}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	gw, err := gateway.New(ctx, cfg, r.nc, r.o.Log)
	if err != nil {
		return nil, fmt.Errorf("gateway: %w", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	srv := &http.Server{Handler: gw.Handler(nil), ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	return &demoGateway{
		url: "http://" + ln.Addr().String(), key: key, client: &http.Client{Timeout: time.Minute},
		stop: func() {
			sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			srv.Shutdown(sctx)
			gw.Drain()
		},
	}, nil
}

// publish posts one batch as NDJSON and returns what the gateway stored.
func (g *demoGateway) publish(ctx context.Context, idemKey string, recs []messages.UsageRecord) (*producer.Result, error) {
	var body bytes.Buffer
	for i := range recs {
		body.Write(recs[i].AppendJSON(nil))
		body.WriteByte('\n')
	}
	req, err := http.NewRequestWithContext(ctx, "POST", g.url+"/v1/usage", &body)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+g.key)
	req.Header.Set("Content-Type", "application/x-ndjson")
	req.Header.Set("Idempotency-Key", idemKey)
	resp, err := g.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("gateway: %w", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("gateway: %s: %s", resp.Status, b)
	}
	var a struct {
		BatchID string `json:"batch_id"`
		Source  string `json:"source"`
		Feed    string `json:"feed"`
		Records int    `json:"records"`
		Parts   []struct {
			Part    int    `json:"part"`
			Subject string `json:"subject"`
			Records int    `json:"records"`
			Seq     uint64 `json:"seq"`
		} `json:"parts"`
	}
	if err := json.Unmarshal(b, &a); err != nil {
		return nil, fmt.Errorf("gateway answer: %w", err)
	}
	res := &producer.Result{BatchID: a.BatchID, Source: a.Source, Feed: a.Feed, Records: a.Records, Published: time.Now()}
	for _, p := range a.Parts {
		res.Parts = append(res.Parts, producer.PartInfo{Part: p.Part, Subject: p.Subject, Records: p.Records, Seq: p.Seq})
	}
	return res, nil
}
