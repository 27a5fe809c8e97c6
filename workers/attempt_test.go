package workers

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// An attempt whose answer does not come within its deadline is cancelled
// with ErrAttemptTimeout as the cause; Expired says so. One that is
// answered in time is not, and Stop ends it without that cause.
func TestAttemptDeadline(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			select {
			case <-release:
			case <-r.Context().Done():
			}
		}
	}))
	defer srv.Close()
	defer close(release)
	for _, tc := range []struct {
		path    string
		d       time.Duration
		expired bool
	}{
		{"/slow", 200 * time.Millisecond, true},
		{"/fast", time.Minute, false},
	} {
		t.Run(tc.path, func(t *testing.T) {
			actx, att := NewAttempt(context.Background(), tc.d)
			req, _ := http.NewRequestWithContext(actx, http.MethodGet, srv.URL+tc.path, nil)
			resp, err := http.DefaultClient.Do(req)
			if err == nil {
				resp.Body.Close()
			}
			att.Stop()
			if att.Expired() != tc.expired || (err != nil) != tc.expired {
				t.Fatalf("Expired %v, err %v; want expired %v", att.Expired(), err, tc.expired)
			}
			if tc.expired && !errors.Is(context.Cause(actx), ErrAttemptTimeout) {
				t.Fatalf("cause %v", context.Cause(actx))
			}
		})
	}
}

// The deadline does not run before the attempt asks for a connection: the
// time Job.Do waits out the cooldown does not count.
func TestAttemptStartsAtConnection(t *testing.T) {
	actx, att := NewAttempt(context.Background(), time.Nanosecond)
	defer att.Stop()
	att.Progress() // before any connection: no timer to push back, none started
	if err := actx.Err(); err != nil {
		t.Fatalf("the deadline ran before any connection was asked for: %v", err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	defer srv.Close()
	req, _ := http.NewRequestWithContext(actx, http.MethodGet, srv.URL, nil)
	if resp, err := http.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
	}
	<-actx.Done()
	if !att.Expired() {
		t.Fatalf("a 1ns deadline started at the connection did not expire: cause %v", context.Cause(actx))
	}
}
