package fleet

// The destination types a worker process knows. Each registers itself with
// workers.Register from its init.
import (
	_ "github.com/usagefleet/usagefleet/workers/cloudcruiser"
	_ "github.com/usagefleet/usagefleet/workers/cloudzero"
	_ "github.com/usagefleet/usagefleet/workers/webhook"
)
