package ops

import (
	"context"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// ReconcileMetrics are the gauges of the worker's scheduled reconciliation
// (worker.reconcile), one series per destination. An alert on
// usagefleet_reconcile_units_out_of_balance > 0 is the "does every
// destination hold exactly what was published" question asked every hour.
type ReconcileMetrics struct {
	outOfBalance *prometheus.GaugeVec
	pending      *prometheus.GaugeVec
	lastRun      *prometheus.GaugeVec
	errors       *prometheus.CounterVec
}

// NewReconcileMetrics registers the gauges on reg; the error counters of
// dests exist (at 0) from the start.
func NewReconcileMetrics(reg prometheus.Registerer, dests ...string) *ReconcileMetrics {
	m := &ReconcileMetrics{
		outOfBalance: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "usagefleet_reconcile_units_out_of_balance", Help: "Units of the last scheduled reconciliation whose published, acknowledged and held totals differ (a mismatch)."}, []string{"destination"}),
		pending:      prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "usagefleet_reconcile_units_pending", Help: "Units of the last scheduled reconciliation with parts not acknowledged yet."}, []string{"destination"}),
		lastRun:      prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "usagefleet_reconcile_last_run_timestamp_seconds", Help: "When the last scheduled reconciliation of the destination completed (Unix seconds)."}, []string{"destination"}),
		errors:       prometheus.NewCounterVec(prometheus.CounterOpts{Name: "usagefleet_reconcile_errors_total", Help: "Scheduled reconciliations that could not complete (the stream, ACKS or the destination's API could not be read)."}, []string{"destination"}),
	}
	reg.MustRegister(m.outOfBalance, m.pending, m.lastRun, m.errors)
	for _, d := range dests {
		m.errors.WithLabelValues(d)
	}
	return m
}

// ReconcileOnce reconciles every destination over the window of usage
// hours that ends now, and sets the gauges. A destination whose
// reconciliation fails counts an error and keeps its last gauges.
func (env *Env) ReconcileOnce(ctx context.Context, window time.Duration, m *ReconcileMetrics, log *slog.Logger) {
	to := time.Now().UTC()
	from := to.Add(-window)
	for _, d := range env.Dests {
		r, err := env.Reconcile(ctx, d.Name, from, to)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			m.errors.WithLabelValues(d.Name).Inc()
			log.Warn("scheduled reconciliation failed", "destination", d.Name, "err", err)
			continue
		}
		m.outOfBalance.WithLabelValues(d.Name).Set(float64(r.Mismatches))
		m.pending.WithLabelValues(d.Name).Set(float64(r.Pending))
		m.lastRun.WithLabelValues(d.Name).Set(float64(time.Now().Unix()))
		if r.Mismatches > 0 {
			var units []string
			for _, u := range r.Units {
				if u.Status == "mismatch" {
					units = append(units, u.Unit+": "+u.Problem)
				}
			}
			log.Error("RECONCILIATION MISMATCH: a destination does not hold what was published; usage-worker reconcile shows the units", "destination", d.Name, "units_out_of_balance", r.Mismatches, "units", units, "from", from, "to", to)
		}
	}
}

// RunReconcile reconciles every destination each every, over window,
// until ctx ends. The first run comes after min(every, 5m): a worker that
// just started has units still flushing (they would show as pending, not
// as a mismatch, but there is no hurry).
func (env *Env) RunReconcile(ctx context.Context, every, window time.Duration, m *ReconcileMetrics, log *slog.Logger) {
	next := min(every, 5*time.Minute)
	for {
		t := time.NewTimer(next)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		env.ReconcileOnce(ctx, window, m, log)
		next = every
	}
}
