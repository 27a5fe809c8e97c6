package gateway

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Problem is an RFC 9457 problem details object
// (https://www.rfc-editor.org/rfc/rfc9457), with Errors listing every
// problem of a request (RFC 9457 section 3.2: extension members).
type Problem struct {
	Type     string         `json:"type"`
	Title    string         `json:"title"`
	Status   int            `json:"status"`
	Detail   string         `json:"detail,omitempty"`
	Instance string         `json:"instance,omitempty"`
	Errors   []ProblemError `json:"errors,omitempty"`

	retryAfter time.Duration
	reason     string // metrics label
}

// ProblemError is one problem, with a JSON-ish pointer to where it is:
// "records[3].BilledCost", "events[2].id", "header".
type ProblemError struct {
	Pointer string `json:"pointer"`
	Detail  string `json:"detail"`
}

// Problem types (relative URIs, resolved against the gateway: RFC 9457
// section 3.1.1 allows that; each is documented in openapi.yaml).
const (
	typeInvalid     = "/problems/invalid-records"
	typeBadRequest  = "/problems/bad-request"
	typeUnauth      = "/problems/unauthenticated"
	typeForbidden   = "/problems/forbidden"
	typeTooLarge    = "/problems/too-large"
	typeMedia       = "/problems/unsupported-media-type"
	typeNotFound    = "/problems/not-found"
	typeMethod      = "/problems/method-not-allowed"
	typeUnavailable = "/problems/unavailable"
	typeLimits      = "/problems/stream-limits"
	typeTimeout     = "/problems/timeout"
	typeKeyReuse    = "/problems/idempotency-key-reuse"
)

func problem(status int, typ, title, detail string) *Problem {
	return &Problem{Type: typ, Title: title, Status: status, Detail: detail, reason: typ[len("/problems/"):]}
}

func (p *Problem) Error() string { return p.Title + ": " + p.Detail }

func writeProblem(w http.ResponseWriter, p *Problem) {
	h := w.Header()
	h.Set("Content-Type", "application/problem+json")
	if p.retryAfter > 0 {
		h.Set("Retry-After", strconv.Itoa(int((p.retryAfter+time.Second-1)/time.Second)))
	}
	w.WriteHeader(p.Status)
	b, _ := json.Marshal(p)
	w.Write(append(b, '\n'))
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		writeProblem(w, problem(500, typeBadRequest, "Internal error", err.Error()))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}

// publishProblem maps a failure to store into 429 (a stream or the account
// at its limits) or 503 (JetStream unavailable, a timeout): both carry
// Retry-After, and a retry with the same Idempotency-Key stores nothing
// twice. The error text is JetStream's, which holds no secret.
func publishProblem(err error) *Problem {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		switch apiErr.ErrorCode {
		case 10077: // stream store failed: maximum messages/bytes exceeded (discard new)
			if apiErr.Code != 503 {
				break
			}
			p := problem(http.StatusTooManyRequests, typeLimits, "The stream is at its limits", err.Error())
			p.retryAfter = 5 * time.Second
			return p
		case 10002, 10028, 10047: // account, memory or storage resources exceeded
			p := problem(http.StatusTooManyRequests, typeLimits, "JetStream is at its resource limits", err.Error())
			p.retryAfter = 10 * time.Second
			return p
		}
		if apiErr.Code == 400 || apiErr.Code == 413 {
			return problem(http.StatusBadRequest, typeBadRequest, "JetStream refused the part", err.Error())
		}
	}
	if errors.Is(err, errStoreLimit) {
		p := problem(http.StatusTooManyRequests, typeLimits, "The stream is at its limits", err.Error())
		p.retryAfter = 5 * time.Second
		return p
	}
	p := problem(http.StatusServiceUnavailable, typeUnavailable, "JetStream is unavailable: nothing of this request is known to be stored; retry with the same Idempotency-Key", err.Error())
	if errors.Is(err, nats.ErrConnectionClosed) || errors.Is(err, nats.ErrConnectionDraining) {
		p.Title = "The gateway is shutting down"
	}
	p.retryAfter = 2 * time.Second
	return p
}

var errStoreLimit = errors.New("maximum messages or bytes exceeded")

func invalid(title string, errs ...ProblemError) *Problem {
	p := problem(http.StatusBadRequest, typeInvalid, title, "")
	p.Errors = errs
	if len(errs) == 1 {
		p.Detail = errs[0].Detail
		if errs[0].Pointer != "" {
			p.Detail = errs[0].Pointer + ": " + p.Detail
		}
	} else {
		p.Detail = strconv.Itoa(len(errs)) + " problems; nothing was published"
	}
	return p
}

func tooManyRecords(max int) *Problem {
	return problem(http.StatusRequestEntityTooLarge, typeTooLarge, "Too many records", "at most "+strconv.Itoa(max)+" records a request (limits.max_records)")
}
