package collect

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v5"

	"github.com/usagefleet/usagefleet/workers"
)

// ErrNotReady is wrapped by the error of a report API that says the usage
// data is not ready yet (Acronis: "Usage history is not ready"). It is not
// a failure of the collector: the run is tried again later.
var ErrNotReady = errors.New("usage data not ready yet")

// ErrReportFailed is wrapped when the API says a report failed to
// generate; the error names the report id.
var ErrReportFailed = errors.New("report failed")

// ErrReportGone is wrapped when a report id is no longer known (404,
// archived): a checkpointed report is then requested again.
var ErrReportGone = errors.New("report no longer available")

// APIError is a non-2xx answer of a report or token API. Message is the
// API's own text (never a credential: request bodies and tokens are not
// echoed).
type APIError struct {
	Op       string // what was attempted: "create report", "token", ...
	Status   int
	Message  string
	NotReady bool
}

func (e *APIError) Error() string {
	s := e.Op + ": HTTP " + strconv.Itoa(e.Status)
	if t := http.StatusText(e.Status); t != "" {
		s += " " + t
	}
	if e.Message != "" {
		s += ": " + e.Message
	}
	return s
}

// Unwrap lets errors.Is(err, ErrNotReady) see a not-ready answer.
func (e *APIError) Unwrap() error {
	if e.NotReady {
		return ErrNotReady
	}
	return nil
}

// Transient reports whether a later try may succeed: network failures,
// 408, 429 and 5xx (but not "not ready", which waits for a later run).
func Transient(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	var ae *APIError
	if errors.As(err, &ae) {
		return !ae.NotReady && (ae.Status == http.StatusRequestTimeout || ae.Status == http.StatusTooManyRequests || ae.Status >= 500)
	}
	var pe *permanentError
	return !errors.As(err, &pe)
}

// permanentError marks a failure no retry can fix (a bad answer body,
// credentials refused).
type permanentError struct{ err error }

func (p *permanentError) Error() string { return p.err.Error() }
func (p *permanentError) Unwrap() error { return p.err }

// Permanent marks err as not worth retrying.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &permanentError{err}
}

// Retry is the backoff of transient HTTP failures.
type Retry struct {
	Initial time.Duration // default 500ms
	Max     time.Duration // default 30s
	For     time.Duration // give up after (default 5m)
}

func (r Retry) backoff() *elapsedBackOff {
	bo := backoff.NewExponentialBackOff()
	bo.InitialInterval = r.Initial
	if bo.InitialInterval <= 0 {
		bo.InitialInterval = 500 * time.Millisecond
	}
	bo.MaxInterval = r.Max
	if bo.MaxInterval <= 0 {
		bo.MaxInterval = 30 * time.Second
	}
	eb := &elapsedBackOff{ExponentialBackOff: bo, max: r.For}
	if eb.max <= 0 {
		eb.max = 5 * time.Minute
	}
	eb.Reset()
	return eb
}

// elapsedBackOff is backoff v5's exponential policy bounded in time: its
// NextBackOff says backoff.Stop once the next wait would end past max since
// Reset (v5 moved that bound from the policy to backoff.Retry; the collector
// drives its loops itself, between polls, downloads and dead letters).
type elapsedBackOff struct {
	*backoff.ExponentialBackOff
	max   time.Duration
	start time.Time
}

func (b *elapsedBackOff) Reset() {
	b.ExponentialBackOff.Reset()
	b.start = time.Now()
}

func (b *elapsedBackOff) NextBackOff() time.Duration {
	d := b.ExponentialBackOff.NextBackOff()
	if time.Since(b.start)+d > b.max {
		return backoff.Stop
	}
	return d
}

// Auth hands out bearer tokens.
type Auth interface {
	// Token returns a valid token, fetching a new one when the cached one
	// is missing or close to expiry.
	Token(ctx context.Context) (string, error)
	// Invalidate drops token (the API answered 401 to it).
	Invalidate(token string)
}

// API sends requests to one report API: bearer authentication with one
// refresh-and-retry on 401, and backoff through transient failures.
type API struct {
	HTTP  *http.Client
	Auth  Auth // nil: no Authorization header
	Retry Retry
	// Message extracts the API's error text from an error body.
	Message func(body []byte) string
	// NotReady reports whether an error answer means "not ready yet".
	NotReady func(status int, msg string) bool
	Log      *slog.Logger
}

// Request is one call. Body is resent on every try; Sign, when set, is
// called on every try (a signature with a fresh nonce and timestamp).
type Request struct {
	Op     string
	Method string
	URL    string
	Body   []byte
	Header http.Header
	Sign   func(*http.Request) error
}

