package workers

import (
	"context"
	"log/slog"
	"net/http"
	"time"

	"github.com/usagefleet/usagefleet/messages"
)

// Semantics says how a destination treats what it is sent.
type Semantics int

const (
	// Append: each stored part is delivered on its own, at least once (a
	// retry can repeat it; idempotency keys let the receiver drop repeats).
	Append Semantics = iota
	// Replace: the destination replaces a unit (an hour, a date, a month)
	// with what it is sent. Units are rebuilt from the stream, so a retry or
	// redelivery re-sends the whole unit and nothing is counted twice.
	Replace
)

// Unit is the span of time a replace destination replaces as a whole: every
// record whose ChargePeriodStart is in [Start, End) belongs to it.
type Unit struct {
	Key   string // stable, KV-key safe: [A-Za-z0-9_=.-], e.g. "h2024-08-16T13"
	Start time.Time
	End   time.Time
}

// Contains reports whether t falls in the unit.
func (u Unit) Contains(t time.Time) bool { return !t.Before(u.Start) && t.Before(u.End) }

// Destination is what a billing API plugs into the pool.
type Destination interface {
	// Name is the configured destination name (a subject token).
	Name() string
	// Semantics says whether the destination appends or replaces.
	Semantics() Semantics
	// Units returns the units a part stored for the UTC hour dirties
	// (Replace only). An hour may touch two units when units are dates in
	// a zone offset that is not whole hours.
	Units(hour time.Time) []Unit
	// LeaseKey names the lease that serialises uploads of u across the
	// fleet. Units with the same lease key are delivered together in one
	// Job. CloudZero returns its connection id: the API forbids concurrent
	// requests to one stream. For Append destinations it is called with a
	// zero Unit: a non-empty key makes every part's delivery take that
	// lease, one at a time across the fleet.
	LeaseKey(u Unit) string
	// Deliver uploads the job. It returns nil when everything was either
	// delivered or rejected through the job (Reject, RejectUnit); an *Error
	// of ClassTransient to have the pool retry the whole job later (a new
	// rebuild, from the first request), ClassAuth to pause the destination.
	Deliver(ctx context.Context, job Job) error
}

// RowEncoder is implemented by a destination whose requests are made of
// one encoded row per record (JSON objects, say): EncodeRow appends r's
// row to dst, or returns dst and why r cannot be a row. The pool then
// encodes rows ahead of delivery (Job.EncodedRecords), several parts at
// once: EncodeRow must be safe for concurrent use.
type RowEncoder interface {
	EncodeRow(dst []byte, r *messages.UsageRecord) ([]byte, error)
}

// RowWarner is implemented by a RowEncoder that can repair or drop a
// record's labels to encode it (DESIGN: money is not lost over metadata).
// EncodeRowWarnings is EncodeRow that also says how many warnings r's
// encoding counts (1 when a label was repaired or dropped). The pool then
// encodes with it and sums the warnings of each part's delivered records
// into its ack (messages.Ack.Warnings).
type RowWarner interface {
	EncodeRowWarnings(dst []byte, r *messages.UsageRecord) ([]byte, int, error)
}

// rowEncoding is how the pool encodes the rows of re: with the warnings
// when it is a RowWarner.
func rowEncoding(re RowEncoder) func([]byte, *messages.UsageRecord) ([]byte, int, error) {
	if rw, ok := re.(RowWarner); ok {
		return rw.EncodeRowWarnings
	}
	return func(dst []byte, r *messages.UsageRecord) ([]byte, int, error) {
		dst, err := re.EncodeRow(dst, r)
		return dst, 0, err
	}
}

// Targeter is implemented by a destination that writes to one place at
// the API that no other destination of the fleet may write to: a
// CloudZero connection (its replace operations would wipe each other's
// rows, and it serves one request at a time), a Cloud Cruiser account
// (each upload overwrites its date). Target is an identity of that place
// (it may be a digest: never a secret); describe says what it is, for the
// error that refuses a configuration where two destinations share one.
type Targeter interface {
	Target() (id, describe string)
}

