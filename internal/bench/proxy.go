package bench

import (
	"net"
	"sync"
	"time"
)

// delayProxy is the `--delay` link between the worker and nats-server: a
// loopback TCP proxy that holds every byte, in each direction, for a fixed
// time before passing it on, as a network with that one-way latency would.
//
// Each direction is a delay line, not a stop-and-wait: a reader takes
// bytes off the socket as they come, stamps them with the time they are
// due, and queues them; a writer sends each chunk when it is due. Data
// keeps flowing in while earlier data waits, so throughput is not bounded
// by the delay (up to lineBytes held per direction, far above what a
// millisecond holds at loopback rates), and order is kept because one
// queue feeds one writer.
type delayProxy struct {
	ln       net.Listener
	upstream string
	delay    time.Duration

	mu     sync.Mutex
	conns  map[net.Conn]struct{}
	closed bool
	done   chan struct{} // closed by Close: delay lines stop waiting
	wg     sync.WaitGroup
}

const (
	lineChunk = 64 << 10 // one read
	lineBytes = 64 << 20 // bytes one direction holds at most
)

// startDelayProxy listens on a random loopback port and forwards every
// connection to upstream (host:port) with delay each way.
func startDelayProxy(upstream string, delay time.Duration) (*delayProxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &delayProxy{ln: ln, upstream: upstream, delay: delay, conns: map[net.Conn]struct{}{}, done: make(chan struct{})}
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// Addr is the proxy's host:port.
func (p *delayProxy) Addr() string { return p.ln.Addr().String() }

// Close stops listening, cuts every connection and waits for the lines.
func (p *delayProxy) Close() error {
	p.mu.Lock()
	if !p.closed {
		close(p.done)
	}
	p.closed = true
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	err := p.ln.Close()
	p.wg.Wait()
	return err
}

func (p *delayProxy) track(cs ...net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	for _, c := range cs {
		p.conns[c] = struct{}{}
	}
	return true
}

func (p *delayProxy) untrack(cs ...net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range cs {
		delete(p.conns, c)
		c.Close()
	}
}

func (p *delayProxy) accept() {
	defer p.wg.Done()
	for {
		down, err := p.ln.Accept()
		if err != nil {
			return
		}
		up, err := net.Dial("tcp", p.upstream)
		if err != nil {
			down.Close()
			continue
		}
		if !p.track(down, up) {
			down.Close()
			up.Close()
			return
		}
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			var lines sync.WaitGroup
			lines.Add(2)
			go func() { defer lines.Done(); p.line(up, down) }()
			go func() { defer lines.Done(); p.line(down, up) }()
			lines.Wait()
			p.untrack(down, up)
		}()
	}
}

// delayed is a chunk of bytes and when it is due at the far side.
type delayed struct {
	b   []byte
	due time.Time
}

var chunkPool = sync.Pool{New: func() any { b := make([]byte, lineChunk); return &b }}

// line copies src to dst, each chunk p.delay after it was read. When src
// ends, dst's write side is closed once the last chunk is delivered (a
// half-close, so the other direction goes on); a write error cuts both.
func (p *delayProxy) line(dst, src net.Conn) {
	q := make(chan delayed, lineBytes/512)
	room := newBudget(lineBytes)
	go func() {
		defer close(q)
		for {
			room.take(lineChunk)
			bp := chunkPool.Get().(*[]byte)
			n, err := src.Read(*bp)
			b := (*bp)[:n]
			if n < lineChunk/2 {
				// A short read keeps only what it holds, so the budget
				// counts bytes held, not reads.
				b = append([]byte(nil), b...)
				chunkPool.Put(bp)
			}
			room.give(lineChunk - cap(b))
			if n > 0 {
				q <- delayed{b: b, due: time.Now().Add(p.delay)}
			} else {
				room.give(cap(b))
			}
			if err != nil {
				return
			}
		}
	}()
	failed := false
	for c := range q {
		if !failed && !p.wait(c.due) {
			failed = true // the proxy is closing
		}
		if !failed {
			if _, err := dst.Write(c.b); err != nil {
				// Cut both ends; keep draining q so the reader ends.
				failed = true
				dst.Close()
				src.Close()
			}
		}
		room.give(cap(c.b))
		if cap(c.b) == lineChunk {
			b := c.b[:lineChunk]
			chunkPool.Put(&b)
		}
	}
	if failed {
		return
	}
	if hc, ok := dst.(interface{ CloseWrite() error }); ok {
		hc.CloseWrite()
	}
}

// wait sleeps until due; false if the proxy closed first.
func (p *delayProxy) wait(due time.Time) bool {
	d := time.Until(due)
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-p.done:
		return false
	}
}

// budget bounds the bytes a line holds.
type budget struct {
	mu   sync.Mutex
	cond sync.Cond
	free int
}

func newBudget(n int) *budget {
	b := &budget{free: n}
	b.cond.L = &b.mu
	return b
}

func (b *budget) take(n int) {
	b.mu.Lock()
	for b.free < n {
		b.cond.Wait()
	}
	b.free -= n
	b.mu.Unlock()
}

func (b *budget) give(n int) {
	b.mu.Lock()
	b.free += n
	b.cond.Broadcast()
	b.mu.Unlock()
}
