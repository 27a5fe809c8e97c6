package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"sync/atomic"
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

// rowProgress shows a file being read or published: bytes (when read) and
// rows, the rate and, when the total is known, an ETA. On a terminal it is
// redrawn in place every half second; elsewhere one summary line is
// written when it finishes.
type rowProgress struct {
	w          io.Writer
	tty        bool
	verb, name string
	total      int64 // bytes (reading) or rows (publishing); 0: unknown
	bytes      *atomic.Int64
	rows       *atomic.Int64
	start      time.Time
	stop       chan struct{}
	stopped    sync.WaitGroup
}

func startReadProgress(w io.Writer, tty bool, name string, size int64, bytes, rows *atomic.Int64) *rowProgress {
	return startRowProgress(w, tty, "read", name, size, bytes, rows)
}

func startPublishProgress(w io.Writer, tty bool, name string, rows int64, stored, none *atomic.Int64) *rowProgress {
	return startRowProgress(w, tty, "published", name, rows, none, stored)
}

func startRowProgress(w io.Writer, tty bool, verb, name string, total int64, bytes, rows *atomic.Int64) *rowProgress {
	p := &rowProgress{w: w, tty: tty, verb: verb, name: name, total: total, bytes: bytes, rows: rows, start: time.Now(), stop: make(chan struct{})}
	if !tty {
		return p
	}
	p.stopped.Add(1)
	go func() {
		defer p.stopped.Done()
		t := time.NewTicker(500 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-p.stop:
				return
			case <-t.C:
				fmt.Fprintf(p.w, "\r%s ", p.line())
			}
		}
	}()
	return p
}

// line is "NAME: read 120.5 MB of 1.5 GB (8%), 160000 rows, 310000 rows/s, 27.4 MB/s, ETA 52s".
func (p *rowProgress) line() string {
	el := time.Since(p.start).Seconds()
	rows := p.rows.Load()
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %s", p.name, p.verb)
	done := rows
	if p.verb == "read" {
		done = p.bytes.Load()
		fmt.Fprintf(&b, " %s", mb(done))
		if p.total > 0 {
			fmt.Fprintf(&b, " of %s", mb(p.total))
		}
		fmt.Fprintf(&b, ", %d rows", rows)
	} else {
		fmt.Fprintf(&b, " %d", rows)
		if p.total > 0 {
			fmt.Fprintf(&b, " of %d", p.total)
		}
		b.WriteString(" rows")
	}
	if el > 0 {
		fmt.Fprintf(&b, ", %.0f rows/s", float64(rows)/el)
		if p.verb == "read" {
			fmt.Fprintf(&b, ", %.1f MB/s", float64(done)/1e6/el)
		}
	}
	if p.total > 0 && done > 0 && done < p.total {
		eta := time.Duration(float64(p.total-done) / float64(done) * el * float64(time.Second))
		fmt.Fprintf(&b, ", ETA %s", eta.Truncate(time.Second))
	}
	return b.String()
}

// finish stops redrawing and writes the last line (on a terminal, over the
// bar; elsewhere, the summary), unless the step failed (its error says
// enough).
func (p *rowProgress) finish(ok bool) {
	if p.tty {
		close(p.stop)
		p.stopped.Wait()
	}
	if !ok {
		if p.tty {
			fmt.Fprintln(p.w)
		}
		return
	}
	el := time.Since(p.start).Truncate(time.Millisecond)
	line := p.line()
	if i := strings.Index(line, ", ETA"); i >= 0 {
		line = line[:i]
	}
	if p.tty {
		fmt.Fprintf(p.w, "\r%s in %s\n", line, el)
		return
	}
	fmt.Fprintf(p.w, "%s in %s\n", line, el)
}

func mb(n int64) string {
	switch {
	case n >= 1e9:
		return fmt.Sprintf("%.2f GB", float64(n)/1e9)
	case n >= 1e6:
		return fmt.Sprintf("%.1f MB", float64(n)/1e6)
	}
	return fmt.Sprintf("%d bytes", n)
}
