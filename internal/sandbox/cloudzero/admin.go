package cloudzero

import (
	"io"
	"maps"
	"net/http"
	"slices"
	"strings"
	"time"
)

// HourJSON is one entry of GET /_sandbox/hours.
type HourJSON struct {
	Hour  time.Time `json:"hour"`
	Rows  int       `json:"rows"`
	Cost  string    `json:"cost"` // exact decimal
	Bytes int64     `json:"bytes"`
}

// StatsJSON is the answer of GET /_sandbox/stats.
type StatsJSON struct {
	Requests              int            `json:"requests"`
	ConcurrencyViolations int            `json:"concurrency_violations"`
	KeyReuseViolations    int            `json:"key_reuse_violations"`
	MaxBodySeen           int64          `json:"max_body_seen"`
	FaultsInjected        map[string]int `json:"faults_injected"`
}

// adminHours serves GET /_sandbox/hours?connection=ID, sorted by hour.
func (s *Server) adminHours(w http.ResponseWriter, r *http.Request) {
	conn := r.URL.Query().Get("connection")
	s.mu.Lock()
	known := s.conns[conn] != nil
	s.mu.Unlock()
	if !known {
		writeMessage(w, http.StatusNotFound, "unknown connection: pass ?connection=<id>")
		return
	}
	hours := s.Hours(conn)
	out := make([]HourJSON, 0, len(hours))
	for _, h := range slices.SortedFunc(maps.Keys(hours), time.Time.Compare) {
		t := hours[h]
		out = append(out, HourJSON{Hour: h, Rows: t.Rows, Cost: t.Cost.String(), Bytes: t.Bytes})
	}
	writeJSON(w, out)
}

func (s *Server) adminStats(w http.ResponseWriter, _ *http.Request) {
	st := StatsJSON{FaultsInjected: map[string]int{}}
	for k, n := range s.faults.Injected() {
		st.FaultsInjected[string(k)] = n
	}
	s.mu.Lock()
	st.Requests, st.ConcurrencyViolations, st.KeyReuseViolations, st.MaxBodySeen = s.requests, s.concurrency, s.keyReuse, s.maxBody
	s.mu.Unlock()
	writeJSON(w, st)
}

func (s *Server) adminReset(w http.ResponseWriter, _ *http.Request) {
	s.Reset()
	w.WriteHeader(http.StatusNoContent)
}

// adminKey serves PUT /_sandbox/keys/{connection}: the body is the new key
// (surrounding whitespace trimmed, so `echo key | curl -T-` works); an empty
// body revokes the key.
func (s *Server) adminKey(w http.ResponseWriter, r *http.Request) {
	b, err := io.ReadAll(io.LimitReader(r.Body, 4096))
	if err != nil {
		writeMessage(w, http.StatusBadRequest, "reading the key failed")
		return
	}
	s.SetKey(r.PathValue("connection"), strings.TrimSpace(string(b)))
	w.WriteHeader(http.StatusNoContent)
}

// Validations returns the row counts of the validate_billing_drop bodies
// that passed validation, in arrival order (nothing else is kept of them).
func (s *Server) Validations() []int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]int(nil), s.validations...)
}
