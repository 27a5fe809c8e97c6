package gateway

import (
	"bytes"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

func benchBody(n int) []byte {
	var b bytes.Buffer
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, `{"ChargePeriodStart":"2026-03-01T10:%02d:00Z","ChargePeriodEnd":"2026-03-01T10:59:59Z","BillingAccountId":"acct-%d","SubAccountId":"sub-%d","ProviderName":"Example","ServiceName":"Compute","ChargeCategory":"Usage","SkuId":"sku-%d","ResourceId":"res-%d","RegionId":"eu-west-1","ConsumedQuantity":"%d.25","ConsumedUnit":"Hours","PricingQuantity":"%d","PricingUnit":"Hours","BilledCost":"0.%04d","EffectiveCost":"0.%04d","BillingCurrency":"USD","Tags":{"team":"t%d","env":"prod"}}`+"\n",
			i%60, i%50, i%20, i%40, i, i%9, i%9+1, i%10000, i%10000, i%7)
	}
	return b.Bytes()
}

// BenchmarkDecodeNDJSON: the request decoder alone, 1,000 records.
func BenchmarkDecodeNDJSON(b *testing.B) {
	body := benchBody(1000)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		var errs problems
		recs, _ := decodeNDJSON(body, 1<<20, &errs)
		if len(recs) != 1000 || len(errs.list) > 0 {
			b.Fatal(errs.list)
		}
	}
	b.ReportMetric(float64(b.N*1000)/b.Elapsed().Seconds(), "records/s")
}

// BenchmarkUsageBatched: POST /v1/usage with 1,000 NDJSON records through
// the handler into the embedded JetStream (stored before it answers).
func BenchmarkUsageBatched(b *testing.B) {
	e := startB(b)
	h := e.gw.Handler(nil)
	body := benchBody(1000)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	b.SetParallelism(2)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			benchPost(b, h, body)
		}
	})
	b.ReportMetric(float64(b.N*1000)/b.Elapsed().Seconds(), "records/s")
}
func benchPost(b *testing.B, h http.Handler, body []byte) {
	req := httptest.NewRequest("POST", "/v1/usage", bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+testKey)
	req.Header.Set("Content-Type", "application/x-ndjson")
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	if w.Code != 200 {
		b.Fatal(w.Code, w.Body.String())
	}
}

// BenchmarkEventSingle: POST /v1/events, one structured event per request
// from 64 concurrent callers, through the handler and the linger groups
// into the embedded JetStream (each answered once its part is stored).
func BenchmarkEventSingle(b *testing.B) {
	e := startB(b)
	h := e.gw.Handler(nil)
	var n atomic.Int64
	b.ReportAllocs()
	b.SetParallelism(32)
	cpu0 := processCPU()
	b.RunParallel(func(pb *testing.PB) {
		var body []byte
		for pb.Next() {
			i := n.Add(1)
			body = fmt.Appendf(body[:0], `{"specversion":"1.0","id":"b-%d","source":"/bench","type":"usage","time":"2026-03-01T10:00:00Z","data":{"BillingAccountId":"acct-1","SkuId":"sku-1","ConsumedQuantity":"1","ConsumedUnit":"Requests","BilledCost":"0.001","BillingCurrency":"USD"}}`, i)
			req := httptest.NewRequest("POST", "/v1/events", bytes.NewReader(body))
			req.Header.Set("Authorization", "Bearer "+testKey)
			req.Header.Set("Content-Type", "application/cloudevents+json")
			w := httptest.NewRecorder()
			h.ServeHTTP(w, req)
			if w.Code != 200 {
				b.Fatal(w.Code, w.Body.String())
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "requests/s")
	b.ReportMetric(float64((processCPU()-cpu0).Microseconds())/float64(b.N), "cpu-µs/op")
}

// processCPU is this process's user and system CPU so far.
func processCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
