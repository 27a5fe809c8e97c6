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
//	headers:                                   # optional extra headers
//	  X-Tenant: acme                           # a plain value, sent as it is
//	  X-Api-Key: {env: WEBHOOK_API_KEY}        # a credential: {env: VAR} or {file: PATH}
//	idempotency_header: Idempotency-Key        # default; "" keeps the default
//	signing_secrets:                           # optional: Standard Webhooks signatures
//	  - {env: WEBHOOK_SIGNING_SECRET}          # whsec_<base64>, the newest first
//	  - {file: /run/secrets/webhook-old}       # while the receiver rotates: one signature each
//	compress: gzip                             # optional: gzip bodies (default none)
//	retry_statuses: [409]                      # optional: statuses to retry,
//	refuse_statuses: [404]                     #   to dead-letter the part with the answer,
//	pause_statuses: [410]                      #   to pause the destination on
//
// Signatures (sign.go) follow the Standard Webhooks specification 1.0.0
// (github.com/standard-webhooks/standard-webhooks, spec/standard-webhooks.md):
// webhook-id (the idempotency key: the same for every try of a body, never
// for another body), webhook-timestamp (the Unix time the try leaves, so a
// retry after a long cooldown is not stale) and webhook-signature, one
// "v1,<base64 HMAC-SHA256 of id.timestamp.body>" per secret, space-separated.
// With compress: gzip the signature covers the JSON before compression
// (what the receiver parses once the Content-Encoding is removed), and
// max_body_bytes bounds the compressed bytes sent: bodies are packed with
// up to 8 times the limit of JSON and split in two, before sending, when
// their compressed form is over it.
//
// A header value that is a credential is written {env: VAR} or {file: PATH},
// like token, never inline: it is read at start (a variable that is not set,
// or a file that cannot be read or is empty, stops the process with the
// header's key, destinations[N](name).settings.headers.X-Api-Key), and it is
// never printed: not in errors or logs, and a receiver's answer that echoes
// it has it replaced by [redacted] before the answer becomes an error
// message, a log line or a dead-letter reason. Traces do not carry request
// headers: the pool's HTTP client spans (otelhttp) record the method, the
// URL without user info, the server address and port, the protocol and the
// status, and nothing of the headers. A header named twice (in any case),
// an invalid header name, a value with a line break or control character,
// and an Authorization header beside token are refused at start.
//
// Failures: 401/403 pause the destination; 413 bisects the body (a single
// record too large alone is rejected); other 4xx dead-letter the part with
// the receiver's message; 408, 429, 5xx and network errors are retried.
// retry_statuses, refuse_statuses and pause_statuses change the meaning of
// the statuses they list (300 to 599 but 413, each in one list at most);
// a pause on a listed status is logged with that status, not as refused
// credentials.
package webhook

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/usagefleet/usagefleet/internal/config"
	"github.com/usagefleet/usagefleet/internal/telemetry"
	"github.com/usagefleet/usagefleet/messages"
	"github.com/usagefleet/usagefleet/workers"
	"github.com/usagefleet/usagefleet/workers/chunk"
)

// Settings is the webhook destination's configuration, as code builds it.
// (The config file's `settings:` is decoded by the registered factory, where
// each `headers` value is a plain string or a secret: plain ones become
// Headers, secret ones SecretHeaders.)
type Settings struct {
	URL          string        `yaml:"url"`
	MaxBodyBytes int           `yaml:"max_body_bytes"`
	Token        config.Secret `yaml:"token"`
	// Headers are extra headers sent with their values as they are.
	Headers map[string]string `yaml:"headers"`
	// SecretHeaders are extra headers whose values are credentials (an API
	// key in X-Api-Key, say): New resolves them, and they never print.
	SecretHeaders     map[string]config.Secret `yaml:"-"`
	IdempotencyHeader string                   `yaml:"idempotency_header"`
	// SigningSecrets sign every request the Standard Webhooks way (see
	// sign.go), one signature per secret, the newest first.
	SigningSecrets []config.Secret `yaml:"signing_secrets"`
	// Compress is "gzip" to send bodies gzipped, "" or "none" not to.
	Compress string `yaml:"compress"`
	// Statuses that override the default classification (see post.go).
	RetryStatuses  []int `yaml:"retry_statuses"`
	RefuseStatuses []int `yaml:"refuse_statuses"`
	PauseStatuses  []int `yaml:"pause_statuses"`
}

