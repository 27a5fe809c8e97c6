package ops

import (
	"context"
	"log/slog"
	"net/http"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// gauge reads one series of reg (-1 when absent).
func gauge(t *testing.T, reg *prometheus.Registry, name, dest string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "destination" && l.GetValue() == dest {
					if m.Gauge != nil {
						return m.GetGauge().GetValue()
					}
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return -1
}

// The worker's scheduled reconciliation, run as the worker runs it, against
// the embedded server and the CloudZero sandbox: balanced, the gauges say
// 0; after the sandbox loses a unit (deleted through its admin endpoint),
// the unit is out of balance.
func TestScheduledReconcileExportsUnitsOutOfBalance(t *testing.T) {
	r := newRig(t, "")
	h0 := time.Now().UTC().Truncate(time.Hour).Add(-5 * time.Hour)
	r.publish("cloud", "sched-1", records(20, 2, 3, h0))
	waitFor(t, "the sandbox to hold the 20 records", func() bool {
		n := 0
		for _, h := range r.cz.Hours(czConn) {
			n += h.Rows
		}
		return n == 20
	})
	waitFor(t, "the acks of the two parts", func() bool { return r.acks("svc", "cz") == 2 })

	reg := prometheus.NewRegistry()
	m := NewReconcileMetrics(reg, r.env.Names()...)
	log := slog.New(slog.DiscardHandler)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); r.env.RunReconcile(ctx, 100*time.Millisecond, 48*time.Hour, m, log) }()
	t.Cleanup(func() { cancel(); <-done })

	waitFor(t, "a first run", func() bool { return gauge(t, reg, "usagefleet_reconcile_last_run_timestamp_seconds", "cz") > 0 })
	waitFor(t, "the hook's run too", func() bool { return gauge(t, reg, "usagefleet_reconcile_last_run_timestamp_seconds", "hook") > 0 })
	if n := gauge(t, reg, "usagefleet_reconcile_units_out_of_balance", "cz"); n != 0 {
		t.Fatalf("a balanced fleet has %v units out of balance", n)
	}
	if n := gauge(t, reg, "usagefleet_reconcile_errors_total", "cz"); n != 0 {
		t.Fatalf("errors %v", n)
	}

	req, _ := http.NewRequest(http.MethodDelete, r.czURL+"/_sandbox/hours/"+czConn+"/"+h0.Format(time.RFC3339), nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("DELETE /_sandbox/hours: %v %v", resp, err)
	}
	resp.Body.Close()
	waitFor(t, "the lost unit to be out of balance", func() bool {
		return gauge(t, reg, "usagefleet_reconcile_units_out_of_balance", "cz") == 1
	})
	if n := gauge(t, reg, "usagefleet_reconcile_units_pending", "cz"); n != 0 {
		t.Fatalf("pending %v, want 0", n)
	}
}
