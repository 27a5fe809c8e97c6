// Package demo runs the whole main job on embedded defaults: an embedded
// JetStream server, the sandbox APIs, a worker fleet built from a real
// configuration, and a producer publishing generated usage. It ends with a
// reconciliation of what was published against what each destination
// received, and fails if they differ.
package demo

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go"

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
	Faults    string // fault spec injected at every sandbox ("" = light default, "none" = none)
	Out       io.Writer
	Log       *slog.Logger
}

// Row is one line of the reconciliation.
type Row struct {
	Destination      string
	PublishedRecords int
	PublishedCost    messages.Decimal
	AckedRecords     int
	ReceivedRecords  int
	ReceivedCost     messages.Decimal
	Rejected         int
	Match            bool
}

// Run runs the demo and returns the reconciliation; the error is non-nil
// if any destination differs from what was published.
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
	faults := o.Faults
	switch faults {
	case "":
		faults = "500@0.03,429:retry=1x1"
	case "none":
		faults = ""
	}

	// 1. The sandbox APIs, with credentials only this process knows.
	hookToken, czKey := randomSecret(), randomSecret()
	const czConn = "demo-connection"
	sb, err := serve.Start(serve.Options{
		Only:      []string{serve.Webhook, serve.CloudZero},
		Faults:    map[string]string{serve.Webhook: faults, serve.CloudZero: faults},
		Webhook:   webhookConfig(hookToken),
		CloudZero: cloudzeroConfig(czConn, czKey),
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
	cfgText := fmt.Sprintf(`
nats:
  data_dir: %q
destinations:
  - name: webhook
    type: webhook
    feeds: [demo]
    workers: 4
    retry: {initial: 100ms, max: 2s}
    settings:
      url: %s/ingest
      max_body_bytes: 262144
      token: {env: USAGEFLEET_DEMO_WEBHOOK_TOKEN}
  - name: cloudzero
    type: cloudzero
    feeds: [demo]
    flush: {max_delay: 2s, quiet: 500ms}
    retry: {initial: 100ms, max: 2s}
    settings:
      base_url: %s
      connection_id: %s
      api_key: {env: USAGEFLEET_DEMO_CLOUDZERO_KEY}
`, dir+"/nats", sb.URLs[serve.Webhook], sb.URLs[serve.CloudZero], czConn)
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
	recs := usagegen.Generate(o.Records, usagegen.Options{Seed: uint64(time.Now().UnixNano()), Start: time.Now().UTC().AddDate(0, 0, -2).Truncate(24 * time.Hour), Hours: 48})
	want := usagegen.Total(recs)
	start := time.Now()
	var results []*producer.Result
	for i := 0; i < len(recs); i += o.BatchSize {
		end := min(i+o.BatchSize, len(recs))
		b := &messages.Batch{ID: fmt.Sprintf("demo-%s-%d", randomSecret()[:8], i/o.BatchSize), Feed: "demo", Source: "demo", Records: recs[i:end]}
		res, err := prod.Publish(ctx, b)
		if err != nil {
			return nil, fmt.Errorf("publish: %w", err)
		}
		results = append(results, res)
		prog.show("published %d/%d records", end, len(recs))
	}
	prog.done()
	say("published %d records in %d batches (cost %s) in %s", want.Records, len(results), want.Cost, time.Since(start).Round(time.Millisecond))

	// 4. Follow the acks until every part is settled everywhere.
	dests := []string{"cloudzero", "webhook"}
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

	// 5. Reconcile against what the sandboxes hold.
	st := sb.Webhook.Stats()
	czRows, czCost := cloudzeroHeld(sb, czConn)
	rows := []Row{{
		Destination: "cloudzero", PublishedRecords: want.Records, PublishedCost: want.Cost,
		AckedRecords: acked["cloudzero"], ReceivedRecords: czRows, ReceivedCost: czCost, Rejected: rejected["cloudzero"],
	}, {
		Destination: "webhook", PublishedRecords: want.Records, PublishedCost: want.Cost,
		AckedRecords: acked["webhook"], ReceivedRecords: st.UniqueRecords, ReceivedCost: messages.FromBig(st.UniqueCost), Rejected: rejected["webhook"],
	}}
	ok := true
	for i := range rows {
		r := &rows[i]
		r.Match = r.PublishedRecords == r.ReceivedRecords+r.Rejected && r.AckedRecords == r.ReceivedRecords && r.PublishedCost.Equal(r.ReceivedCost)
		ok = ok && r.Match
	}
	printTable(o.Out, rows)
	for name, inj := range map[string]map[fault.Kind]int{"webhook": sb.Webhook.Faults().Injected(), "cloudzero": sb.CloudZero.Faults().Injected()} {
		if len(inj) > 0 {
			say("faults injected at the %s sandbox on the way: %v (retried, nothing lost)", name, inj)
		}
	}
	if !ok {
		return rows, fmt.Errorf("reconciliation failed: a destination differs from what was published")
	}
	say("reconciliation: every destination holds exactly what was published")
	return rows, nil
}

func printTable(w io.Writer, rows []Row) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "destination\tpublished\treceived\tacked\trejected\tpublished cost\treceived cost\tmatch\t")
	for _, r := range rows {
		m := "yes"
		if !r.Match {
			m = "NO"
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%s\t%s\t%s\t\n", r.Destination, r.PublishedRecords, r.ReceivedRecords, r.AckedRecords, r.Rejected, r.PublishedCost, r.ReceivedCost, m)
	}
	tw.Flush()
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
