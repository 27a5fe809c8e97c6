package cloudcruiser

import (
	"testing"

	"github.com/usagefleet/usagefleet/workers/conformance"
)

// The shared destination conformance suite. Its crash check takes about
// 10-15s here: it kills a worker that holds date leases, which the new
// worker waits to expire (natstest.LeaseTTL).
//
// The suite: replace matches the stream, late data re-sends its date
// whole, snapshot generations replace, the ambiguous apply-then-500 at 20%
// of requests, 401 pauses and resumes, a worker killed mid-run. It runs in
// +05:30, where hours straddle dates.
func TestConformance(t *testing.T) {
	conformance.Run(t, harness("+05:30", 5*3600+1800))
}
