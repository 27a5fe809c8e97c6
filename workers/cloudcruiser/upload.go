package cloudcruiser

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"sync"
	"sync/atomic"
	"time"

	"github.com/usagefleet/usagefleet/messages"
	"github.com/usagefleet/usagefleet/workers"
)

var (
	// errAbandoned closes the body's pipe once the answer is in: whatever
	// the writer meets after it is a consequence, not a cause.
	errAbandoned = errors.New("cloudcruiser: upload answered or abandoned")
)

// writerGrace is how long a job whose context has ended waits for its
// file's writer (a rebuild fetch waits 5s at most for the stream).
const writerGrace = 10 * time.Second

// refusedError is a date the API refused (400, 413): its records are
// rejected with the API's message, the other dates go on.
type refusedError struct {
	date   string
	status int
	msg    string
}

func (e *refusedError) Error() string {
	return fmt.Sprintf("cloudcruiser: the upload of accounting date %s was refused (%d %s): %s", e.date, e.status, http.StatusText(e.status), e.msg)
}

// sinkError marks a failure to write into the request body: the reader
// (the HTTP transport) went away, which is never the root cause.
type sinkError struct{ err error }

func (e *sinkError) Error() string { return e.err.Error() }
func (e *sinkError) Unwrap() error { return e.err }

// sink is where the file goes: the pipe into the request (pushing back
// the attempt's deadline, workers.Attempt, on every write it accepts), or
// a counter.
type sink struct {
	w    io.Writer
	kick func()
	n    int64 // bytes written
	rows int   // rows written
}

func (s *sink) Write(p []byte) (int, error) {
	n, err := s.w.Write(p)
	s.n += int64(n)
	if n > 0 && s.kick != nil {
		s.kick()
	}
	if err != nil {
		return n, &sinkError{err}
	}
	return n, nil
}

// writeFile writes the multipart body of date u to w: one part named
// "data" holding a JSON array of the date's rows, mapped record by record
// as job.EncodedRecords streams them, so the date is never in memory whole. A
// record that cannot be mapped is rejected through the job and not
// written. empty writes "[]" without reading the date.
func (d *Destination) writeFile(ctx context.Context, job workers.Job, u workers.Unit, w *sink, boundary string, empty bool, stopped *atomic.Bool) error {
	mw := multipart.NewWriter(w)
	if err := mw.SetBoundary(boundary); err != nil {
		return err
	}
	h := textproto.MIMEHeader{}
	h.Set("Content-Disposition", `form-data; name="data"; filename="usage-`+u.Key[1:]+`.json"`)
	h.Set("Content-Type", "application/json")
	part, err := mw.CreatePart(h)
	if err != nil {
		return err
	}
	bw := bufio.NewWriterSize(part, 64<<10)
	_ = bw.WriteByte('[')
	if !empty {
		// The pool encodes the rows ahead (EncodeRowWarnings), counting
		// the records whose metadata was repaired into the acks' warnings.
		err = job.EncodedRecords(ctx, u, func(ref workers.RecordRef, r *messages.UsageRecord, row []byte, rerr error) error {
			if stopped.Load() {
				return errAbandoned // Deliver has returned: the job is not ours to touch
			}
			if rerr != nil {
				job.Reject(ref, r, rerr.Error())
				return nil
			}
			if w.rows > 0 {
				if _, err := bw.WriteString(",\n"); err != nil {
					return err
				}
			}
			w.rows++
			_, err := bw.Write(row)
			return err
		})
		if err != nil {
			return err
		}
	}
	_ = bw.WriteByte(']')
	if err := bw.Flush(); err != nil {
		return err
	}
	return mw.Close()
}

// uploadDate PUTs the file of date u (an empty one when empty is set). It
// returns nil when the API answered success, a *refusedError when it
// refused the date, and otherwise the *workers.Error (or context error) to
// end the job with.
func (d *Destination) uploadDate(ctx context.Context, job workers.Job, u workers.Unit, empty bool) error {
	date := u.Key[1:]
	boundary := newBoundary()
	length := int64(-1)
	if d.contentLength {
		c := &sink{w: io.Discard}
		if err := d.writeFile(ctx, job, u, c, boundary, empty, new(atomic.Bool)); err != nil {
			return asJobError(err)
		}
		length = c.n
	}

	// stall_timeout is the attempt's deadline (workers.Attempt), pushed
	// back by every piece of the file the connection accepts: it bounds a
	// stall, not the size of the date.
	actx, wd := workers.NewAttempt(ctx, d.timeout)
	defer wd.Stop()
	pr, pw := io.Pipe()
	req, err := d.newRequest(actx, date, pr, length, boundary)
	if err != nil {
		return err
	}
	started := time.Now()
	f := d.streamFile(actx, job, u, pr, pw, wd, boundary, empty)

	resp, doErr := job.Do(actx, req)
	var raw []byte
	status := 0
	if doErr == nil {
		raw, _ = io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
		_ = resp.Body.Close()
		status = resp.StatusCode
		if status/100 == 2 {
			// A success answers the whole file: the writer is done or
			// about to be. Wait for it, but not forever.
			f.wait(d.timeout)
		}
	}
	finished, cause := f.abandon(ctx, job, date)
	switch {
	case ctx.Err() != nil:
		return ctx.Err()
	case wd.Expired():
		return &workers.Error{Class: workers.ClassTransient, Err: fmt.Errorf("upload of %s: no progress for %s %s (%d bytes sent)", date, d.stallKey, d.timeout, f.out.n)}
	case cause != nil && !isSink(cause):
		// The file was cut short: whatever the answer says, it is not
		// about the date's content.
		return asJobError(cause)
	case doErr != nil:
		return asJobError(doErr)
	}
	if status/100 != 2 {
		return classify(date, status, resp.Header, d.parseAnswer(raw).Message)
	}
	if !finished {
		return &workers.Error{Class: workers.ClassTransient, Status: status, Err: fmt.Errorf("upload of %s answered before the whole file was sent", date)}
	}
	a := d.parseAnswer(raw)
	if a.Success == nil || !*a.Success {
		return a.failedWith200(date, status)
	}
	job.Log().Info("cloudcruiser: uploaded", "date", date, "records", f.out.rows, "bytes", f.out.n, "empty", empty,
		"took", time.Since(started).Round(time.Millisecond), "message", a.Message)
	return nil
}