// RecordRef points at one record: the stream sequence of its part and its
// index in the part.
type RecordRef struct {
	Seq   uint64
	Index int
}

// Job is one delivery: due units sharing a lease (Replace), or one stored
// part (Append). The pool implements it.
type Job interface {
	// Units are the units to replace, in time order (Replace).
	Units() []Unit
	// Records calls fn for every record of u as rebuilt from the stream up
	// to Covered(), honouring snapshot generations. Records are streamed:
	// fn must not keep r after it returns. For Append jobs, u is ignored
	// and the part's records are passed.
	Records(ctx context.Context, u Unit, fn func(ref RecordRef, r *messages.UsageRecord) error) error
	// EncodedRecords is Records with every record first encoded by the
	// destination's EncodeRow (it must be a RowEncoder), ahead of fn: the
	// pool reads, decodes and encodes the job's next units on a goroutine
	// of its own while the destination waits on an upload. fn gets the
	// record and its encoding, or EncodeRow's error for a record it
	// refused; neither may be kept after fn returns. At most a few parts
	// are read ahead. Ask for the units in the order of Units() to keep
	// the read-ahead useful.
	EncodedRecords(ctx context.Context, u Unit, fn func(ref RecordRef, r *messages.UsageRecord, row []byte, err error) error) error
	// Reject refuses one record with a reason: it is dead-lettered, the
	// rest is still delivered, and its part's ack says rejected.
	Reject(ref RecordRef, r *messages.UsageRecord, reason string)
	// RejectUnit refuses every record of u (the API refused the unit, e.g.
	// a 400): they are dead-lettered with the reason and the other units of
	// the job still count as delivered.
	RejectUnit(u Unit, reason string)
	// Done tells the pool that u is fully delivered (every request of its
	// sequence succeeded). If the job fails later, done units are still
	// settled and only the rest is retried, so one bad request does not
	// redo a month. A destination that never calls Done is still correct:
	// a successful job settles every unit.
	Done(u Unit)
	// Covered is the last stream sequence the rebuild covers (Replace), or
	// the part's sequence (Append).
	Covered() uint64
	// Attempt counts the tries of this job in this process, from 0.
	Attempt() int
	// IdempotencyKey derives a request key from the destination, scope (a
	// unit or part), the covered position, the attempt, the chunk index and
	// the body (or a digest of it that changes with any byte of it, at the
	// destination's choice). It is the same for a retry of the same request
	// and never the same for another body, rebuild or attempt.
	IdempotencyKey(scope string, chunk int, body []byte) string
	// Do sends an HTTP request: it waits out the destination's cooldown
	// first, and retries, with the same request, failures that got no
	// response (timeouts, resets). Any response is returned to the caller
	// to classify (see Classify). A retry needs req.GetBody (http.NewRequest
	// sets it for in-memory bodies); a streamed body is not retried here.
	Do(ctx context.Context, req *http.Request) (*http.Response, error)
	// Log is the job's logger (destination, unit, attempt).
	Log() *slog.Logger
}

// EncodeEach is Job.EncodedRecords built on a Records function, without
// reading ahead: for Job implementations other than the pool's (tests).
func EncodeEach(ctx context.Context, records func(context.Context, Unit, func(RecordRef, *messages.UsageRecord) error) error, u Unit, enc func([]byte, *messages.UsageRecord) ([]byte, error), fn func(RecordRef, *messages.UsageRecord, []byte, error) error) error {
	var row []byte
	return records(ctx, u, func(ref RecordRef, r *messages.UsageRecord) error {
		var err error
		row, err = enc(row[:0], r)
		if err != nil {
			return fn(ref, r, nil, err)
		}
		return fn(ref, r, row, nil)
	})
}
