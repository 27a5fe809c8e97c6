package cloudcruiser

import (
	"testing"

	"github.com/usagefleet/usagefleet/workers/conformance"
)

// The shared destination conformance suite. Its crash check takes about
// 12s here (measured 12.0s in three -race runs; the lease TTL is 10s of
// it): it kills a worker while the emulator holds one of its date uploads
// in flight and it holds that date's lease (and those of the dates it was
// uploading beside it); a new worker must wait for those leases to expire
// (natstest.LeaseTTL) before it takes the dates over, and every date ends
// exact.
//
// The suite: replace matches the stream, late data re-sends its date
// whole, snapshot generations replace, the ambiguous apply-then-500 at 20%
// of requests, 401 pauses and resumes, a 429's Retry-After holds every
// uploader, a worker killed mid-upload. It runs in +05:30, where hours
// straddle dates.
func TestConformance(t *testing.T) {
	conformance.Run(t, harness("+05:30", 5*3600+1800))
}
