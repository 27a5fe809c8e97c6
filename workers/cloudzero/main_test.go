package cloudzero

import (
	"os"
	"testing"

	"github.com/usagefleet/usagefleet/internal/broker/natstest"
)

// TestMain removes the usage-worker binary the process tests built.
func TestMain(m *testing.M) {
	code := m.Run()
	natstest.RemoveWorkerBinary()
	os.Exit(code)
}
