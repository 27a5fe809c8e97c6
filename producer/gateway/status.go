package gateway

import (
	"context"
	"time"

	"github.com/usagefleet/usagefleet/messages"
	"github.com/usagefleet/usagefleet/producer"
)

// snapshotWait is how long a status without ?wait reads the ACKS stream:
// it answers as soon as every destination has settled, else with what the
// acks stored by then say.
const snapshotWait = 500 * time.Millisecond

// BatchStatus is GET /v1/batches/{id}.
type BatchStatus struct {
	BatchID        string                      `json:"batch_id"`
	Source         string                      `json:"source"`
	Feed           string                      `json:"feed"`
	Records        int                         `json:"records"`
	Parts          int                         `json:"parts"`
	Cost           messages.Decimal            `json:"cost"`
	CostByCurrency map[string]messages.Decimal `json:"cost_by_currency"`
	Settled        bool                        `json:"settled"`
	Destinations   []DestinationStatus         `json:"destinations"`
}

// DestinationStatus is what one destination did with the batch, from its
// acks (producer.Wait).
type DestinationStatus struct {
	Name            string `json:"name"`
	Settled         bool   `json:"settled"`
	Parts           int    `json:"parts"`
	Delivered       int    `json:"delivered"`
	Rejected        int    `json:"rejected"`
	Dead            int    `json:"dead"`
	Superseded      int    `json:"superseded"`
	Records         int    `json:"records"`
	RejectedRecords int    `json:"rejected_records"`
	// Cost is the exact BilledCost delivered, per BillingCurrency ("" for
	// records without one), from the acks' costs. Cost in acks of a worker
	// that predates per-currency costs is under "*".
	Cost map[string]messages.Decimal `json:"cost"`
	// Reasons is every rejection reason with its records, most first
	// ("3 records: the reason"); ReasonCounts the same as a map.
	Reasons      []string       `json:"reasons,omitempty"`
	ReasonCounts map[string]int `json:"reason_counts,omitempty"`
	// Warnings counts delivered records whose labels the destination
	// repaired or dropped.
	Warnings int `json:"warnings,omitempty"`
}

func (g *Gateway) maxWait() time.Duration {
	if d := time.Duration(g.cfg.Limits.MaxWait); d > 0 {
		return d
	}
	return DefaultMaxWait
}

func parseWait(s string) (time.Duration, error) { return time.ParseDuration(s) }

func (g *Gateway) status(ctx context.Context, br *batchRecord, res *producer.Result, dests []string, wait time.Duration) *BatchStatus {
	st := &BatchStatus{BatchID: br.BatchID, Source: br.Source, Feed: br.Feed, Records: br.Records, Parts: len(br.Parts), Cost: br.Cost, CostByCurrency: br.CostByCurrency, Destinations: []DestinationStatus{}}
	if len(dests) == 0 {
		return st
	}
	wctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	sums, _ := g.prod.Wait(wctx, res, dests, nil)
	st.Settled = true
	for _, d := range dests {
		s := sums[d]
		if s == nil {
			s = &producer.Summary{Destination: d, Parts: len(res.Parts)}
		}
		ds := DestinationStatus{Name: d, Settled: s.Done(), Parts: s.Parts, Delivered: s.Delivered, Rejected: s.Rejected, Dead: s.Dead, Superseded: s.Superseded, Records: s.Records, RejectedRecords: s.RejectedRecords, Cost: map[string]messages.Decimal{}, Reasons: s.Reasons, ReasonCounts: s.ReasonCounts, Warnings: s.Warnings}
		for cur, d := range s.Costs {
			ds.Cost[cur] = d
		}
		st.Settled = st.Settled && ds.Settled
		st.Destinations = append(st.Destinations, ds)
	}
	return st
}
