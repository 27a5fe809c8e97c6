package demo

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.yaml.in/yaml/v3"

	"github.com/usagefleet/usagefleet/internal/sandbox/acronis"
	"github.com/usagefleet/usagefleet/internal/sandbox/here"
	"github.com/usagefleet/usagefleet/internal/sandbox/serve"
	"github.com/usagefleet/usagefleet/messages"
	"github.com/usagefleet/usagefleet/producer"
	"github.com/usagefleet/usagefleet/producer/collect"

	// The collector types the demo's configuration names.
	_ "github.com/usagefleet/usagefleet/producer/collect/acronis"
	_ "github.com/usagefleet/usagefleet/producer/collect/here"
)

// The collectors, their feeds and the HERE account they read.
const (
	acronisCollector = "acronis-demo"
	hereCollector    = "here-demo"
	acronisFeed      = "msp"
	hereFeed         = "maps"
	hereRealm        = "org1000000001"

	acronisClientID = "demo-acronis-client"
	hereKeyID       = "demo-here-key"
)

var hereSubAccounts = []string{"org1000000101", "org1000000102"}

// collectDays and collectLag: each run collects the two days before
// yesterday. Acronis answers "usage history not ready" from 1 to 6 am UTC
// for a period ending yesterday or later, so the demo stays clear of it
// at any hour; the first of the two days is also a day of the generated
// usage, so Cloud Cruiser gets one date holding both kinds.
const (
	collectDays = 2
	collectLag  = "48h"
)

// collectorsConfig is the text of a `usage-producer collect` configuration
// file for the two report emulators. Secrets travel through environment
// variables, as in production.
func collectorsConfig(sb *serve.Running, natsURL string) string {
	return fmt.Sprintf(`
nats: {url: %q}
collectors:
  - name: %s
    type: acronis
    feed: %s
    schedule: {period: day, periods: %d, lag: %s}
    poll: {interval: 100ms, max_interval: 500ms, timeout: 1m}
    not_ready_wait: 30s
    retry_for: 1m
    settings:
      base_url: %s
      client_id: %s
      client_secret: {env: USAGEFLEET_DEMO_ACRONIS_SECRET}
      tenant_id: %s
      kind: usage_daily
  - name: %s
    type: here
    feed: %s
    schedule: {period: day, periods: %d, lag: %s}
    poll: {interval: 100ms, max_interval: 500ms, timeout: 1m}
    retry_for: 1m
    settings:
      credentials: {env: USAGEFLEET_DEMO_HERE_CREDENTIALS}
      token_url: %s/oauth2/token
      base_url: %s/v2
      realm: %s
      sub_accounts: [%s, %s]
      detail_level: day
`, natsURL,
		acronisCollector, acronisFeed, collectDays, collectLag, sb.URLs[serve.Acronis], acronisClientID, sb.Acronis.RootTenantID(),
		hereCollector, hereFeed, collectDays, collectLag, sb.URLs[serve.HERE], sb.URLs[serve.HERE], hereRealm, hereSubAccounts[0], hereSubAccounts[1])
}

// buildCollectors reads the configuration text as `usage-producer collect
// --once` reads its file, with the demo's logger, and builds the
// collectors publishing with prod and checkpointing in the fleet's bucket.
func buildCollectors(ctx context.Context, text string, prod *producer.Producer, js jetstream.JetStream, log *slog.Logger) ([]*collect.Collector, error) {
	var root yaml.Node
	if err := yaml.NewDecoder(bytes.NewReader([]byte(text))).Decode(&root); err != nil {
		return nil, fmt.Errorf("collector config: %w", err)
	}
	if root.Kind != yaml.DocumentNode || len(root.Content) != 1 {
		return nil, errors.New("collector config: not one document")
	}
	var cfg collect.Config
	if err := collect.DecodeStrict(root.Content[0], &cfg, ""); err != nil {
		return nil, fmt.Errorf("collector config: %w", err)
	}
	if err := cfg.Validate(collect.Env{Log: log}); err != nil {
		return nil, fmt.Errorf("collector config: %w", err)
	}
	kv, err := js.KeyValue(ctx, messages.BucketCheckpoints)
	if err != nil {
		return nil, fmt.Errorf("checkpoint bucket: %w", err)
	}
	return cfg.BuildWithDeadLetters(prod, js, kv, log, true)
}

// expected is what the report emulators say a correct collector ends up
// with: records and exact quantity (reports carry no cost).
type expected struct {
	Records  int
	Quantity messages.Sum
}

