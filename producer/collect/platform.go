package collect

import (
	"context"

	"github.com/usagefleet/usagefleet/messages"
)

// Platform is one report API for one account: it creates a report over a
// range, says when it is ready, and downloads it as usage records. The
// acronis and here subpackages implement it; the Collector drives it
// (planning, polling, checkpoints, publishing).
type Platform interface {
	// Type is the collector type ("acronis", "here").
	Type() string
	// Account is what the reports cover (a tenant id, a realm). One
	// collector collects one account: its snapshots are keyed by
	// (collector name, period), so two accounts under one name would
	// replace each other.
	Account() string
	// Fingerprint identifies the report parameters: a checkpointed report
	// is reused only by a collector asking for the same thing.
	Fingerprint() string
	// Limits are the API's range and record limits.
	Limits() Limits
	// Request creates a report over r (already clamped to now) and returns
	// its id. An answer meaning "not ready yet" wraps ErrNotReady.
	Request(ctx context.Context, r Range) (string, error)
	// Status polls a report once. It wraps ErrReportFailed (naming the id)
	// when the report failed and ErrReportGone when it no longer exists.
	Status(ctx context.Context, id string) (Status, error)
	// Fetch downloads a ready report, requested over r, and passes each
	// row to sink as a record or a rejection. It returns the number of
	// data rows read, good or bad.
	Fetch(ctx context.Context, id string, st Status, r Range, sink Sink) (FetchInfo, error)
}

// State is where a report is.
type State int

const (
	Pending State = iota // being generated
	Ready                // downloadable
)

// Status is a report's state.
type Status struct {
	State State
	// Ref is what Fetch needs to download it (Acronis: the stored file id).
	Ref string
	// Truncated: the API says the report stopped at its record cap.
	Truncated bool
}

// FetchInfo is what a download held.
type FetchInfo struct {
	Rows      int  // data rows, good or bad
	Truncated bool // the file says it was cut at the record cap
}

// Sink receives a report's rows (CSV.Row gives the row of each). Record
// validates the record (and that it falls in the report's range); a
// record is copied, but its maps are kept, so give each record maps of its
// own. Reject takes a row that cannot be mapped, with the column at fault
// ("" if none) and why: the collector keeps it, raw, in the dead-letter
// stream.
type Sink interface {
	Record(row Row, r *messages.UsageRecord)
	Reject(row Row, column, reason string)
}
