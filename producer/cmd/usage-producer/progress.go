package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"
)

// progress shows how many part outcomes have arrived. On a terminal it is
// a bar redrawn in place with \r (every outcome, and every second for the
// clock); elsewhere (a log, a CI job) it is one line every tick and a last
// one at the end, so the log shows the wait is alive without a line per
// ack.
type progress struct {
	mu          sync.Mutex
	w           io.Writer
	tty         bool
	done, total int
	start       time.Time
	stop        chan struct{}
	stopped     sync.WaitGroup
}

const barWidth = 30

func startProgress(w io.Writer, tty bool, total int, tick time.Duration) *progress {
	p := &progress{w: w, tty: tty, total: total, start: time.Now(), stop: make(chan struct{})}
	if tty {
		tick = time.Second
	}
	p.stopped.Add(1)
	go func() {
		defer p.stopped.Done()
		t := time.NewTicker(tick)
		defer t.Stop()
		for {
			select {
			case <-p.stop:
				return
			case <-t.C:
				p.mu.Lock()
				p.draw()
				p.mu.Unlock()
			}
		}
	}()
	p.mu.Lock()
	if tty {
		p.draw()
	}
	p.mu.Unlock()
	return p
}

// set records done outcomes (it never goes back).
func (p *progress) set(done int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if done <= p.done {
		return
	}
	p.done = min(done, p.total)
	if p.tty {
		p.draw()
	}
}

// finish stops the ticker, draws the last state and returns the count.
func (p *progress) finish() int {
	close(p.stop)
	p.stopped.Wait()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.draw()
	if p.tty {
		fmt.Fprintln(p.w)
	}
	return p.done
}

func (p *progress) draw() {
	pct := 100
	if p.total > 0 {
		pct = p.done * 100 / p.total
	}
	elapsed := time.Since(p.start).Truncate(time.Second)
	if !p.tty {
		fmt.Fprintf(p.w, "acks: %d/%d part outcomes (%d%%) after %s\n", p.done, p.total, pct, elapsed)
		return
	}
	filled := barWidth
	if p.total > 0 {
		filled = p.done * barWidth / p.total
	}
	fmt.Fprintf(p.w, "\r[%s%s] %d/%d part outcomes %3d%% %s ", strings.Repeat("#", filled), strings.Repeat(".", barWidth-filled), p.done, p.total, pct, elapsed)
}

// isTerminal reports whether w is a character device (a terminal).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