// fileSettings is Settings as the config file writes it.
type fileSettings struct {
	URL               string                 `yaml:"url"`
	MaxBodyBytes      int                    `yaml:"max_body_bytes"`
	Token             config.Secret          `yaml:"token"`
	Headers           map[string]headerValue `yaml:"headers"`
	IdempotencyHeader string                 `yaml:"idempotency_header"`
	SigningSecrets    []config.Secret        `yaml:"signing_secrets"`
	Compress          string                 `yaml:"compress"`
	RetryStatuses     []int                  `yaml:"retry_statuses"`
	RefuseStatuses    []int                  `yaml:"refuse_statuses"`
	PauseStatuses     []int                  `yaml:"pause_statuses"`
}

// headerValue is a header's value in the config file: a plain string, or a
// secret written {env: VAR} or {file: PATH}.
type headerValue struct {
	plain  string
	secret *config.Secret
}

// UnmarshalYAML takes a scalar as a plain value and a mapping as a secret
// (config.Secret's rules: only env or file).
func (h *headerValue) UnmarshalYAML(n *yaml.Node) error {
	switch n.Kind {
	case yaml.MappingNode:
		var s config.Secret
		if err := s.UnmarshalYAML(n); err != nil {
			return err
		}
		h.secret = &s
		return nil
	case yaml.ScalarNode:
		return n.Decode(&h.plain)
	}
	return fmt.Errorf("line %d: a header value is a string, or a secret written {env: VARIABLE} or {file: PATH}", n.Line)
}

// DefaultMaxBodyBytes is the body limit when none is configured.
const DefaultMaxBodyBytes = 1 << 20

func init() {
	workers.Register("webhook", func(name string, node *yaml.Node, key string) (workers.Destination, error) {
		var fs fileSettings
		if err := config.Decode(node, &fs, key); err != nil {
			return nil, err
		}
		s := Settings{URL: fs.URL, MaxBodyBytes: fs.MaxBodyBytes, Token: fs.Token, IdempotencyHeader: fs.IdempotencyHeader,
			SigningSecrets: fs.SigningSecrets, Compress: fs.Compress,
			RetryStatuses: fs.RetryStatuses, RefuseStatuses: fs.RefuseStatuses, PauseStatuses: fs.PauseStatuses}
		for k, v := range fs.Headers {
			if v.secret != nil {
				if s.SecretHeaders == nil {
					s.SecretHeaders = map[string]config.Secret{}
				}
				s.SecretHeaders[k] = *v.secret
				continue
			}
			if s.Headers == nil {
				s.Headers = map[string]string{}
			}
			s.Headers[k] = v.plain
		}
		return New(name, s, key)
	})
}

// Destination posts JSON arrays of records.
type Destination struct {
	name     string
	s        Settings
	secrets  []secretHeader // resolved SecretHeaders
	sign     *signer        // nil: requests are not signed
	gzip     bool
	statuses map[int]workers.Class // retry_statuses, refuse_statuses, pause_statuses
}

