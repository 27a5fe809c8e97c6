package workers

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"testing"
	"time"
)

// Every classified failure matches the sentinel of its class and no other,
// also when wrapped; errors.As still reaches its fields.
func TestErrorIsItsClassSentinel(t *testing.T) {
	sentinels := map[Class]error{ClassTransient: ErrTransient, ClassAuth: ErrUnauthorized, ClassTooLarge: ErrTooLarge, ClassReject: ErrRejected}
	h := http.Header{"Retry-After": {"7"}}
	for _, tc := range []struct {
		name string
		err  error
		want Class
	}{
		{"401", Classify(401, nil, "bad token"), ClassAuth},
		{"403", Classify(403, nil, ""), ClassAuth},
		{"413", Classify(413, nil, ""), ClassTooLarge},
		{"400", Classify(400, nil, "bad field"), ClassReject},
		{"404", Classify(404, nil, ""), ClassReject},
		{"408", Classify(408, nil, ""), ClassTransient},
		{"429", Classify(429, h, ""), ClassTransient},
		{"503", Classify(503, h, ""), ClassTransient},
		{"Transient", Transient(errors.New("reset")), ClassTransient},
		{"wrapped 401", fmt.Errorf("upload of 2024-08-16: %w", Classify(401, nil, "")), ClassAuth},
		{"wrapped 413", fmt.Errorf("chunk 3: %w", &Error{Class: ClassTooLarge, Status: 413}), ClassTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for c, s := range sentinels {
				if got := errors.Is(tc.err, s); got != (c == tc.want) {
					t.Errorf("errors.Is(%v, %v) = %v", tc.err, s, got)
				}
			}
			var e *Error
			if !errors.As(tc.err, &e) || e.Class != tc.want {
				t.Fatalf("errors.As: %v", tc.err)
			}
		})
	}
	if err := Classify(204, nil, ""); err != nil {
		t.Fatalf("2xx classified as %v", err)
	}
	var e *Error
	if errors.As(Classify(429, h, ""), &e); e.RetryAfter != 7*time.Second {
		t.Fatalf("RetryAfter %v, want 7s", e.RetryAfter)
	}
	// A sentinel is not an error of the chain: a plain error matches none,
	// and the context errors stay what they are.
	for _, err := range []error{errors.New("x"), context.Canceled} {
		for _, s := range sentinels {
			if errors.Is(err, s) {
				t.Errorf("%v matches %v", err, s)
			}
		}
	}
	if errors.Is(Transient(context.Canceled), context.DeadlineExceeded) || !errors.Is(Transient(context.Canceled), context.Canceled) {
		t.Error("Unwrap no longer reaches the underlying error")
	}
}

func TestRetryAfter(t *testing.T) {
	now := time.Date(2024, 8, 16, 13, 0, 0, 0, time.UTC)
	for v, want := range map[string]time.Duration{
		"":                              0,
		"2":                             2 * time.Second,
		" 1.5 ":                         1500 * time.Millisecond,
		"0":                             0,
		"-3":                            0,
		"soon":                          0,
		"Fri, 16 Aug 2024 13:00:30 GMT": 30 * time.Second,
		"Fri, 16 Aug 2024 12:59:00 GMT": 0,             // in the past
		"86400":                         maxRetryAfter, // capped
		"Sat, 17 Aug 2024 13:00:00 GMT": maxRetryAfter, // capped
	} {
		h := http.Header{}
		if v != "" {
			h.Set("Retry-After", v)
		}
		if got := RetryAfter(h, now); got != want {
			t.Errorf("Retry-After %q = %v, want %v", v, got, want)
		}
	}
}

// A pause on a status other than 401/403 (a webhook's pause_statuses)
// reads as a pause, not as refused credentials; it is still ClassAuth, so
// errors.Is(err, ErrUnauthorized) still pauses it.
func TestPauseOnAStatusReadsAsAPause(t *testing.T) {
	for _, tc := range []struct {
		err  *Error
		want string
	}{
		{&Error{Class: ClassAuth, Status: 401, Message: "bad key"}, "auth Unauthorized (401): bad key"},
		{&Error{Class: ClassAuth, Status: 403}, "auth Forbidden (403)"},
		{&Error{Class: ClassAuth, Status: 410, Message: "listed in pause_statuses"}, "pause Gone (410): listed in pause_statuses"},
		{&Error{Class: ClassAuth, Err: errors.New("token expired")}, "auth: token expired"},
	} {
		if got := tc.err.Error(); got != tc.want || !errors.Is(tc.err, ErrUnauthorized) {
			t.Errorf("%q (Is ErrUnauthorized: %v), want %q", got, errors.Is(tc.err, ErrUnauthorized), tc.want)
		}
	}
}
