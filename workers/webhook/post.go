package webhook

// One request: the body compressed when configured, signed when secrets
// are configured (sign.go), sent through the pool, its answer classified
// by the configured status lists before the pool's defaults.

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/usagefleet/usagefleet/internal/config"
	"github.com/usagefleet/usagefleet/workers"
)

// gzipRawFactor bounds the JSON a gzip body is packed with: at most this
// many times max_body_bytes. Usage records compress about 8 to 14 times
// (usagegen's FOCUS rows: 10.6 times at gzipLevel), so a body packed to
// this bound usually fits the limit once compressed; one that does not is
// split in two before anything is sent (the packing must not depend on
// anything but the part, or a retry would send other bodies under other
// webhook-ids). The bound also caps what a receiver inflates per request.
const gzipRawFactor = 8

// HTTP status lists are validated against these.
const (
	minListedStatus = 300 // 1xx are interim, 2xx success
	maxListedStatus = 599
)

// statusLists checks retry_statuses, refuse_statuses and pause_statuses
// (key is the settings' path) and returns the class each listed status
// maps to.
func statusLists(s Settings, key string) (map[int]workers.Class, error) {
	lists := []struct {
		name  string
		codes []int
		class workers.Class
	}{
		{"retry_statuses", s.RetryStatuses, workers.ClassTransient},
		{"refuse_statuses", s.RefuseStatuses, workers.ClassReject},
		{"pause_statuses", s.PauseStatuses, workers.ClassAuth},
	}
	m := map[int]workers.Class{}
	in := map[int]string{}
	for _, l := range lists {
		for i, c := range l.codes {
			k := key + "." + l.name + "[" + strconv.Itoa(i) + "]"
			switch {
			case c < 100 || c > 999:
				return nil, config.Errorf(k, "%d is not an HTTP status (three digits)", c)
			case c < minListedStatus || c > maxListedStatus:
				return nil, config.Errorf(k, "%d is outside %d-%d: 1xx are interim answers and 2xx success", c, minListedStatus, maxListedStatus)
			case c == http.StatusRequestEntityTooLarge:
				return nil, config.Errorf(k, "413 cannot be listed: it splits the body in two (a record too large alone is rejected)")
			}
			if prev, dup := in[c]; dup {
				if prev == l.name {
					return nil, config.Errorf(k, "%d is listed twice", c)
				}
				return nil, config.Errorf(k, "%d is also in %s: a status has one meaning", c, prev)
			}
			in[c] = l.name
			m[c] = l.class
		}
	}
	return m, nil
}

// classify is workers.Classify with the configured lists first.
func (d *Destination) classify(status int, h http.Header, msg string) error {
	class, listed := d.statuses[status]
	if !listed {
		return workers.Classify(status, h, msg)
	}
	e := &workers.Error{Class: class, Status: status, Message: msg}
	switch class {
	case workers.ClassTransient:
		e.RetryAfter = workers.RetryAfter(h, time.Now())
		e.Message = joinMsg("listed in retry_statuses", msg)
	case workers.ClassReject:
		e.Message = joinMsg("listed in refuse_statuses", msg)
	case workers.ClassAuth:
		e.Message = joinMsg("listed in pause_statuses", msg)
	}
	return e
}

func joinMsg(a, b string) string {
	if b == "" {
		return a
	}
	return a + ": " + b
}

// gzipLevel trades ratio for CPU: on usagegen's FOCUS JSON level 2
// compresses 10.6 times, about twice as fast as the default level (6, 14
// times); level 1 only 7.7 times (one run of each in the same process, on
// a loaded 2-core machine: the ratios hold, the speeds are relative).
const gzipLevel = 2

// gzipWriters keeps compressors: a gzip.Writer is some 800 KB of state.
var gzipWriters = sync.Pool{New: func() any {
	zw, _ := gzip.NewWriterLevel(nil, gzipLevel) // a valid level: no error
	return zw
}}

