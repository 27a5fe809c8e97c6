// Package workerstest is the fake workers.Job the destinations' unit tests
// share: records served from memory, every Reject, RejectUnit and Done
// written down, requests sent with a plain http.Client over loopback (or a
// function of the test's). It tests a destination's delivery mechanics
// without NATS; the pool's own Job is tested end to end against the
// embedded nats-server.
package workerstest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/usagefleet/usagefleet/messages"
	"github.com/usagefleet/usagefleet/workers"
)

// Rejection is one record refused through Job.Reject.
type Rejection struct {
	Ref    workers.RecordRef
	Rec    messages.UsageRecord // a copy
	Reason string
}

// Sent is one request body Do sent (KeepBodies).
type Sent struct {
	Label string // Job.Label of the body
	Body  []byte
}

// Job is a workers.Job over Recs. Set its fields before the delivery; read
// what it wrote down after Deliver returned.
type Job struct {
	UnitList []workers.Unit         // Units()
	Recs     []messages.UsageRecord // must not change once Records was called
	Append   bool                   // an Append job: Records passes every record, whatever the unit
	Try      int                    // Attempt()
	Seq      uint64                 // Covered()
	// FailAt makes Records fail with a transient error, as a rebuild that
	// loses the stream, after this many records of a unit (0: never).
	FailAt int
	// Client sends the requests; Send, when set, is used instead (an
	// in-memory answer).
	Client *http.Client
	Send   func(*http.Request) (*http.Response, error)
	// KeepBodies makes Do read every body whole and keep it in Sent before
	// sending it; otherwise the body streams to the server as it is.
	KeepBodies bool
	// Label names a kept body in Sent (CloudZero's operation).
	Label func(body []byte) string
	// Encode is the destination's EncodeRow, for EncodedRecords.
	Encode func(dst []byte, r *messages.UsageRecord) ([]byte, error)
	// NoKeys makes IdempotencyKey fail the test: for a destination that
	// sends no idempotency key.
	NoKeys bool
	// UnitKey names the unit a rejected record is written down under in
	// Events (default: the first of UnitList holding it).
	UnitKey func(*messages.UsageRecord) string
	// Logs keeps what the destination logs (nil: discarded).
	Logs *LogCapture
	// ForgetDone makes Done write nothing down: for a benchmark that
	// delivers the same job again and again.
	ForgetDone bool

	mu          sync.Mutex
	Rejects     []Rejection       // every call of Reject, in order
	UnitRejects map[string]string // unit key: reason
	DoneKeys    []string          // unit keys reported Done, in order
	Events      []string          // "reject <unit key>", "done <unit key>", in order
	Sent        []Sent
	Streams     int // calls of Records (rebuilds)

	byUnit map[[2]int64][]int // record indexes of a unit, in slice order
	order  []int              // record indexes by ChargePeriodStart
}

// New is a Job of the units over recs, sending with a plain client and
// keeping its log.
func New(units []workers.Unit, recs []messages.UsageRecord) *Job {
	return &Job{UnitList: units, Recs: recs, Client: &http.Client{Timeout: 10 * time.Second}, Logs: &LogCapture{}}
}

func (j *Job) Units() []workers.Unit { return j.UnitList }
func (j *Job) Covered() uint64       { return j.Seq }
func (j *Job) Attempt() int          { return j.Try }

// Log is the job's logger: into Logs, or nowhere.
func (j *Job) Log() *slog.Logger {
	if j.Logs == nil {
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(j.Logs)
}

// Records passes the records of u (all of them for an Append job), in the
// order of Recs, each with its index in Recs as RecordRef.Index.
func (j *Job) Records(ctx context.Context, u workers.Unit, fn func(workers.RecordRef, *messages.UsageRecord) error) error {
	j.mu.Lock()
	j.Streams++
	idx := j.unitIndexes(u)
	j.mu.Unlock()
	n := 0
	each := func(i int) error {
		if j.FailAt > 0 && n == j.FailAt {
			return workers.Transient(errors.New("rebuild: stream unavailable"))
		}
		n++
		if err := ctx.Err(); err != nil {
			return err
		}
		return fn(workers.RecordRef{Seq: 1, Index: i}, &j.Recs[i])
	}
	if j.Append {
		for i := range j.Recs {
			if err := each(i); err != nil {
				return err
			}
		}
		return ctx.Err()
	}
	for _, i := range idx {
		if err := each(i); err != nil {
			return err
		}
	}
	return ctx.Err()
}

// unitIndexes returns the indexes of u's records, in slice order; j.mu is
// held. They are found once per unit (a bench delivers a month of hours
// many times).
func (j *Job) unitIndexes(u workers.Unit) []int {
	if j.Append {
		return nil
	}
	key := [2]int64{u.Start.UnixNano(), u.End.UnixNano()}
	if idx, ok := j.byUnit[key]; ok {
		return idx
	}
	if j.order == nil {
		j.order = make([]int, len(j.Recs))
		for i := range j.order {
			j.order[i] = i
		}
		sort.SliceStable(j.order, func(a, b int) bool {
			return j.Recs[j.order[a]].ChargePeriodStart.Before(j.Recs[j.order[b]].ChargePeriodStart)
		})
		j.byUnit = map[[2]int64][]int{}
	}
	from := sort.Search(len(j.order), func(k int) bool { return !j.Recs[j.order[k]].ChargePeriodStart.Before(u.Start) })
	to := sort.Search(len(j.order), func(k int) bool { return !j.Recs[j.order[k]].ChargePeriodStart.Before(u.End) })
	idx := slices.Clone(j.order[from:to])
	slices.Sort(idx)
	j.byUnit[key] = idx
	return idx
}

// EncodedRecords is Records with every record encoded by Encode first.
func (j *Job) EncodedRecords(ctx context.Context, u workers.Unit, fn func(workers.RecordRef, *messages.UsageRecord, []byte, error) error) error {
	enc := j.Encode
	if enc == nil {
		enc = func([]byte, *messages.UsageRecord) ([]byte, error) {
			return nil, errors.New("workerstest: the Job has no Encode: the destination does not encode rows ahead")
		}
	}
	return workers.EncodeEach(ctx, j.Records, u, enc, fn)
}

func (j *Job) Reject(ref workers.RecordRef, r *messages.UsageRecord, reason string) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.Rejects = append(j.Rejects, Rejection{ref, *r, reason})
	j.Events = append(j.Events, "reject "+j.unitKey(r))
}

