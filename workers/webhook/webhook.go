// Package webhook is the generic append destination: it POSTs usage
// records as JSON arrays (the FOCUS-named JSON of messages.UsageRecord) to
// an HTTP endpoint, every body under a configurable byte limit.
//
// Semantics: append, at least once. Every request carries an idempotency
// header (Idempotency-Key by default) that is the same for every try of the
// same chunk of the same part, so a receiver that honours it sees each
// record once; one that does not may see a repeat after a retried timeout.
//
// Settings (under a destination's `settings:`):
//
//	url: https://billing.example.com/ingest   # required
//	max_body_bytes: 1048576                    # default 1 MiB
//	token: {env: WEBHOOK_TOKEN}                # optional: Authorization: Bearer <token>
//	headers: {X-Tenant: acme}                  # optional extra headers
//	idempotency_header: Idempotency-Key        # default; "" keeps the default
//
// Failures: 401/403 pause the destination; 413 bisects the body (a single
// record too large alone is rejected); other 4xx dead-letter the part with
// the receiver's message; 408, 429, 5xx and network errors are retried.
package webhook

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/usagefleet/usagefleet/internal/config"
	"github.com/usagefleet/usagefleet/messages"
	"github.com/usagefleet/usagefleet/workers"
)

// Settings is the webhook destination's configuration.
type Settings struct {
	URL               string            `yaml:"url"`
	MaxBodyBytes      int               `yaml:"max_body_bytes"`
	Token             config.Secret     `yaml:"token"`
	Headers           map[string]string `yaml:"headers"`
	IdempotencyHeader string            `yaml:"idempotency_header"`
}

// DefaultMaxBodyBytes is the body limit when none is configured.
const DefaultMaxBodyBytes = 1 << 20

func init() {
	workers.Register("webhook", func(name string, node *yaml.Node, key string) (workers.Destination, error) {
		var s Settings
		if err := config.Decode(node, &s, key); err != nil {
			return nil, err
		}
		return New(name, s, key)
	})
}

// Destination posts JSON arrays of records.
type Destination struct {
	name string
	s    Settings
}

// New checks the settings (key is their config path) and builds the
// destination.
func New(name string, s Settings, key string) (*Destination, error) {
	u, err := url.Parse(s.URL)
	if s.URL == "" || err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, config.Errorf(key+".url", "want an http(s) URL, got %q", s.URL)
	}
	if s.MaxBodyBytes == 0 {
		s.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if s.MaxBodyBytes < 256 {
		return nil, config.Errorf(key+".max_body_bytes", "%d is too small (at least 256)", s.MaxBodyBytes)
	}
	if s.IdempotencyHeader == "" {
		s.IdempotencyHeader = "Idempotency-Key"
	}
	if s.Token.IsSet() {
		if err := s.Token.Resolve(key + ".token"); err != nil {
			return nil, err
		}
	}
	return &Destination{name: name, s: s}, nil
}

func (d *Destination) Name() string                   { return d.name }
func (d *Destination) Semantics() workers.Semantics   { return workers.Append }
func (d *Destination) Units(time.Time) []workers.Unit { return nil }
func (d *Destination) LeaseKey(workers.Unit) string   { return "" }

type row struct {
	ref workers.RecordRef
	rec *messages.UsageRecord
	js  []byte
}

// Deliver posts the part's records in bodies under the limit.
func (d *Destination) Deliver(ctx context.Context, job workers.Job) error {
	var rows []row
	err := job.Records(ctx, workers.Unit{}, func(ref workers.RecordRef, r *messages.UsageRecord) error {
		rows = append(rows, row{ref: ref, rec: r, js: r.AppendJSON(nil)})
		return nil
	})
	if err != nil {
		return err
	}
	scope := strconv.FormatUint(job.Covered(), 10)
	chunk := 0
	var start int
	size := 2 // "[]"
	for i, r := range rows {
		if len(r.js)+2 > d.s.MaxBodyBytes {
			// Too large alone: send what came before, reject this one.
			if err := d.send(ctx, job, scope, &chunk, rows[start:i]); err != nil {
				return err
			}
			job.Reject(r.ref, r.rec, fmt.Sprintf("record is %d bytes of JSON, over the %d-byte body limit", len(r.js), d.s.MaxBodyBytes))
			start, size = i+1, 2
			continue
		}
		add := len(r.js)
		if i > start {
			add++ // comma
		}
		if size+add > d.s.MaxBodyBytes {
			if err := d.send(ctx, job, scope, &chunk, rows[start:i]); err != nil {
				return err
			}
			start, size, add = i, 2, len(r.js)
		}
		size += add
	}
	return d.send(ctx, job, scope, &chunk, rows[start:])
}

// send posts rows as one body; a 413 splits it in two.
func (d *Destination) send(ctx context.Context, job workers.Job, scope string, chunk *int, rows []row) error {
	if len(rows) == 0 {
		return nil
	}
	body := make([]byte, 0, 64*len(rows))
	body = append(body, '[')
	for i, r := range rows {
		if i > 0 {
			body = append(body, ',')
		}
		body = append(body, r.js...)
	}
	body = append(body, ']')
	n := *chunk
	*chunk++
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.s.URL, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(d.s.IdempotencyHeader, job.IdempotencyKey(scope, n, body))
	for k, v := range d.s.Headers {
		req.Header.Set(k, v)
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
	cerr := workers.Classify(resp.StatusCode, resp.Header, apiMessage(msg))
	if cerr == nil {
		return nil
	}
	if we, ok := cerr.(*workers.Error); ok && we.Class == workers.ClassTooLarge {
		if len(rows) == 1 {
			job.Reject(rows[0].ref, rows[0].rec, "the receiver refused the record as too large (413)")
			return nil
		}
		mid := len(rows) / 2
		if err := d.send(ctx, job, scope, chunk, rows[:mid]); err != nil {
			return err
		}
		return d.send(ctx, job, scope, chunk, rows[mid:])
	}
	return cerr
}

// apiMessage keeps a short, printable excerpt of the receiver's answer.
func apiMessage(b []byte) string {
	b = bytes.TrimSpace(b)
	if len(b) > 300 {
		b = append(b[:300:300], "…"...)
	}
	return string(bytes.ToValidUTF8(b, []byte("?")))
}