// gzipBody compresses body into a new slice (the transport may still read
// a request's body after Do returns, so it is never reused).
func gzipBody(body []byte) []byte {
	var out bytes.Buffer
	out.Grow(len(body)/6 + 64)
	zw := gzipWriters.Get().(*gzip.Writer)
	zw.Reset(&out)
	_, _ = zw.Write(body) // a bytes.Buffer does not fail
	_ = zw.Close()
	zw.Reset(io.Discard)
	gzipWriters.Put(zw)
	return out.Bytes()
}

// packLimit is the JSON bytes a body may be packed with: the limit itself,
// or gzipRawFactor times it when bodies are compressed (the limit then
// applies to the compressed bytes, checked in post).
func (d *Destination) packLimit() int {
	if d.gzip {
		return d.s.MaxBodyBytes * gzipRawFactor
	}
	return d.s.MaxBodyBytes
}

// post sends one body, the n-th request of the part (scope), and
// classifies the answer. A compressed body over the limit is not sent: it
// comes back as too large, for the caller to split.
//
// body is in enc (held by the caller until post returns): the request
// reads it through a body of its own that holds enc until the transport
// closes it.
func (d *Destination) post(ctx context.Context, job workers.Job, scope string, n int, enc *encoding, body []byte) error {
	// The key (and webhook-id) is over the JSON, so it names the content
	// whatever the compression, and stays the same for every try.
	id := job.IdempotencyKey(scope, n, body)
	sent := body
	if d.gzip {
		sent = gzipBody(body)
		if len(sent) > d.s.MaxBodyBytes {
			return &workers.Error{Class: workers.ClassTooLarge, Message: fmt.Sprintf("%d bytes of JSON are %d bytes gzipped, over the %d-byte body limit", len(body), len(sent), d.s.MaxBodyBytes)}
		}
	}
	if d.sign != nil {
		// Signed at each try, after the cooldown wait: the timestamp is
		// the attempt's, as the specification wants, and a receiver's
		// tolerance (five minutes in the reference libraries) is not
		// spent waiting out a Retry-After. The signature covers the JSON,
		// before compression: what the receiver parses once its framework
		// or proxy has removed the Content-Encoding.
		ctx = workers.WithBeforeSend(ctx, func(r *http.Request) {
			ts := time.Now().Unix()
			r.Header.Set("Webhook-Timestamp", strconv.FormatInt(ts, 10))
			r.Header.Set("Webhook-Signature", d.sign.header(id, ts, body))
		})
	}
	var req *http.Request
	var err error
	if d.gzip {
		req, err = http.NewRequestWithContext(ctx, http.MethodPost, d.s.URL, bytes.NewReader(sent))
	} else {
		// No copy: the bytes are read where they were encoded. Each try
		// (GetBody, called only within Do) reads them afresh.
		b := newBody(enc, sent)
		if req, err = http.NewRequestWithContext(ctx, http.MethodPost, d.s.URL, b); err != nil {
			b.Close()
			return err
		}
		req.ContentLength = int64(len(sent))
		req.GetBody = func() (io.ReadCloser, error) { return newBody(enc, sent), nil }
	}
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	if d.gzip {
		req.Header.Set("Content-Encoding", "gzip")
	}
	req.Header.Set(d.s.IdempotencyHeader, id)
	if d.sign != nil {
		req.Header.Set("Webhook-Id", id)
	}
	for k, v := range d.s.Headers {
		req.Header.Set(k, v)
	}
	for _, h := range d.secrets {
		req.Header.Set(h.name, h.val.Value())
	}
	if d.s.Token.Value() != "" {
		req.Header.Set("Authorization", "Bearer "+d.s.Token.Value())
	}
	resp, err := job.Do(ctx, req)
	if err != nil {
		return err
	}
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	resp.Body.Close()
	return d.classify(resp.StatusCode, resp.Header, apiMessage(d.redact(msg)))
}

// compressions are the values compress takes.
var compressions = []string{"", "none", "gzip"}

func validCompress(c string) bool { return slices.Contains(compressions, c) }
