package cloudzero

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/usagefleet/usagefleet/internal/telemetry"
	"github.com/usagefleet/usagefleet/workers"
)

// IdempotencyHeader carries the request's idempotency key [DOC].
const IdempotencyHeader = "cloudzero-idempotency-key"

// maxAnswer bounds how much of an answer is read.
const maxAnswer = 64 << 10

// send posts one body through the job (which waits out the destination's
// cooldown and re-sends when no answer came). It returns nil on 2xx, else
// the *workers.Error the answer classifies as, or a transient error when
// no answer came. The API key goes in the Authorization header and nowhere
// else: no error, log line or span carries it.
func (d *Destination) send(ctx context.Context, job workers.Job, body *sharedBody, idemKey, op string, rows int) error {
	// stall_timeout bounds each attempt, from asking for a connection to
	// the end of the answer (workers.Attempt: the body goes whole, so no
	// progress is reported before the answer).
	actx, att := workers.NewAttempt(ctx, d.timeout)
	defer att.Stop()
	req, err := http.NewRequestWithContext(actx, http.MethodPost, d.endpoint, body.reader())
	if err != nil {
		return fmt.Errorf("cloudzero: building the request: %w", err)
	}
	req.ContentLength = int64(len(body.buf))
	req.GetBody = func() (io.ReadCloser, error) { return body.reader(), nil }
	req.Header.Set("Authorization", d.key.Value()) // the bare key: "not a bearer token" [DOC]
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(IdempotencyHeader, idemKey)
	resp, err := job.Do(actx, req)
	if err != nil {
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case att.Expired():
			return &workers.Error{Class: workers.ClassTransient, Err: fmt.Errorf("no answer within %s %s", d.stallKey, d.timeout)}
		}
		var we *workers.Error
		if errors.As(err, &we) {
			return err
		}
		return workers.Transient(err)
	}
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	_ = resp.Body.Close()
	log := job.Log()
	log.Debug("cloudzero: billing drop", "operation", op, "rows", rows, "bytes", len(body.buf), "status", resp.StatusCode)
	if resp.StatusCode/100 == 2 {
		var ok struct {
			Connection struct {
				RowCount *int `json:"row_count"`
			} `json:"connection"`
		}
		if json.Unmarshal(raw, &ok) == nil && ok.Connection.RowCount != nil && *ok.Connection.RowCount != rows {
			log.Warn("cloudzero: the API counted a different number of rows than were sent",
				"sent", rows, "row_count", *ok.Connection.RowCount, "operation", op)
		}
		return nil
	}
	msg := d.apiMessage(raw)
	if resp.StatusCode == http.StatusNotFound {
		// The connection id is wrong or was deleted: a destination-wide
		// problem. Pause like an auth failure rather than dead-letter data.
		return &workers.Error{Class: workers.ClassAuth, Status: resp.StatusCode, Message: "connection not found: " + msg}
	}
	if resp.StatusCode == http.StatusConflict {
		// The API documents no 409 for billing drops; the likely meaning is
		// a conflict with a concurrent request for the connection [INFER],
		// which is no fault of the body: retry later, with backoff.
		return &workers.Error{Class: workers.ClassTransient, Status: resp.StatusCode, Message: "conflict: " + msg,
			RetryAfter: workers.RetryAfter(resp.Header, time.Now())}
	}
	// Other 4xx refuse the body (workers.Classify); a 400 or 422 is
	// narrowed down to the row it names, or bisected (isolate), which
	// reads the error's type.
	err = workers.Classify(resp.StatusCode, resp.Header, msg)
	var we *workers.Error
	if errors.As(err, &we) && we.Class == workers.ClassReject {
		if typ := d.errorType(raw); typ != "" {
			we.Err = apiErrorType(typ)
		}
	}
	return err
}

// apiErrorType is the type of a 400's {"error":{"type"}}, carried in
// workers.Error.Err for isolate.
type apiErrorType string

func (t apiErrorType) Error() string { return "error type " + string(t) }

