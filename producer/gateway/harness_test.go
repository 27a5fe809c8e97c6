package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/usagefleet/usagefleet/internal/broker/natstest"
	"github.com/usagefleet/usagefleet/internal/config"
	"github.com/usagefleet/usagefleet/messages"
)

const (
	testKey     = "test-key-0123456789abcdef"
	otherKey    = "other-key-0123456789abcdef"
	testSource  = "billing"
	testFeed    = "metered"
	otherSource = "other"
)

type env struct {
	t   *testing.T
	srv *natstest.Server
	nc  *nats.Conn
	gw  *Gateway
	url string
}

func testConfig() *Config {
	cfg := &Config{
		Keys: []KeyConfig{
			{Name: "billing", Secret: config.NewSecret(testKey), Sources: []string{testSource}, Feeds: []string{testFeed}},
			{Name: "other", Secret: config.NewSecret(otherKey), Sources: []string{otherSource}, Feeds: []string{"*"}},
		},
	}
	return cfg
}

func startB(b *testing.B) *env { return startTB(b, nil) }

func start(t *testing.T, mutate func(*Config)) *env { e := startTB(t, mutate); e.t = t; return e }

func startTB(t testing.TB, mutate func(*Config)) *env {
	t.Helper()
	srv := natstest.Start(t)
	cfg := testConfig()
	if mutate != nil {
		mutate(cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	nc := srv.Connect(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	gw, err := New(ctx, cfg, nc, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	url := httpServer(t, gw)
	e := &env{srv: srv, nc: nc, gw: gw, url: url}
	if tt, ok := t.(*testing.T); ok {
		e.t = tt
	}
	return e
}

type reply struct {
	code int
	h    http.Header
	body []byte
}

func (r reply) json(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("answer %d is not JSON: %v: %s", r.code, err, r.body)
	}
}

func (r reply) problem(t *testing.T) Problem {
	t.Helper()
	if ct := r.h.Get("Content-Type"); ct != "application/problem+json" {
		t.Fatalf("answer %d has Content-Type %q, want application/problem+json: %s", r.code, ct, r.body)
	}
	var p Problem
	r.json(t, &p)
	if p.Status != r.code || p.Type == "" || p.Title == "" {
		t.Fatalf("problem %+v does not match status %d", p, r.code)
	}
	return p
}

func (e *env) do(method, path string, body []byte, h map[string]string) reply {
	e.t.Helper()
	req, err := http.NewRequest(method, e.url+path, bytes.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	for k, v := range h {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return reply{code: resp.StatusCode, h: resp.Header, body: b}
}

func auth(extra ...string) map[string]string {
	h := map[string]string{"Authorization": "Bearer " + testKey}
	for i := 0; i+1 < len(extra); i += 2 {
		h[extra[i]] = extra[i+1]
	}
	return h
}

// stored reads every record in the USAGE stream with its part metadata.
func (e *env) stored() []messages.Part {
	e.t.Helper()
	js, _ := jetstream.New(e.nc)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := js.Stream(ctx, messages.StreamUsage)
	if err != nil {
		e.t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		e.t.Fatal(err)
	}
	var parts []messages.Part
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := st.GetMsg(ctx, seq)
		if err != nil {
			e.t.Fatal(err)
		}
		p, err := messages.DecodePart(m.Header, m.Data)
		if err != nil {
			e.t.Fatal(err)
		}
		p.Meta.Hour = p.Meta.Hour.UTC()
		parts = append(parts, p)
	}
	return parts
}

func recordCount(parts []messages.Part) int {
	n := 0
	for _, p := range parts {
		n += len(p.Records)
	}
	return n
}

func totalCost(parts []messages.Part) string {
	var s messages.Sum
	for _, p := range parts {
		for _, r := range p.Records {
			s.Add(r.BilledCost)
		}
	}
	return s.Decimal().String()
}

func ndjson(n int, cost string) []byte {
	var b strings.Builder
	for i := 0; i < n; i++ {
		b.WriteString(`{"ChargePeriodStart":"2026-03-01T10:00:00Z","BillingAccountId":"acct-1","SkuId":"sku-`)
		b.WriteString(string(rune('a' + i%26)))
		b.WriteString(`","ConsumedQuantity":"3","ConsumedUnit":"GB-Hours","BilledCost":"` + cost + `","BillingCurrency":"USD"}` + "\n")
	}
	return []byte(b.String())
}

func httpServer(t testing.TB, gw *Gateway) string {
	hs := httptest.NewServer(gw.Handler(nil))
	t.Cleanup(hs.Close)
	return hs.URL
}
