package cloudzero

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strconv"

	"github.com/usagefleet/usagefleet/workers"
	"github.com/usagefleet/usagefleet/workers/chunk"
)

// maxIsolated caps the rows one job refuses alone. Past it a refusal
// refuses the units of its request as a whole (refuse): a body the API
// refuses row after row is more likely refused for something that is no
// row's fault, and isolating costs a request per row.
const maxIsolated = 32

// rowIndexRE reads the row a 400 names: the message starts with
// data[i] (data[i]["col"]: problem). The real API's message format is not
// documented [INFER]; without an index the refusal is bisected.
var rowIndexRE = regexp.MustCompile(`^data\[(\d+)\]`)

// rowIndex is the index in the body's data array of the row msg names.
func rowIndex(msg string) (int, bool) {
	m := rowIndexRE.FindStringSubmatch(msg)
	if m == nil {
		return 0, false
	}
	i, err := strconv.Atoi(m[1])
	if err != nil {
		return 0, false
	}
	return i, true
}

// isolating reports whether a refusal with status is narrowed down to the
// rows that cause it: a 400 or a 422 is about the body's content. Another
// refusing 4xx (405, 415...) would refuse any body, so bisecting it would
// only multiply requests: its units are refused as before.
func isolating(status int) bool {
	return status == http.StatusBadRequest || status == http.StatusUnprocessableEntity
}

// wholeRequestTypes are the 400 error types that refuse a request as a
// whole, not for a row: our sandbox's names (invalid_request: the
// envelope; limit_exceeded: the month's row or byte limit). The real API's
// types are not documented [INFER]: an unknown type is bisected.
var wholeRequestTypes = map[apiErrorType]bool{"invalid_request": true, "limit_exceeded": true}

// wholeRequest reports whether we's error type refuses the request whole.
func wholeRequest(we *workers.Error) bool {
	var typ apiErrorType
	return errors.As(we.Err, &typ) && wholeRequestTypes[typ]
}

// isolate answers a refusal of rows[a:b] so that only what the API refused
// is rejected. A 400 applies nothing, so the rest is simply sent again,
// with the same operation (opFor: a unit's first successful request
// replaces it, later ones add with sum):
//   - the message names a row (data[i]) that is a record of the body: that
//     record alone is rejected and the rest sent again (which may name the
//     next refused row);
//   - no usable index and more than one row: the run is split (at the unit
//     boundary nearest the middle while it holds several units, else at
//     the row nearest it) and each half sent (sendRange);
//   - one row left: its record is rejected alone.
//
// A refused placeholder row, another refusing status, an error type that
// refuses the request whole (wholeRequest), or more than maxIsolated rows
// refused in this job fall back to refusing the units of the run as a
// whole (refuse).
func (p *packer) isolate(ctx context.Context, a, b int, we *workers.Error) error {
	if !isolating(we.Status) || p.isolated >= maxIsolated {
		if p.isolated >= maxIsolated {
			p.job.Log().Warn("cloudzero: too many rows refused in one job; refusing the units of the request whole",
				"isolated", p.isolated, "limit", maxIsolated)
		}
		return p.refuse(ctx, a, b, we)
	}
	live := make([]int, 0, b-a)
	for i := a; i < b; i++ {
		if !p.rows[i].skip {
			live = append(live, i)
		}
	}
	if k, ok := rowIndex(we.Message); ok && k < len(live) {
		if i := live[k]; !p.rows[i].placeholder {
			p.refuseRow(i, we)
			return p.sendRange(ctx, a, b)
		}
		return p.refuse(ctx, a, b, we)
	}
	if wholeRequest(we) {
		// Bisecting a refusal of the request as a whole (a month limit)
		// would deliver some rows, then refuse the rest one by one.
		return p.refuse(ctx, a, b, we)
	}
	switch len(live) {
	case 0:
		return nil
	case 1:
		if p.rows[live[0]].placeholder {
			return p.refuse(ctx, a, b, we)
		}
		p.refuseRow(live[0], we)
		return nil
	}
	m := p.split(chunk.Range{From: live[0], To: live[len(live)-1] + 1})
	p.job.Log().Info("cloudzero: request refused without naming a row; sending it in halves",
		"rows", len(live), "status", we.Status, "message", we.Message)
	if err := p.sendRange(ctx, a, m); err != nil {
		return err
	}
	return p.sendRange(ctx, m, b)
}

// refuseRow leaves rows[i] out of every later body and has its record
// rejected with the API's message once its unit can be streamed again
// (rejectDrops; in sum mode at the end of the month).
func (p *packer) refuseRow(i int, we *workers.Error) {
	m := &p.rows[i]
	m.skip = true
	p.isolated++
	p.segs[m.seg].dropped++
	p.drops = append(p.drops, rowDrop{seg: int(m.seg), ref: m.ref,
		reason: fmt.Sprintf("CloudZero refused the row (%d): %s", we.Status, we.Message)})
	p.job.Log().Warn("cloudzero refused a row: rejecting its record alone",
		"unit", p.segs[m.seg].unit.Key, "seq", m.ref.Seq, "index", m.ref.Index, "status", we.Status, "message", we.Message)
}
