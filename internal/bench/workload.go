package bench

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/usagefleet/usagefleet/internal/usagegen"
	"github.com/usagefleet/usagefleet/messages"
	"github.com/usagefleet/usagefleet/producer"
)

// templates is how many distinct one-hour batches the records are made
// of; batch b is template b%templates shifted to its hour.
const templates = 16

// workload is what the bench publishes and expects to arrive.
type workload struct {
	tmpl        [][]messages.UsageRecord
	batches     int
	wantRecords int
	wantCost    map[string]*messages.Sum // per BillingCurrency
}

// wantTotal is the cost summed over every currency (CloudZero's CBF
// carries none).
func (w *workload) wantTotal() messages.Decimal {
	var t messages.Sum
	for _, s := range w.wantCost {
		t.AddSum(*s)
	}
	return t.Decimal()
}

func newWorkload(o Options) *workload {
	base := time.Date(2024, 7, 1, 0, 0, 0, 0, time.UTC)
	w := &workload{tmpl: make([][]messages.UsageRecord, templates), wantCost: map[string]*messages.Sum{}}
	sum := func(m map[string]*messages.Sum, r *messages.UsageRecord) {
		if m[r.BillingCurrency] == nil {
			m[r.BillingCurrency] = &messages.Sum{}
		}
		m[r.BillingCurrency].Add(r.BilledCost)
	}
	for i := range w.tmpl {
		w.tmpl[i] = usagegen.Generate(o.BatchSize, usagegen.Options{Seed: uint64(i + 1), Start: base, Hours: 1})
	}
	w.batches = (o.Records + o.BatchSize - 1) / o.BatchSize
	// Batch b is template b%templates: whole batches are summed once per
	// template and added as often as it is used, then the last partial one.
	full := o.Records / o.BatchSize
	for t := range templates {
		times := full / templates
		if t < full%templates {
			times++
		}
		if times == 0 {
			continue
		}
		one := map[string]*messages.Sum{}
		for k := range w.tmpl[t] {
			sum(one, &w.tmpl[t][k])
		}
		for cur, s := range one {
			if w.wantCost[cur] == nil {
				w.wantCost[cur] = &messages.Sum{}
			}
			for range times {
				w.wantCost[cur].AddSum(*s)
			}
		}
	}
	if rest := o.Records % o.BatchSize; rest > 0 {
		for k := range rest {
			sum(w.wantCost, &w.tmpl[full%templates][k])
		}
	}
	w.wantRecords = o.Records
	return w
}

// batch fills buf with batch b's records and returns them.
func (w *workload) batch(o Options, b int, buf []messages.UsageRecord) []messages.UsageRecord {
	n := min(o.BatchSize, o.Records-b*o.BatchSize)
	src := w.tmpl[b%templates]
	shift := time.Duration(b%o.Hours) * time.Hour
	for k := 0; k < n; k++ {
		buf[k] = src[k]
		buf[k].ChargePeriodStart = src[k].ChargePeriodStart.Add(shift)
		buf[k].ChargePeriodEnd = src[k].ChargePeriodEnd.Add(shift)
	}
	return buf[:n]
}

// publish publishes the workload with o.Publishers concurrent publishers
// and records the rate. Batch ids carry a tag of their own per publish, so
// a run after a purge is stored again, not deduplicated.
func publish(ctx context.Context, nc *nats.Conn, o Options, w *workload, res *Result) error {
	prod, err := producer.New(nc, producer.Options{MaxInFlight: 512})
	if err != nil {
		return err
	}
	if o.CPUProfile != "" && o.Mode == "publish" {
		stop, err := startCPUProfile(profilePath(o.CPUProfile, res.Run, o.Runs))
		if err != nil {
			return err
		}
		defer stop()
	}
	tag := "bench-" + strconv.FormatInt(time.Now().UnixNano(), 36) + "-"
	cpu0 := cpuSeconds()
	start := time.Now()
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, o.Publishers)
	for range o.Publishers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]messages.UsageRecord, o.BatchSize)
			for {
				b := int(next.Add(1) - 1)
				if b >= w.batches {
					return
				}
				recs := w.batch(o, b, buf)
				if _, err := prod.Publish(ctx, &messages.Batch{ID: tag + strconv.Itoa(b), Feed: feed, Source: "bench", Records: recs}); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return fmt.Errorf("publish: %w", err)
	}
	res.PublishSeconds = time.Since(start).Seconds()
	res.PublishRate = float64(o.Records) / res.PublishSeconds
	res.PublishCPUPerMil = (cpuSeconds() - cpu0) / float64(o.Records) * 1e6
	return nil
}