// days lists the UTC days of the windows, each once, in order.
func days(windows ...collect.Range) []time.Time {
	seen := map[time.Time]bool{}
	var out []time.Time
	for _, w := range windows {
		for d := w.Start.UTC().Truncate(24 * time.Hour); d.Before(w.End); d = d.AddDate(0, 0, 1) {
			if !seen[d] {
				seen[d] = true
				out = append(out, d)
			}
		}
	}
	return out
}

// expectedReports is the emulator's own expected totals for a collector's
// days, asked exactly as the collector's settings ask (usage_daily for
// all customers of the root tenant with SKUs; HERE day rows of the two
// sub-accounts with the API's default grouping). Rows are per day, so the
// days add up to any window of them.
func expectedReports(sb *serve.Running, collector string, ds []time.Time) expected {
	var e expected
	for _, d := range ds {
		switch collector {
		case acronisCollector:
			t := sb.Acronis.Expected(acronis.Query{TenantID: sb.Acronis.RootTenantID(), Level: "all_customers",
				Kind: acronis.KindDaily, Start: d, End: d, ShowSKUs: true})
			e.Records += t.Records
			e.Quantity.Add(messages.FromBig(t.Quantity))
		case hereCollector:
			t := sb.HERE.ExpectedQuery(here.Query{Realm: hereRealm, SubAccounts: hereSubAccounts,
				Start: d, End: d.AddDate(0, 0, 1), DetailLevel: here.DetailDay})
			e.Records += t.Records
			e.Quantity.Add(messages.FromBig(t.Quantity))
		}
	}
	return e
}

// sourceOf tells which collector's accounts an account id is (Acronis
// customer tenants, HERE sub-accounts), else the demo feed's.
func sourceOf(sb *serve.Running) func(string) string {
	owner := map[string]string{sb.Acronis.RootTenantID(): acronisCollector, hereRealm: hereCollector}
	for _, t := range sb.Acronis.Tenants() {
		owner[t] = acronisCollector
	}
	for _, a := range hereSubAccounts {
		owner[a] = hereCollector
	}
	return func(account string) string {
		if s, ok := owner[account]; ok {
			return s
		}
		return demoSource
	}
}

// collection is one run of every collector.
type collection struct {
	Results  map[string]*collect.Result
	Acked    map[string]int // per collector: records delivered at Cloud Cruiser
	Rejected map[string]int
}

// collectOnce runs every collector once (concurrently, as `usage-producer
// collect --once` does), checks each published exactly what its emulator
// expects for its window, and waits until Cloud Cruiser settled every
// part of every snapshot.
func collectOnce(ctx context.Context, n int, cs []*collect.Collector, sb *serve.Running, prod *producer.Producer, say func(string, ...any)) (*collection, error) {
	cctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	c := &collection{Results: map[string]*collect.Result{}, Acked: map[string]int{}, Rejected: map[string]int{}}
	var errs []error
	for _, o := range collect.RunOnce(cctx, cs) {
		if o.Err != nil {
			errs = append(errs, fmt.Errorf("collector %s: %w", o.Collector, o.Err))
			continue
		}
		r := o.Result
		c.Results[o.Collector] = r
		want := expectedReports(sb, o.Collector, days(r.Window))
		if r.Records != want.Records || len(r.Rejected) > 0 {
			errs = append(errs, fmt.Errorf("collector %s published %d records (%d rows rejected); the emulator expects %d", o.Collector, r.Records, len(r.Rejected), want.Records))
		}
		say("collection %d: %-12s %s..%s  %d report(s), %d records in %d snapshot(s) (the emulator expects %d), generation %d", n, o.Collector,
			r.Window.Start.Format(time.DateOnly), r.Window.End.AddDate(0, 0, -1).Format(time.DateOnly),
			len(r.Reports), r.Records, len(r.Batches), want.Records, r.Generation)
	}
	if len(errs) > 0 {
		return c, errors.Join(errs...)
	}
	for name, r := range c.Results {
		for _, b := range r.Batches {
			sums, err := prod.Wait(cctx, b.Result, []string{ccDest}, nil)
			if err != nil {
				return c, fmt.Errorf("waiting for %s at %s: %w", b.ID, ccDest, err)
			}
			c.Acked[name] += sums[ccDest].Records
			c.Rejected[name] += sums[ccDest].RejectedRecords
		}
	}
	return c, nil
}