func (j *Job) unitKey(r *messages.UsageRecord) string {
	if j.UnitKey != nil {
		return j.UnitKey(r)
	}
	for _, u := range j.UnitList {
		if u.Contains(r.ChargePeriodStart) {
			return u.Key
		}
	}
	return ""
}

// Reason is the reason record index i was first rejected with, "" if it
// was not.
func (j *Job) Reason(i int) string { return j.Reasons()[i] }

// Reasons maps the index of every rejected record to the reason it was
// first rejected with: what the pool dead-letters, which keeps the first
// Reject of a record (a destination may meet a bad record on two passes).
func (j *Job) Reasons() map[int]string {
	j.mu.Lock()
	defer j.mu.Unlock()
	out := map[int]string{}
	for _, r := range j.Rejects {
		if _, dup := out[r.Ref.Index]; !dup {
			out[r.Ref.Index] = r.Reason
		}
	}
	return out
}

func (j *Job) RejectUnit(u workers.Unit, reason string) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.UnitRejects == nil {
		j.UnitRejects = map[string]string{}
	}
	j.UnitRejects[u.Key] = reason
}

// Done writes u down; a unit reported Done twice panics.
func (j *Job) Done(u workers.Unit) {
	if j.ForgetDone {
		return
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	if slices.Contains(j.DoneKeys, u.Key) {
		panic("Done twice for " + u.Key)
	}
	j.DoneKeys = append(j.DoneKeys, u.Key)
	j.Events = append(j.Events, "done "+u.Key)
}

// IsDone reports whether the unit keyed key was reported Done.
func (j *Job) IsDone(key string) bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	return slices.Contains(j.DoneKeys, key)
}

// IdempotencyKey derives the key as the pool does: from the scope, the
// covered position, the attempt (0 for an Append part: a part keeps its
// keys across attempts), the chunk and the body.
func (j *Job) IdempotencyKey(scope string, chunk int, body []byte) string {
	if j.NoKeys {
		panic("the destination sends no idempotency key")
	}
	attempt := j.Try
	if j.Append {
		attempt = 0
	}
	var buf [128]byte
	b := append(buf[:0], "dest\x00"...)
	b = append(b, scope...)
	b = append(b, 0)
	b = strconv.AppendUint(b, j.Seq, 10)
	b = append(b, 0)
	b = strconv.AppendInt(b, int64(attempt), 10)
	b = append(b, 0)
	b = strconv.AppendInt(b, int64(chunk), 10)
	b = append(b, 0)
	bh := sha256.Sum256(body)
	b = append(b, bh[:]...)
	sum := sha256.Sum256(b)
	return "uf-" + hex.EncodeToString(sum[:20])
}

// Do sends req (keeping its body first with KeepBodies). A failure with no
// answer is the context's error once it has ended, else transient, as the
// pool's Do returns it.
func (j *Job) Do(ctx context.Context, req *http.Request) (*http.Response, error) {
	if j.KeepBodies && req.Body != nil {
		body, err := io.ReadAll(req.Body)
		_ = req.Body.Close() // as a transport does: the sender may wait for it
		if err != nil {
			return nil, err
		}
		s := Sent{Body: body}
		if j.Label != nil {
			s.Label = j.Label(body)
		}
		j.mu.Lock()
		j.Sent = append(j.Sent, s)
		j.mu.Unlock()
		req.Body = io.NopCloser(bytes.NewReader(body))
	}
	if j.Send != nil {
		return j.Send(req)
	}
	resp, err := j.Client.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, &workers.Error{Class: workers.ClassTransient, Err: err}
	}
	return resp, nil
}

// LogCapture is a slog handler keeping records for assertions.
type LogCapture struct {
	mu   sync.Mutex
	recs []slog.Record
}

func (c *LogCapture) Enabled(context.Context, slog.Level) bool { return true }
func (c *LogCapture) Handle(_ context.Context, r slog.Record) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.recs = append(c.recs, r.Clone())
	return nil
}
func (c *LogCapture) WithAttrs([]slog.Attr) slog.Handler { return c }
func (c *LogCapture) WithGroup(string) slog.Handler      { return c }

// Text renders every record, attributes included, for searching.
func (c *LogCapture) Text() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var b strings.Builder
	for _, r := range c.recs {
		b.WriteString(r.Level.String() + " " + r.Message)
		r.Attrs(func(a slog.Attr) bool {
			b.WriteString(" " + a.String())
			return true
		})
		b.WriteString("\n")
	}
	return b.String()
}
