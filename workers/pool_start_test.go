package workers

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// A pool's start waits only for a JetStream that does not answer; what it
// answers about the request itself (a stream missing, a permission) ends
// the start at once. (internal/broker's TestPoolStartWaitsForJetStream
// runs it against a cluster without quorum.)
func TestJetStreamUnavailable(t *testing.T) {
	for _, c := range []struct {
		err  error
		want bool
	}{
		{fmt.Errorf("stream USAGE: %w", context.DeadlineExceeded), true},
		{fmt.Errorf("bucket x: %w", nats.ErrTimeout), true},
		{&jetstream.APIError{Code: 503, ErrorCode: 10008, Description: "JetStream system temporarily unavailable"}, true},
		{fmt.Errorf("stream USAGE: %w", jetstream.ErrStreamNotFound), false},
		{&jetstream.APIError{Code: 403, Description: "permissions violation"}, false},
		{fmt.Errorf("lease bucket status: %w", jetstream.ErrBucketNotFound), false},
		{errors.New("lease bucket has no TTL"), false},
	} {
		if got := jetStreamUnavailable(c.err); got != c.want {
			t.Errorf("%v: %v, want %v", c.err, got, c.want)
		}
	}
}
