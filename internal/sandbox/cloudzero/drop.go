package cloudzero

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"maps"
	"net/http"
	"slices"
	"time"

	"github.com/usagefleet/usagefleet/internal/sandbox/fault"
)

// capture remembers the status and body written through it, so the answer a
// fault wrote can be stored for idempotent replay and logged.
type capture struct {
	http.ResponseWriter
	status int
	body   bytes.Buffer
}

func (c *capture) WriteHeader(code int) {
	if c.status == 0 {
		c.status = code
	}
	c.ResponseWriter.WriteHeader(code)
}

func (c *capture) Write(b []byte) (int, error) {
	if c.status == 0 {
		c.status = http.StatusOK
	}
	c.body.Write(b)
	return c.ResponseWriter.Write(b)
}

func (c *capture) answer(hash [32]byte) answer {
	return answer{bodyHash: hash, status: c.status, retryAfter: c.Header().Get("Retry-After"), body: bytes.Clone(c.body.Bytes())}
}

type dropAnswer struct {
	Connection dropInfo `json:"connection"`
}

type dropInfo struct {
	DropID   string `json:"drop_id,omitempty"`
	Month    string `json:"month"`
	RowCount int    `json:"row_count"`
}

// postDrop serves POST billing_drops: faults, auth, the one-request-at-a-time
// rule, size, idempotency, validation, then the operation.
func (s *Server) postDrop(rw http.ResponseWriter, r *http.Request) {
	conn := r.PathValue("connection_id")
	w := &capture{ResponseWriter: rw}
	entry := RequestLog{Time: time.Now().UTC(), IdempotencyKey: r.Header.Get(IdempotencyHeader)}
	s.mu.Lock()
	known := s.conns[conn] != nil
	if known {
		s.requests++
	}
	s.mu.Unlock()
	if known {
		// Deferred so that dropped connections (a panic with
		// http.ErrAbortHandler) are logged too, with status 0.
		defer s.logRequest(conn, w, &entry)
	}

	f := s.faults.Pick(r)
	entry.Fault = f.Kind
	if fault.Before(w, r, f, messageBody) {
		return
	}
	if !s.authorize(w, r, conn) {
		return
	}
	if !s.enter(conn) {
		w.Header().Set("Retry-After", "1")
		writeMessage(w, http.StatusTooManyRequests, "concurrent requests are not supported for the same stream")
		return
	}
	defer s.leave(conn)

	body, ok := s.readBody(w, r)
	if !ok {
		return
	}
	if s.cfg.FastCount {
		// Nothing of a fast-counted body outlives the request: its buffer
		// serves the next one (a 5 MB allocation, zeroed, per request was
		// a tenth of the sandbox's CPU).
		defer s.bodies.Put(&body)
	}
	entry.Bytes = int64(len(body))
	if s.cfg.ProcessingDelay > 0 {
		// Deliberately not cut short when the client goes away: a server
		// keeps processing a request whose client timed out.
		time.Sleep(s.cfg.ProcessingDelay)
	}

	hash := s.bodyDigest(body)
	key := entry.IdempotencyKey
	if answered, replayed := s.replay(w, conn, key, hash); answered {
		entry.Replayed = replayed
		return
	}

	var dropID string
	d, bad := s.parseBody(body)
	if bad == nil {
		entry.Operation, entry.Month, entry.Rows = d.op, d.month.Format("2006-01"), d.rows
		dropID, bad = s.apply(conn, d)
	}
	if bad != nil {
		writeBody(w, http.StatusBadRequest, errorBody(bad))
		s.remember(conn, key, w.answer(hash))
		return
	}
	entry.Applied = true

	ok200 := answer{bodyHash: hash, status: http.StatusOK, body: mustJSON(dropAnswer{dropInfo{
		DropID: dropID, Month: d.month.Format(time.RFC3339), RowCount: d.rows,
	}})}
	// Stored before the fault: after apply-then-reset the drop is applied,
	// and a retry with the same key must hear that it succeeded.
	s.remember(conn, key, ok200)
	if fault.After(w, f, messageBody) {
		s.remember(conn, key, w.answer(hash))
		return
	}
	ok200.write(w)
}

// logRequest appends entry, with the status w answered, to the log of
// connection conn.
func (s *Server) logRequest(conn string, w *capture, entry *RequestLog) {
	entry.Status = w.status
	s.mu.Lock()
	if c := s.conns[conn]; c != nil {
		c.log = append(c.log, *entry)
	}
	s.mu.Unlock()
}

// replay answers a request whose idempotency key was seen before: the
// stored answer for the same body (replayed), a 400 for another body. It
// says false for a key not seen (or none).
func (s *Server) replay(w http.ResponseWriter, conn, key string, hash [32]byte) (answered, replayed bool) {
	if key == "" {
		return false, false
	}
	s.mu.Lock()
	prev, seen := s.conns[conn].answers[key]
	if seen && prev.bodyHash != hash {
		s.keyReuse++
	}
	s.mu.Unlock()
	switch {
	case seen && prev.bodyHash == hash:
		prev.write(w)
		return true, true
	case seen:
		writeBody(w, http.StatusBadRequest, errorBody(&badRequest{typ: errTypeIdemKey, msg: fmt.Sprintf(
			"%s %q was already used for a different request body", IdempotencyHeader, key)}))
		return true, false
	}
	return false, false
}

