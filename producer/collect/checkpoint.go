package collect

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Checkpoint is a collector's state in the KV bucket
// messages.BucketCheckpoints, under the collector's name, as JSON. It is
// what lets a restarted collector resume: the reports it had requested are
// polled and downloaded instead of requested again, and periods already
// published in the run's generation are not published again.
type Checkpoint struct {
	Collector   string `json:"collector"`
	Type        string `json:"type"`
	Account     string `json:"account"`
	Fingerprint string `json:"fingerprint"` // of the report parameters and period unit
	PeriodUnit  Unit   `json:"period_unit"`
	// Generation is the newest generation used (the next run uses a larger one).
	Generation int64 `json:"generation"`
	// LastPeriod is the newest period of the last complete run and
	// LastWindow that run's whole window.
	LastPeriod *Span     `json:"last_period,omitempty"`
	LastWindow *Span     `json:"last_window,omitempty"`
	LastRun    time.Time `json:"last_run,omitzero"`
	// Run is the run in progress (nil between runs).
	Run     *RunState `json:"run,omitempty"`
	Updated time.Time `json:"updated"`
}

// RunState is a run in progress.
type RunState struct {
	Generation int64     `json:"generation"`
	Window     Span      `json:"window"`
	Started    time.Time `json:"started"`
	// Reports are the reports requested and not yet fully published.
	Reports []InFlight `json:"reports,omitempty"`
	// Published are the periods already published in Generation.
	Published []Span `json:"published,omitempty"`
	// Truncated are ranges whose report hit the record cap: they are
	// split without asking again.
	Truncated []Span `json:"truncated,omitempty"`
}

// InFlight is a requested report: the range it was planned for, the range
// actually asked (clamped to the time of the request) and when.
type InFlight struct {
	ReportID  string    `json:"report_id"`
	Range     Span      `json:"range"`
	Asked     Span      `json:"asked"`
	Requested time.Time `json:"requested"`
}

// Span is a [start, end) interval in the checkpoint.
type Span struct {
	Start time.Time `json:"start"`
	End   time.Time `json:"end"`
}

func toSpan(r Range) Span   { return Span{r.Start.UTC(), r.End.UTC()} }
func (s Span) Range() Range { return Range{s.Start.UTC(), s.End.UTC()} }
func (s Span) eq(r Range) bool {
	return s.Start.Equal(r.Start) && s.End.Equal(r.End)
}

// store reads and writes one checkpoint, refusing to overwrite a revision
// it did not read (another collector with the same name).
type store struct {
	kv  jetstream.KeyValue
	key string
	rev uint64
}

func (s *store) load(ctx context.Context) (*Checkpoint, error) {
	ck := &Checkpoint{}
	if s.kv == nil {
		return ck, nil
	}
	e, err := s.kv.Get(ctx, s.key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		s.rev = 0
		return ck, nil
	}
	if err != nil {
		return nil, fmt.Errorf("checkpoint %s: %w", s.key, err)
	}
	s.rev = e.Revision()
	if err := json.Unmarshal(e.Value(), ck); err != nil {
		// A checkpoint we cannot read only costs a re-request: start over.
		return &Checkpoint{}, nil
	}
	return ck, nil
}

func (s *store) save(ctx context.Context, ck *Checkpoint, now time.Time) error {
	if s.kv == nil {
		return nil
	}
	ck.Updated = now
	b, err := json.Marshal(ck)
	if err != nil {
		return err
	}
	var rev uint64
	if s.rev == 0 {
		rev, err = s.kv.Create(ctx, s.key, b)
	} else {
		rev, err = s.kv.Update(ctx, s.key, b, s.rev)
	}
	if err != nil {
		if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			return fmt.Errorf("checkpoint %s changed while this collector ran: is another collector with the same name running? (%w)", s.key, err)
		}
		return fmt.Errorf("checkpoint %s: %w", s.key, err)
	}
	s.rev = rev
	return nil
}
