//go:build soak

package soak

import (
	"fmt"
	"path/filepath"
	"sync"
	"time"
)

// fleet is the usage-worker processes, all on one config file, each
// restartable after a kill.
type fleet struct {
	bin, cfg, dir string
	env           []string

	mu      sync.Mutex
	workers []*proc
	starts  []int
	peak    int64 // highest VmHWM seen of any worker
}

func (f *fleet) start(i int) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for len(f.workers) <= i {
		f.workers = append(f.workers, nil)
		f.starts = append(f.starts, 0)
	}
	f.starts[i]++
	log := filepath.Join(f.dir, fmt.Sprintf("worker%d.log", i+1))
	p, err := startProc(f.bin, []string{"run", "--config", f.cfg}, append(f.env, fmt.Sprintf("SOAK_WORKER=%d.%d", i+1, f.starts[i])), log)
	if err != nil {
		return err
	}
	f.workers[i] = p
	return nil
}

// kill SIGKILLs worker i, after reading its peak RSS.
func (f *fleet) kill(i int) {
	f.mu.Lock()
	p := f.workers[i]
	f.workers[i] = nil
	f.mu.Unlock()
	if p != nil {
		f.notePeak(p)
		p.kill()
	}
}

func (f *fleet) notePeak(p *proc) {
	if r := p.peakRSS(); r > 0 {
		f.mu.Lock()
		f.peak = max(f.peak, r)
		f.mu.Unlock()
	}
}

// sample notes the peak RSS of every running worker and reports a worker
// that died on its own (it should not: only the test kills).
func (f *fleet) sample() (died []int) {
	f.mu.Lock()
	ws := append([]*proc(nil), f.workers...)
	f.mu.Unlock()
	for i, p := range ws {
		if p == nil {
			continue
		}
		if !p.alive() {
			died = append(died, i)
			continue
		}
		f.notePeak(p)
	}
	return died
}

func (f *fleet) stopAll() {
	f.mu.Lock()
	ws := f.workers
	f.workers = nil
	f.mu.Unlock()
	for _, p := range ws {
		if p != nil {
			f.notePeak(p)
			p.stop(15 * time.Second)
		}
	}
}

func (f *fleet) peakRSS() int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.peak
}
