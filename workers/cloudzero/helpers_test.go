package cloudzero

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"github.com/usagefleet/usagefleet/internal/config"
	sandbox "github.com/usagefleet/usagefleet/internal/sandbox/cloudzero"
	"github.com/usagefleet/usagefleet/messages"
	"github.com/usagefleet/usagefleet/workers"
	"github.com/usagefleet/usagefleet/workers/workerstest"
)

const (
	testConn = "1234abcd-1234-abcd-1234-abcd1234efgh"
	testKey  = "AbCd1234EfGh5678AbCd1234EfGh5678AbCd12"
)

// variedRecords returns n realistic records: several services, accounts,
// regions, categories and 0-6 tags, costs with varied precision.
func variedRecords(n int) []messages.UsageRecord {
	services := []string{"Compute", "Storage", "Database", "Networking", "AI Inference"}
	regions := []string{"us-east-1", "eu-west-1", "ap-southeast-2", ""}
	cats := []string{"Usage", "Usage", "Usage", "Tax", "Credit", "Purchase", ""}
	tagKeys := []string{"team", "env", "cost-center", "k8s.io/app", "owner@corp", "project"}
	out := make([]messages.UsageRecord, n)
	for i := range out {
		start := time.Date(2024, 8, 1+i%28, i%24, i%60, 0, 0, time.UTC)
		r := messages.UsageRecord{
			ChargePeriodStart: start,
			ChargePeriodEnd:   start.Add(time.Hour),
			BillingAccountId:  "acct-0001",
			SubAccountId:      fmt.Sprintf("sub-%03d", i%17),
			ServiceName:       services[i%len(services)],
			ServiceCategory:   services[(i+1)%len(services)],
			ChargeCategory:    cats[i%len(cats)],
			ChargeDescription: fmt.Sprintf("%s usage, tier %d", services[i%len(services)], i%4),
			SkuId:             fmt.Sprintf("SKU-%05d", i%311),
			SkuMeter:          "Hours",
			ResourceId:        fmt.Sprintf("arn:acme:compute:us-east-1:0001:instance/i-%08x", i*7919),
			RegionId:          regions[i%len(regions)],
			ConsumedQuantity:  messages.MustDecimal(fmt.Sprintf("%d.%03d", i%100, i%1000)),
			ConsumedUnit:      "Hours",
			BilledCost:        messages.MustDecimal(fmt.Sprintf("%d.%06d", i%50, (i*37)%1000000)),
			BillingCurrency:   "USD",
		}
		if r.ChargeCategory == "Credit" {
			r.BilledCost = messages.MustDecimal(fmt.Sprintf("-%d.25", i%9+1))
		}
		if i%3 != 0 {
			r.EffectiveCost = messages.MustDecimal(fmt.Sprintf("%d.%04d", i%40, i%10000))
			r.ListCost = messages.MustDecimal(fmt.Sprintf("%d.5", i%60))
		}
		if nt := i % 7; nt > 0 {
			r.Tags = make(map[string]string, nt)
			for k := 0; k < nt && k < len(tagKeys); k++ {
				r.Tags[tagKeys[k]] = fmt.Sprintf("value-%d-%d", k, i%13)
			}
		}
		out[i] = r
	}
	return out
}

// hourRecords returns n records in hour, each costing cost+i/1000 and
// padded with a description of pad bytes.
func hourRecords(hour time.Time, n, pad int, cost string) []messages.UsageRecord {
	out := make([]messages.UsageRecord, n)
	for i := range out {
		out[i] = messages.UsageRecord{
			ChargePeriodStart: hour.Add(time.Duration(i%60) * time.Minute),
			ServiceName:       "Compute",
			ChargeCategory:    "Usage",
			ChargeDescription: strings.Repeat("d", pad),
			ResourceId:        fmt.Sprintf("instance-%05d", i),
			BilledCost:        messages.MustDecimal(fmt.Sprintf("%s.%03d", cost, i%1000)),
			BillingCurrency:   "USD",
			Tags:              map[string]string{"team": "core"},
		}
	}
	return out
}

func hourAt(day, h int) time.Time { return time.Date(2024, 8, day, h, 0, 0, 0, time.UTC) }