// secretHeader is one resolved secret header.
type secretHeader struct {
	name string
	val  config.Secret
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
	d := &Destination{name: name, s: s, gzip: s.Compress == "gzip"}
	if !validCompress(s.Compress) {
		return nil, config.Errorf(key+".compress", "%q is not a compression: use gzip, or none", s.Compress)
	}
	if d.statuses, err = statusLists(s, key); err != nil {
		return nil, err
	}
	d.s.SigningSecrets = slices.Clone(s.SigningSecrets) // resolved here, not in the caller's slice
	if d.sign, err = newSigner(d.s.SigningSecrets, key+".signing_secrets"); err != nil {
		return nil, err
	}
	// Headers: valid names, each named once (whatever its case), values
	// that fit in a header; a secret's value is never shown.
	seen := map[string]string{}
	check := func(k string) error {
		hk := key + ".headers." + k
		if !validHeaderName(k) {
			return config.Errorf(hk, "%q is not a valid header name", k)
		}
		c := http.CanonicalHeaderKey(k)
		if prev, dup := seen[c]; dup {
			return config.Errorf(hk, "the header is set twice (as %q and %q)", prev, k)
		}
		seen[c] = k
		if c == "Authorization" && s.Token.IsSet() {
			return config.Errorf(hk, "token already sets Authorization: set one of them")
		}
		return nil
	}
	for _, k := range sortedKeys(s.Headers) {
		if err := check(k); err != nil {
			return nil, err
		}
		if !validHeaderValue(s.Headers[k]) {
			return nil, config.Errorf(key+".headers."+k, "the value holds a line break or a control character")
		}
	}
	for _, k := range sortedKeys(s.SecretHeaders) {
		if err := check(k); err != nil {
			return nil, err
		}
		sec := s.SecretHeaders[k]
		if err := sec.Resolve(key + ".headers." + k); err != nil {
			return nil, err
		}
		if !validHeaderValue(sec.Value()) {
			return nil, config.Errorf(key+".headers."+k, "the secret's value holds a line break or a control character (the value is not shown)")
		}
		d.secrets = append(d.secrets, secretHeader{name: k, val: sec})
	}
	d.s.SecretHeaders = nil // kept resolved in d.secrets only
	return d, nil
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// validHeaderName reports whether k is an HTTP field name (RFC 9110 token).
func validHeaderName(k string) bool {
	if k == "" {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// validHeaderValue reports whether v can be sent as a field value: no
// control characters but horizontal tab (so no line breaks).
func validHeaderValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if c := v[i]; (c < ' ' && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}

// redact replaces every credential the destination sends (the token and
// the secret headers' values) in an answer by [redacted]: a receiver may
// echo what it was sent. It runs on the whole answer read, before
// apiMessage cuts its excerpt (which could otherwise cut a credential
// short of a match).
//
// Every encoding is found (JSON \u0026, URL, HTML, base64, hex: see
// telemetry.Redactor), not only the bytes sent.
func (d *Destination) redact(b []byte) []byte {
	secrets := []string{d.s.Token.Value()}
	for _, h := range d.secrets {
		secrets = append(secrets, h.val.Value())
	}
	for _, k := range d.s.SigningSecrets {
		secrets = append(secrets, k.Value())
	}
	if d.sign != nil {
		// The key bytes too: their base64 is the secret without whsec_,
		// the form a receiver may be configured with (and echo).
		for _, k := range d.sign.keys {
			secrets = append(secrets, string(k))
		}
	}
	return telemetry.NewRedactor(secrets...).Bytes(b)
}

// String and GoString keep credentials out of any printed form of the
// destination: fmt prints the unexported fields of a struct without their
// String methods, so a config.Secret among them would show its value.
func (d Destination) String() string {
	host := ""
	if u, err := url.Parse(d.s.URL); err == nil {
		host = u.Host
	}
	return fmt.Sprintf("webhook destination %s (%s, credentials redacted)", d.name, host)
}

// GoString: see String.
func (d Destination) GoString() string { return "webhook.Destination{" + d.String() + "}" }

// EncodeRow appends r's JSON object (workers.RowEncoder).
func (d *Destination) EncodeRow(dst []byte, r *messages.UsageRecord) ([]byte, error) {
	return r.AppendJSON(dst), nil
}

// EncodePartRow appends the JSON object of a record read from a schema-2
// part without its maps (workers.PartRowEncoder): byte for byte what
// EncodeRow writes for the whole record.
func (d *Destination) EncodePartRow(dst []byte, r *messages.UsageRecord, p *messages.PartReader) ([]byte, bool) {
	return p.AppendJSON(dst, r)
}

func (d *Destination) Name() string                   { return d.name }
func (d *Destination) Semantics() workers.Semantics   { return workers.Append }
func (d *Destination) Units(time.Time) []workers.Unit { return nil }
func (d *Destination) LeaseKey(workers.Unit) string   { return "" }

type row struct {
	ref        workers.RecordRef
	rec        *messages.UsageRecord
	start, end int // its JSON in the part's encoding
}

// encoding is a part's bodies as JSON: "[", every record's JSON followed
// by a comma, the last one by "]". A body of the whole part is then a
// slice of it, sent without a copy; a body of some of its records is
// copied into an encoding of its own. It goes back to encodings once its
// last holder releases it: Deliver, and every request body reading it,
// which the transport may still read after Do returns (until it closes
// the body). A fresh buffer grown for every part, then a copy of it for
// its body, was most of the append path's allocation (2 GB of a
// 2M-record drain).
type encoding struct {
	buf  []byte
	refs atomic.Int32
	rows []row // Deliver's, kept for the next part (bodies do not read them)
}

var encodings = sync.Pool{New: func() any { return new(encoding) }}

// maxKeptEncoding: a larger buffer (a part of unusually large records) is
// left to the GC rather than kept.
const maxKeptEncoding = 16 << 20

// newEncoding returns an empty encoding held once (by the caller).
func newEncoding() *encoding {
	e := encodings.Get().(*encoding)
	e.buf = e.buf[:0]
	e.refs.Store(1)
	return e
}

func (e *encoding) hold() { e.refs.Add(1) }

// release drops one hold; the last one hands the buffer back.
func (e *encoding) release() {
	switch n := e.refs.Add(-1); {
	case n < 0:
		panic("webhook: encoding released more often than held")
	case n == 0 && cap(e.buf) <= maxKeptEncoding:
		clear(e.rows) // no part's records kept alive by the pool
		e.rows = e.rows[:0]
		encodings.Put(e)
	}
}

// body is a request body over b, bytes of e, which it holds until it is
// closed. Read and Close exclude each other, so once Close has returned
// nothing more is read from b (a transport may close a body while another
// goroutine still reads it), and a Read after Close fails.
type body struct {
	mu     sync.Mutex
	e      *encoding
	b      []byte
	off    int
	closed bool
}

var errBodyClosed = errors.New("webhook: request body read after it was closed")

// newBody returns a body over b (in e), holding e.
func newBody(e *encoding, b []byte) *body {
	e.hold()
	return &body{e: e, b: b}
}

func (r *body) Read(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return 0, errBodyClosed
	}
	if r.off >= len(r.b) {
		return 0, io.EOF
	}
	n := copy(p, r.b[r.off:])
	r.off += n
	return n, nil
}

func (r *body) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.closed {
		r.closed = true
		r.e.release()
	}
	return nil
}

// Deliver posts the part's records in bodies under the limit.
func (d *Destination) Deliver(ctx context.Context, job workers.Job) error {
	enc := newEncoding()
	defer enc.release()
	buf := append(enc.buf, '[')
	rows := enc.rows[:0]
	// The pool encodes the rows (EncodeRow, EncodePartRow) in the slot
	// before the first try; each try copies them into its body.
	err := job.EncodedRecords(ctx, workers.Unit{}, func(ref workers.RecordRef, r *messages.UsageRecord, js []byte, err error) error {
		if err != nil { // EncodeRow refuses nothing: cannot happen
			job.Reject(ref, r, err.Error())
			return nil
		}
		start := len(buf)
		buf = append(buf, js...)
		rows = append(rows, row{ref: ref, rec: r, start: start, end: len(buf)})
		buf = append(buf, ',')
		return nil
	})
	if len(rows) > 0 {
		buf[len(buf)-1] = ']'
	}
	enc.buf, enc.rows = buf, rows
	if err != nil {
		return err
	}
	s := sender{d: d, job: job, rows: rows, enc: enc, scope: strconv.FormatUint(job.Covered(), 10)}
	// A body is "[" rows separated by commas "]".
	pk := chunk.New(d.packLimit(), 2, 1)
	defer pk.Release()
	flush := func(r chunk.Range, tooLarge bool) error {
		if tooLarge {
			// Too large alone (what came before is sent): reject it.
			r := rows[r.From]
			job.Reject(r.ref, r.rec, fmt.Sprintf("record is %d bytes of JSON, over the %d-byte body limit", r.end-r.start, d.packLimit()))
			return nil
		}
		return s.sendRange(ctx, r)
	}
	for _, r := range rows {
		for full := pk.Add(r.end - r.start); full; full = pk.Full() {
			if err := flush(pk.Flush()); err != nil {
				return err
			}
		}
	}
	return flush(pk.Flush())
}

// sender posts runs of one part's rows; a 413 splits a run in two.
type sender struct {
	d     *Destination
	job   workers.Job
	rows  []row
	enc   *encoding // the rows' JSON (see encoding)
	scope string
	chunk int // requests so far: the idempotency chunk index
}

func (s *sender) sendRange(ctx context.Context, r chunk.Range) error {
	return chunk.Bisect(r, func(r chunk.Range) error {
		return s.send(ctx, r)
	}, nil, func(i int, we *workers.Error) error {
		reason := "the receiver refused the record as too large (413)"
		if we.Status == 0 { // refused here, before sending: gzipped over the limit
			reason = "the record alone is too large: " + we.Message
		}
		s.job.Reject(s.rows[i].ref, s.rows[i].rec, reason)
		return nil
	})
}

// send posts the rows of r as one array and classifies the answer.
func (s *sender) send(ctx context.Context, r chunk.Range) error {
	enc, b := s.body(r)
	defer enc.release()
	n := s.chunk
	s.chunk++
	return s.d.post(ctx, s.job, s.scope, n, enc, b)
}

// body returns the JSON array of r's rows and the encoding it is in, held
// for the caller: the part's own when r is all of it, else a copy.
func (s *sender) body(r chunk.Range) (*encoding, []byte) {
	first, last := s.rows[r.From], s.rows[r.To-1]
	if r.From == 0 && r.To == len(s.rows) {
		s.enc.hold()
		return s.enc, s.enc.buf[first.start-1 : last.end+1]
	}
	e := newEncoding()
	e.buf = append(e.buf, '[')
	e.buf = append(e.buf, s.enc.buf[first.start:last.end]...)
	e.buf = append(e.buf, ']')
	return e, e.buf
}

// apiMessage keeps a short, printable excerpt of the receiver's answer.
func apiMessage(b []byte) string {
	b = bytes.TrimSpace(b)
	if len(b) > 300 {
		b = append(b[:300:300], "…"...)
	}
	return string(bytes.ToValidUTF8(b, []byte("?")))
}
