package workers

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/cenkalti/backoff/v5"
	"go.opentelemetry.io/otel/attribute"

	"github.com/usagefleet/usagefleet/messages"
)

// job implements Job for both semantics.
type job struct {
	p       *Pool
	log     *slog.Logger
	units   []Unit
	covered uint64
	attempt int
	counts  map[string]uint64 // messages per subject at the covered position

	part *pendingMsg // Append

	// Outcome, filled by Records, Reject and RejectUnit.
	stats       map[string]map[uint64]*seqStat // unit key → part seq → records seen
	rejects     map[RecordRef]rejected
	unitRejects map[string]string
	dead        map[uint64]string // undecodable parts met while rebuilding
	included    map[uint64]bool   // parts whose records the rebuild used
	done        map[string]bool   // units the destination reported delivered

	ra *readAhead // EncodedRecords' read-ahead, while one runs
}

type seqStat struct {
	records  int
	cost     messages.CurrencySums
	warnings int // labels the destination repaired or dropped (RowWarner)
}

type rejected struct {
	unit   string
	reason string
	rec    messages.UsageRecord
}

func (j *job) Units() []Unit     { return j.units }
func (j *job) Covered() uint64   { return j.covered }
func (j *job) Attempt() int      { return j.attempt }
func (j *job) Log() *slog.Logger { return j.log }
func (j *job) destName() string  { return j.p.dest.Name() }

func newJob(p *Pool, units []Unit, attempt int) *job {
	return &job{
		p: p, units: units, attempt: attempt,
		stats:       map[string]map[uint64]*seqStat{},
		rejects:     map[RecordRef]rejected{},
		unitRejects: map[string]string{},
		dead:        map[uint64]string{},
		included:    map[uint64]bool{},
		done:        map[string]bool{},
	}
}

func (j *job) Reject(ref RecordRef, r *messages.UsageRecord, reason string) {
	if _, dup := j.rejects[ref]; dup {
		return
	}
	if j.part != nil {
		r = j.part.wholeRecord(ref.Index, r) // its maps, for the dead letter
	}
	j.rejects[ref] = rejected{unit: j.unitOf(r), reason: reason, rec: r.Clone()}
}

func (j *job) unitOf(r *messages.UsageRecord) string {
	for _, u := range j.units {
		if u.Contains(r.ChargePeriodStart) {
			return u.Key
		}
	}
	return ""
}

func (j *job) Done(u Unit) { j.done[u.Key] = true }

func (j *job) RejectUnit(u Unit, reason string) {
	if _, dup := j.unitRejects[u.Key]; !dup {
		j.unitRejects[u.Key] = reason
	}
}

// castagnoli is the CRC-32C table (hardware-accelerated on amd64 and arm64).
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// IdempotencyKey: see Job.
func (j *job) IdempotencyKey(scope string, chunk int, body []byte) string {
	// The body's digest: CRC-32C and CRC-32 (IEEE), both in hardware at
	// ~15-20 GB/s, and the length: 64 bits that tell apart the bodies a
	// key could ever be shared by (the same destination, scope, covered
	// position, attempt and chunk index, so the same rebuild). The key is
	// not a secret and need not resist forgery. (HighwayHash-256 of every
	// 5 MB body was 7% of a drain's CPU, SHA-256 more.)
	h := sha256.New()
	attempt := j.attempt
	if j.part != nil {
		// Append: the same part's same chunk keeps its key across tries, so
		// the receiver can drop a repeat whatever answer the first got.
		attempt = 0
	}
	fmt.Fprintf(h, "%s\x00%s\x00%d\x00%d\x00%d\x00%d\x00%08x%08x", j.destName(), scope, j.covered, attempt, chunk,
		len(body), crc32.Checksum(body, castagnoli), crc32.ChecksumIEEE(body))
	return "uf-" + hex.EncodeToString(h.Sum(nil)[:20])
}

