package cloudzero

import (
	"fmt"
	"maps"
	"net/http"
	"slices"
	"time"

	"github.com/shopspring/decimal"

	"github.com/usagefleet/usagefleet/internal/sandbox/fault"
)

// HourTotal is what a connection holds for one UTC hour.
type HourTotal struct {
	Rows  int
	Cost  decimal.Decimal // exact sum of cost/cost
	Bytes int64           // sum of the rows' JSON sizes
}

// RequestLog records one POST billing_drops to a known connection.
type RequestLog struct {
	Time           time.Time
	Operation      string // "" when the body was never parsed
	Month          string // YYYY-MM; "" when the body was never parsed
	Rows           int
	Bytes          int64 // body size as read
	IdempotencyKey string
	Status         int        // status answered; 0 when the connection was dropped
	Replayed       bool       // answered from the idempotency store
	Applied        bool       // the stored data changed
	Fault          fault.Kind // the fault injected, if any
}

type storedRow struct {
	seq    uint64 // arrival order across the connection
	values map[string]string
}

type hourData struct {
	rows  []storedRow // nil in Counting mode
	count int
	cost  decimal.Decimal
	bytes int64
}

type monthData struct {
	dropID string // of the last drop that changed the month
	hours  map[time.Time]*hourData
	rows   int
	bytes  int64
}

// answer is a stored response, replayed for a repeated idempotency key.
type answer struct {
	bodyHash   [32]byte
	status     int
	retryAfter string
	body       []byte
}

// connection is the state of one AnyCost Stream connection.
type connection struct {
	key      string
	months   map[time.Time]*monthData
	answers  map[string]answer // by cloudzero-idempotency-key
	log      []RequestLog
	inFlight int
}

func newConnection(key string) *connection {
	return &connection{key: key, months: map[time.Time]*monthData{}, answers: map[string]answer{}}
}

// limits are the per-month caps; a negative value disables one.
type limits struct {
	rows  int
	bytes int64
}

// apply performs d on c. It checks the month limits against the state the
// operation would leave before changing anything.
func (c *connection) apply(d *drop, lim limits, dropID string, seq *uint64) *badRequest {
	m := c.months[d.month]
	if m == nil {
		m = &monthData{hours: map[time.Time]*hourData{}}
	}
	rows, bytes := d.rows, d.bytes
	switch d.op {
	case OpReplaceHourly:
		rows, bytes = m.rows+d.rows, m.bytes+d.bytes
		for hour := range d.hours {
			if old := m.hours[hour]; old != nil {
				rows -= old.count
				bytes -= old.bytes
			}
		}
	case OpSum:
		rows, bytes = m.rows+d.rows, m.bytes+d.bytes
	}
	if lim.rows >= 0 && rows > lim.rows {
		return &badRequest{typ: errTypeLimit, msg: fmt.Sprintf(
			"month %s would hold %d rows: a stream is limited to %d rows per month", d.month.Format("2006-01"), rows, lim.rows)}
	}
	if lim.bytes >= 0 && bytes > lim.bytes {
		return &badRequest{typ: errTypeLimit, msg: fmt.Sprintf(
			"month %s would hold %d bytes: a stream is limited to %d bytes per month", d.month.Format("2006-01"), bytes, lim.bytes)}
	}

	// Rows carry their index in the body; offset it past every stored row
	// so the month reads back in arrival order.
	base := *seq
	*seq += uint64(d.rows)
	for _, h := range d.hours {
		for i := range h.rows {
			h.rows[i].seq += base
		}
	}
	switch d.op {
	case OpReplaceDrop:
		m.hours = d.hours
	case OpReplaceHourly:
		maps.Copy(m.hours, d.hours)
	case OpSum:
		for hour, h := range d.hours {
			old := m.hours[hour]
			if old == nil {
				m.hours[hour] = h
				continue
			}
			old.rows = append(old.rows, h.rows...)
			old.count += h.count
			old.cost = old.cost.Add(h.cost)
			old.bytes += h.bytes
		}
	}
	m.rows, m.bytes, m.dropID = rows, bytes, dropID
	if m.rows == 0 {
		delete(c.months, d.month) // replace_drop with no rows empties the month
	} else {
		c.months[d.month] = m
	}
	return nil
}

// monthRows returns the rows of a month in the order they were stored.
func (m *monthData) monthRows() []map[string]string {
	var all []storedRow
	for _, h := range m.hours {
		all = append(all, h.rows...)
	}
	slices.SortFunc(all, func(a, b storedRow) int { return cmpUint(a.seq, b.seq) })
	out := make([]map[string]string, len(all))
	for i, r := range all {
		out[i] = r.values
	}
	return out
}

func cmpUint(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// Hours returns, per UTC hour, what connection conn holds.
func (s *Server) Hours(conn string) map[time.Time]HourTotal {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[time.Time]HourTotal{}
	c := s.conns[conn]
	if c == nil {
		return out
	}
	for _, m := range c.months {
		for hour, h := range m.hours {
			out[hour] = HourTotal{Rows: h.count, Cost: h.cost, Bytes: h.bytes}
		}
	}
	return out
}

// Rows returns the rows connection conn holds for the UTC hour that contains
// hour, in arrival order. It is empty in Counting mode, which keeps no rows.
func (s *Server) Rows(conn string, hour time.Time) []map[string]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.conns[conn]
	if c == nil {
		return nil
	}
	hour = hour.UTC().Truncate(time.Hour)
	m := c.months[monthOf(hour)]
	if m == nil || m.hours[hour] == nil || len(m.hours[hour].rows) == 0 {
		return nil
	}
	rows := m.hours[hour].rows
	out := make([]map[string]string, len(rows))
	for i, r := range rows {
		out[i] = maps.Clone(r.values)
	}
	return out
}

// Requests returns the POSTs to billing_drops of connection conn, in the
// order they finished.
func (s *Server) Requests(conn string) []RequestLog {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c := s.conns[conn]; c != nil {
		return slices.Clone(c.log)
	}
	return nil
}

// Violations returns how many POSTs overlapped another for the same
// connection, and how many reused an idempotency key for a different body.
func (s *Server) Violations() (concurrency, keyReuse int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.concurrency, s.keyReuse
}

// MaxBodySeen returns the largest body read, in bytes. A body over the limit
// is read only to MaxBodyBytes+1.
func (s *Server) MaxBodySeen() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.maxBody
}

// Reset forgets all stored data, idempotency answers, request logs and
// counters. Keys and fault rules are configuration and stay as they are.
func (s *Server) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, c := range s.conns {
		fresh := newConnection(c.key)
		fresh.inFlight = c.inFlight // requests still running will leave
		s.conns[id] = fresh
	}
	s.concurrency, s.keyReuse, s.maxBody, s.requests = 0, 0, 0, 0
	s.validations = nil
}

// SetKey sets the API key of connection conn, adding the connection if it is
// new. An empty key revokes it: every request is then refused with 403.
func (s *Server) SetKey(conn, key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c := s.conns[conn]; c != nil {
		c.key = key
		return
	}
	s.conns[conn] = newConnection(key)
}

// remember stores the answer for an idempotency key.
func (s *Server) remember(conn, key string, a answer) {
	if key == "" {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if c := s.conns[conn]; c != nil {
		c.answers[key] = a
	}
}

func (a answer) write(w http.ResponseWriter) {
	if a.retryAfter != "" {
		w.Header().Set("Retry-After", a.retryAfter)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(a.status)
	_, _ = w.Write(a.body)
}
