package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/shopspring/decimal"

	"github.com/usagefleet/usagefleet/internal/broker/natstest"
	"github.com/usagefleet/usagefleet/internal/config"
	ccsandbox "github.com/usagefleet/usagefleet/internal/sandbox/cloudcruiser"
	czsandbox "github.com/usagefleet/usagefleet/internal/sandbox/cloudzero"
	"github.com/usagefleet/usagefleet/messages"
	"github.com/usagefleet/usagefleet/producer"
	"github.com/usagefleet/usagefleet/producer/input"
	"github.com/usagefleet/usagefleet/workers"
	"github.com/usagefleet/usagefleet/workers/cloudcruiser"
	"github.com/usagefleet/usagefleet/workers/cloudzero"
	"github.com/usagefleet/usagefleet/workers/conformance"
)

const (
	czConn  = "1234abcd-1234-abcd-1234-abcd1234efgh"
	czKey   = "AbCd1234EfGh5678AbCd1234EfGh5678AbCd12"
	ccToken = "cc-test-7f3e91c04b2a5d68"
)

// focusFixtures are the FOCUS exports of producer/input/testdata/focus.
// refusedCC lists, by file line (record number for Parquet), the records
// Cloud Cruiser refuses and a word of the reason; any other refusal, at
// either destination, fails the test, and so does a listed record that
// arrives. CloudZero refuses none. repairedCC is how many records Cloud
// Cruiser delivers with repaired metadata, the warnings its ack counts.
//
// Issue 14 item 4 ("a record is refused by a destination only when what it
// bills cannot be carried"): 13 of the 21 records lack a SkuId (taxes,
// purchases, credits, support) and/or a quantity (cost-only rows), as
// FOCUS allows; Cloud Cruiser requires Meter ID and Quantity, so it
// derives them (package cloudcruiser, "Repairs") and delivers the record,
// counting a warning. Only line 2 of the GCP file is refused: its cost.
var focusFixtures = []struct {
	file       string
	refusedCC  map[int]string
	repairedCC int
}{
	{"aws-focus-1.0.csv", nil, 3},
	{"aws-focus-1.2.parquet", nil, 3},
	// Written by arrow-rs (producer/input/parquet_arrow_test.go): no SkuId.
	{"arrow-rs-focus-1.2.parquet", nil, 1000},
	{"azure-focus-1.2.csv", nil, 3},
	{"focus-1.3.csv", nil, 2},
	// Line 2's BilledCost is 1.5E-100: Cloud Cruiser takes at most 64
	// fractional digits, so the cost cannot be carried exactly (a refusal
	// item 4 allows).
	{"gcp-focus-1.1.ndjson", map[int]string{2: "has more than 64 integer or 64 fractional digits"}, 1},
	{"oci-focus-1.0.csv", nil, 1},
}

