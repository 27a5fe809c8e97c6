package cloudzero

import (
	"fmt"
	"net/http"
	"time"
)

// DeleteHour forgets what connection conn holds for the UTC hour that
// contains hour, as if the API had lost it: for tests of reconciliation
// (usage-worker reconcile must report the unit and exit 1). It reports
// how many rows were dropped.
func (s *Server) DeleteHour(conn string, hour time.Time) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.conns[conn]
	if c == nil {
		return 0
	}
	hour = hour.UTC().Truncate(time.Hour)
	month := monthOf(hour)
	m := c.months[month]
	if m == nil || m.hours[hour] == nil {
		return 0
	}
	h := m.hours[hour]
	delete(m.hours, hour)
	m.rows -= h.count
	m.bytes -= h.bytes
	if len(m.hours) == 0 {
		delete(c.months, month)
	}
	return h.count
}

// adminDeleteHour serves DELETE /_sandbox/hours/{connection}/{hour}, hour
// as RFC 3339 (e.g. 2026-03-01T05:00:00Z): 200 {"deleted": rows}, 404 when
// the connection is unknown.
func (s *Server) adminDeleteHour(w http.ResponseWriter, r *http.Request) {
	conn := r.PathValue("connection")
	hour, err := time.Parse(time.RFC3339, r.PathValue("hour"))
	if err != nil {
		writeMessage(w, http.StatusBadRequest, fmt.Sprintf("hour: %q is not RFC 3339", r.PathValue("hour")))
		return
	}
	s.mu.Lock()
	known := s.conns[conn] != nil
	s.mu.Unlock()
	if !known {
		writeMessage(w, http.StatusNotFound, "unknown connection")
		return
	}
	writeJSON(w, map[string]int{"deleted": s.DeleteHour(conn, hour)})
}

// registerLoss adds the loss endpoint to the admin routes.
func (s *Server) registerLoss(mux *http.ServeMux) {
	mux.HandleFunc("DELETE /_sandbox/hours/{connection}/{hour}", s.adminDeleteHour)
}