// parseBody parses a drop the way the server is configured to.
func (s *Server) parseBody(body []byte) (*drop, *badRequest) {
	if s.cfg.FastCount {
		return fastCount(body)
	}
	return parseDrop(body, parseOptions{strict: !s.cfg.Counting, keepRows: !s.cfg.Counting, negative: !s.cfg.RejectNegative, refuse: s.refuse, noRowIdx: s.cfg.NoRowIndex})
}

// enter marks a POST in flight for conn, or counts a violation and reports
// false if one already is.
func (s *Server) enter(conn string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.conns[conn]
	if c.inFlight > 0 {
		s.concurrency++
		return false
	}
	c.inFlight++
	return true
}

func (s *Server) leave(conn string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.conns[conn].inFlight--
}

// apply performs d on conn's data and returns the new drop's id.
func (s *Server) apply(conn string, d *drop) (string, *badRequest) {
	s.mu.Lock()
	defer s.mu.Unlock()
	id := s.newDropID()
	if bad := s.conns[conn].apply(d, s.lim, id, &s.seq); bad != nil {
		return "", bad
	}
	return id, nil
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // only called with types that always marshal
	}
	return b
}

// newDropID returns a random (version 4) UUID from the seeded generator.
// The caller holds s.mu.
func (s *Server) newDropID() string {
	var b [16]byte
	s.rng.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}

// validateDrop serves POST validate_billing_drop: the checks of a POST
// billing_drops for any connection's key, storing nothing. It always checks
// strictly, even in Counting mode: validation is its whole purpose.
func (s *Server) validateDrop(w http.ResponseWriter, r *http.Request) {
	auth := r.Header.Get("Authorization")
	s.mu.Lock()
	valid := false
	for _, c := range s.conns {
		valid = valid || keyMatches(auth, c.key)
	}
	s.mu.Unlock()
	if !valid {
		writeMessage(w, http.StatusForbidden, forbidden(auth))
		return
	}
	body, ok := s.readBody(w, r)
	if !ok {
		return
	}
	d, bad := parseDrop(body, parseOptions{strict: true, negative: !s.cfg.RejectNegative, refuse: s.refuse, noRowIdx: s.cfg.NoRowIndex})
	if bad != nil {
		writeBody(w, http.StatusBadRequest, errorBody(bad))
		return
	}
	s.mu.Lock()
	s.validations = append(s.validations, d.rows)
	s.mu.Unlock()
	// The answer's shape is not documented [NOT FOUND]; this is the create
	// answer without a drop id, since no drop was created.
	writeJSON(w, dropAnswer{dropInfo{Month: d.month.Format(time.RFC3339), RowCount: d.rows}})
}

type listAnswer struct {
	BillingDrops []dropInfo `json:"billing_drops"`
}

// listDrops serves GET billing_drops: one entry per month holding data.
func (s *Server) listDrops(w http.ResponseWriter, r *http.Request) {
	conn := r.PathValue("connection_id")
	if !s.authorize(w, r, conn) {
		return
	}
	s.mu.Lock()
	c := s.conns[conn]
	out := listAnswer{BillingDrops: []dropInfo{}}
	for _, month := range slices.SortedFunc(maps.Keys(c.months), time.Time.Compare) {
		m := c.months[month]
		out.BillingDrops = append(out.BillingDrops, dropInfo{DropID: m.dropID, Month: month.Format(time.RFC3339), RowCount: m.rows})
	}
	s.mu.Unlock()
	writeJSON(w, out)
}

// getMonth serves GET billing_drops/{month}, month as YYYY-MM.
func (s *Server) getMonth(w http.ResponseWriter, r *http.Request) {
	conn, text := r.PathValue("connection_id"), r.PathValue("month")
	if !s.authorize(w, r, conn) {
		return
	}
	month, ok := parseMonth(text)
	if !ok || len(text) != len("2006-01") {
		writeBody(w, http.StatusBadRequest, errorBody(requestError("month: %q is not YYYY-MM", text)))
		return
	}
	s.mu.Lock()
	m := s.conns[conn].months[month]
	var rows []map[string]string
	if m != nil {
		rows = m.monthRows()
	}
	s.mu.Unlock()
	switch {
	case m == nil:
		writeMessage(w, http.StatusNotFound, fmt.Sprintf("no billing drop for month %s", text))
	case s.cfg.Counting:
		writeMessage(w, http.StatusNotImplemented, "the sandbox keeps no rows in Counting mode: read /_sandbox/hours")
	default:
		writeJSON(w, map[string]any{"billing_drop": rows})
	}
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// bodyDigest identifies a body for the idempotency check (the same key
// with another body is refused). FastCount mode, which exists to cost the
// fleet little, uses two hardware CRCs and the length (~20 GB/s against
// SHA-256's ~1.7 here): enough to tell a fleet's bodies apart, not proof
// against a forger, which a benchmark does not face.
func (s *Server) bodyDigest(body []byte) [32]byte {
	if !s.cfg.FastCount {
		return sha256.Sum256(body)
	}
	var d [32]byte
	binary.LittleEndian.PutUint32(d[0:], crc32.Checksum(body, castagnoli))
	binary.LittleEndian.PutUint32(d[4:], crc32.ChecksumIEEE(body))
	binary.LittleEndian.PutUint64(d[8:], uint64(len(body)))
	return d
}