// errorType reads {"error":{"type"}}: a short identifier, kept only when
// it looks like one and is not the API key echoed (it goes into the
// error's text: workers.Error prints its Err). A key is made of the
// characters an identifier may hold.
func (d *Destination) errorType(raw []byte) string {
	typ := errorType(raw)
	if typ != "" && telemetry.NewRedactor(d.key.Value()).String(typ) != typ {
		return ""
	}
	return typ
}

func errorType(raw []byte) string {
	var v struct {
		Error *struct {
			Type string `json:"type"`
		} `json:"error"`
	}
	if json.Unmarshal(raw, &v) != nil || v.Error == nil || len(v.Error.Type) > 64 {
		return ""
	}
	for _, c := range v.Error.Type {
		if !(c == '_' || c == '-' || c == '.' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return ""
		}
	}
	return v.Error.Type
}

// apiMessage reads the API's error text: {"error":{"message"}} (400) or
// {"message"} (403, 413), else the body's text. It is clipped, and the
// key is blanked should the API ever echo it.
func (d *Destination) apiMessage(raw []byte) string {
	var v struct {
		Message string `json:"message"`
		Error   *struct {
			Message string `json:"message"`
		} `json:"error"`
	}
	var msg string
	if json.Unmarshal(raw, &v) == nil {
		if v.Error != nil && v.Error.Message != "" {
			msg = v.Error.Message
		} else {
			msg = v.Message
		}
	} else if utf8.Valid(raw) {
		msg = strings.TrimSpace(string(raw))
	}
	// In any encoding the API might echo it (telemetry.Redactor).
	msg = telemetry.NewRedactor(d.key.Value()).String(msg)
	if len(msg) > 1024 {
		msg = strings.ToValidUTF8(msg[:1024], "") + "…"
	}
	return msg
}

// bodyPool keeps request body buffers: a drain sends hundreds of 5 MB
// bodies, and allocating (and zeroing) each was a tenth of its CPU.
var bodyPool sync.Pool // *[]byte

func getBody(size int) []byte {
	if b, _ := bodyPool.Get().(*[]byte); b != nil && cap(*b) >= size {
		return (*b)[:0]
	}
	return make([]byte, 0, size)
}

// sharedBody is a request body that goes back to bodyPool once nothing
// reads it any more: the transport may read (and closes) the body after
// Do has returned, and a re-send reads it again through GetBody, so every
// reader holds a reference, as does the sender until it is done.
type sharedBody struct {
	buf  []byte
	refs atomic.Int32
	// released, when set, is closed instead of pooling buf: the packer
	// owns a body sent from its own buffer and only waits for it.
	released chan struct{}
}

// wait waits until only the owner's reference is left (the transport is
// done), at most a while after ctx ends; it reports whether that happened.
func (b *sharedBody) wait(ctx context.Context) bool {
	b.done()
	select {
	case <-b.released:
		return true
	default:
	}
	t := time.NewTimer(5 * time.Second)
	defer t.Stop()
	select {
	case <-b.released:
		return true
	case <-ctx.Done():
	case <-t.C:
		return false
	}
	select { // a cancelled request is closed by the transport promptly
	case <-b.released:
		return true
	case <-t.C:
		return false
	}
}

func newSharedBody(buf []byte) *sharedBody {
	b := &sharedBody{buf: buf}
	b.refs.Store(1)
	return b
}

func (b *sharedBody) reader() io.ReadCloser {
	b.refs.Add(1)
	return &bodyReader{Reader: bytes.NewReader(b.buf), body: b}
}

// done drops one reference; the last returns the buffer (or, for a body
// the packer owns, tells it).
func (b *sharedBody) done() {
	if b.refs.Add(-1) == 0 {
		if b.released != nil {
			close(b.released)
			return
		}
		buf := b.buf
		b.buf = nil
		bodyPool.Put(&buf)
	}
}

type bodyReader struct {
	*bytes.Reader
	body   *sharedBody
	closed atomic.Bool
}

func (r *bodyReader) Close() error {
	if r.closed.CompareAndSwap(false, true) {
		r.body.done()
	}
	return nil
}