// fakeJob is the shared fake workers.Job (workerstest.Job) set up as the
// packing tests want it: bodies kept and labelled with their operation,
// rows encoded with AppendRow, rejections written down under their hour.
type fakeJob = workerstest.Job

func newFakeJob(units []workers.Unit, recs []messages.UsageRecord) *fakeJob {
	j := workerstest.New(units, recs)
	j.Seq = 42
	j.KeepBodies = true
	j.Label = operationOf
	j.Encode = AppendRow
	j.UnitKey = func(r *messages.UsageRecord) string { return hourUnit(r.ChargePeriodStart).Key }
	return j
}

// operationOf is the operation of a billing drop body.
func operationOf(body []byte) string {
	var env struct {
		Operation string `json:"operation"`
	}
	_ = json.Unmarshal(body, &env)
	return env.Operation
}

// emulator starts the CloudZero sandbox on loopback.
func emulator(t *testing.T, cfg sandbox.Config) (*sandbox.Server, string) {
	t.Helper()
	if cfg.Connections == nil {
		cfg.Connections = map[string]string{testConn: testKey}
	}
	s := sandbox.New(cfg)
	ts := httptest.NewServer(s.Handler())
	t.Cleanup(ts.Close)
	return s, ts.URL
}

// noStall is the stall_timeout of the tests' destinations: none of them
// is about the clock (TestHTTPTimeoutIsTransient sets its own), so no
// attempt may end for being slow. A 5 MB body under -race on a loaded
// machine took longer than the 5 s these tests once set, and the request
// was given up as unanswered. A request that never ends is caught by go
// test's -timeout, with every goroutine's stack.
const noStall = time.Hour

func newDest(t *testing.T, url string, mode Mode, maxBody int) *Destination {
	t.Helper()
	d, err := New("cz", Settings{
		BaseURL: url, ConnectionID: testConn, APIKey: config.NewSecret(testKey),
		Mode: mode, MaxBodyBytes: maxBody, StallTimeout: config.Duration(noStall),
	})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// hourUnits returns the hour units of hours.
func hourUnits(hours ...time.Time) []workers.Unit {
	out := make([]workers.Unit, len(hours))
	for i, h := range hours {
		out[i] = hourUnit(h)
	}
	return out
}

type total struct {
	rows int
	cost decimal.Decimal
}

// expectTotals sums the records per UTC hour, as CloudZero stores them.
func expectTotals(recs []messages.UsageRecord) map[time.Time]total {
	out := map[time.Time]total{}
	for _, r := range recs {
		h := r.ChargePeriodStart.UTC().Truncate(time.Hour)
		t := out[h]
		t.rows++
		t.cost = t.cost.Add(r.BilledCost.Big())
		out[h] = t
	}
	return out
}

// checkTotals compares what the emulator holds with want, hour by hour.
// Hours in placeholders hold only the placeholder row.
func checkTotals(t *testing.T, s *sandbox.Server, want map[time.Time]total, placeholders ...time.Time) {
	t.Helper()
	got := s.Hours(testConn)
	for _, h := range placeholders {
		want[h] = total{rows: 1, cost: decimal.Zero}
	}
	for h, w := range want {
		g, ok := got[h]
		if !ok || g.Rows != w.rows || !g.Cost.Equal(w.cost) {
			t.Errorf("hour %s: got %d rows cost %s, want %d rows cost %s", h.Format(time.RFC3339), g.Rows, g.Cost, w.rows, w.cost)
		}
	}
	for h, g := range got {
		if _, ok := want[h]; !ok {
			t.Errorf("hour %s: unexpected %d rows cost %s", h.Format(time.RFC3339), g.Rows, g.Cost)
		}
	}
}

// ops lists the operations the emulator received for the connection, with
// their status.
func ops(s *sandbox.Server) []string {
	var out []string
	for _, r := range s.Requests(testConn) {
		out = append(out, fmt.Sprintf("%s:%d", r.Operation, r.Status))
	}
	return out
}

func classOf(t *testing.T, err error) *workers.Error {
	t.Helper()
	var we *workers.Error
	if !errors.As(err, &we) {
		t.Fatalf("err = %T %v, want a *workers.Error", err, err)
	}
	return we
}

func newSecret() config.Secret                   { return config.NewSecret(testKey) }
func durationOf(d time.Duration) config.Duration { return config.Duration(d) }
