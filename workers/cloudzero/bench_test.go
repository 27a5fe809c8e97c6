package cloudzero

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/usagefleet/usagefleet/messages"
	"github.com/usagefleet/usagefleet/workers"
)

// go test -run '^$' -bench . -benchmem ./workers/cloudzero/

func BenchmarkAppendRow(b *testing.B) {
	recs := variedRecords(1024)
	buf := make([]byte, 0, 1<<20)
	var bytes int
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		r := &recs[n%len(recs)]
		if n%len(recs) == 0 {
			buf = buf[:0]
		}
		before := len(buf)
		var err error
		if buf, err = AppendRow(buf, r); err != nil {
			b.Fatal(err)
		}
		bytes += len(buf) - before
		n++
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "records/s")
	b.ReportMetric(float64(bytes)/float64(n), "B/row")
}

// benchJob serves a month of records indexed by hour and answers every
// request 200 in memory: it measures mapping, packing and body building.
type benchJob struct {
	units  []workers.Unit
	byHour map[time.Time][]messages.UsageRecord
	reqs   int
	bytes  int64
}

func (j *benchJob) Units() []workers.Unit                                   { return j.units }
func (j *benchJob) Reject(workers.RecordRef, *messages.UsageRecord, string) { panic("reject") }
func (j *benchJob) RejectUnit(workers.Unit, string)                         { panic("reject unit") }
func (j *benchJob) Done(workers.Unit)                                       {}
func (j *benchJob) Covered() uint64                                         { return 1 }
func (j *benchJob) Attempt() int                                            { return 0 }
func (j *benchJob) IdempotencyKey(string, int, []byte) string               { return "k" }
func (j *benchJob) Log() *slog.Logger                                       { return slog.New(slog.DiscardHandler) }

func (j *benchJob) Records(_ context.Context, u workers.Unit, fn func(workers.RecordRef, *messages.UsageRecord) error) error {
	recs := j.byHour[u.Start]
	for i := range recs {
		if err := fn(workers.RecordRef{Seq: 1, Index: i}, &recs[i]); err != nil {
			return err
		}
	}
	return nil
}

func (j *benchJob) Do(_ context.Context, req *http.Request) (*http.Response, error) {
	n, err := io.Copy(io.Discard, req.Body)
	_ = req.Body.Close()
	if err != nil {
		return nil, err
	}
	j.reqs++
	j.bytes += n
	return &http.Response{StatusCode: 200, Header: http.Header{}, Body: io.NopCloser(strings.NewReader(`{}`)), Request: req}, nil
}

// BenchmarkPackMonth packs a 30-day month of 100 varied records an hour
// (72,000 records, ~35 MB of rows) into replace_hourly bodies of 5 MB.
func BenchmarkPackMonth(b *testing.B) {
	const perHour = 100
	d, err := New("cz", Settings{BaseURL: "http://127.0.0.1:1", ConnectionID: testConn, APIKey: newSecret()})
	if err != nil {
		b.Fatal(err)
	}
	j := &benchJob{byHour: map[time.Time][]messages.UsageRecord{}}
	proto := variedRecords(perHour)
	for h := 0; h < 30*24; h++ {
		hour := time.Date(2024, 8, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(h) * time.Hour)
		j.units = append(j.units, hourUnit(hour))
		recs := make([]messages.UsageRecord, perHour)
		for i := range recs {
			recs[i] = proto[i]
			recs[i].ChargePeriodStart = hour.Add(time.Duration(i) * time.Second)
			recs[i].ChargePeriodEnd = recs[i].ChargePeriodStart.Add(time.Hour)
		}
		j.byHour[hour] = recs
	}
	records := 0
	b.ReportAllocs()
	for b.Loop() {
		j.reqs, j.bytes = 0, 0
		if err := d.Deliver(context.Background(), j); err != nil {
			b.Fatal(err)
		}
		records += 30 * 24 * perHour
	}
	b.SetBytes(j.bytes)
	b.ReportMetric(float64(records)/b.Elapsed().Seconds(), "records/s")
	b.ReportMetric(float64(j.reqs), "requests/month")
}

func (j *benchJob) EncodedRecords(ctx context.Context, u workers.Unit, fn func(workers.RecordRef, *messages.UsageRecord, []byte, error) error) error {
	return workers.EncodeEach(ctx, j.Records, u, AppendRow, fn)
}
