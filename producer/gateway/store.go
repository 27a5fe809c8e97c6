package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/usagefleet/usagefleet/messages"
	"github.com/usagefleet/usagefleet/producer"
)

// The gateway keeps two things in its own stream, GATEWAY, beside the
// fleet's: an event's claim (gateway.events.<key>, one per (source, id),
// the last message per subject kept for the dedup window) and a batch's
// record (gateway.batches.<id>: source, feed and parts, which
// GET /v1/batches/{id} needs to read the acks). Replicas share nothing
// else, so any replica answers for any batch.
const (
	streamName     = "GATEWAY"
	subjEvents     = "gateway.events."
	subjBatches    = "gateway.batches."
	defaultDedupTT = 48 * time.Hour
)

// batchRecord is what a batch's status needs.
type batchRecord struct {
	BatchID string           `json:"batch_id"`
	Source  string           `json:"source"`
	Feed    string           `json:"feed"`
	Records int              `json:"records"`
	Cost    messages.Decimal `json:"cost"`
	// CostByCurrency is the exact BilledCost per BillingCurrency.
	CostByCurrency map[string]messages.Decimal `json:"cost_by_currency"`
	Parts          []PartOut                   `json:"parts"`
	Published      time.Time                   `json:"published"`
	// BodySHA256 is the decompressed body's digest, for a batch published
	// with an Idempotency-Key.
	BodySHA256 string `json:"body_sha256,omitempty"`

	replayed bool // every part was stored before (an idempotent repeat)
}

// PartOut is one stored part in an answer.
type PartOut struct {
	Part    int    `json:"part"`
	Subject string `json:"subject"`
	Records int    `json:"records"`
	Seq     uint64 `json:"seq"`
}

func ensureStream(ctx context.Context, js jetstream.JetStream, replicas int, window time.Duration) (jetstream.Stream, error) {
	if replicas <= 0 {
		replicas = 1
	}
	if window <= 0 {
		window = defaultDedupTT
	}
	st, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:              streamName,
		Description:       "usage-gateway: event claims (dedup of CloudEvents by source and id) and batch records",
		Subjects:          []string{"gateway.>"},
		Storage:           jetstream.FileStorage,
		MaxAge:            window,
		MaxMsgsPerSubject: 1,
		Duplicates:        2 * time.Minute,
		Replicas:          replicas,
		AllowDirect:       true,
		Discard:           jetstream.DiscardOld,
	})
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", streamName, err)
	}
	return st, nil
}

func recordOf(res *producer.Result) *batchRecord {
	br := &batchRecord{BatchID: res.BatchID, Source: res.Source, Feed: res.Feed, Records: res.Records, Cost: res.Cost, Published: res.Published.UTC(), replayed: res.Duplicate()}
	for _, p := range res.Parts {
		br.Parts = append(br.Parts, PartOut{Part: p.Part, Subject: p.Subject, Records: p.Records, Seq: p.Seq})
	}
	return br
}

