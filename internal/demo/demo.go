// Package demo runs the whole main job on embedded defaults: an embedded
// JetStream server, the sandbox APIs, a worker fleet built from a real
// configuration, a producer publishing generated usage, and the Acronis
// and HERE report collectors publishing snapshots. It ends with a
// reconciliation of what was published (or, for the collectors, what the
// report emulators say a correct collector gets) against what each
// destination received, and fails if they differ.
//
// What runs:
//
//   - the five sandbox emulators on loopback (webhook, CloudZero, Cloud
//     Cruiser, Acronis, HERE), with fresh credentials only this process
//     knows and the light fault mix of Options.Faults;
//   - a fleet with three destination pools: webhook (append) and CloudZero
//     (hours replaced) for the generated usage feed "demo", and Cloud
//     Cruiser (accounting dates replaced) for that feed and the
//     collectors' feeds "msp" (Acronis) and "maps" (HERE);
//   - a producer publishing Options.Records generated records over the
//     last two full days, waiting for every ack;
//   - the two collectors, configured as `usage-producer collect` is, run
//     once each over the two days before yesterday, then once more: the
//     re-collection publishes a new generation of the same snapshots,
//     which must replace the first at Cloud Cruiser, not add to it.
//
// The table shows, per destination and source, the records (published,
// received, acked, rejected), the exact cost and, at Cloud Cruiser, the
// exact quantity (the reports carry quantities, not costs). Cloud Cruiser
// is shown per source (the records of the collectors' accounts, the rest)
// and whole, after the first collection and after the re-collection.
package demo

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/usagefleet/usagefleet/internal/fleet"
	"github.com/usagefleet/usagefleet/internal/sandbox/fault"
	"github.com/usagefleet/usagefleet/internal/sandbox/serve"
	"github.com/usagefleet/usagefleet/internal/usagegen"
	"github.com/usagefleet/usagefleet/messages"
	"github.com/usagefleet/usagefleet/producer"
	"github.com/usagefleet/usagefleet/producer/collect"
)

// Options tune the demo.
type Options struct {
	Records   int    // records to publish (default 50,000)
	BatchSize int    // records per batch (default 5,000)
	Dir       string // data directory (default: a temporary one, removed after)
	// Faults is injected at the sandboxes: a fault spec for every emulator
	// ("" = a light default, "none" = none), or ';'-separated groups where
	// "<emulator>=<spec>" sets one emulator's faults alone, e.g.
	// "500@0.05;cloudcruiser=400x1" (every emulator 500s at 5%, but Cloud
	// Cruiser refuses its first upload and nothing else).
	Faults string
	Out    io.Writer
	Log    *slog.Logger
}

// Destination and source names.
const (
	demoSource = "demo" // the generated usage's feed and source
	ccDest     = "cloudcruiser"
	// Sources of the Cloud Cruiser totals rows.
	AllAfterFirst  = "all, collected once"
	AllAfterSecond = "all, re-collected"
)

// Row is one line of the reconciliation: what a destination holds of one
// source (demo, a collector) or of all of them.
type Row struct {
	Destination string
	Source      string
	// Published is what was published; for a collector's row it is what
	// its report emulator says a correct collector ends up with (the
	// collector's own count is checked against it after each run).
	PublishedRecords  int
	PublishedCost     messages.Decimal
	PublishedQuantity messages.Decimal
	AckedRecords      int
	ReceivedRecords   int
	ReceivedCost      messages.Decimal
	ReceivedQuantity  messages.Decimal
	Rejected          int
	HasQuantity       bool // the quantity is reconciled (Cloud Cruiser)
	Match             bool
}

func (r *Row) recordsMatch() bool {
	return r.PublishedRecords == r.ReceivedRecords && r.AckedRecords == r.ReceivedRecords && r.Rejected == 0
}
func (r *Row) costMatch() bool { return r.PublishedCost.Equal(r.ReceivedCost) }
func (r *Row) quantityMatch() bool {
	return !r.HasQuantity || r.PublishedQuantity.Equal(r.ReceivedQuantity)
}