// fileStream is a date's file being written into the request's pipe
// while the transport sends it: the file streams from the stream's
// rebuild through the pipe into the connection. The writer's error is
// kept only if it came before the answer (a cause, such as a failed
// rebuild that cut the file short), not after (a consequence of closing
// the pipe).
type fileStream struct {
	out     *sink
	pr      *io.PipeReader
	wd      *workers.Attempt
	stopped atomic.Bool
	done    chan struct{} // closed when the writer returns

	mu        sync.Mutex
	werr      error
	finished  bool // the whole file went into the pipe
	abandoned bool
}

// streamFile starts writing the file of u into pw (pr is the request's
// end of the pipe), each write pushing back wd.
func (d *Destination) streamFile(actx context.Context, job workers.Job, u workers.Unit, pr *io.PipeReader, pw *io.PipeWriter, wd *workers.Attempt, boundary string, empty bool) *fileStream {
	f := &fileStream{out: &sink{w: pw, kick: wd.Progress}, pr: pr, wd: wd, done: make(chan struct{})}
	go func() {
		defer close(f.done)
		err := d.writeFile(actx, job, u, f.out, boundary, empty, &f.stopped)
		f.mu.Lock()
		if !f.abandoned {
			f.werr, f.finished = err, err == nil
		}
		f.mu.Unlock()
		if err == nil {
			wd.Progress() // the whole file is out: the answer gets a full stall_timeout
		}
		pw.CloseWithError(err)
	}()
	return f
}

// wait waits for the writer to return, for d at most.
func (f *fileStream) wait(d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-f.done:
	case <-t.C:
	}
}

// abandon ends the attempt: it returns what the writer met before, and
// whether it finished the file. It waits for the writer, which stops at
// its next write into the closed pipe, or when the rebuild sees the
// cancelled context. Once the job's own context (ctx) has ended it waits
// writerGrace at most: should a rebuild ever not return (the pool's
// ordered consumer once retried without end on a closed NATS connection),
// the job must not hang with it. The writer is then left behind; it
// touches the job no more.
func (f *fileStream) abandon(ctx context.Context, job workers.Job, date string) (bool, error) {
	f.mu.Lock()
	f.abandoned = true
	err, ok := f.werr, f.finished
	f.mu.Unlock()
	f.stopped.Store(true)
	f.pr.CloseWithError(errAbandoned)
	f.wd.Stop()
	select {
	case <-f.done:
	case <-ctx.Done():
		t := time.NewTimer(writerGrace)
		defer t.Stop()
		select {
		case <-f.done:
		case <-t.C:
			job.Log().Error("cloudcruiser: the rebuild of the date did not end with its job; leaving it behind", "date", date)
		}
	}
	return ok, err
}

// newRequest is the PUT of date's file, read from body: length bytes
// (-1: unknown, sent chunked), parts separated by boundary.
func (d *Destination) newRequest(ctx context.Context, date string, body io.Reader, length int64, boundary string) (*http.Request, error) {
	url := d.endpoint + date
	if d.query != "" {
		url += "?" + d.query
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, url, body)
	if err != nil {
		return nil, fmt.Errorf("cloudcruiser: building the request: %w", err)
	}
	if length >= 0 {
		req.ContentLength = length
	}
	req.Header.Set("Authorization", "Bearer "+d.token.Value())
	req.Header.Set("Content-Type", "multipart/form-data; boundary="+boundary)
	req.Header.Set("Accept", "application/json")
	return req, nil
}

// asJobError returns err as the pool should see it: a context error or
// *workers.Error as it is, anything else as transient.
func asJobError(err error) error {
	var we *workers.Error
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) || errors.As(err, &we) {
		return err
	}
	return workers.Transient(err)
}

func isSink(err error) bool {
	var se *sinkError
	return errors.As(err, &se) || errors.Is(err, io.ErrClosedPipe) || errors.Is(err, errAbandoned)
}

// newBoundary is a random multipart boundary, fixed for both passes of a
// content_length upload.
func newBoundary() string {
	var b [24]byte
	_, _ = rand.Read(b[:])
	return "usagefleet-" + hex.EncodeToString(b[:])
}
