package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// spawnedServer is nats-server in a process of its own (--spawn-nats), as
// production runs it: a temporary store, a random loopback port, and the
// limits the embedded server has (8 MB payloads, 256 MB pending per
// client).
type spawnedServer struct {
	URL     string
	Binary  string // the binary and how it was found
	Version string
	cmd     *exec.Cmd
	dir     string
	log     *tailBuffer
	exited  chan struct{}
}

// findNATSServer returns a nats-server binary: path when given; else one
// built from this module's nats-server dependency (the version go.mod
// pins, the one the embedded server and the tests run) into dir, when
// the current directory is inside the usagefleet module; else the one on
// PATH.
func findNATSServer(ctx context.Context, path, dir string) (bin, how string, err error) {
	if path != "" {
		return path, "--nats-server", nil
	}
	out := filepath.Join(dir, "nats-server")
	build := exec.CommandContext(ctx, "go", "build", "-o", out, "github.com/nats-io/nats-server/v2")
	msg, berr := build.CombinedOutput()
	if berr == nil {
		return out, "built from go.mod", nil
	}
	if p, lerr := exec.LookPath("nats-server"); lerr == nil {
		return p, "found on PATH", nil
	}
	return "", "", fmt.Errorf("--spawn-nats: no nats-server: building it from the module failed (%v: %s; run the bench from the repository, or give --nats-server PATH) and there is none on PATH", berr, strings.TrimSpace(string(msg)))
}

// spawnNATS starts nats-server and waits until it listens.
func spawnNATS(ctx context.Context, path string) (*spawnedServer, error) {
	dir, err := os.MkdirTemp("", "usagefleet-bench-nats-")
	if err != nil {
		return nil, err
	}
	s := &spawnedServer{dir: dir, log: &tailBuffer{max: 8 << 10}, exited: make(chan struct{})}
	bin, how, err := findNATSServer(ctx, path, dir)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	if v, err := exec.CommandContext(ctx, bin, "--version").Output(); err == nil {
		s.Version = strings.TrimSpace(string(v))
	}
	s.Binary = bin + " (" + how + ")"
	conf := fmt.Sprintf(`listen: "127.0.0.1:-1"
max_payload: 8MB
max_pending: 256MB
ports_file_dir: %q
jetstream { store_dir: %q }
`, dir, filepath.Join(dir, "store"))
	confPath := filepath.Join(dir, "nats.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o600); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	s.cmd = exec.Command(bin, "-c", confPath)
	// GOMEMLIMIT and GOGC set for the run are meant for the worker (as
	// worker.memory_limit): a server that inherits a 100 MiB limit collects
	// garbage without end once its block cache outgrows it (a 10M-record
	// drain: 9.2 CPU-s per million in the server instead of about 1.5).
	s.cmd.Env = serverEnv(os.Environ())
	s.cmd.Stdout, s.cmd.Stderr = s.log, s.log
	if err := s.cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("starting %s: %w", bin, err)
	}
	go func() { s.cmd.Wait(); close(s.exited) }()
	portsFile := filepath.Join(dir, filepath.Base(bin)+"_"+strconv.Itoa(s.cmd.Process.Pid)+".ports")
	deadline := time.Now().Add(30 * time.Second)
	for {
		if b, err := os.ReadFile(portsFile); err == nil {
			var ports struct {
				NATS []string `json:"nats"`
			}
			if json.Unmarshal(b, &ports) == nil && len(ports.NATS) > 0 {
				s.URL = ports.NATS[0]
				return s, nil
			}
		}
		select {
		case <-s.exited:
			s.Close()
			return nil, fmt.Errorf("nats-server exited at start: %s", s.log.String())
		case <-ctx.Done():
			s.Close()
			return nil, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			s.Close()
			return nil, errors.New("nats-server: not listening after 30s: " + s.log.String())
		}
	}
}

// cpuSeconds is the server's CPU time so far (user and system).
func (s *spawnedServer) cpuSeconds() float64 { return procCPUSeconds(s.cmd.Process.Pid) }

// Close stops the server (SIGTERM, then SIGKILL after 10 s) and removes
// its store.
func (s *spawnedServer) Close() {
	if s.cmd != nil && s.cmd.Process != nil {
		s.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-s.exited:
		case <-time.After(10 * time.Second):
			s.cmd.Process.Kill()
			<-s.exited
		}
	}
	os.RemoveAll(s.dir)
}

// clockTicks is USER_HZ, the unit of /proc/PID/stat's times: 100 on every
// Linux the bench runs on (it is fixed by the kernel ABI, not by HZ).
const clockTicks = 100

// procCPUSeconds reads utime+stime of a process from /proc (Linux); 0
// where that is not there.
func procCPUSeconds(pid int) float64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	// The command name (field 2) may hold spaces: count from after it.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (u + st) / clockTicks
}

// serverEnv is env without the Go runtime's memory settings, which the
// bench's own environment holds for the worker.
func serverEnv(env []string) []string {
	out := make([]string, 0, len(env))
	for _, kv := range env {
		if strings.HasPrefix(kv, "GOMEMLIMIT=") || strings.HasPrefix(kv, "GOGC=") {
			continue
		}
		out = append(out, kv)
	}
	return out
}
