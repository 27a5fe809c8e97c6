package conformance_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/usagefleet/usagefleet/internal/sandbox/fault"
	"github.com/usagefleet/usagefleet/messages"
	"github.com/usagefleet/usagefleet/workers"
	"github.com/usagefleet/usagefleet/workers/conformance"
)

// The suite checks itself (and the pool's replace path) against a minimal
// replace API: PUT /units/<hour> with a JSON array replaces that hour.

type refServer struct {
	mu         sync.Mutex
	units      map[string][]messages.UsageRecord
	token      string
	inflight   int
	violations int
	faults     *fault.Injector
	log        []conformance.Request
}

// statusWriter remembers the status answered.
type statusWriter struct {
	http.ResponseWriter
	code int
}

func (sw *statusWriter) WriteHeader(code int) {
	if sw.code == 0 {
		sw.code = code
	}
	sw.ResponseWriter.WriteHeader(code)
}

func (sw *statusWriter) Write(b []byte) (int, error) {
	if sw.code == 0 {
		sw.code = http.StatusOK
	}
	return sw.ResponseWriter.Write(b)
}

func (s *refServer) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	w := &statusWriter{ResponseWriter: rw}
	began := time.Now()
	defer func() {
		s.mu.Lock()
		s.log = append(s.log, conformance.Request{Start: began, Status: w.code})
		s.mu.Unlock()
	}()
	f := s.faults.Pick(r)
	body := func(code int, msg string) []byte { return []byte(`{"message":"` + msg + `"}`) }
	if fault.Before(w, r, f, body) {
		return
	}
	s.mu.Lock()
	if r.Header.Get("Authorization") != "Bearer "+s.token {
		s.mu.Unlock()
		http.Error(w, `{"message":"forbidden"}`, http.StatusForbidden)
		return
	}
	s.inflight++
	if s.inflight > 1 {
		s.violations++
	}
	s.mu.Unlock()
	defer func() { s.mu.Lock(); s.inflight--; s.mu.Unlock() }()
	time.Sleep(time.Millisecond)
	var recs []messages.UsageRecord
	if err := json.NewDecoder(r.Body).Decode(&recs); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	key := strings.TrimPrefix(r.URL.Path, "/units/")
	s.mu.Lock()
	s.units[key] = recs
	s.mu.Unlock()
	if fault.After(w, f, body) {
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

type refDest struct {
	name, url string
}

func (d *refDest) Name() string                 { return d.name }
func (d *refDest) Semantics() workers.Semantics { return workers.Replace }
func (d *refDest) Units(h time.Time) []workers.Unit {
	return []workers.Unit{{Key: "h" + h.Format("2006-01-02T15"), Start: h, End: h.Add(time.Hour)}}
}
func (d *refDest) LeaseKey(workers.Unit) string { return "one-connection" }
func (d *refDest) Deliver(ctx context.Context, job workers.Job) error {
	for _, u := range job.Units() {
		var buf bytes.Buffer
		buf.WriteByte('[')
		n := 0
		err := job.Records(ctx, u, func(_ workers.RecordRef, r *messages.UsageRecord) error {
			if n > 0 {
				buf.WriteByte(',')
			}
			n++
			buf.Write(r.AppendJSON(nil))
			return nil
		})
		if err != nil {
			return err
		}
		buf.WriteByte(']')
		req, _ := http.NewRequestWithContext(ctx, http.MethodPut, d.url+"/units/"+u.Key, bytes.NewReader(buf.Bytes()))
		req.Header.Set("Authorization", "Bearer tok")
		resp, err := job.Do(ctx, req)
		if err != nil {
			return err
		}
		msg, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err := workers.Classify(resp.StatusCode, resp.Header, string(msg)); err != nil {
			return err
		}
		job.Done(u)
	}
	return nil
}

type refSandbox struct {
	s   *refServer
	url string
}

func (r *refSandbox) Destination(t *testing.T, name string) workers.Destination {
	return &refDest{name: name, url: r.url}
}

func (r *refSandbox) Totals(t *testing.T) map[string]conformance.Totals {
	r.s.mu.Lock()
	defer r.s.mu.Unlock()
	out := map[string]conformance.Totals{}
	for k, recs := range r.s.units {
		var c, q messages.Sum
		for i := range recs {
			c.Add(recs[i].BilledCost)
			q.Add(recs[i].ConsumedQuantity)
		}
		out[k] = conformance.Totals{Records: len(recs), Cost: c.Decimal(), Quantity: q.Decimal()}
	}
	return out
}

func (r *refSandbox) UnitOf(rec *messages.UsageRecord) string {
	return "h" + rec.ChargePeriodStart.UTC().Format("2006-01-02T15")
}
func (r *refSandbox) Faults() *fault.Injector { return r.s.faults }
func (r *refSandbox) SetAuth(valid bool) {
	r.s.mu.Lock()
	defer r.s.mu.Unlock()
	r.s.token = map[bool]string{true: "tok", false: "revoked"}[valid]
}
func (r *refSandbox) ConcurrencyViolations() int {
	r.s.mu.Lock()
	defer r.s.mu.Unlock()
	return r.s.violations
}
func (r *refSandbox) RequestLog() []conformance.Request {
	r.s.mu.Lock()
	defer r.s.mu.Unlock()
	return append([]conformance.Request(nil), r.s.log...)
}

func TestReferenceDestinationConforms(t *testing.T) {
	conformance.Run(t, conformance.Harness{
		Start: func(t *testing.T) conformance.Sandbox {
			s := &refServer{units: map[string][]messages.UsageRecord{}, token: "tok", faults: fault.New(1)}
			srv := httptest.NewServer(s)
			t.Cleanup(srv.Close)
			return &refSandbox{s: s, url: srv.URL}
		},
	})
}

// A destination that forgets nothing is not enough: the suite must fail a
// destination that loses data. This one drops the last record of each unit.
func TestSuiteCatchesALossyDestination(t *testing.T) {
	s := &refServer{units: map[string][]messages.UsageRecord{}, token: "tok", faults: fault.New(1)}
	srv := httptest.NewServer(s)
	defer srv.Close()
	sb := &refSandbox{s: s, url: srv.URL}
	e := conformance.NewEnv(t, conformance.Harness{Start: func(*testing.T) conformance.Sandbox { return sb }})
	e.Publish("x", []messages.UsageRecord{rec(0, "1.5"), rec(1, "2.25")}, 10)
	s.mu.Lock()
	s.units["h2024-08-30T00"] = []messages.UsageRecord{rec(0, "1.5")}
	s.mu.Unlock()
	want := e.Expected()
	if d := conformance.Diff(want, sb.Totals(t)); !strings.Contains(d, "want 2 records cost 3.75") {
		t.Fatalf("the suite's comparison missed a lost record: %q", d)
	}
}

func rec(min int, cost string) messages.UsageRecord {
	return messages.UsageRecord{ChargePeriodStart: time.Date(2024, 8, 30, 0, min, 0, 0, time.UTC), BilledCost: messages.MustDecimal(cost), BillingCurrency: "USD", ConsumedQuantity: messages.MustDecimal("1"), ConsumedUnit: "h"}
}

var _ = fmt.Sprint
