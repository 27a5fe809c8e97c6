// The request bodies a packer sends: the envelope written in front of the
// rows, sizes, the digest an idempotency key derives from, and the post.

package cloudzero

import (
	"context"
	"encoding/binary"
	"fmt"
)

// envelope is the size of a body with no rows for op:
// {"month":"2024-08-01T00:00:00Z","operation":"<op>","data":[]}
func envelope(op string) int {
	return len(`{"month":"2024-08-01T00:00:00Z","operation":"","data":[]}`) + len(op)
}

// headRoom is the room before the first row for the longest envelope
// opening, `{"month":"...","operation":"replace_hourly","data":[`.
const headRoom = len(`{"month":"2024-08-01T00:00:00Z","operation":"replace_hourly","data":[`)

// appendOpening appends the envelope up to the rows' first byte.
func (p *packer) appendOpening(b []byte, op string) []byte {
	b = append(b, `{"month":"`...)
	b = append(b, p.monthText...)
	b = append(b, `","operation":"`...)
	b = append(b, op...)
	return append(b, `","data":[`...)
}

// size is the exact body size of rows[a:b].
func (p *packer) size(a, b int) int {
	return envelope(p.opFor(a, b)) + p.rows[b-1].end - p.rowStart(a) - 1
}

// body builds the request body for rows (each preceded by a comma) in a
// buffer from bodyPool.
func (p *packer) body(op string, rows []byte) *sharedBody {
	b := getBody(envelope(op) + len(rows) - 1)
	b = p.appendOpening(b, op)
	b = append(b, rows[1:]...)
	b = append(b, ']', '}')
	return newSharedBody(b)
}

// rowsVersion names the mapping that made the rows; it goes into every
// digest, so a worker that maps records differently (a newer release) never
// shares a key with an older one's request.
const rowsVersion = "cbf-rows-1"

// digest is what the idempotency key of a request carrying rows[a:b] with
// op is derived from: the envelope and which records the rows are (stream
// sequence and index, in runs) with their encoded lengths. A stored part
// never changes and its rows are encoded the same way every time, so this
// tells bodies apart as a hash of their bytes would, without reading them
// (hashing every 5 MB body was 8% of a drain's CPU).
func (p *packer) digest(op string, a, b int) []byte {
	d := p.dig[:0]
	d = append(d, rowsVersion...)
	d = append(d, 0)
	d = append(d, op...)
	d = append(d, 0)
	d = append(d, p.monthText...)
	for i := a; i < b; {
		m := p.rows[i]
		if m.skip {
			i++
			continue
		}
		if m.placeholder {
			d = append(d, 'P')
			d = binary.LittleEndian.AppendUint64(d, uint64(p.segs[m.seg].unit.Start.Unix()))
			i++
			continue
		}
		// A run: the same part, consecutive record indexes.
		j, size := i+1, m.end-p.rowStart(i)
		for j < b && !p.rows[j].placeholder && !p.rows[j].skip && p.rows[j].ref.Seq == m.ref.Seq && p.rows[j].ref.Index == p.rows[j-1].ref.Index+1 {
			size += p.rows[j].end - p.rowStart(j)
			j++
		}
		d = append(d, 'R')
		d = binary.LittleEndian.AppendUint64(d, m.ref.Seq)
		d = binary.LittleEndian.AppendUint32(d, uint32(m.ref.Index))
		d = binary.LittleEndian.AppendUint32(d, uint32(j-i))
		d = binary.LittleEndian.AppendUint64(d, uint64(size))
		i = j
	}
	p.dig = d
	return d
}

// post sends a body of n rows with op and classifies the answer (nil on
// success); digest stands for the body in its idempotency key (nil: the
// body itself).
func (p *packer) post(ctx context.Context, op string, body *sharedBody, n int, digest []byte) error {
	defer body.done()
	if len(body.buf) > p.d.maxBody {
		// Every caller sizes its runs first; this guards the invariant.
		return fmt.Errorf("cloudzero: refusing to send a %d-byte body over max_body_bytes %d", len(body.buf), p.d.maxBody)
	}
	if digest == nil {
		digest = body.buf
	}
	key := p.job.IdempotencyKey(p.scope, p.chunk, digest)
	p.chunk++
	return p.d.send(ctx, p.job, body, key, op, n)
}

// live counts the rows of rows[a:b] not refused alone.
func (p *packer) live(a, b int) int {
	n := 0
	for i := a; i < b; i++ {
		if !p.rows[i].skip {
			n++
		}
	}
	return n
}

// liveBody builds the body of rows[a:b] without the rows refused alone,
// in a buffer from bodyPool.
func (p *packer) liveBody(op string, a, b int) *sharedBody {
	n := envelope(op)
	for i := a; i < b; i++ {
		if !p.rows[i].skip {
			n += p.rows[i].end - p.rowStart(i)
		}
	}
	buf := p.appendOpening(getBody(n), op)
	first := true
	for i := a; i < b; i++ {
		if p.rows[i].skip {
			continue
		}
		row := p.buf[p.rowStart(i):p.rows[i].end]
		if first {
			row, first = row[1:], false // no comma before the first row
		}
		buf = append(buf, row...)
	}
	return newSharedBody(append(buf, ']', '}'))
}
