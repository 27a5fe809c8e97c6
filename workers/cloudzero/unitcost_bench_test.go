package cloudzero_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/usagefleet/usagefleet/internal/broker/natstest"
	"github.com/usagefleet/usagefleet/internal/config"
	sbcz "github.com/usagefleet/usagefleet/internal/sandbox/cloudzero"
	"github.com/usagefleet/usagefleet/internal/usagegen"
	"github.com/usagefleet/usagefleet/messages"
	"github.com/usagefleet/usagefleet/producer"
	"github.com/usagefleet/usagefleet/workers"
	"github.com/usagefleet/usagefleet/workers/cloudzero"
)

// BenchmarkUnitArrival measures the cost of one unit (an hour of 1,000
// records) delivered end to end, when its records arrive as one batch and
// as 100 batches of 10 published back to back. The rebuild design must not
// make many small arrivals quadratic: compare the two ns/op.
//
//	go test ./workers/cloudzero -run XXX -bench UnitArrival -benchtime 20x -count 3
//
// Measured (2 cores): one batch 36.5 ms per unit, 100 batches 45.5 ms per
// unit (medians of 3): 1.25x, one rebuild job per unit in both cases. The
// flush policy is what bounds it: batches arriving within the quiet period
// or max delay of each other share one rebuild; data trickling in over a
// longer span costs one rebuild per max_delay of that span.
func BenchmarkUnitArrival(b *testing.B) {
	for _, batches := range []int{1, 100} {
		b.Run(fmt.Sprintf("batches=%d", batches), func(b *testing.B) {
			ns := natstest.Start(b)
			const conn, key = "bench", "bench-key"
			sb := sbcz.New(sbcz.Config{Connections: map[string]string{conn: key}, Counting: true})
			srv := httptest.NewServer(sb.Handler())
			defer srv.Close()
			dest, err := cloudzero.New("cz", cloudzero.Settings{BaseURL: srv.URL, ConnectionID: conn, APIKey: config.NewSecret(key)})
			if err != nil {
				b.Fatal(err)
			}
			pool, err := workers.NewPool(ns.Connect(b), dest, workers.Options{Feeds: []string{"u"}, LeaseTTL: natstest.LeaseTTL, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
				Flush: workers.FlushPolicy{MaxDelay: 200 * time.Millisecond, Quiet: 20 * time.Millisecond}})
			if err != nil {
				b.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() { pool.Run(ctx); close(done) }()
			defer func() { cancel(); <-done }()
			prod, _ := producer.New(ns.Connect(b), producer.Options{})
			base := time.Date(2024, 5, 1, 0, 0, 0, 0, time.UTC)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				hour := base.Add(time.Duration(i) * time.Hour)
				recs := usagegen.Generate(1000, usagegen.Options{Seed: uint64(i + 1), Start: hour, Hours: 1})
				per := len(recs) / batches
				for k := 0; k < batches; k++ {
					if _, err := prod.Publish(ctx, &messages.Batch{ID: fmt.Sprintf("u%d-%d-%d", batches, i, k), Feed: "u", Source: "bench", Records: recs[k*per : (k+1)*per]}); err != nil {
						b.Fatal(err)
					}
				}
				for sb.Hours(conn)[hour].Rows < 1000 {
					time.Sleep(time.Millisecond)
				}
			}
			b.StopTimer()
			st := pool.Stats()
			b.ReportMetric(float64(st.Jobs)/float64(b.N), "jobs/unit")
			b.ReportMetric(float64(st.Requests)/float64(b.N), "requests/unit")
		})
	}
}