// Do sends rq and returns a 2xx response (the caller closes its body), or
// an error: an *APIError for an error answer, after retrying transient
// ones for up to Retry.For and honouring Retry-After.
func (a *API) Do(ctx context.Context, rq Request) (*http.Response, error) {
	bo := a.Retry.backoff()
	refreshed := false
	for {
		resp, wait, err := a.once(ctx, rq, &refreshed)
		if err == nil {
			return resp, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if wait < 0 { // retry at once (a fresh token)
			continue
		}
		if !Transient(err) {
			return nil, err
		}
		d := bo.NextBackOff()
		if d == backoff.Stop {
			return nil, fmt.Errorf("%w (gave up after %s)", err, a.Retry.For)
		}
		d = max(d, wait)
		if a.Log != nil {
			a.Log.Warn("report API call failed, retrying", "op", rq.Op, "err", err, "in", d)
		}
		if err := sleep(ctx, d); err != nil {
			return nil, err
		}
	}
}

// once makes one try. wait is the Retry-After of a transient answer, or -1
// to retry at once with a new token.
func (a *API) once(ctx context.Context, rq Request, refreshed *bool) (*http.Response, time.Duration, error) {
	var body io.Reader
	if rq.Body != nil {
		body = bytes.NewReader(rq.Body)
	}
	req, err := http.NewRequestWithContext(ctx, rq.Method, rq.URL, body)
	if err != nil {
		return nil, 0, Permanent(fmt.Errorf("%s: %w", rq.Op, err))
	}
	for k, vs := range rq.Header {
		req.Header[k] = append([]string(nil), vs...)
	}
	var tok string
	if a.Auth != nil {
		if tok, err = a.Auth.Token(ctx); err != nil {
			// The token endpoint call did its own retrying.
			return nil, 0, Permanent(err)
		}
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	if rq.Sign != nil {
		if err := rq.Sign(req); err != nil {
			return nil, 0, Permanent(fmt.Errorf("%s: signing: %w", rq.Op, err))
		}
	}
	resp, err := a.HTTP.Do(req)
	if err != nil {
		// The url.Error holds the URL, never a header: safe to show.
		return nil, 0, fmt.Errorf("%s: %w", rq.Op, err)
	}
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return resp, 0, nil
	}
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	msg := ""
	if a.Message != nil {
		msg = a.Message(raw)
	}
	if msg == "" {
		msg = shortText(raw)
	}
	ae := &APIError{Op: rq.Op, Status: resp.StatusCode, Message: msg}
	if a.NotReady != nil && a.NotReady(resp.StatusCode, msg) {
		ae.NotReady = true
		return nil, 0, ae
	}
	if resp.StatusCode == http.StatusUnauthorized && a.Auth != nil && !*refreshed {
		*refreshed = true
		a.Auth.Invalidate(tok)
		if a.Log != nil {
			a.Log.Info("report API refused the token, fetching a new one", "op", rq.Op)
		}
		return nil, -1, ae
	}
	return nil, workers.RetryAfter(resp.Header, time.Now()), ae
}

// shortText is an error body's text when the API's message could not be
// extracted: one line, at most 300 bytes.
func shortText(b []byte) string {
	s := strings.Join(strings.Fields(string(b)), " ")
	if len(s) > 300 {
		s = s[:300] + "..."
	}
	return s
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// TokenCache is an Auth that reuses a token until it is close to expiry:
// it fetches a new one when less than min(15 minutes, a quarter of the
// token's lifetime) is left, as the Acronis examples do, or after a 401.
type TokenCache struct {
	// Fetch gets a new token and its expiry.
	Fetch func(ctx context.Context) (token string, expires time.Time, err error)
	Now   func() time.Time

	mu      sync.Mutex
	tok     string
	exp     time.Time
	refresh time.Time // fetch a new token from then on
	fetches int
}

// Token implements Auth.
func (c *TokenCache) Token(ctx context.Context) (string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	if c.tok != "" && now.Before(c.refresh) {
		return c.tok, nil
	}
	tok, exp, err := c.Fetch(ctx)
	if err != nil {
		return "", err
	}
	c.fetches++
	life := exp.Sub(now)
	margin := min(15*time.Minute, life/4)
	c.tok, c.exp, c.refresh = tok, exp, exp.Add(-margin)
	return tok, nil
}

// Invalidate implements Auth.
func (c *TokenCache) Invalidate(tok string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.tok == tok {
		c.tok = ""
	}
}

// Fetches counts the tokens fetched.
func (c *TokenCache) Fetches() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.fetches
}

func (c *TokenCache) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}
