//go:build conformance

package cloudcruiser

import (
	"testing"

	"github.com/usagefleet/usagefleet/workers/conformance"
)

// The shared destination conformance suite, as every destination runs it:
//
//	go test -tags conformance ./workers/cloudcruiser/
//
// It is behind the tag because its crash check can take over two minutes
// here: it kills a worker while it holds date leases, and the suite's NATS
// keeps the default 2-minute lease TTL, so the dates wait for the leases
// to expire (one lease per date; CloudZero has one per connection, which
// the killed worker rarely holds at that instant). Every check of the
// suite has a fast counterpart in e2e_test.go, in the default run.
//
// The suite: replace matches the stream, late data re-sends its date
// whole, snapshot generations replace, the ambiguous apply-then-500 at 20%
// of requests, 401 pauses and resumes, a worker killed mid-run. It runs in
// +05:30, where hours straddle dates.
func TestConformance(t *testing.T) {
	conformance.Run(t, harness("+05:30", 5*3600+1800))
}
