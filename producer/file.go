package producer

import (
	"context"
	"crypto/sha256"
	"io"
	"sync/atomic"

	"github.com/usagefleet/usagefleet/producer/input"
)

// FileOptions tune SpoolFile.
type FileOptions struct {
	Input input.Options
	Spool SpoolOptions
	// Counters, when set, are kept current while reading (for progress):
	// input bytes read (as stored: compressed for a gzip file) and good
	// rows spooled.
	BytesRead, Rows *atomic.Int64
}

// FileResult is what SpoolFile found.
type FileResult struct {
	input.Result
	// Hash is the SHA-256 of the input's bytes as read (compressed for a
	// gzip file): a batch id derived from it names this content.
	Hash [sha256.Size]byte
	// Spool holds the good rows as parts (nil on error). The caller
	// publishes it (Producer.PublishSpool) or discards it.
	Spool *Spool
}

// SpoolFile reads an input (CSV, gzip, NDJSON, JSON, Parquet: see package
// input) and spools its good rows, reading and checking in one goroutine
// while another groups, encodes and writes parts. Memory is bounded by
// the options (rows in flight between the two, the spool's open hours),
// not by the input. Every problem is in the result, as input.ReadWith
// reports it; the caller decides whether the good rows are published.
func SpoolFile(ctx context.Context, name string, r io.Reader, opt FileOptions) (*FileResult, error) {
	sp, err := NewSpool(opt.Spool)
	if err != nil {
		return nil, err
	}
	h := sha256.New()
	cr := &countingReader{r: r, n: opt.BytesRead}
	tee := io.TeeReader(cr, h)

	// A CSV file's rows come encoded ahead of their parts
	// (input.ReadEncoded), a chunk of the file at a time: no record is
	// kept or copied between the reader and the spool. Other inputs'
	// records come in batches of rows.
	type work struct {
		rows []input.Row
		enc  *input.EncodedRows
	}
	const batch = 256
	rows := make(chan work, 4)
	free := make(chan []input.Row, 6)
	spooled := make(chan error, 1)
	go func() {
		var err error
		for w := range rows {
			b := w.rows
			if w.enc != nil {
				if err == nil {
					err = sp.AddEncoded(w.enc)
					if opt.Rows != nil {
						opt.Rows.Add(int64(len(w.enc.Rows)))
					}
				}
				w.enc.Release() // the spool copied what it keeps
				continue
			}
			if err == nil {
				for i := range b {
					if err = sp.Add(&b[i].Record); err != nil {
						break
					}
				}
				if opt.Rows != nil {
					opt.Rows.Add(int64(len(b)))
				}
			}
			clear(b) // drop references for the GC
			select {
			case free <- b[:0]:
			default:
			}
		}
		if err == nil {
			err = sp.Close()
		}
		spooled <- err
	}()
	cur := make([]input.Row, 0, batch)
	send := func() error {
		select {
		case rows <- work{rows: cur}:
		case <-ctx.Done():
			return ctx.Err()
		}
		select {
		case cur = <-free:
		default:
			cur = make([]input.Row, 0, batch)
		}
		return nil
	}
	onRow := func(row input.Row) error {
		cur = append(cur, row)
		if len(cur) == batch {
			return send()
		}
		return nil
	}
	read := input.ReadEncoded
	if spoolRecords {
		read = func(name string, r io.Reader, opt input.Options, fn func(input.Row) error, _ func(*input.EncodedRows) error) (input.Result, error) {
			return input.ReadWith(name, r, opt, fn)
		}
	}
	res, err := read(name, tee, opt.Input, onRow, func(e *input.EncodedRows) error {
		if len(cur) > 0 {
			if err := send(); err != nil {
				return err
			}
		}
		select {
		case rows <- work{enc: e}:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	})
	if err == nil && len(cur) > 0 {
		err = send()
	}
	if err == nil {
		// The reader may stop early (a syntax error ends a JSON array):
		// hash the rest too, so the hash is the input's.
		_, err = io.Copy(io.Discard, tee)
	}
	close(rows)
	if spoolErr := <-spooled; err == nil && spoolErr != nil {
		err = spoolErr
	}
	if err != nil {
		sp.Discard()
		return &FileResult{Result: res}, err
	}
	fr := &FileResult{Result: res, Spool: sp}
	h.Sum(fr.Hash[:0])
	return fr, nil
}

// spoolRecords, when set (by a test), makes SpoolFile read every input as
// records (input.ReadWith), the path CSV files took before ReadEncoded.
var spoolRecords bool

type countingReader struct {
	r io.Reader
	n *atomic.Int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if c.n != nil && n > 0 {
		c.n.Add(int64(n))
	}
	return n, err
}