// Each FOCUS fixture, published as it is (read as `usage-producer publish`
// reads it, one batch), reaches CloudZero and Cloud Cruiser: every
// record's exact BilledCost is at CloudZero in the UTC hour of its
// ChargePeriodStart and at Cloud Cruiser on its (UTC) accounting date, or
// the record is in the DEAD stream with its reason, and delivered plus
// dead-lettered is what was published, at each destination.
func TestFOCUSFixturesReachEveryDestination(t *testing.T) {
	ns := natstest.Start(t)
	prod, err := producer.New(ns.Connect(t), producer.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, fx := range focusFixtures {
		t.Run(fx.file, func(t *testing.T) {
			src := strings.NewReplacer(".", "-").Replace(strings.TrimSuffix(fx.file, filepath.Ext(fx.file)))
			rows := readFixture(t, filepath.Join("..", "..", "producer", "input", "testdata", "focus", fx.file))
			cz, cc := startSandboxes(t)
			czName, ccName := "cz-"+src, "cc-"+src
			feed := "focus-" + src
			startPool(t, ns, feed, cz.dest(t, czName))
			startPool(t, ns, feed, cc.dest(t, ccName))

			b := &messages.Batch{ID: src, Feed: feed, Source: src}
			for _, r := range rows {
				b.Records = append(b.Records, r.Record)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
			defer cancel()
			res, err := prod.Publish(ctx, b)
			if err != nil {
				t.Fatal(err)
			}
			sums, err := prod.Wait(ctx, res, []string{czName, ccName}, nil)
			if err != nil {
				t.Fatalf("acks: %v", err)
			}
			nc := ns.Connect(t)
			check(t, rows, czName, sums[czName], deadLetters(t, nc, czName), nil, czUnit, cz.units)
			check(t, rows, ccName, sums[ccName], deadLetters(t, nc, ccName), fx.refusedCC, ccUnit, cc.units)
			if w := sums[ccName].Warnings; w != fx.repairedCC {
				t.Errorf("%s: acks count %d warnings, want %d (records delivered with repaired metadata)", ccName, w, fx.repairedCC)
			}
		})
	}
}

// readFixture reads path exactly as `usage-producer publish` does
// (input.ReadWith with the format of the file name, not strict, the
// default size cap): a fixture with a problem fails the test.
func readFixture(t *testing.T, path string) []input.Row {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var rows []input.Row
	res, err := input.ReadWith(path, f, input.Options{Format: input.FormatOf(path), MaxBytes: input.DefaultMaxBytes}, func(r input.Row) error {
		rows = append(rows, r)
		return nil
	})
	if err != nil || len(res.Errors) > 0 || len(rows) == 0 {
		t.Fatalf("%s: %d rows, %v %v", path, len(rows), err, res.Errors)
	}
	return rows
}

type czSB struct {
	s   *czsandbox.Server
	url string
}

type ccSB struct {
	s   *ccsandbox.Server
	url string
}

// startSandboxes starts a fresh CloudZero and Cloud Cruiser emulator on
// loopback, so each fixture's hours and dates hold only its records.
func startSandboxes(t *testing.T) (*czSB, *ccSB) {
	t.Helper()
	czs := czsandbox.New(czsandbox.Config{Connections: map[string]string{czConn: czKey}})
	czts := httptest.NewServer(czs.Handler())
	t.Cleanup(czts.Close)
	ccs := ccsandbox.New(ccsandbox.Config{Token: ccToken})
	ccts := httptest.NewServer(ccs.Handler())
	t.Cleanup(ccts.Close)
	return &czSB{s: czs, url: czts.URL}, &ccSB{s: ccs, url: ccts.URL}
}

func (c *czSB) dest(t *testing.T, name string) workers.Destination {
	d, err := cloudzero.New(name, cloudzero.Settings{BaseURL: c.url, ConnectionID: czConn, APIKey: config.NewSecret(czKey), HTTPTimeout: config.Duration(5 * time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func (c *ccSB) dest(t *testing.T, name string) workers.Destination {
	d, err := cloudcruiser.New(name, cloudcruiser.Settings{BaseURL: c.url, Token: config.NewSecret(ccToken), HTTPTimeout: config.Duration(5 * time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// startPool runs a pool of dest on feed until the test ends.
func startPool(t *testing.T, ns *natstest.Server, feed string, dest workers.Destination) {
	t.Helper()
	opts := conformance.FastOptions()
	opts.Feeds = []string{feed}
	p, err := workers.NewPool(ns.Connect(t), dest, opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := p.Run(ctx); err != nil {
			t.Errorf("pool %s: %v", dest.Name(), err)
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
}

// czUnit is a record's CloudZero unit: the UTC hour of ChargePeriodStart.
func czUnit(r *messages.UsageRecord) string {
	return r.ChargePeriodStart.UTC().Truncate(time.Hour).Format(time.RFC3339)
}

// ccUnit is a record's Cloud Cruiser unit: its accounting date (the
// destination's zone offset is UTC).
func ccUnit(r *messages.UsageRecord) string { return r.ChargePeriodStart.UTC().Format("2006-01-02") }

// units returns, per UTC hour, the costs of the rows CloudZero holds,
// placeholder rows left out.
func (c *czSB) units() map[string][]string {
	out := map[string][]string{}
	for h := range c.s.Hours(czConn) {
		for _, r := range c.s.Rows(czConn, h) {
			if r["lineitem/id"] == cloudzero.PlaceholderLineItemID {
				continue
			}
			k := h.UTC().Format(time.RFC3339)
			out[k] = append(out[k], canonical(r["cost/cost"]))
		}
	}
	return out
}

// units returns, per accounting date, the costs of the records Cloud
// Cruiser holds.
func (c *ccSB) units() map[string][]string {
	out := map[string][]string{}
	for date, dt := range c.s.Dates() {
		recs := c.s.Records(date)
		if len(recs) != dt.Records {
			return map[string][]string{date: {fmt.Sprintf("(the emulator kept %d of %d records)", len(recs), dt.Records)}}
		}
		for _, r := range recs {
			out[date] = append(out[date], canonical(r.Cost))
		}
	}
	return out
}

// canonical is a cost in one spelling ("1.50" and "1.5E0" are "1.5");
// "(none)" when there is none, "(bad ...)" when it is not a decimal.
func canonical(s string) string {
	if s == "" {
		return "(none)"
	}
	d, err := decimal.NewFromString(s)
	if err != nil {
		return "(bad " + s + ")"
	}
	return d.String()
}

// recKey tells records apart well enough to match a dead letter to the
// published record.
func recKey(r *messages.UsageRecord) string {
	return strings.Join([]string{r.ChargePeriodStart.UTC().Format(time.RFC3339Nano), r.BilledCost.String(), r.BillingCurrency,
		r.ResourceId, r.SkuId, r.ChargeCategory, r.ChargeDescription}, "|")
}

// check waits until the sandbox holds, unit by unit, the exact costs of
// every published record that dest did not dead-letter, and accounts for
// every record: delivered (acks and sandbox) + dead-lettered == published;
// the dead-lettered ones are those of wantRefused (by file line, with a
// word of the reason), no more, no fewer.
func check(t *testing.T, rows []input.Row, dest string, sum *producer.Summary, dead []messages.DeadLetter,
	wantRefused map[int]string, unitOf func(*messages.UsageRecord) string, held func() map[string][]string) {
	t.Helper()
	lines := map[string][]int{}
	for _, r := range rows {
		k := recKey(&r.Record)
		lines[k] = append(lines[k], r.Line)
	}
	refused := map[int]string{} // file line → reason
	for _, dl := range dead {
		if len(dl.Records) == 0 {
			t.Errorf("%s: part %d of batch %s dead-lettered whole: %s", dest, dl.Part, dl.BatchID, dl.Reason)
			continue
		}
		for _, rr := range dl.Records {
			ls := lines[recKey(&rr.Record)]
			if len(ls) == 0 {
				t.Errorf("%s: a dead-lettered record matches no published one (%s): %s", dest, recKey(&rr.Record), rr.Reason)
				continue
			}
			lines[recKey(&rr.Record)] = ls[1:]
			refused[ls[0]] = rr.Reason
		}
	}
	for line, reason := range refused {
		if w, ok := wantRefused[line]; !ok || !strings.Contains(reason, w) {
			t.Errorf("%s refused the record of line %d: %s", dest, line, reason)
		}
	}
	for line, w := range wantRefused {
		if _, ok := refused[line]; !ok {
			t.Errorf("%s did not refuse the record of line %d (expected: %s)", dest, line, w)
		}
	}

	want := map[string][]string{}
	delivered := 0
	for _, r := range rows {
		if _, ok := refused[r.Line]; ok {
			continue
		}
		delivered++
		k := unitOf(&r.Record)
		want[k] = append(want[k], canonical(r.Record.BilledCost.String()))
	}
	if sum.Records != delivered || sum.RejectedRecords != len(refused) || delivered+len(refused) != len(rows) {
		t.Errorf("%s: acks say %d delivered, %d rejected (reasons %v); the DEAD stream holds %d; %d were published",
			dest, sum.Records, sum.RejectedRecords, sum.Reasons, len(refused), len(rows))
	}
	for _, v := range want {
		sort.Strings(v)
	}
	deadline := time.Now().Add(10 * time.Second) // the acks are in: the sandbox holds its final state
	for {
		got := held()
		for _, v := range got {
			sort.Strings(v)
		}
		diff := diffUnits(want, got)
		if diff == "" {
			t.Logf("%s: %d records in %d units, %d refused", dest, delivered, len(want), len(refused))
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("%s does not hold every record's exact cost:\n%s", dest, diff)
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// diffUnits describes, unit by unit, how got differs from want: the
// costs and their exact sums.
func diffUnits(want, got map[string][]string) string {
	var keys []string
	for k := range want {
		keys = append(keys, k)
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		if !slices.Equal(want[k], got[k]) {
			fmt.Fprintf(&b, "  %s: want %v (sum %s), got %v (sum %s)\n", k, want[k], sumOf(want[k]), got[k], sumOf(got[k]))
		}
	}
	return b.String()
}

// sumOf is the exact sum of costs ("(none)" counts nothing).
func sumOf(costs []string) string {
	s := decimal.Zero
	for _, c := range costs {
		if d, err := decimal.NewFromString(c); err == nil {
			s = s.Add(d)
		}
	}
	return s.String()
}

// deadLetters returns the dead letters of destination dest.
func deadLetters(t *testing.T, nc *nats.Conn, dest string) []messages.DeadLetter {
	t.Helper()
	ctx := context.Background()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	st, err := js.Stream(ctx, messages.StreamDead)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out []messages.DeadLetter
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		raw, err := st.GetMsg(ctx, seq)
		if err != nil {
			continue
		}
		var dl messages.DeadLetter
		if err := json.Unmarshal(raw.Data, &dl); err != nil {
			t.Fatalf("DEAD seq %d: %v", seq, err)
		}
		if dl.Destination == dest {
			out = append(out, dl)
		}
	}
	return out
}
