package messages

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Streams, subjects, buckets and headers: the names every part of the fleet
// agrees on, in one place.
const (
	// StreamUsage keeps the published parts: usage.<feed>.<yyyy>.<mm>.<dd>.<hh>.
	StreamUsage   = "USAGE"
	UsageSubjects = "usage.>"
	// StreamAcks keeps ack events: acks.<source>.<destination>.
	StreamAcks   = "ACKS"
	AcksSubjects = "acks.>"
	// StreamDead keeps dead letters: dead.<destination>.<source>.
	StreamDead   = "DEAD"
	DeadSubjects = "dead.>"

	// BucketLeases holds unit leases (one uploader per unit or connection).
	BucketLeases = "usagefleet_leases"
	// BucketUnits remembers, per destination and unit, the stream position
	// the last successful upload covered.
	BucketUnits = "usagefleet_units"
	// BucketCheckpoints holds collector checkpoints.
	BucketCheckpoints = "usagefleet_checkpoints"
	// BucketBatches holds one claim per published batch (key BatchKey, value
	// the digest of its content), kept as long as the USAGE duplicate
	// window: a batch id reused with other content is refused instead of
	// being taken for a repeat of the first.
	BucketBatches = "usagefleet_batches"
)

// Header names (NATS headers are case-sensitive: use these constants).
const (
	HdrSchema     = "Usage-Schema"
	HdrBatch      = "Usage-Batch"
	HdrPart       = "Usage-Part"
	HdrFeed       = "Usage-Feed"
	HdrSource     = "Usage-Source"
	HdrKind       = "Usage-Kind"
	HdrHour       = "Usage-Hour"
	HdrPeriod     = "Usage-Period"
	HdrGeneration = "Usage-Generation"
	HdrRecords    = "Usage-Records"
	HdrParts      = "Usage-Parts"
	HdrMsgID      = "Nats-Msg-Id"
	// HdrPayloadSum is the SHA-256 of the payload (hex), HdrSignature the
	// source's signature over the part's headers (see SignPart).
	HdrPayloadSum = "Usage-Payload-Sha256"
	HdrSignature  = "Usage-Signature"
	// HdrDestination addresses a part to one destination: every other
	// destination serving its feed skips it (acks it unsent, leaves it out
	// of its rebuilds). usage-worker dead replay sets it on the records it
	// sends again to the append destination that refused them.
	HdrDestination = "Usage-Destination"
)

// ForDestination reports whether a part with headers h is for dest: it is
// addressed to none (every destination of its feed), or to dest.
func ForDestination(h map[string][]string, dest string) bool {
	v := h[HdrDestination]
	return len(v) == 0 || v[0] == "" || v[0] == dest
}

var tokenRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// ValidToken reports whether s can be one token of a subject (feeds, sources
// and destination names).
func ValidToken(s string) bool { return tokenRE.MatchString(s) }

// UsageSubject is the subject of a part of feed whose records start in hour.
func UsageSubject(feed string, hour time.Time) string {
	h := hour.UTC()
	return fmt.Sprintf("usage.%s.%04d.%02d.%02d.%02d", feed, h.Year(), int(h.Month()), h.Day(), h.Hour())
}

// FeedFilter is the subject filter of every part of a feed.
func FeedFilter(feed string) string { return "usage." + feed + ".*.*.*.*" }

// ParseUsageSubject returns the feed and hour of a usage subject.
func ParseUsageSubject(subj string) (string, time.Time, error) {
	t := strings.Split(subj, ".")
	if len(t) != 6 || t[0] != "usage" {
		return "", time.Time{}, fmt.Errorf("subject %q: want usage.<feed>.<yyyy>.<mm>.<dd>.<hh>", subj)
	}
	var n [4]int
	for i := range n {
		v, err := strconv.Atoi(t[2+i])
		if err != nil {
			return "", time.Time{}, fmt.Errorf("subject %q: token %q is not a number", subj, t[2+i])
		}
		n[i] = v
	}
	h := time.Date(n[0], time.Month(n[1]), n[2], n[3], 0, 0, 0, time.UTC)
	if h.Year() != n[0] || int(h.Month()) != n[1] || h.Day() != n[2] || h.Hour() != n[3] {
		return "", time.Time{}, fmt.Errorf("subject %q: not a valid hour", subj)
	}
	return t[1], h, nil
}

// AckSubject is where acks of source at destination are published.
func AckSubject(source, destination string) string { return "acks." + source + "." + destination }

// DeadSubject is where dead letters of destination are kept.
func DeadSubject(destination, source string) string {
	if source == "" {
		source = "_"
	}
	return "dead." + destination + "." + source
}
