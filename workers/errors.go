package workers

import (
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Class is what kind of failure an upload had.
type Class int

const (
	// ClassTransient: try again later (network, 408, 429, 5xx).
	ClassTransient Class = iota + 1
	// ClassAuth: the destination refuses our credentials (401, 403): pause
	// it, loudly, and keep its data waiting.
	ClassAuth
	// ClassTooLarge: the body is too large (413): split it.
	ClassTooLarge
	// ClassReject: the API refused the content (other 4xx): dead-letter it
	// with the API's message.
	ClassReject
)

func (c Class) String() string {
	switch c {
	case ClassTransient:
		return "transient"
	case ClassAuth:
		return "auth"
	case ClassTooLarge:
		return "too-large"
	case ClassReject:
		return "reject"
	}
	return "unknown"
}

// Error is a classified delivery failure.
type Error struct {
	Class      Class
	Status     int           // HTTP status, 0 for network errors
	Message    string        // the API's own message, when it gave one
	RetryAfter time.Duration // from Retry-After, 0 if none
	Err        error         // underlying error, if any
}

func (e *Error) Error() string {
	s := e.Class.String()
	if e.Class == ClassAuth && e.Status != 0 && e.Status != http.StatusUnauthorized && e.Status != http.StatusForbidden {
		s = "pause" // a status configured to pause on, not refused credentials
	}
	if e.Status != 0 {
		s += " " + http.StatusText(e.Status)
		s += " (" + itoa(e.Status) + ")"
	}
	if e.Message != "" {
		s += ": " + e.Message
	}
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

func (e *Error) Unwrap() error { return e.Err }

// Is makes every *Error match the sentinel of its class, so a caller asks
// errors.Is(err, ErrUnauthorized) instead of asserting the type and
// reading Class. Fields (Status, RetryAfter, Message) are read with
// errors.As.
func (e *Error) Is(target error) bool {
	s, ok := target.(classSentinel)
	return ok && Class(s) == e.Class
}

// The sentinels of the four classes: errors.Is(err, ErrTransient) holds
// for every *Error of ClassTransient in err's chain, and so on.
var (
	// ErrTransient: try again later (network, 408, 429, 5xx).
	ErrTransient error = classSentinel(ClassTransient)
	// ErrUnauthorized: credentials refused (401, 403): the pool pauses
	// the destination.
	ErrUnauthorized error = classSentinel(ClassAuth)
	// ErrTooLarge: the body is too large (413): split it.
	ErrTooLarge error = classSentinel(ClassTooLarge)
	// ErrRejected: the API refused the content (other 4xx): its records
	// are dead-lettered.
	ErrRejected error = classSentinel(ClassReject)
)

// classSentinel is the comparable value behind the Err* sentinels.
type classSentinel Class

func (s classSentinel) Error() string { return "workers: " + Class(s).String() }

func itoa(i int) string {
	var b [20]byte
	n := len(b)
	for i >= 10 {
		n--
		b[n] = byte('0' + i%10)
		i /= 10
	}
	n--
	b[n] = byte('0' + i)
	return string(b[n:])
}

// Classify turns an HTTP status into nil (2xx) or an *Error, reading
// Retry-After; message is the API's own error text, which must not contain
// secrets.
func Classify(status int, h http.Header, message string) error {
	switch {
	case status >= 200 && status < 300:
		return nil
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		return &Error{Class: ClassAuth, Status: status, Message: message}
	case status == http.StatusRequestEntityTooLarge:
		return &Error{Class: ClassTooLarge, Status: status, Message: message}
	case status == http.StatusRequestTimeout || status == http.StatusTooManyRequests || status >= 500:
		return &Error{Class: ClassTransient, Status: status, Message: message, RetryAfter: RetryAfter(h, time.Now())}
	}
	return &Error{Class: ClassReject, Status: status, Message: message}
}

// Transient wraps err as a transient failure.
func Transient(err error) error { return &Error{Class: ClassTransient, Err: err} }

// maxRetryAfter caps what a server can make us wait for one Retry-After.
const maxRetryAfter = 10 * time.Minute

// RetryAfter reads the Retry-After header (delta seconds or an HTTP date)
// relative to now; 0 when absent or unreadable.
func RetryAfter(h http.Header, now time.Time) time.Duration {
	v := strings.TrimSpace(h.Get("Retry-After"))
	if v == "" {
		return 0
	}
	var d time.Duration
	if secs, err := strconv.ParseFloat(v, 64); err == nil {
		if secs <= 0 {
			return 0
		}
		d = time.Duration(secs * float64(time.Second))
	} else if t, err := http.ParseTime(v); err == nil {
		d = t.Sub(now)
	}
	if d < 0 {
		return 0
	}
	if d > maxRetryAfter {
		d = maxRetryAfter
	}
	return d
}