// publishMeta publishes the batch record and the claims of the stored
// events and waits for every PubAck. A repeated batch record (an idempotent
// retry) is de-duplicated by its message id. The messages share one reply
// subject of the gateway's reply subscription (replyMux, as the claim
// lookups) and the acks are counted there: a group's claims cost neither
// a future, a reply token and a decoded PubAck each (only an ack that
// carries an error is decoded), nor a subscription of their own.
func (g *Gateway) publishMeta(ctx context.Context, br *batchRecord, claims []*event) error {
	b, _ := json.Marshal(br)
	n := len(claims) + 1
	// At most one ack per message: the channel never overflows.
	inbox, ch, end := g.replies.start(n)
	defer end()
	m := &nats.Msg{Subject: subjBatches + br.BatchID, Reply: inbox, Data: b, Header: nats.Header{jetstream.MsgIDHeader: []string{"batch/" + br.BatchID}}}
	if err := g.nc.PublishMsg(m); err != nil {
		return err
	}
	// A claim carries no Nats-Msg-Id: its subject holds one message (the
	// stream keeps the last per subject), so a claim written twice is one
	// claim, and the duplicate window's entry per event (2 minutes of them
	// in the server's memory) and its check bought nothing.
	id := []byte(br.BatchID)
	for _, ev := range claims {
		// Publish copies the message into the connection's buffer.
		if err := g.nc.PublishRequest(ev.claim, inbox, id); err != nil {
			return err
		}
	}
	var first error
	for range n {
		select {
		case a := <-ch:
			if err := pubAckError(a); err != nil && first == nil {
				first = err
			}
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return first
}

// pubAckError is the error a JetStream publish's answer carries, if any: a
// status (503, no stream) or a PubAck with an error.
func pubAckError(m *nats.Msg) error {
	if len(m.Data) == 0 && m.Header.Get("Status") != "" {
		if m.Header.Get("Status") == "503" {
			return jetstream.ErrNoStreamResponse
		}
		return fmt.Errorf("publish: status %s %s", m.Header.Get("Status"), m.Header.Get("Description"))
	}
	if !bytes.Contains(m.Data, []byte(`"error"`)) {
		if bytes.Contains(m.Data, []byte(`"seq"`)) {
			return nil
		}
		return fmt.Errorf("publish: not a PubAck: %.200q", m.Data)
	}
	var r struct {
		Error *jetstream.APIError `json:"error"`
	}
	if err := json.Unmarshal(m.Data, &r); err != nil {
		return fmt.Errorf("publish: not a PubAck: %.200q", m.Data)
	}
	if r.Error != nil {
		return r.Error
	}
	return nil
}

// claimed returns, per event, the batch that stored it before (its claim),
// or "": one batched direct get (multi_last) for a group's claims, one
// round trip however many events (ADR-31, nats-server 2.11+); per-event
// direct gets if the server refuses it.
func (g *Gateway) claimed(ctx context.Context, evs []*event) ([]string, error) {
	out, err := g.claimedMulti(ctx, evs)
	if err == nil {
		return out, nil
	}
	g.log.Debug("batched direct get failed; one get per event", "err", err)
	return g.claimedEach(ctx, evs)
}

const multiLastMax = 256 // subjects per batched direct get

func (g *Gateway) claimedMulti(ctx context.Context, evs []*event) ([]string, error) {
	out := make([]string, len(evs))
	// The events of each subject: at[subject] is the first, next[i] the
	// one after i (-1: none); no slice per subject.
	at := make(map[string]int, len(evs))
	next := make([]int, len(evs))
	subjects := make([]string, 0, len(evs))
	for i, ev := range evs {
		s := ev.claim
		if j, ok := at[s]; ok {
			next[i], next[j] = next[j], i
			continue
		}
		at[s], next[i] = i, -1
		subjects = append(subjects, s)
	}
	for len(subjects) > 0 {
		chunk := subjects[:min(len(subjects), multiLastMax)]
		subjects = subjects[len(chunk):]
		if err := g.multiLast(ctx, chunk, func(subj string, data []byte) {
			i, ok := at[subj]
			if !ok {
				return
			}
			id := string(data)
			if id == "" {
				id = "?"
			}
			for ; i >= 0; i = next[i] {
				out[i] = id
			}
		}); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// multiLast asks for the last message of each subject and calls fn for each
// found; the answer ends with a 204 (end of batch) or is a 404 (none).
func (g *Gateway) multiLast(ctx context.Context, subjects []string, fn func(subj string, data []byte)) error {
	req := multiLastRequest(subjects)
	// At most one reply per subject and the end marker: a channel that
	// size never overflows (a sync subscription's buffer, 64K messages,
	// was a 512 KB allocation per group).
	inbox, ch, end := g.replies.start(len(subjects) + 2)
	defer end()
	if err := g.nc.PublishRequest("$JS.API.DIRECT.GET."+streamName, inbox, req); err != nil {
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	for {
		var m *nats.Msg
		select {
		case m = <-ch:
		case <-wctx.Done():
			return wctx.Err()
		}
		switch st := m.Header.Get("Status"); st {
		case "":
			fn(m.Header.Get(jetstream.SubjectHeader), m.Data)
		case "204":
			return nil
		case "404":
			if strings.Contains(strings.ToLower(m.Header.Get("Description")), "no results") {
				return nil
			}
			return fmt.Errorf("direct get: %s %s", st, m.Header.Get("Description"))
		default:
			return fmt.Errorf("direct get: %s %s", st, m.Header.Get("Description"))
		}
	}
}

// multiLastRequest is the batched direct get's request,
// {"multi_last":[subjects],"batch":n}, written in place: claim subjects
// are "gateway.events." and hex, nothing JSON escapes (encoding/json
// spent its reflection on it once per group).
func multiLastRequest(subjects []string) []byte {
	n := 40
	for _, s := range subjects {
		n += len(s) + 3
	}
	b := make([]byte, 0, n)
	b = append(b, `{"multi_last":[`...)
	for i, s := range subjects {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, '"')
		b = append(b, s...)
		b = append(b, '"')
	}
	b = append(b, `],"batch":`...)
	b = strconv.AppendInt(b, int64(len(subjects)), 10)
	return append(b, '}')
}

func (g *Gateway) claimedEach(ctx context.Context, evs []*event) ([]string, error) {
	out := make([]string, len(evs))
	errs := make(chan error, len(evs))
	for i, ev := range evs {
		go func() {
			m, err := g.stream.GetLastMsgForSubject(ctx, ev.claim)
			switch {
			case err == nil:
				out[i] = string(m.Data) // the batch that stored it
				if out[i] == "" {
					out[i] = "?"
				}
				errs <- nil
			case errors.Is(err, jetstream.ErrMsgNotFound):
				errs <- nil
			default:
				errs <- err
			}
		}()
	}
	var first error
	for range evs {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	return out, first
}

// loadBatch reads a batch record (nil when unknown).
func (g *Gateway) loadBatch(ctx context.Context, id string) (*batchRecord, error) {
	if !messages.ValidToken(id) && !validBatchID(id) {
		return nil, nil
	}
	m, err := g.stream.GetLastMsgForSubject(ctx, subjBatches+id)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var br batchRecord
	if err := json.Unmarshal(m.Data, &br); err != nil {
		return nil, fmt.Errorf("batch record %s: %w", id, err)
	}
	return &br, nil
}

// validBatchID: gateway batch ids are subject tokens (no dots, blanks or
// wildcards).
func validBatchID(id string) bool {
	if id == "" || len(id) > 200 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if c <= ' ' || c == '.' || c == '*' || c == '>' || c >= 0x7f {
			return false
		}
	}
	return true
}
