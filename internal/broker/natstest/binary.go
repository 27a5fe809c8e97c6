package natstest

import (
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

var worker struct {
	once sync.Once
	dir  string
	path string
	err  error
	out  []byte
}

// WorkerBinary builds the usage-worker binary once per test process and
// returns its path, for tests that run, kill and restart real worker
// processes. A package that uses it removes it at the end with
// RemoveWorkerBinary from its TestMain.
func WorkerBinary(t testing.TB) string {
	t.Helper()
	worker.once.Do(func() {
		dir, err := os.MkdirTemp("", "usagefleet-worker-bin-")
		if err != nil {
			worker.err = err
			return
		}
		worker.dir, worker.path = dir, filepath.Join(dir, "usage-worker")
		worker.out, worker.err = exec.Command("go", "build", "-o", worker.path, "github.com/usagefleet/usagefleet/workers/cmd/usage-worker").CombinedOutput()
	})
	if worker.err != nil {
		t.Fatalf("go build usage-worker: %v\n%s", worker.err, worker.out)
	}
	return worker.path
}

// RemoveWorkerBinary removes what WorkerBinary built, if anything.
func RemoveWorkerBinary() {
	if worker.dir != "" {
		os.RemoveAll(worker.dir)
	}
}
