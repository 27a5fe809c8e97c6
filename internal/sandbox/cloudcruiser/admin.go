package cloudcruiser

import (
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
)

const adminPrefix = "/_sandbox/"

// serveAdmin serves the sandbox's own endpoints, for tests and tools in
// other processes. Faults are never injected here.
//
//	GET    /_sandbox/dates             Dates()
//	GET    /_sandbox/records?date=D    Records(D)
//	GET    /_sandbox/uploads           Uploads()
//	GET    /_sandbox/stats             counts
//	POST   /_sandbox/reset             Reset()
//	PUT    /_sandbox/token             SetToken(body)
//	GET|PUT /_sandbox/fail-with-200    SetFailWith200(body "true"/"false")
//	*      /_sandbox/faults            the fault injector's AdminHandler
func (s *Server) serveAdmin(w http.ResponseWriter, r *http.Request) {
	name := strings.TrimPrefix(r.URL.Path, adminPrefix)
	method := func(allowed ...string) bool {
		for _, m := range allowed {
			if r.Method == m {
				return true
			}
		}
		w.Header().Set("Allow", strings.Join(allowed, ", "))
		writeError(w, http.StatusMethodNotAllowed, "Method "+r.Method+" not allowed")
		return false
	}
	switch name {
	case "faults":
		s.faults.AdminHandler().ServeHTTP(w, r)
	case "dates":
		if method(http.MethodGet) {
			adminJSON(w, s.Dates())
		}
	case "records":
		if method(http.MethodGet) {
			recs := s.Records(r.URL.Query().Get("date"))
			if recs == nil {
				recs = []Record{}
			}
			adminJSON(w, recs)
		}
	case "uploads":
		if method(http.MethodGet) {
			ups := s.Uploads()
			if ups == nil {
				ups = []UploadLog{}
			}
			adminJSON(w, ups)
		}
	case "stats":
		if method(http.MethodGet) {
			adminJSON(w, s.stats())
		}
	case "reset":
		if method(http.MethodPost) {
			s.Reset()
			w.WriteHeader(http.StatusNoContent)
		}
	case "token":
		if method(http.MethodPut) {
			b, err := io.ReadAll(io.LimitReader(r.Body, 64<<10))
			if err != nil {
				writeError(w, http.StatusBadRequest, "reading the token: "+err.Error())
				return
			}
			// The token is never echoed or logged.
			s.SetToken(strings.TrimSpace(string(b)))
			w.WriteHeader(http.StatusNoContent)
		}
	case "fail-with-200":
		if !method(http.MethodGet, http.MethodPut) {
			return
		}
		if r.Method == http.MethodPut {
			b, _ := io.ReadAll(io.LimitReader(r.Body, 64))
			on, err := strconv.ParseBool(strings.TrimSpace(string(b)))
			if err != nil {
				writeError(w, http.StatusBadRequest, "fail-with-200: body must be true or false")
				return
			}
			s.SetFailWith200(on)
		}
		s.mu.Lock()
		on := s.failWith200
		s.mu.Unlock()
		adminJSON(w, map[string]bool{"fail_with_200": on})
	default:
		writeError(w, http.StatusNotFound, "Not found: "+r.URL.Path)
	}
}

// Stats is what GET /_sandbox/stats answers.
type Stats struct {
	Uploads               int            `json:"uploads"`   // requests to the upload endpoint
	Applied               int            `json:"applied"`   // uploads that replaced their date
	ByStatus              map[string]int `json:"by_status"` // HTTP status -> requests ("0" = dropped)
	Dates                 int            `json:"dates"`
	Records               int            `json:"records"` // over every stored date
	ConcurrencyViolations int            `json:"concurrency_violations"`
	FailWith200           bool           `json:"fail_with_200"`
	FaultsInjected        map[string]int `json:"faults_injected"`
}

func (s *Server) stats() Stats {
	st := Stats{ByStatus: map[string]int{}, FaultsInjected: map[string]int{}}
	for k, n := range s.faults.Injected() {
		st.FaultsInjected[string(k)] = n
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	st.Uploads = len(s.uploads)
	for _, u := range s.uploads {
		st.ByStatus[strconv.Itoa(u.Status)]++
		if u.Applied {
			st.Applied++
		}
	}
	st.Dates = len(s.dates)
	for _, d := range s.dates {
		st.Records += d.total.Records
	}
	st.ConcurrencyViolations = s.violations
	st.FailWith200 = s.failWith200
	return st
}

func adminJSON(w http.ResponseWriter, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, append(b, '\n'))
}