// Do: see Job.
func (j *job) Do(ctx context.Context, req *http.Request) (*http.Response, error) {
	try := 0 // send stops the tries: NoResponseRetries resends at most
	return backoff.Retry(ctx, func() (*http.Response, error) {
		defer func() { try++ }()
		return j.send(ctx, req, try)
	}, backoff.WithBackOff(&jitterBackOff{p: noResponseRetry}), backoff.WithMaxElapsedTime(0),
		backoff.WithNotify(func(err error, d time.Duration) {
			j.log.Warn("no response, re-sending the same request", "err", err, "retry_in", d)
		}))
}

// beforeSendKey carries WithBeforeSend's function in a request's context.
type beforeSendKey struct{}

// WithBeforeSend returns ctx carrying f. Job.Do calls f on the copy of a
// request built with that context that each try sends, after the wait for
// the destination's cooldown (which a Retry-After can make minutes long)
// and just before it is sent: for headers that must be fresh when the
// request leaves, such as a signature over a timestamp that the receiver
// refuses once it is a few minutes old. f may set headers; it must not
// touch the body.
func WithBeforeSend(ctx context.Context, f func(*http.Request)) context.Context {
	return context.WithValue(ctx, beforeSendKey{}, f)
}

// noResponseRetry spaces the resends of a request that got no response.
var noResponseRetry = RetryPolicy{Initial: 200 * time.Millisecond, Max: 5 * time.Second}

// send is one try of Do: it waits out the gate and sends req (again, when
// try > 0). A failure that got no response is returned (scrubbed) to be
// retried; any other failure is permanent, as is the last try's.
func (j *job) send(ctx context.Context, req *http.Request, try int) (*http.Response, error) {
	p := j.p
	if err := p.gate.wait(ctx); err != nil {
		if try == 0 && req.Body != nil {
			_ = req.Body.Close() // as the client would: the caller may wait for it
		}
		return nil, backoff.Permanent(err)
	}
	r := req.Clone(ctx)
	if try > 0 && req.Body != nil && req.Body != http.NoBody {
		if req.GetBody == nil {
			return nil, backoff.Permanent(Transient(errors.New("request failed and its streamed body cannot be re-sent")))
		}
		b, err := req.GetBody()
		if err != nil {
			return nil, backoff.Permanent(Transient(err))
		}
		r.Body = b
	}
	if f, ok := req.Context().Value(beforeSendKey{}).(func(*http.Request)); ok {
		f(r) // after the cooldown wait: what it sets is fresh when r leaves
	}
	p.mu.Lock()
	p.stats.Requests++
	if try > 0 {
		p.stats.Resends++
	}
	p.mu.Unlock()
	resp, err := p.http.Do(r)
	if r.ContentLength > 0 {
		p.metrics.add(ctx, p.metrics.bodyBytes, r.ContentLength)
		p.mu.Lock()
		p.stats.BodyBytes += r.ContentLength
		p.mu.Unlock()
	}
	if err == nil {
		outcome := "success"
		if resp.StatusCode >= 300 {
			outcome = "failure"
		}
		p.metrics.add(ctx, p.metrics.uploads, 1, attribute.String("outcome", outcome), attribute.Int("status_code", resp.StatusCode))
		return resp, nil
	}
	p.metrics.add(ctx, p.metrics.uploads, 1, attribute.String("outcome", "no_response"), attribute.Int("status_code", 0))
	if ctx.Err() != nil {
		return nil, backoff.Permanent(ctx.Err())
	}
	if try >= p.opts.NoResponseRetries || (req.GetBody == nil && req.Body != nil && req.Body != http.NoBody) {
		return nil, backoff.Permanent(&Error{Class: ClassTransient, Err: scrubURL(err)})
	}
	return nil, scrubURL(err)
}

// scrubURL drops the query string from url errors (it could hold a token).
func scrubURL(err error) error {
	var ue interface{ Unwrap() error }
	if errors.As(err, &ue) {
		s := err.Error()
		if i := strings.Index(s, "?"); i >= 0 {
			if k := strings.Index(s[i:], "\""); k >= 0 {
				return errors.New(s[:i] + s[i+k:])
			}
		}
	}
	return err
}
