package messages

import (
	"encoding/json"
	"fmt"
	"time"
)

// AckStatus is the outcome of one part at one destination.
type AckStatus string

const (
	// AckDelivered: every record of the part reached the destination.
	AckDelivered AckStatus = "delivered"
	// AckRejected: some or all records were refused (the destination lacks a
	// field it needs, or refused the unit); they are in the dead-letter
	// stream with the reason. Records counts the delivered ones.
	AckRejected AckStatus = "rejected"
	// AckDead: the message could not be decoded; it is in the dead-letter
	// stream.
	AckDead AckStatus = "dead"
	// AckSuperseded: a snapshot part whose generation was replaced by a newer
	// complete one before it was delivered.
	AckSuperseded AckStatus = "superseded"
)

// Ack reports what happened to one part at one destination. Acks are
// published on acks.<source>.<destination> as JSON, with Nats-Msg-Id
// "<destination>/<batch>/<part>", so a repeated ack is de-duplicated.
type Ack struct {
	BatchID     string    `json:"batch_id"`
	Part        int       `json:"part"`
	Feed        string    `json:"feed"`
	Source      string    `json:"source"`
	Destination string    `json:"destination"`
	Status      AckStatus `json:"status"`
	Records     int       `json:"records"`            // delivered
	Rejected    int       `json:"rejected,omitempty"` // refused, dead-lettered
	Cost        Decimal   `json:"cost"`               // exact sum of BilledCost delivered, all currencies (see Costs)
	Reason      string    `json:"reason,omitempty"`   // the first reasons, joined (see Reasons)
	Time        time.Time `json:"time"`
	// Costs is the exact BilledCost delivered per BillingCurrency (records
	// without one under ""). Cost is their total, kept for readers that
	// predate Costs; absent in acks of workers that predate it.
	Costs map[string]Decimal `json:"costs,omitempty"`
	// Reasons counts the rejected records per reason: every distinct
	// reason, clipped to MaxReasonBytes; past MaxReasons the rest are
	// counted together under MoreReasonsKey. The counts add up to Rejected.
	Reasons map[string]int `json:"reasons,omitempty"`
	// Warnings counts the delivered records whose labels the destination
	// repaired or dropped to deliver them (a CloudZero tag key rewritten
	// to CBF's characters, say).
	Warnings int `json:"warnings,omitempty"`
}

// MsgID is the de-duplication id of the ack event.
func (a Ack) MsgID() string { return fmt.Sprintf("%s/%s/%d", a.Destination, a.BatchID, a.Part) }

// EncodeAck and DecodeAck are the ack codec (JSON: acks are few and read by
// people and other languages).
func EncodeAck(a Ack) ([]byte, error) { return json.Marshal(a) }

func DecodeAck(b []byte) (Ack, error) {
	var a Ack
	if err := json.Unmarshal(b, &a); err != nil {
		return Ack{}, fmt.Errorf("ack: %w", err)
	}
	return a, nil
}

// DeadLetter is what the dead-letter stream keeps: the reason, where it came
// from, and either a bounded copy of the original message (undecodable) or
// the rejected records. Dead letters are JSON on dead.<destination>.<source>.
//
// A worker's dead letter always fits in one NATS message: it refers to the
// original by StreamSeq (and Subject) in USAGE, which keeps it until its max
// age, and carries at most an excerpt of the payload (PayloadExcerpt, with
// PayloadSize the whole size), bounded headers and a clipped reason;
// Truncated says something was cut. Payload, the whole original bytes, is
// still read (older workers wrote it; a collector's dead letter carries its
// raw row there, already bounded) but a worker no longer writes it.
type DeadLetter struct {
	Destination    string              `json:"destination"`
	Reason         string              `json:"reason"`
	BatchID        string              `json:"batch_id,omitempty"`
	Part           int                 `json:"part,omitempty"`
	Source         string              `json:"source,omitempty"`
	Feed           string              `json:"feed,omitempty"`
	Subject        string              `json:"subject"`
	StreamSeq      uint64              `json:"stream_seq"`
	Header         map[string][]string `json:"header,omitempty"`
	Payload        []byte              `json:"payload,omitempty"`         // the original bytes whole (older workers, collectors)
	PayloadExcerpt []byte              `json:"payload_excerpt,omitempty"` // the first bytes of the original, when undecodable
	PayloadSize    int                 `json:"payload_size,omitempty"`    // the original's size in bytes
	Truncated      bool                `json:"truncated,omitempty"`       // the payload, a header, the reason or a record was cut
	Records        []RejectedRecord    `json:"records,omitempty"`
	Time           time.Time           `json:"time"`
}

// OriginalBytes is what the dead letter holds of the original payload (the
// whole of it from older writers, else the excerpt), and whether that is
// all of it.
func (d *DeadLetter) OriginalBytes() (b []byte, whole bool) {
	if len(d.Payload) > 0 {
		return d.Payload, d.PayloadSize == 0 || d.PayloadSize == len(d.Payload)
	}
	return d.PayloadExcerpt, d.PayloadSize == len(d.PayloadExcerpt)
}

// RejectedRecord is one refused record with its reason. A record too large
// to be kept whole in a dead letter is kept as Excerpt (the first bytes of
// its JSON) with Truncated set, and Record is then empty: read it from the
// part in USAGE by the dead letter's StreamSeq and Index.
type RejectedRecord struct {
	Index     int         `json:"index"` // position in its part
	Reason    string      `json:"reason"`
	Record    UsageRecord `json:"record"`
	Excerpt   string      `json:"record_excerpt,omitempty"`
	Truncated bool        `json:"truncated,omitempty"`
}
