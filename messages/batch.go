package messages

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Batch is what a producer publishes: records that belong to one feed and
// come from one source. An append batch adds its records; a snapshot batch
// says "this is the whole content of Source for Period, generation
// Generation", and replaces older generations of the same period at every
// replace destination.
type Batch struct {
	ID       string // unique per batch; a retried publish reuses it
	Feed     string // routes the batch to the destinations that serve it
	Source   string // who produced it; acks come back on acks.<source>.<destination>
	Snapshot *Snapshot
	Records  []UsageRecord
}

// Snapshot marks a batch as the whole content of a period.
type Snapshot struct {
	Period     Period
	Generation int64 // newer generations replace older ones; must be > 0
}

// Period is the half-open interval [Start, End) in UTC.
type Period struct {
	Start, End time.Time
}

// String is the period's identity in headers: "<start>/<end>" in RFC 3339.
func (p Period) String() string {
	return p.Start.UTC().Format(time.RFC3339) + "/" + p.End.UTC().Format(time.RFC3339)
}

// Contains reports whether t is in [Start, End).
func (p Period) Contains(t time.Time) bool { return !t.Before(p.Start) && t.Before(p.End) }

// ParsePeriod parses Period.String's form.
func ParsePeriod(s string) (Period, error) {
	a, b, ok := strings.Cut(s, "/")
	if !ok {
		return Period{}, fmt.Errorf("period %q: want <start>/<end>", s)
	}
	start, err := time.Parse(time.RFC3339, a)
	if err != nil {
		return Period{}, fmt.Errorf("period %q: start: %v", s, err)
	}
	end, err := time.Parse(time.RFC3339, b)
	if err != nil {
		return Period{}, fmt.Errorf("period %q: end: %v", s, err)
	}
	if !end.After(start) {
		return Period{}, fmt.Errorf("period %q: end is not after start", s)
	}
	return Period{Start: start.UTC(), End: end.UTC()}, nil
}

// Kind says what a stored message is.
type Kind string

const (
	KindAppend   Kind = "append"
	KindSnapshot Kind = "snapshot"
	// KindSnapshotEnd is the closing marker of a snapshot generation in one
	// hour: it carries the number of parts the generation stored in that
	// hour. A generation counts for an hour only once its marker and all
	// those parts are stored.
	KindSnapshotEnd Kind = "snapshot-end"
)

// PartMeta describes one stored message. It travels in NATS headers, so a
// headers-only consumer can route a message without its payload.
type PartMeta struct {
	Schema     int
	BatchID    string
	Part       int // 1-based, unique within the batch
	Feed       string
	Source     string
	Kind       Kind
	Hour       time.Time // the UTC hour every record's ChargePeriodStart falls in
	Period     Period    // snapshots only
	Generation int64     // snapshots only
	Records    int       // records in the payload
	Parts      int       // KindSnapshotEnd only: parts of the generation in this hour
}

// MsgID is the JetStream de-duplication id of the part:
// "<source>/<feed>/<batch>/<part>", the batch id path-escaped (a "/" in it
// becomes %2F), so team-b's "run-42" is not team-a's "run-42" and no batch
// id can spell another's part or marker. Source and feed are subject
// tokens, which hold no "/".
func (m PartMeta) MsgID() string {
	prefix := m.Source + "/" + m.Feed + "/" + url.PathEscape(m.BatchID) + "/"
	if m.Kind == KindSnapshotEnd {
		return prefix + "end/" + m.Hour.Format("2006010215")
	}
	return prefix + strconv.Itoa(m.Part)
}

// BatchKey is the key of the batch's claim in BucketBatches:
// "<source>.<feed>.<digest of the batch id>". It starts with the source so
// NATS permissions can confine a publisher to its own sources' claims.
func BatchKey(source, feed, batchID string) string {
	sum := sha256.Sum256([]byte(batchID))
	return source + "." + feed + "." + hex.EncodeToString(sum[:16])
}

// SnapshotKey identifies what a snapshot generation replaces: the source and
// the period.
func (m PartMeta) SnapshotKey() string { return m.Source + "|" + m.Period.String() }

// Part is a decoded message: its metadata and records.
type Part struct {
	Meta    PartMeta
	Records []UsageRecord
}
