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
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
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
	say := func(format string, args ...any) { fmt.Fprintf(o.Out, format+"\n", args...) }
	prog := newProgress(o.Out)
	dir := o.Dir
	if dir == "" {
		d, err := os.MkdirTemp("", "usagefleet-demo-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(d)
		dir = d
	}
	faults, err := faultSpecs(o.Faults)
	if err != nil {
		return nil, err
	}
	seed := randomSeed()

	// 1. The sandbox APIs, with credentials only this process knows.
	hookToken, czKey, ccToken := randomSecret(), randomSecret(), randomSecret()
	acronisSecret, hereSecret := randomSecret(), randomSecret()
	const czConn = "demo-connection"
	sb, err := serve.Start(serve.Options{
		Faults:       faults,
		Webhook:      webhookConfig(hookToken),
		CloudZero:    cloudzeroConfig(czConn, czKey),
		CloudCruiser: cloudcruiserConfig(ccToken, o.Records+100_000, seed),
		Acronis:      acronisConfig(acronisClientID, acronisSecret, seed),
		HERE:         hereConfig(hereKeyID, hereSecret, seed),
	})
	if err != nil {
		return nil, err
	}
	defer sb.Close()
	say("sandbox APIs on loopback: %s", urls(sb.URLs))

	// 2. The fleet, from a real configuration file's text. Secrets travel
	// the way they do in production: through environment variables.
	os.Setenv("USAGEFLEET_DEMO_WEBHOOK_TOKEN", hookToken)
	os.Setenv("USAGEFLEET_DEMO_CLOUDZERO_KEY", czKey)
	os.Setenv("USAGEFLEET_DEMO_CLOUDCRUISER_TOKEN", ccToken)
	os.Setenv("USAGEFLEET_DEMO_ACRONIS_SECRET", acronisSecret)
	os.Setenv("USAGEFLEET_DEMO_HERE_CREDENTIALS", "here.access.key.id="+hereKeyID+"\nhere.access.key.secret="+hereSecret+"\n")
	cfgText := fmt.Sprintf(`
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
	cfg, err := fleet.Parse([]byte(cfgText))
	if err != nil {
		return nil, fmt.Errorf("demo config: %w", err)
	}
	fl, err := fleet.Start(ctx, cfg, o.Log)
	if err != nil {
		return nil, err
	}
	defer fl.Close()
	runCtx, stopFleet := context.WithCancel(ctx)
	fleetDone := make(chan error, 1)
	go func() { fleetDone <- fl.Run(runCtx) }()
	defer func() { stopFleet(); <-fleetDone }()
	say("embedded JetStream at %s, %d destination pool(s) running", fl.Embedded.URL, len(fl.Pools))

	// 3. A producer publishes generated usage.
	nc, err := nats.Connect(fl.Embedded.URL, nats.Name("usage-demo-producer"))
	if err != nil {
		return nil, err
	}
	defer nc.Close()
	prod, err := producer.New(nc, producer.Options{})
	if err != nil {
		return nil, err
	}
	recs := usagegen.Generate(o.Records, usagegen.Options{Seed: uint64(seed), Start: time.Now().UTC().AddDate(0, 0, -2).Truncate(24 * time.Hour), Hours: 48})
	want := usagegen.Total(recs)
	var wantQty messages.Sum
	for i := range recs {
		wantQty.Add(recs[i].ConsumedQuantity) // what Cloud Cruiser's Quantity maps from
	}
	start := time.Now()
	var results []*producer.Result
	for i := 0; i < len(recs); i += o.BatchSize {
		end := min(i+o.BatchSize, len(recs))
		b := &messages.Batch{ID: fmt.Sprintf("demo-%s-%d", randomSecret()[:8], i/o.BatchSize), Feed: demoSource, Source: demoSource, Records: recs[i:end]}
		res, err := prod.Publish(ctx, b)
		if err != nil {
			return nil, fmt.Errorf("publish: %w", err)
		}
		results = append(results, res)
		prog.show("published %d/%d records", end, len(recs))
	}
	prog.done()
	say("published %d records in %d batches (cost %s, quantity %s) in %s", want.Records, len(results), want.Cost, wantQty.Decimal(), time.Since(start).Round(time.Millisecond))

	// 4. Follow the acks until every part is settled everywhere.
	dests := []string{"cloudzero", "webhook", ccDest}
	acked := map[string]int{}
	rejected := map[string]int{}
	totalParts := 0
	for _, r := range results {
		totalParts += len(r.Parts)
	}
	settled := 0
	for _, res := range results {
		wctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
		sums, err := prod.Wait(wctx, res, dests, func(p producer.Progress) {
			n, total := settled+p.Done, totalParts*len(dests)
			prog.show("acks %s %d/%d parts", bar(n, total), n, total)
		})
		cancel()
		if err != nil {
			return nil, fmt.Errorf("waiting for batch %s: %w", res.BatchID, err)
		}
		settled += len(res.Parts) * len(dests)
		for d, s := range sums {
			acked[d] += s.Records
			rejected[d] += s.RejectedRecords
		}
	}
	prog.done()
	say("all %d parts settled at %d destination(s) in %s          ", totalParts, len(dests), time.Since(start).Round(time.Millisecond))

	// 5. The collectors, once and then again (a new generation).
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	cols, err := buildCollectors(ctx, collectorsConfig(sb, fl.Embedded.URL), prod, js, o.Log)
	if err != nil {
		return nil, err
	}
	start = time.Now()
	c1, err := collectOnce(ctx, 1, cols, sb, prod, say)
	if err != nil {
		return nil, err
	}
	held1 := cloudcruiserHeld(sb.CloudCruiser, sourceOf(sb))
	c2, err := collectOnce(ctx, 2, cols, sb, prod, say)
	if err != nil {
		return nil, err
	}
	held2 := cloudcruiserHeld(sb.CloudCruiser, sourceOf(sb))
	problems, reuploaded := recollected(c1, c2, held1, held2)
	same := "as after the first collection (replaced, not added)"
	if held1.All.Records != held2.All.Records || !held1.All.Quantity.Decimal().Equal(held2.All.Quantity.Decimal()) {
		same = fmt.Sprintf("after the first collection it held %d records, quantity %s", held1.All.Records, held1.All.Quantity.Decimal())
	}
	say("re-collection settled in %s: %s uploaded %d collected date(s) again and holds %d records, quantity %s, %s",
		time.Since(start).Round(time.Millisecond), ccDest, reuploaded, held2.All.Records, held2.All.Quantity.Decimal(), same)

	// 6. Reconcile against what the sandboxes hold.
	st := sb.Webhook.Stats()
	czRows, czCost := cloudzeroHeld(sb, czConn)
	zero := messages.DecimalFromInt(0)
	rows := []Row{{
		Destination: "cloudzero", Source: demoSource, PublishedRecords: want.Records, PublishedCost: want.Cost,
		AckedRecords: acked["cloudzero"], ReceivedRecords: czRows, ReceivedCost: czCost, Rejected: rejected["cloudzero"],
	}, {
		Destination: "webhook", Source: demoSource, PublishedRecords: want.Records, PublishedCost: want.Cost,
		AckedRecords: acked["webhook"], ReceivedRecords: st.UniqueRecords, ReceivedCost: messages.FromBig(st.UniqueCost), Rejected: rejected["webhook"],
	}}
	part := func(src string) held {
		if h := held2.BySource[src]; h != nil {
			return *h
		}
		return held{}
	}
	d := part(demoSource)
	rows = append(rows, Row{
		Destination: ccDest, Source: demoSource, PublishedRecords: want.Records, PublishedCost: want.Cost, PublishedQuantity: wantQty.Decimal(),
		AckedRecords: acked[ccDest], ReceivedRecords: d.Records, ReceivedCost: d.Cost.Decimal(), ReceivedQuantity: d.Quantity.Decimal(),
		Rejected: rejected[ccDest], HasQuantity: true,
	})
	// What the emulators expect of every day either collection covered
	// (the same days, unless a collection ran across midnight).
	all1 := row(ccDest, AllAfterFirst, want.Records, wantQty, want.Cost, acked[ccDest], rejected[ccDest], held1.All)
	all2 := row(ccDest, AllAfterSecond, want.Records, wantQty, want.Cost, acked[ccDest], rejected[ccDest], held2.All)
	for _, c := range cols {
		name := c.Name()
		e1 := expectedReports(sb, name, days(c1.Results[name].Window))
		e2 := expectedReports(sb, name, days(c1.Results[name].Window, c2.Results[name].Window))
		h := part(name)
		rows = append(rows, Row{
			Destination: ccDest, Source: name, PublishedRecords: e2.Records, PublishedCost: zero, PublishedQuantity: e2.Quantity.Decimal(),
			AckedRecords: c2.Acked[name], ReceivedRecords: h.Records, ReceivedCost: h.Cost.Decimal(), ReceivedQuantity: h.Quantity.Decimal(),
			Rejected: c2.Rejected[name], HasQuantity: true,
		})
		all1.add(e1, c1.Acked[name], c1.Rejected[name])
		all2.add(e2, c2.Acked[name], c2.Rejected[name])
	}
	rows = append(rows, all1, all2)
	if !held2.Split {
		problems = append(problems, fmt.Sprintf("a %s date kept fewer records than it holds: its sources cannot be told apart", ccDest))
	}
	ok := len(problems) == 0
	var bad []string
	for i := range rows {
		r := &rows[i]
		r.Match = r.recordsMatch() && r.costMatch() && r.quantityMatch()
		if !r.Match {
			ok = false
			bad = append(bad, r.Destination+"/"+r.Source)
		}
	}
	say("")
	printTable(o.Out, rows)
	say("(a collector's \"published\" is what its report emulator expects for the days collected)")
	for _, p := range problems {
		say("PROBLEM: %s", p)
	}
	var inj []string
	for _, n := range serve.Names() {
		if m := injected(sb, n); len(m) > 0 {
			inj = append(inj, n+" ("+faultSummary(m)+")")
		}
	}
	if !ok {
		if len(inj) > 0 {
			say("faults injected at the sandboxes: %s", strings.Join(inj, ", "))
		}
		if len(bad) > 0 {
			return rows, fmt.Errorf("reconciliation failed: %s differ(s) from what was published", strings.Join(bad, ", "))
		}
		return rows, fmt.Errorf("reconciliation failed: %s", strings.Join(problems, "; "))
	}
	if len(inj) > 0 {
		say("faults injected at the sandboxes on the way (retried, nothing lost): %s", strings.Join(inj, ", "))
	}
	say("reconciliation: every destination holds exactly what was published, and Cloud Cruiser exactly what the report emulators expect, once")
	return rows, nil
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

// printTable prints a line per measure: records (with acks and
// rejections), quantity where it is reconciled, and cost (left out for a
// source that carries none). Text is left-aligned, numbers right-aligned.
func printTable(w io.Writer, rows []Row) {
	yes := func(b bool) string {
		if b {
			return "yes"
		}
		return "NO"
	}
	lines := [][]string{{"destination", "source", "", "published", "received", "acked", "rejected", "match"}}
	for _, r := range rows {
		lines = append(lines, []string{r.Destination, r.Source, "records", fmt.Sprint(r.PublishedRecords), fmt.Sprint(r.ReceivedRecords),
			fmt.Sprint(r.AckedRecords), fmt.Sprint(r.Rejected), yes(r.recordsMatch())})
		if r.HasQuantity {
			lines = append(lines, []string{"", "", "quantity", r.PublishedQuantity.String(), r.ReceivedQuantity.String(), "", "", yes(r.quantityMatch())})
		}
		if !r.PublishedCost.Equal(messages.DecimalFromInt(0)) || !r.costMatch() {
			lines = append(lines, []string{"", "", "cost", r.PublishedCost.String(), r.ReceivedCost.String(), "", "", yes(r.costMatch())})
		}
	}
	width := make([]int, len(lines[0]))
	for _, l := range lines {
		for i, c := range l {
			width[i] = max(width[i], len(c))
		}
	}
	for _, l := range lines {
		var b strings.Builder
		for i, c := range l {
			if i > 0 {
				b.WriteString("  ")
			}
			pad := strings.Repeat(" ", width[i]-len(c))
			if i >= 3 && i <= 6 { // numbers
				b.WriteString(pad + c)
			} else {
				b.WriteString(c + pad)
			}
		}
		fmt.Fprintln(w, strings.TrimRight(b.String(), " "))
	}
}

// faultSummary renders what one emulator's injector fired ("17 status").
func faultSummary(m map[fault.Kind]int) string {
	var kinds []string
	for k := range m {
		kinds = append(kinds, string(k))
	}
	slices.Sort(kinds)
	var parts []string
	for _, k := range kinds {
		parts = append(parts, fmt.Sprintf("%d %s", m[fault.Kind(k)], k))
	}
	return strings.Join(parts, ", ")
}

// progress redraws one line on a terminal and prints at most a line a
// second elsewhere (CI logs, pipes).
type progress struct {
	w     io.Writer
	tty   bool
	last  time.Time
	drawn bool
}

func newProgress(w io.Writer) *progress {
	tty := false
	if f, ok := w.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			tty = true
		}
	}
	return &progress{w: w, tty: tty}
}

func (p *progress) show(format string, args ...any) {
	if p.tty {
		fmt.Fprintf(p.w, "\r\033[K"+format, args...)
		p.drawn = true
		return
	}
	if time.Since(p.last) >= time.Second {
		p.last = time.Now()
		fmt.Fprintf(p.w, format+"\n", args...)
	}
}

func (p *progress) done() {
	if p.tty && p.drawn {
		fmt.Fprint(p.w, "\r\033[K")
		p.drawn = false
	}
}

func bar(done, total int) string {
	const width = 30
	if total == 0 {
		return ""
	}
	n := done * width / total
	return "[" + strings.Repeat("#", n) + strings.Repeat(".", width-n) + "]"
}

func urls(m map[string]string) string {
	var parts []string
	for _, n := range serve.Names() {
		if u, ok := m[n]; ok {
			parts = append(parts, n+"="+u)
		}
	}
	return strings.Join(parts, " ")
}

func randomSecret() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// randomSeed seeds the generated usage, the report emulators' data and the
// fault injectors: each run differs, and each is exact.
func randomSeed() int64 {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return int64(binary.LittleEndian.Uint64(b[:]) >> 1)
}
