// The conformance suite, through the real pool and an embedded nats-server,
// against the CloudZero emulator. It is part of the default test run:
//
//	go test -run Conformance ./workers/cloudzero/

package cloudzero

import (
	"net/http/httptest"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	sandbox "github.com/usagefleet/usagefleet/internal/sandbox/cloudzero"
	"github.com/usagefleet/usagefleet/internal/sandbox/fault"
	"github.com/usagefleet/usagefleet/messages"
	"github.com/usagefleet/usagefleet/workers"
	"github.com/usagefleet/usagefleet/workers/conformance"
)

// confSandbox runs the CloudZero emulator for the conformance suite.
type confSandbox struct {
	s   *sandbox.Server
	url string
}

func (c *confSandbox) Destination(t *testing.T, name string) workers.Destination {
	d, err := New(name, Settings{BaseURL: c.url, ConnectionID: testConn, APIKey: newSecret(), MaxBodyBytes: 60_000})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// Totals reads every hour the emulator holds, leaving placeholder rows out.
func (c *confSandbox) Totals(t *testing.T) map[string]conformance.Totals {
	out := map[string]conformance.Totals{}
	for h := range c.s.Hours(testConn) {
		var n int
		cost, qty := decimal.Zero, decimal.Zero
		for _, r := range c.s.Rows(testConn, h) {
			if r["lineitem/id"] == PlaceholderLineItemID {
				continue
			}
			n++
			cost = cost.Add(decimal.RequireFromString(r["cost/cost"]))
			if a := r["usage/amount"]; a != "" {
				qty = qty.Add(decimal.RequireFromString(a))
			}
		}
		if n > 0 {
			out[hourUnit(h).Key] = conformance.Totals{Records: n, Cost: messages.FromBig(cost), Quantity: messages.FromBig(qty)}
		}
	}
	return out
}

func (c *confSandbox) UnitOf(r *messages.UsageRecord) string {
	return hourUnit(r.ChargePeriodStart).Key
}
func (c *confSandbox) Faults() *fault.Injector { return c.s.Faults() }
func (c *confSandbox) SetAuth(valid bool) {
	if valid {
		c.s.SetKey(testConn, testKey)
	} else {
		c.s.SetKey(testConn, "")
	}
}
func (c *confSandbox) ConcurrencyViolations() int { n, _ := c.s.Violations(); return n }
func (c *confSandbox) RequestLog() []conformance.Request {
	var out []conformance.Request
	for _, r := range c.s.Requests(testConn) {
		out = append(out, conformance.Request{Start: r.Time, Status: r.Status})
	}
	return out
}

func TestConformance(t *testing.T) {
	conformance.Run(t, conformance.Harness{Start: func(t *testing.T) conformance.Sandbox {
		s := sandbox.New(sandbox.Config{Connections: map[string]string{testConn: testKey}, ProcessingDelay: time.Millisecond})
		ts := httptest.NewServer(s.Handler())
		t.Cleanup(ts.Close)
		return &confSandbox{s: s, url: ts.URL}
	}})
}
