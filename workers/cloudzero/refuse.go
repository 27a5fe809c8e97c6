// What a packer does when CloudZero refuses: a record too large alone, a
// request refused whole (its hours dead-lettered and cleared with their
// placeholder), and the dead letters of the rows dropped on the way.

package cloudzero

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/usagefleet/usagefleet/messages"
	"github.com/usagefleet/usagefleet/workers"
)

func (p *packer) allRejected(a, b int) bool {
	for i := a; i < b; i++ {
		if !p.rows[i].skip && !p.segs[p.rows[i].seg].rejected {
			return false
		}
	}
	return true
}

// tooLargeAlone answers a 413 on the single row i: its record is rejected
// alone once its unit can be streamed again.
func (p *packer) tooLargeAlone(i int, we *workers.Error) error {
	m := p.rows[i]
	if m.placeholder {
		// A zero-cost row of ~150 bytes refused as too large: the API
		// is misbehaving. Retry later; there is nothing to split.
		return &workers.Error{Class: workers.ClassTransient, Status: we.Status, Message: "placeholder row refused as too large: " + we.Message}
	}
	p.drops = append(p.drops, rowDrop{seg: int(m.seg), ref: m.ref,
		reason: fmt.Sprintf("CloudZero refused the row as too large on its own (%d): %s", we.Status, we.Message)})
	p.segs[m.seg].dropped++
	return nil
}

// refuse answers a 400 (or another refusing 4xx). In the replace modes the
// units of the run are rejected with the API's message and cleared, so
// CloudZero holds nothing of a unit whose records were dead-lettered (not
// the unit's previous upload, nor the part of it sent before the refusal).
// In sum mode the run's records are rejected.
func (p *packer) refuse(ctx context.Context, a, b int, we *workers.Error) error {
	reason := fmt.Sprintf("CloudZero refused the request (%d): %s", we.Status, we.Message)
	if p.rejectRows {
		for i := a; i < b; i++ {
			if p.rows[i].skip {
				continue // rejected already, alone
			}
			p.drops = append(p.drops, rowDrop{seg: int(p.rows[i].seg), ref: p.rows[i].ref, reason: reason})
		}
		return nil
	}
	var refused []int
	var keys []string
	for i := a; i < b; i++ {
		si := int(p.rows[i].seg)
		if s := &p.segs[si]; !s.rejected && !p.rows[i].skip {
			s.rejected = true
			refused = append(refused, si)
			keys = append(keys, s.unit.Key)
		}
	}
	p.job.Log().Warn("cloudzero refused units: clearing them at CloudZero and rejecting their records",
		"units", strings.Join(keys, ","), "status", we.Status, "message", we.Message)
	// Clear first: if the clear fails for a transient reason the job is
	// retried with the units not yet rejected, so none is settled as
	// rejected while CloudZero still holds part of it.
	if err := p.clear(ctx, refused); err != nil {
		return err
	}
	for _, si := range refused {
		p.job.RejectUnit(p.segs[si].unit, reason)
	}
	return nil
}

// clear replaces each refused unit with its placeholder row, packing as
// many hours as fit per request (a month goes alone).
func (p *packer) clear(ctx context.Context, segs []int) error {
	var rows []byte
	var in []int
	op := ""
	send := func() error {
		if len(in) == 0 {
			return nil
		}
		err := p.post(ctx, op, p.body(op, rows), len(in), nil)
		var we *workers.Error
		switch {
		case err == nil:
			for _, si := range in {
				s := &p.segs[si]
				s.held, s.rows, s.bytes = true, 1, int64(len(AppendPlaceholder(nil, s.unit.Start)))
			}
		case errors.As(err, &we) && (we.Class == workers.ClassReject || we.Class == workers.ClassTooLarge):
			p.job.Log().Error("cloudzero: could not clear refused units; CloudZero may still hold their previous upload",
				"status", we.Status, "message", we.Message)
		default:
			return err
		}
		rows, in = rows[:0], in[:0]
		return nil
	}
	for _, si := range segs {
		if sop := p.segs[si].op; sop != op || sop != opReplaceHourly {
			if err := send(); err != nil {
				return err
			}
			op = sop
		}
		n := len(rows)
		rows = append(rows, ',')
		rows = AppendPlaceholder(rows, p.segs[si].unit.Start)
		if envelope(op)+len(rows)-1 > p.d.maxBody && len(in) > 0 {
			next := append([]byte(nil), rows[n:]...)
			rows = rows[:n]
			if err := send(); err != nil {
				return err
			}
			rows = append(rows, next...)
		}
		in = append(in, si)
	}
	return send()
}

// rejectDrops rejects, through the job, the records refused after they
// were streamed, streaming their units again to get them. Units refused
// as a whole are skipped: RejectUnit covers them.
func (p *packer) rejectDrops(ctx context.Context) error {
	if len(p.drops) == 0 {
		return nil
	}
	bySeg := map[int]map[workers.RecordRef]string{}
	for _, dr := range p.drops {
		if p.segs[dr.seg].rejected {
			continue
		}
		if bySeg[dr.seg] == nil {
			bySeg[dr.seg] = map[workers.RecordRef]string{}
		}
		bySeg[dr.seg][dr.ref] = dr.reason
	}
	p.drops = p.drops[:0]
	segs := make([]int, 0, len(bySeg))
	for si := range bySeg {
		segs = append(segs, si)
	}
	sort.Ints(segs)
	for _, si := range segs {
		if err := p.rejectRefs(ctx, p.segs[si].unit, bySeg[si]); err != nil {
			return err
		}
		p.segs[si].dropped = 0
	}
	return nil
}

func (p *packer) rejectRefs(ctx context.Context, u workers.Unit, refs map[workers.RecordRef]string) error {
	return p.job.Records(ctx, u, func(ref workers.RecordRef, r *messages.UsageRecord) error {
		if reason, ok := refs[ref]; ok {
			p.job.Reject(ref, r, reason)
		}
		return nil
	})
}
