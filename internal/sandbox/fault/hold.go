package fault

import (
	"bytes"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"
)

// Holder wraps an emulator's handler so a test can have a request
// certainly in flight: it tells when a request arrives (Arrived) and,
// once armed (HoldNext), holds the next matching requests until the test
// lets them go on (Release) or drops them (Drop). It also counts overlaps:
// requests that arrived while another matching one was still being
// handled (held or not), which a test asserts to be zero where the API
// serves one request at a time. Tests drive it in-process; it has no
// admin endpoint.
type Holder struct {
	// Method and Path (a prefix) select the requests it sees; "" = any.
	Method, Path string

	mu       sync.Mutex
	arm      int
	arrived  chan *Held
	inflight int
	overlaps int
	seen     int
}

// Held is one request a Holder saw.
type Held struct {
	Req     *http.Request
	At      time.Time // arrival
	held    bool
	release chan bool // true: go on, false: drop
	gone    <-chan struct{}
	done    chan struct{} // closed when the handler returned
}

// NewHolder returns a holder whose Arrived channel buffers up to 1024
// arrivals (older ones are not kept once it is full).
func NewHolder(method, path string) *Holder {
	return &Holder{Method: method, Path: path, arrived: make(chan *Held, 1024)}
}

// HoldNext arms the holder: the next n matching requests are held.
func (h *Holder) HoldNext(n int) {
	h.mu.Lock()
	h.arm = n
	h.mu.Unlock()
}

// Arrived delivers every matching request as it arrives (held or not).
func (h *Holder) Arrived() <-chan *Held { return h.arrived }

// Overlaps counts requests that arrived while another was in the handler.
func (h *Holder) Overlaps() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.overlaps
}

// Seen counts the matching requests that arrived.
func (h *Holder) Seen() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.seen
}

// Wrap returns next behind the holder.
func (h *Holder) Wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if (h.Method != "" && !strings.EqualFold(h.Method, r.Method)) || !strings.HasPrefix(r.URL.Path, h.Path) {
			next.ServeHTTP(w, r)
			return
		}
		hr := &Held{Req: r, At: time.Now(), release: make(chan bool, 1), gone: r.Context().Done(), done: make(chan struct{})}
		h.mu.Lock()
		h.seen++
		if h.inflight > 0 {
			h.overlaps++
		}
		h.inflight++
		if h.arm > 0 {
			h.arm--
			hr.held = true
		}
		h.mu.Unlock()
		defer func() {
			h.mu.Lock()
			h.inflight--
			h.mu.Unlock()
			close(hr.done)
		}()
		select {
		case h.arrived <- hr:
		default:
		}
		if hr.held {
			// The whole request arrives before it is held, as at an API
			// that is processing it; and only once its body is read does
			// the server watch the connection, so Gone can tell when the
			// client goes away.
			body, err := io.ReadAll(r.Body)
			r.Body = io.NopCloser(bytes.NewReader(body))
			if err == nil && !<-hr.release {
				panic(http.ErrAbortHandler) // dropped: no answer, nothing applied
			}
		}
		next.ServeHTTP(w, r)
	})
}

// Held reports whether the request is held.
func (hr *Held) Held() bool { return hr.held }

// Release lets a held request go on to the emulator (even if its client
// has gone: a server may go on with a request whose client gave up).
func (hr *Held) Release() { hr.send(true) }

// Drop ends a held request without an answer, unapplied.
func (hr *Held) Drop() { hr.send(false) }

func (hr *Held) send(v bool) {
	select {
	case hr.release <- v:
	default:
	}
}

// Gone is closed when the request's client has gone away (it cancelled
// the request or its connection closed).
func (hr *Held) Gone() <-chan struct{} { return hr.gone }

// Done is closed when the request has been handled (or dropped).
func (hr *Held) Done() <-chan struct{} { return hr.done }
