package cloudzero

import (
	"context"
	"sort"
	"time"

	"github.com/usagefleet/usagefleet/internal/config"
	"github.com/usagefleet/usagefleet/messages"
	"github.com/usagefleet/usagefleet/workers"
)

// Destination delivers usage to one AnyCost Stream connection. Build it with
// New or through the configuration (`type: cloudzero`). It is safe for
// concurrent use; the pool never runs two of its jobs at once for one
// connection, since every unit has the connection id as lease key.
type Destination struct {
	name      string
	conn      string
	key       config.Secret // sent in Authorization only; never logged, traced or wrapped into errors
	endpoint  string
	mode      Mode
	maxBody   int
	timeout   time.Duration // stall_timeout
	stallKey  string        // the settings key timeout came from
	warnRows  int64
	warnBytes int64
	usage     *monthUsage
	repairs   *repairCounter
	// validateOnly: endpoint is validate_billing_drop (settings
	// validate_only); nothing is stored at CloudZero.
	validateOnly bool
	// leaseKey is the connection's identity (connectionLease), shared by
	// every destination name and URL of it.
	leaseKey string
	// currency, when set, is the only BillingCurrency the connection takes
	// (settings currency).
	currency string
	// deprecated are the notices of deprecated settings used.
	deprecated []string
	// advisories: settings valid but risky (no currency).
	advisories []string
}

var (
	_ workers.Destination = (*Destination)(nil)
	_ workers.Deprecated  = (*Destination)(nil)
)

// Deprecated implements workers.Deprecated.
func (d *Destination) Deprecated() []string { return d.deprecated }

// Advisories: see workers.Advisor.
func (d *Destination) Advisories() []string { return d.advisories }

// Name is the configured destination name.
func (d *Destination) Name() string { return d.name }

// Semantics is Replace in the replace modes and Append in sum mode.
func (d *Destination) Semantics() workers.Semantics {
	if d.mode == ModeSum {
		return workers.Append
	}
	return workers.Replace
}

// Units returns the unit a part stored for hour dirties: the hour itself
// (key "h2024-08-16T13") in replace_hourly and sum mode, its month (key
// "m2024-08") in replace_drop mode.
func (d *Destination) Units(hour time.Time) []workers.Unit {
	if d.mode == ModeReplaceDrop {
		return []workers.Unit{monthUnit(hour)}
	}
	return []workers.Unit{hourUnit(hour)}
}

// LeaseKey is the connection for every unit: the API serves one request at
// a time per stream, so the fleet uploads to a connection one job at a time.
// It is derived from the connection id alone (connectionLease), so two
// destination names, in one worker or in two workers with different
// configs, and every base URL or spelling of it take one lease; it starts
// with workers.FleetLeasePrefix, so the pool does not scope it by
// destination.
func (d *Destination) LeaseKey(workers.Unit) string { return d.leaseKey }

// Target is the connection's billing-drops endpoint: two destinations on
// one connection would replace each other's hours.
//
// A validate_only destination writes nothing, so its target is its own
// name: it may sit beside the real destination of the same connection.
func (d *Destination) Target() (string, string) {
	if d.validateOnly {
		return d.endpoint + "#" + d.name, "CloudZero validation for destination " + d.name
	}
	return d.endpoint, "CloudZero connection " + d.conn
}

// ValidateOnly reports whether the destination only validates (settings
// validate_only): its requests go to validate_billing_drop and CloudZero
// stores nothing.
func (d *Destination) ValidateOnly() bool { return d.validateOnly }

// EncodeRow is AppendRow: the pool encodes rows ahead of delivery. What it
// repairs is counted (Repairs, the metric usagefleet.cloudzero.repairs).
func (d *Destination) EncodeRow(dst []byte, r *messages.UsageRecord) ([]byte, error) {
	dst, _, err := d.EncodeRowWarnings(dst, r)
	return dst, err
}

// EncodeRowWarnings is EncodeRow that also says how many warnings the
// record's ack should count: 1 when a label was repaired or dropped
// (Repairs), else 0. A runtime that carries warnings in acks calls it
// instead of EncodeRow and sums the result per part.
func (d *Destination) EncodeRowWarnings(dst []byte, r *messages.UsageRecord) ([]byte, int, error) {
	if d.currency != "" && r.BillingCurrency != "" && r.BillingCurrency != d.currency {
		return dst, 0, &RowError{Column: "cost/cost", Reason: "billed in " + r.BillingCurrency + ", and this connection takes " + d.currency +
			" (settings.currency): CBF has no currency column, so the cost would be counted as " + d.currency}
	}
	dst, rep, err := AppendRowRepaired(dst, r)
	if err != nil || !rep.Any() {
		return dst, 0, err
	}
	d.countRepairs(rep)
	return dst, 1, nil
}

// Deliver uploads the job; see the package doc for the sequence of
// requests and what each failure does.
func (d *Destination) Deliver(ctx context.Context, job workers.Job) error {
	if d.mode == ModeSum {
		return d.deliverSum(ctx, job)
	}
	return d.deliverReplace(ctx, job)
}

func hourUnit(t time.Time) workers.Unit {
	h := t.UTC().Truncate(time.Hour)
	return workers.Unit{Key: "h" + h.Format("2006-01-02T15"), Start: h, End: h.Add(time.Hour)}
}

func monthUnit(t time.Time) workers.Unit {
	m := monthOf(t)
	return workers.Unit{Key: "m" + m.Format("2006-01"), Start: m, End: m.AddDate(0, 1, 0)}
}

// monthOf is the first instant of t's UTC month.
func monthOf(t time.Time) time.Time {
	y, m, _ := t.UTC().Date()
	return time.Date(y, m, 1, 0, 0, 0, 0, time.UTC)
}

// deliverReplace walks the job's units month by month, in time order.
func (d *Destination) deliverReplace(ctx context.Context, job workers.Job) error {
	units := append([]workers.Unit(nil), job.Units()...)
	// In time order; a month before the hours it contains, so that hours
	// left dirty under another mode replace their part of it afterwards.
	sort.SliceStable(units, func(i, j int) bool {
		if !units[i].Start.Equal(units[j].Start) {
			return units[i].Start.Before(units[j].Start)
		}
		return units[i].End.After(units[j].End)
	})
	p := newPacker(d, job)
	defer p.release()
	for i := 0; i < len(units); {
		month := monthOf(units[i].Start)
		j := i
		for j < len(units) && monthOf(units[j].Start).Equal(month) {
			j++
		}
		if err := p.replaceMonth(ctx, month, units[i:j]); err != nil {
			return err
		}
		i = j
	}
	return nil
}

// deliverSum appends the part's records with sum, one month per request.
func (d *Destination) deliverSum(ctx context.Context, job workers.Job) error {
	p := newPacker(d, job)
	defer p.release()
	return p.sumPart(ctx)
}