// Run runs the demo and returns the reconciliation; the error is non-nil
// if any destination differs from what was published, or a step failed.
func Run(ctx context.Context, o Options) ([]Row, error) {
	if o.Records <= 0 {
		o.Records = 50000
	}
	if o.BatchSize <= 0 {
		o.BatchSize = 5000
	}
	if o.Out == nil {
		o.Out = os.Stdout
	}
	if o.Log == nil {
		o.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	r := &run{o: o, prog: newProgress(o.Out), seed: randomSeed()}
	if r.dir = o.Dir; r.dir == "" {
		d, err := os.MkdirTemp("", "usagefleet-demo-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(d)
		r.dir = d
	}
	faults, err := faultSpecs(o.Faults)
	if err != nil {
		return nil, err
	}
	if err := r.startSandbox(faults); err != nil {
		return nil, err
	}
	defer r.sb.Close()
	stopFleet, err := r.startFleet(ctx)
	if err != nil {
		return nil, err
	}
	defer stopFleet()
	if err := r.connect(); err != nil {
		return nil, err
	}
	defer r.nc.Close()
	results, err := r.publish(ctx)
	if err != nil {
		return nil, err
	}
	if err := r.settle(ctx, results); err != nil {
		return nil, err
	}
	c, err := r.collectTwice(ctx)
	if err != nil {
		return nil, err
	}
	return r.reconcile(c)
}

// run is one demo: what its steps share.
type run struct {
	o    Options
	prog *progress
	seed int64 // of the generated usage, the report emulators and the fault injectors
	dir  string

	secrets struct{ hook, czKey, ccToken, acronis, here string }
	sb      *serve.Running
	fl      *fleet.Fleet
	nc      *nats.Conn
	prod    *producer.Producer

	// What was published, and what the destinations acked of it.
	want     usagegen.Totals
	wantQty  messages.Sum
	acked    map[string]int
	rejected map[string]int
}

// czConn is the demo's CloudZero connection.
const czConn = "demo-connection"

func (r *run) say(format string, args ...any) { fmt.Fprintf(r.o.Out, format+"\n", args...) }

// startSandbox starts the sandbox APIs, with credentials only this
// process knows (step 1).
func (r *run) startSandbox(faults map[string]string) error {
	s := &r.secrets
	s.hook, s.czKey, s.ccToken, s.acronis, s.here = randomSecret(), randomSecret(), randomSecret(), randomSecret(), randomSecret()
	sb, err := serve.Start(serve.Options{
		Faults:       faults,
		Webhook:      webhookConfig(s.hook),
		CloudZero:    cloudzeroConfig(czConn, s.czKey),
		CloudCruiser: cloudcruiserConfig(s.ccToken, r.o.Records+100_000, r.seed),
		Acronis:      acronisConfig(acronisClientID, s.acronis, r.seed),
		HERE:         hereConfig(hereKeyID, s.here, r.seed),
	})
	if err != nil {
		return err
	}
	r.sb = sb
	r.say("sandbox APIs on loopback: %s", urls(sb.URLs))
	return nil
}

// startFleet starts the fleet from a real configuration file's text
// (step 2); secrets travel the way they do in production, through
// environment variables. The returned func stops it and waits.
func (r *run) startFleet(ctx context.Context) (stop func(), err error) {
	s := r.secrets
	os.Setenv("USAGEFLEET_DEMO_WEBHOOK_TOKEN", s.hook)
	os.Setenv("USAGEFLEET_DEMO_CLOUDZERO_KEY", s.czKey)
	os.Setenv("USAGEFLEET_DEMO_CLOUDCRUISER_TOKEN", s.ccToken)
	os.Setenv("USAGEFLEET_DEMO_ACRONIS_SECRET", s.acronis)
	os.Setenv("USAGEFLEET_DEMO_HERE_CREDENTIALS", "here.access.key.id="+hereKeyID+"\nhere.access.key.secret="+s.here+"\n")
	cfg, err := fleet.Parse([]byte(fleetConfig(r.dir, r.sb)))
	if err != nil {
		return nil, fmt.Errorf("demo config: %w", err)
	}
	fl, err := fleet.Start(ctx, cfg, r.o.Log)
	if err != nil {
		return nil, err
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- fl.Run(runCtx) }()
	r.fl = fl
	r.say("embedded JetStream at %s, %d destination pool(s) running", fl.Embedded.URL, len(fl.Pools))
	return func() { cancel(); <-done; fl.Close() }, nil
}

// fleetConfig is the demo fleet's configuration file.
func fleetConfig(dir string, sb *serve.Running) string {
	return fmt.Sprintf(`
nats:
  data_dir: %q
destinations:
  - name: webhook
    type: webhook
    feeds: [%[5]s]
    workers: 4
    retry: {initial: 100ms, max: 2s}
    settings:
      url: %[2]s/ingest
      max_body_bytes: 262144
      token: {env: USAGEFLEET_DEMO_WEBHOOK_TOKEN}
  - name: cloudzero
    type: cloudzero
    feeds: [%[5]s]
    flush: {max_delay: 2s, quiet: 500ms}
    retry: {initial: 100ms, max: 2s}
    settings:
      base_url: %[3]s
      connection_id: %[4]s
      api_key: {env: USAGEFLEET_DEMO_CLOUDZERO_KEY}
  # The report feeds go to Cloud Cruiser alone: reports carry quantities,
  # not costs (CloudZero needs a cost), and the webhook appends, so a
  # re-collected period would arrive there twice.
  - name: %[6]s
    type: cloudcruiser
    feeds: [%[5]s, %[8]s, %[9]s]
    flush: {max_delay: 2s, quiet: 500ms}
    retry: {initial: 100ms, max: 2s}
    settings:
      base_url: %[7]s
      token: {env: USAGEFLEET_DEMO_CLOUDCRUISER_TOKEN}
      defaults:
        provider_type: Public   # FOCUS has no Provider Type; every other required field is in the records
`, dir+"/nats", sb.URLs[serve.Webhook], sb.URLs[serve.CloudZero], czConn, demoSource, ccDest, sb.URLs[serve.CloudCruiser], acronisFeed, hereFeed)
}

// connect makes the producer's connection and the producer.
func (r *run) connect() error {
	nc, err := nats.Connect(r.fl.Embedded.URL, nats.Name("usage-demo-producer"))
	if err != nil {
		return err
	}
	prod, err := producer.New(nc, producer.Options{})
	if err != nil {
		nc.Close()
		return err
	}
	r.nc, r.prod = nc, prod
	return nil
}

// publish publishes the generated usage (step 3).
func (r *run) publish(ctx context.Context) ([]*producer.Result, error) {
	recs := usagegen.Generate(r.o.Records, usagegen.Options{Seed: uint64(r.seed), Start: time.Now().UTC().AddDate(0, 0, -2).Truncate(24 * time.Hour), Hours: 48})
	r.want = usagegen.Total(recs)
	for i := range recs {
		r.wantQty.Add(recs[i].ConsumedQuantity) // what Cloud Cruiser's Quantity maps from
	}
	gw, err := r.startGateway(ctx)
	if err != nil {
		return nil, err
	}
	defer gw.stop()
	start := time.Now()
	var results []*producer.Result
	viaGateway, viaRecords := 0, 0
	for i := 0; i < len(recs); i += r.o.BatchSize {
		end := min(i+r.o.BatchSize, len(recs))
		id := fmt.Sprintf("demo-%s-%d", randomSecret()[:8], i/r.o.BatchSize)
		var res *producer.Result
		if (i/r.o.BatchSize)%2 == 1 {
			// Every other batch as a service in another language sends it.
			if res, err = gw.publish(ctx, id, recs[i:end]); err != nil {
				return nil, fmt.Errorf("publish through the gateway: %w", err)
			}
			viaGateway++
			viaRecords += end - i
		} else if res, err = r.prod.Publish(ctx, &messages.Batch{ID: id, Feed: demoSource, Source: demoSource, Records: recs[i:end]}); err != nil {
			return nil, fmt.Errorf("publish: %w", err)
		}
		results = append(results, res)
		r.prog.show("published %d/%d records", end, len(recs))
	}
	r.prog.done()
	r.say("published %d records in %d batches (cost %s, quantity %s) in %s; %d of the batches (%d records) over HTTP through usage-gateway", r.want.Records, len(results), r.want.Cost, r.wantQty.Decimal(), time.Since(start).Round(time.Millisecond), viaGateway, viaRecords)
	return results, nil
}

// settle follows the acks until every part is settled everywhere (step 4).
func (r *run) settle(ctx context.Context, results []*producer.Result) error {
	start := time.Now()
	dests := []string{"cloudzero", "webhook", ccDest}
	r.acked, r.rejected = map[string]int{}, map[string]int{}
	totalParts := 0
	for _, res := range results {
		totalParts += len(res.Parts)
	}
	settled := 0
	for _, res := range results {
		wctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
		sums, err := r.prod.Wait(wctx, res, dests, func(p producer.Progress) {
			n, total := settled+p.Done, totalParts*len(dests)
			r.prog.show("acks %s %d/%d parts", bar(n, total), n, total)
		})
		cancel()
		if err != nil {
			return fmt.Errorf("waiting for batch %s: %w", res.BatchID, err)
		}
		settled += len(res.Parts) * len(dests)
		for d, s := range sums {
			r.acked[d] += s.Records
			r.rejected[d] += s.RejectedRecords
		}
	}
	r.prog.done()
	r.say("all %d parts settled at %d destination(s) in %s          ", totalParts, len(dests), time.Since(start).Round(time.Millisecond))
	return nil
}

// collected is what the two collections did and what Cloud Cruiser held
// after each.
type collected struct {
	cols         []*collect.Collector
	c1, c2       *collection
	held1, held2 ccHeld
	problems     []string
}

// collectTwice runs the collectors once and then again, a new generation
// (step 5).
func (r *run) collectTwice(ctx context.Context) (*collected, error) {
	js, err := jetstream.New(r.nc)
	if err != nil {
		return nil, err
	}
	c := &collected{}
	if c.cols, err = buildCollectors(ctx, collectorsConfig(r.sb, r.fl.Embedded.URL), r.prod, js, r.o.Log); err != nil {
		return nil, err
	}
	start := time.Now()
	if c.c1, err = collectOnce(ctx, 1, c.cols, r.sb, r.prod, r.say); err != nil {
		return nil, err
	}
	c.held1 = cloudcruiserHeld(r.sb.CloudCruiser, sourceOf(r.sb))
	if c.c2, err = collectOnce(ctx, 2, c.cols, r.sb, r.prod, r.say); err != nil {
		return nil, err
	}
	c.held2 = cloudcruiserHeld(r.sb.CloudCruiser, sourceOf(r.sb))
	var reuploaded int
	c.problems, reuploaded = recollected(c.c1, c.c2, c.held1, c.held2)
	h1, h2 := c.held1.All, c.held2.All
	same := "as after the first collection (replaced, not added)"
	if h1.Records != h2.Records || !h1.Quantity.Decimal().Equal(h2.Quantity.Decimal()) {
		same = fmt.Sprintf("after the first collection it held %d records, quantity %s", h1.Records, h1.Quantity.Decimal())
	}
	r.say("re-collection settled in %s: %s uploaded %d collected date(s) again and holds %d records, quantity %s, %s",
		time.Since(start).Round(time.Millisecond), ccDest, reuploaded, h2.Records, h2.Quantity.Decimal(), same)
	return c, nil
}

// reconcile compares what the sandboxes hold with what was published and
// what the report emulators expect (step 6), prints the table, and fails
// on any difference.
func (r *run) reconcile(c *collected) ([]Row, error) {
	rows := r.rows(c)
	problems := c.problems
	if !c.held2.Split {
		problems = append(problems, fmt.Sprintf("a %s date kept fewer records than it holds: its sources cannot be told apart", ccDest))
	}
	var bad []string
	for i := range rows {
		row := &rows[i]
		row.Match = row.recordsMatch() && row.costMatch() && row.quantityMatch()
		if !row.Match {
			bad = append(bad, row.Destination+"/"+row.Source)
		}
	}
	r.say("")
	printTable(r.o.Out, rows)
	r.say("(a collector's \"published\" is what its report emulator expects for the days collected)")
	for _, p := range problems {
		r.say("PROBLEM: %s", p)
	}
	var inj []string
	for _, n := range serve.Names() {
		if m := injected(r.sb, n); len(m) > 0 {
			inj = append(inj, n+" ("+faultSummary(m)+")")
		}
	}
	if len(bad) > 0 || len(problems) > 0 {
		if len(inj) > 0 {
			r.say("faults injected at the sandboxes: %s", strings.Join(inj, ", "))
		}
		if len(bad) > 0 {
			return rows, fmt.Errorf("reconciliation failed: %s differ(s) from what was published", strings.Join(bad, ", "))
		}
		return rows, fmt.Errorf("reconciliation failed: %s", strings.Join(problems, "; "))
	}
	if len(inj) > 0 {
		r.say("faults injected at the sandboxes on the way (retried, nothing lost): %s", strings.Join(inj, ", "))
	}
	r.say("reconciliation: every destination holds exactly what was published, and Cloud Cruiser exactly what the report emulators expect, once")
	return rows, nil
}

// rows are the reconciliation's rows: CloudZero, the webhook, Cloud
// Cruiser per source, and Cloud Cruiser whole after each collection.
func (r *run) rows(c *collected) []Row {
	st := r.sb.Webhook.Stats()
	czRows, czCost := cloudzeroHeld(r.sb, czConn)
	want, acked, rejected := r.want, r.acked, r.rejected
	rows := []Row{{
		Destination: "cloudzero", Source: demoSource, PublishedRecords: want.Records, PublishedCost: want.Cost,
		AckedRecords: acked["cloudzero"], ReceivedRecords: czRows, ReceivedCost: czCost, Rejected: rejected["cloudzero"],
	}, {
		Destination: "webhook", Source: demoSource, PublishedRecords: want.Records, PublishedCost: want.Cost,
		AckedRecords: acked["webhook"], ReceivedRecords: st.UniqueRecords, ReceivedCost: messages.FromBig(st.UniqueCost), Rejected: rejected["webhook"],
	}}
	part := func(src string) held {
		if h := c.held2.BySource[src]; h != nil {
			return *h
		}
		return held{}
	}
	d := part(demoSource)
	rows = append(rows, Row{
		Destination: ccDest, Source: demoSource, PublishedRecords: want.Records, PublishedCost: want.Cost, PublishedQuantity: r.wantQty.Decimal(),
		AckedRecords: acked[ccDest], ReceivedRecords: d.Records, ReceivedCost: d.Cost.Decimal(), ReceivedQuantity: d.Quantity.Decimal(),
		Rejected: rejected[ccDest], HasQuantity: true,
	})
	// What the emulators expect of every day either collection covered
	// (the same days, unless a collection ran across midnight).
	all1 := row(ccDest, AllAfterFirst, want.Records, r.wantQty, want.Cost, acked[ccDest], rejected[ccDest], c.held1.All)
	all2 := row(ccDest, AllAfterSecond, want.Records, r.wantQty, want.Cost, acked[ccDest], rejected[ccDest], c.held2.All)
	for _, col := range c.cols {
		name := col.Name()
		e1 := expectedReports(r.sb, name, days(c.c1.Results[name].Window))
		e2 := expectedReports(r.sb, name, days(c.c1.Results[name].Window, c.c2.Results[name].Window))
		h := part(name)
		rows = append(rows, Row{
			Destination: ccDest, Source: name, PublishedRecords: e2.Records, PublishedCost: messages.DecimalFromInt(0), PublishedQuantity: e2.Quantity.Decimal(),
			AckedRecords: c.c2.Acked[name], ReceivedRecords: h.Records, ReceivedCost: h.Cost.Decimal(), ReceivedQuantity: h.Quantity.Decimal(),
			Rejected: c.c2.Rejected[name], HasQuantity: true,
		})
		all1.add(e1, c.c1.Acked[name], c.c1.Rejected[name])
		all2.add(e2, c.c2.Acked[name], c.c2.Rejected[name])
	}
	return append(rows, all1, all2)
}

// row is a Cloud Cruiser totals row, starting from the demo feed's share.
func row(dest, src string, records int, qty messages.Sum, cost messages.Decimal, acked, rejected int, h held) Row {
	return Row{Destination: dest, Source: src, PublishedRecords: records, PublishedQuantity: qty.Decimal(), PublishedCost: cost,
		AckedRecords: acked, Rejected: rejected, ReceivedRecords: h.Records, ReceivedQuantity: h.Quantity.Decimal(),
		ReceivedCost: h.Cost.Decimal(), HasQuantity: true}
}

// add adds a collector's expected totals and acks to a totals row.
func (r *Row) add(e expected, acked, rejected int) {
	var q messages.Sum
	q.Add(r.PublishedQuantity)
	q.Add(e.Quantity.Decimal())
	r.PublishedRecords += e.Records
	r.PublishedQuantity = q.Decimal()
	r.AckedRecords += acked
	r.Rejected += rejected
}

// recollected checks that the second collection was a new generation of
// every collector and that Cloud Cruiser uploaded every collected date
// again afterwards (so equal totals do say "replaced, not added"); it
// returns the problems and how many dates were uploaded again.
func recollected(c1, c2 *collection, h1, h2 ccHeld) ([]string, int) {
	var out []string
	dates := map[string]bool{}
	for name, r2 := range c2.Results {
		r1 := c1.Results[name]
		if r2.Generation <= r1.Generation {
			out = append(out, fmt.Sprintf("%s: collection 2 published generation %d, not newer than %d", name, r2.Generation, r1.Generation))
		}
		for _, d := range days(r2.Window) {
			dates[d.Format(time.DateOnly)] = true
		}
	}
	n := 0
	for d := range dates {
		if h2.Dates[d].Uploads > h1.Dates[d].Uploads {
			n++
		} else {
			out = append(out, fmt.Sprintf("%s date %s was not uploaded again after the re-collection", ccDest, d))
		}
	}
	return out, n
}

// injected is what the named emulator's fault injector fired.
func injected(sb *serve.Running, name string) map[fault.Kind]int {
	var inj *fault.Injector
	switch name {
	case serve.Webhook:
		inj = sb.Webhook.Faults()
	case serve.CloudZero:
		inj = sb.CloudZero.Faults()
	case serve.CloudCruiser:
		inj = sb.CloudCruiser.Faults()
	case serve.Acronis:
		inj = sb.Acronis.Faults()
	case serve.HERE:
		inj = sb.HERE.Faults()
	}
	if inj == nil {
		return nil
	}
	return inj.Injected()
}
