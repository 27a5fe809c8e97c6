package gateway

import (
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/nats-io/nats.go"
)

// replyMux routes the answers of requests that get several replies (the
// batched direct get: a message per claim found, then the end marker; a
// group's PubAcks: one per claim and the batch record)
// through one wildcard subscription made once. A subscription per group
// cost a SUB and an UNSUB each way, and each changed the server's
// subscription list, which empties its cache of where subjects go.
type replyMux struct {
	prefix string // "<inbox>." : a request's reply subject is prefix + token
	sub    *nats.Subscription
	next   atomic.Uint64
	mu     sync.Mutex
	open   map[string]chan *nats.Msg
}

func newReplyMux(nc *nats.Conn) (*replyMux, error) {
	r := &replyMux{prefix: nc.NewInbox() + ".", open: map[string]chan *nats.Msg{}}
	sub, err := nc.Subscribe(r.prefix+"*", r.route)
	if err != nil {
		return nil, err
	}
	// The channels are sized to their replies: the subscription's own
	// queue holds only what is in transit.
	r.sub = sub
	return r, nil
}

func (r *replyMux) route(m *nats.Msg) {
	token := m.Subject[len(r.prefix):]
	r.mu.Lock()
	ch := r.open[token]
	r.mu.Unlock()
	if ch == nil {
		return // a late reply to a request that gave up
	}
	select {
	case ch <- m:
	default: // more replies than the request said: not one of ours
	}
}

// start opens a reply subject whose replies go to a channel of n; end
// closes it.
func (r *replyMux) start(n int) (subject string, ch chan *nats.Msg, end func()) {
	token := strconv.FormatUint(r.next.Add(1), 36)
	ch = make(chan *nats.Msg, n)
	r.mu.Lock()
	r.open[token] = ch
	r.mu.Unlock()
	return r.prefix + token, ch, func() {
		r.mu.Lock()
		delete(r.open, token)
		r.mu.Unlock()
	}
}
