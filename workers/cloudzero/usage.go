package cloudzero

import (
	"context"
	"sort"
	"sync"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// An AnyCost Stream holds at most MonthRowLimit rows and MonthByteLimit
// bytes per month [DOC]; past that the API refuses the upload. The
// destination keeps what it knows each month holds (from the uploads this
// process made: per hour in replace_hourly mode, per month otherwise),
// publishes it as gauges and warns when a month passes month_warn_fraction
// of either limit, so an operator can act before data is refused.

var (
	meter          = otel.Meter("usagefleet/workers/cloudzero")
	monthRowsGauge = mustGauge(meter.Int64Gauge("usagefleet.cloudzero.month.rows",
		metric.WithDescription("Rows a CloudZero connection holds for a month, as far as this process uploaded them (the stream allows 1,000,000)"),
		metric.WithUnit("{row}")))
	monthBytesGauge = mustGauge(meter.Int64Gauge("usagefleet.cloudzero.month.bytes",
		metric.WithDescription("Row bytes a CloudZero connection holds for a month, as far as this process uploaded them (the stream allows 70 MB)"),
		metric.WithUnit("By")))
)

func mustGauge(g metric.Int64Gauge, err error) metric.Int64Gauge {
	if err != nil {
		panic(err) // only for an invalid instrument name
	}
	return g
}

// keepMonths bounds the months remembered.
const keepMonths = 36

type count struct{ rows, bytes int64 }

// monthUsage is what each month holds, by bucket: an hour (replace_hourly)
// or the month's first instant (replace_drop, sum).
type monthUsage struct {
	mu     sync.Mutex
	months map[time.Time]map[time.Time]count
}

func newMonthUsage() *monthUsage { return &monthUsage{months: map[time.Time]map[time.Time]count{}} }

// update applies fn to month's buckets and returns the month's total.
func (u *monthUsage) update(month time.Time, fn func(b map[time.Time]count)) count {
	u.mu.Lock()
	defer u.mu.Unlock()
	b := u.months[month]
	if b == nil {
		b = map[time.Time]count{}
		u.months[month] = b
		if len(u.months) > keepMonths {
			ms := make([]time.Time, 0, len(u.months))
			for m := range u.months {
				ms = append(ms, m)
			}
			sort.Slice(ms, func(i, j int) bool { return ms[i].Before(ms[j]) })
			for _, m := range ms[:len(ms)-keepMonths] {
				delete(u.months, m)
			}
		}
	}
	fn(b)
	var t count
	for _, c := range b {
		t.rows += c.rows
		t.bytes += c.bytes
	}
	return t
}

func (u *monthUsage) total(month time.Time) count {
	u.mu.Lock()
	defer u.mu.Unlock()
	var t count
	for _, c := range u.months[month] {
		t.rows += c.rows
		t.bytes += c.bytes
	}
	return t
}

// MonthUsage returns the rows and row bytes this process knows the
// connection holds for the UTC month containing month.
func (d *Destination) MonthUsage(month time.Time) (rows, bytes int64) {
	t := d.usage.total(monthOf(month))
	return t.rows, t.bytes
}

// recordUsage folds the month just delivered into the counts, records the
// gauges and warns when the month nears a limit.
func (p *packer) recordUsage(ctx context.Context) {
	d := p.d
	if d.validateOnly {
		return // validation stores nothing: the month holds what it held
	}
	t := d.usage.update(p.month, func(b map[time.Time]count) {
		for _, s := range p.segs {
			if !s.held {
				continue
			}
			c := count{s.rows, s.bytes}
			switch d.mode {
			case ModeReplaceHourly:
				b[s.unit.Start] = c
			case ModeReplaceDrop:
				clear(b)
				b[p.month] = c
			default: // sum adds
				old := b[p.month]
				b[p.month] = count{old.rows + c.rows, old.bytes + c.bytes}
			}
		}
	})
	month := p.month.Format("2006-01")
	attrs := metric.WithAttributes(attribute.String("destination", d.name),
		attribute.String("connection", d.conn), attribute.String("month", month))
	monthRowsGauge.Record(ctx, t.rows, attrs)
	monthBytesGauge.Record(ctx, t.bytes, attrs)
	if t.rows >= d.warnRows || t.bytes >= d.warnBytes {
		p.job.Log().Warn("cloudzero: month nearing the AnyCost Stream limits; uploads past them are refused",
			"month", month, "rows", t.rows, "row_limit", MonthRowLimit, "bytes", t.bytes, "byte_limit", MonthByteLimit)
	}
}

// repairsCounter counts every label repair (Repairs) a destination made
// while encoding rows, by kind: "tag_key_rewritten", "tag_dropped". A
// record encoded again (a retried job) is counted again.
var repairsCounter = mustCounter(meter.Int64Counter("usagefleet.cloudzero.repairs",
	metric.WithDescription("Labels CloudZero cannot take that were repaired or dropped while the record's cost was delivered"),
	metric.WithUnit("{repair}")))

func mustCounter(c metric.Int64Counter, err error) metric.Int64Counter {
	if err != nil {
		panic(err) // only for an invalid instrument name
	}
	return c
}

// repairCounter is the destination's running total of Repairs.
type repairCounter struct {
	mu  sync.Mutex
	sum Repairs
	rec int64
}

func (d *Destination) countRepairs(rep Repairs) {
	d.repairs.mu.Lock()
	d.repairs.sum = d.repairs.sum.Add(rep)
	d.repairs.rec++
	d.repairs.mu.Unlock()
	ctx := context.Background()
	if rep.TagKeysRewritten > 0 {
		repairsCounter.Add(ctx, int64(rep.TagKeysRewritten), metric.WithAttributes(
			attribute.String("destination", d.name), attribute.String("kind", "tag_key_rewritten")))
	}
	if rep.TagsDropped > 0 {
		repairsCounter.Add(ctx, int64(rep.TagsDropped), metric.WithAttributes(
			attribute.String("destination", d.name), attribute.String("kind", "tag_dropped")))
	}
}

// Repairs returns what this destination has repaired so far and in how
// many records (each encoding counts: a retried job counts again).
func (d *Destination) Repairs() (Repairs, int64) {
	d.repairs.mu.Lock()
	defer d.repairs.mu.Unlock()
	return d.repairs.sum, d.repairs.rec
}
