package cloudcruiser

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	sandbox "github.com/usagefleet/usagefleet/internal/sandbox/cloudcruiser"
	"github.com/usagefleet/usagefleet/internal/sandbox/fault"
	"github.com/usagefleet/usagefleet/messages"
	"github.com/usagefleet/usagefleet/producer"
	"github.com/usagefleet/usagefleet/workers"
	"github.com/usagefleet/usagefleet/workers/conformance"
)

// ccSandbox runs the Cloud Cruiser emulator for the conformance suite and
// the tests below. Its UnitOf computes the local date on its own, from the
// offset in seconds the test states, not through the destination.
type ccSandbox struct {
	*sbEnv
	zone string
	loc  *time.Location
}

func startCC(t *testing.T, zone string, secs int, cfg sandbox.Config, wrap func(http.Handler) http.Handler) *ccSandbox {
	return &ccSandbox{sbEnv: newSandbox(t, cfg, wrap), zone: zone, loc: time.FixedZone("test", secs)}
}

func (c *ccSandbox) Destination(t *testing.T, name string) workers.Destination {
	d := c.dest(t, Settings{ZoneOffset: c.zone})
	d.name = name
	return d
}

// Totals reads every date the emulator holds.
func (c *ccSandbox) Totals(t *testing.T) map[string]conformance.Totals {
	out := map[string]conformance.Totals{}
	for date, dt := range c.srv.Dates() {
		out["d"+date] = conformance.Totals{Records: dt.Records, Cost: messages.FromBig(dt.Cost), Quantity: messages.FromBig(dt.Quantity)}
	}
	return out
}

func (c *ccSandbox) UnitOf(r *messages.UsageRecord) string {
	return "d" + r.ChargePeriodStart.In(c.loc).Format("2006-01-02")
}

func (c *ccSandbox) Faults() *fault.Injector { return c.srv.Faults() }

func (c *ccSandbox) SetAuth(valid bool) {
	if valid {
		c.srv.SetToken(testToken)
	} else {
		c.srv.SetToken("revoked-" + testToken[:4])
	}
}

func (c *ccSandbox) ConcurrencyViolations() int { return c.srv.ConcurrencyViolations() }

func (c *ccSandbox) RequestLog() []conformance.Request {
	var out []conformance.Request
	for _, u := range c.srv.Uploads() {
		out = append(out, conformance.Request{Start: u.Time, Status: u.Status})
	}
	return out
}

func harness(zone string, secs int) conformance.Harness {
	return conformance.Harness{Start: func(t *testing.T) conformance.Sandbox {
		return startCC(t, zone, secs, sandbox.Config{ProcessingDelay: time.Millisecond}, nil)
	}}
}

// waitTotals waits until the sandbox holds want exactly.
func waitTotals(t *testing.T, sb *ccSandbox, want map[string]conformance.Totals, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		diff := conformance.Diff(want, sb.Totals(t))
		if diff == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the sandbox does not hold what was published:\n%s", diff)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// expect sums records by local date, as the test computes it.
func expect(sb *ccSandbox, recs []messages.UsageRecord) map[string]conformance.Totals {
	type acc struct {
		n         int
		cost, qty messages.Sum
	}
	m := map[string]*acc{}
	for i := range recs {
		k := sb.UnitOf(&recs[i])
		if m[k] == nil {
			m[k] = &acc{}
		}
		m[k].n++
		m[k].cost.Add(recs[i].BilledCost)
		m[k].qty.Add(recs[i].ConsumedQuantity)
	}
	out := map[string]conformance.Totals{}
	for k, a := range m {
		out[k] = conformance.Totals{Records: a.n, Cost: a.cost.Decimal(), Quantity: a.qty.Decimal()}
	}
	return out
}

var t0 = time.Date(2024, 8, 30, 0, 0, 0, 0, time.UTC) // the dates around a month end

// deadLetters returns the dead letters of destination dest.
func deadLetters(t *testing.T, nc *nats.Conn, dest string) []messages.DeadLetter {
	t.Helper()
	ctx := context.Background()
	js, _ := jetstream.New(nc)
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
			t.Fatal(err)
		}
		if dl.Destination == dest {
			out = append(out, dl)
		}
	}
	return out
}

func waitAcks(t *testing.T, e *conformance.Env, results []*producer.Result, dest string) []*producer.Summary {
	t.Helper()
	var out []*producer.Summary
	for _, res := range results {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		sums, err := e.Prod.Wait(ctx, res, []string{dest}, nil)
		cancel()
		if err != nil {
			t.Fatalf("acks of %s: %v", res.BatchID, err)
		}
		out = append(out, sums[dest])
	}
	return out
}

// shortLeases shortens the lease bucket's TTL, so a date whose uploader
// died without releasing its lease is taken over in seconds, not minutes.
func shortLeases(t *testing.T, nc *nats.Conn, ttl time.Duration) {
	t.Helper()
	js, _ := jetstream.New(nc)
	ctx := context.Background()
	kv, err := js.KeyValue(ctx, messages.BucketLeases)
	if err != nil {
		t.Fatal(err)
	}
	st, err := kv.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cfg := jetstream.KeyValueConfig{Bucket: messages.BucketLeases, Description: "unit leases", TTL: ttl, History: 1, Storage: jetstream.FileStorage}
	if _, err := js.UpdateKeyValue(ctx, cfg); err != nil {
		t.Fatalf("lease bucket TTL %s → %s: %v", st.TTL(), ttl, err)
	}
}

// slowBody reads a request body slowly, so an upload is still under way
// when the test kills its worker.
type slowBody struct {
	r          io.ReadCloser
	n          int64
	onProgress func(int64)
	mu         sync.Mutex
}

func (s *slowBody) Read(p []byte) (int, error) {
	if len(p) > 8<<10 {
		p = p[:8<<10]
	}
	time.Sleep(2 * time.Millisecond)
	n, err := s.r.Read(p)
	s.mu.Lock()
	s.n += int64(n)
	total := s.n
	s.mu.Unlock()
	s.onProgress(total)
	return n, err
}

func (s *slowBody) Close() error { return s.r.Close() }
