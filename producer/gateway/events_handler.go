package gateway

import (
	"context"
	"net/http"
	"sync"

	"github.com/usagefleet/usagefleet/producer"
)

// EventResult is one event's outcome in an answer.
type EventResult struct {
	ID       string         `json:"id"`
	Source   string         `json:"source"`
	Status   string         `json:"status"` // stored, duplicate, invalid
	BatchID  string         `json:"batch_id,omitempty"`
	Problems []ProblemError `json:"problems,omitempty"`
	Warnings []ProblemError `json:"warnings,omitempty"` // kept but repaired
}

// appendPlain appends the answer as json.Marshal writes it, with its
// newline, when that is a plain copy: no warnings or problems and every
// string printable ASCII that JSON and encoding/json's HTML escaping leave
// as it is. ok false: use json.Marshal.
func (r *EventResult) appendPlain(b []byte) ([]byte, bool) {
	if len(r.Problems) > 0 || len(r.Warnings) > 0 || !plainJSON(r.ID) || !plainJSON(r.Source) || !plainJSON(r.Status) || !plainJSON(r.BatchID) {
		return b, false
	}
	b = append(b, `{"id":"`...)
	b = append(b, r.ID...)
	b = append(b, `","source":"`...)
	b = append(b, r.Source...)
	b = append(b, `","status":"`...)
	b = append(b, r.Status...)
	b = append(b, '"')
	if r.BatchID != "" {
		b = append(b, `,"batch_id":"`...)
		b = append(b, r.BatchID...)
		b = append(b, '"')
	}
	return append(b, "}\n"...), true
}

// plainJSON: s is printable ASCII without '"', '\\', '<', '>' or '&', so
// json.Marshal writes it between quotes as it is.
func plainJSON(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			return false
		}
	}
	return true
}

// jsonContentType is the answer's Content-Type, one slice for every
// answer (net/http reads a header's values, never writes them).
var jsonContentType = []string{"application/json"}

var answerBufs = sync.Pool{New: func() any { b := make([]byte, 0, 256); return &b }}

func answerBuf() []byte { return (*answerBufs.Get().(*[]byte))[:0] }

func putAnswerBuf(b []byte) {
	if cap(b) <= 4096 {
		answerBufs.Put(&b)
	}
}

// events: POST /v1/events in the three CloudEvents HTTP modes. Its ctx
// has no deadline of its own (route's timeout -1): a single event waits
// for its group, whose store is bounded by limits.request_timeout from
// the moment the group closes (at most linger.delay after the event
// joined it), so a timer per request bought nothing; a batch of events
// is stored here, under the request timeout.
func (g *Gateway) events(ctx context.Context, w http.ResponseWriter, r *http.Request, k *apiKey) *Problem {
	source, feed, p := sourceFeed(r, k)
	if p != nil {
		return p
	}
	mt := mediaType(r)
	batch := mt == "application/cloudevents-batch+json"
	structured := mt == "application/cloudevents+json"
	if !batch && !structured && r.Header.Get("Ce-Specversion") == "" {
		return problem(http.StatusUnsupportedMediaType, typeMedia, "Not a CloudEvent", "send application/cloudevents+json, application/cloudevents-batch+json, or a binary-mode event (ce-specversion, ce-id, ce-source, ce-type headers)")
	}
	buf, p := g.readBody(ctx, w, r)
	if p != nil {
		return p
	}
	var evs []*event
	switch {
	case batch:
		evs, p = decodeBatch(buf.Bytes(), g.cfg.Limits.MaxRecords)
	case structured:
		var d recordDecoder
		evs = []*event{decodeStructured(&d, buf.Bytes(), buf.String(), where{base: "event", idx: -1})}
	default:
		evs = []*event{decodeBinary(r.Header, buf.Bytes())}
	}
	putBuf(buf)
	if p != nil {
		return p
	}
	if !batch {
		ev := evs[0]
		if len(ev.problems) > 0 {
			return invalid("Invalid event: nothing was published", ev.problems...)
		}
		// One event: it joins the open group of its source and feed.
		o := g.submit(ctx, lingerKey{source, feed}, ev)
		if o.err != nil {
			return o.err
		}
		res := EventResult{ID: ev.id, Source: ev.source, Status: o.status, BatchID: o.batchID, Warnings: ev.warnings}
		b, ok := res.appendPlain(answerBuf())
		if ok {
			w.Header()["Content-Type"] = jsonContentType
			w.WriteHeader(http.StatusOK)
			w.Write(b) // copied into the connection's buffer
		} else {
			writeJSON(w, http.StatusOK, res)
		}
		putAnswerBuf(b)
		return nil
	}
	// A batch is a group of its own: its valid events are one batch.
	ctx, cancel := context.WithTimeout(ctx, g.timeout)
	defer cancel()
	results := make([]EventResult, len(evs))
	var valid []*event
	var at []int
	for i, ev := range evs {
		results[i] = EventResult{ID: ev.id, Source: ev.source, Warnings: ev.warnings}
		if len(ev.problems) > 0 {
			results[i].Status, results[i].Problems = "invalid", ev.problems
			continue
		}
		valid = append(valid, ev)
		at = append(at, i)
	}
	if len(valid) > 0 {
		outs := g.storeEvents(ctx, source, feed, valid)
		for j, o := range outs {
			if o.err != nil {
				// Nothing new is stored when the group fails: a retry of the
				// whole batch answers the stored ones as duplicates.
				return o.err
			}
			results[at[j]].Status, results[at[j]].BatchID = o.status, o.batchID
		}
	}
	writeJSON(w, http.StatusOK, struct {
		Results []EventResult `json:"results"`
	}{results})
	return nil
}

// batch: GET /v1/batches/{id}[?wait=30s].
func (g *Gateway) batch(ctx context.Context, w http.ResponseWriter, r *http.Request, k *apiKey) *Problem {
	id := r.PathValue("id")
	var wait = snapshotWait
	if s := r.URL.Query().Get("wait"); s != "" {
		d, err := parseWait(s)
		if err != nil || d < 0 {
			return invalid("Bad wait", ProblemError{Pointer: "query.wait", Detail: quote(s) + ": want a duration such as 30s"})
		}
		if mx := g.maxWait(); d > mx {
			d = mx
		}
		if d > wait {
			wait = d
		}
	}
	br, err := g.loadBatch(ctx, id)
	if err != nil {
		return publishProblem(err)
	}
	if br == nil {
		return problem(http.StatusNotFound, typeNotFound, "No such batch", "no batch "+quote(id)+" was stored through a gateway (within the dedup window)")
	}
	if !allowed(k.sources, br.Source) {
		return problem(http.StatusForbidden, typeForbidden, "Source not allowed", "key "+k.name+" may not read batches of source "+quote(br.Source))
	}
	dests, err := g.prod.Destinations(ctx, br.Feed)
	if err != nil {
		return publishProblem(err)
	}
	res := &producer.Result{BatchID: br.BatchID, Source: br.Source, Feed: br.Feed, Records: br.Records, Published: br.Published}
	for _, p := range br.Parts {
		res.Parts = append(res.Parts, producer.PartInfo{Part: p.Part, Seq: p.Seq})
	}
	writeJSON(w, http.StatusOK, g.status(ctx, br, res, dests, wait))
	return nil
}
