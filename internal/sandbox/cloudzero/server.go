package cloudzero

import (
	"bytes"
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math/rand"
	"mime"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/usagefleet/usagefleet/internal/sandbox/fault"
)

// Defaults for the zero values of Config.
const (
	DefaultMaxBodyBytes     = 5_000_000  // "5MB uncompressed" [DOC]; decimal megabytes [INFER]
	DefaultMaxRowsPerMonth  = 1_000_000  // "one million rows ... per month" [DOC]
	DefaultMaxBytesPerMonth = 70_000_000 // "70MB in total size per month" [DOC]; measured as row JSON bytes [INFER]
)

// IdempotencyHeader is the header CloudZero keys its replayed answers on.
const IdempotencyHeader = "cloudzero-idempotency-key"

// Config configures a Server. Every zero value means the documented default.
type Config struct {
	// Connections maps connection id to its API key.
	Connections map[string]string
	// RefuseResourceIDs plants rows the API refuses: a row whose
	// resource/id is listed makes its body a 400 naming the row
	// (data[i]["resource/id"]), as any invalid row does. For tests of
	// how a client isolates a refused row.
	RefuseResourceIDs []string
	// NoRowIndex leaves the row index out of a 400's message ("invalid
	// row: ..."): the real API's message format is not documented
	// [INFER], so a client must cope without it.
	NoRowIndex bool
	// MaxBodyBytes is the largest accepted body; larger gets 413.
	// 0 means DefaultMaxBodyBytes.
	MaxBodyBytes int64
	// MaxRowsPerMonth caps the rows a connection holds for one month.
	// 0 means DefaultMaxRowsPerMonth; negative means no cap.
	MaxRowsPerMonth int
	// MaxBytesPerMonth caps the row JSON bytes a connection holds for one
	// month. 0 means DefaultMaxBytesPerMonth; negative means no cap.
	MaxBytesPerMonth int64
	// RejectNegative enforces the schema's amount pattern ^\d+(\.\d+)?$ to
	// the letter. By default a leading minus is accepted, because the CBF docs
	// say Discount and Credit rows carry negative costs [INFER].
	RejectNegative bool
	// ProcessingDelay holds each POST in flight this long, so overlapping
	// requests for one connection become visible.
	ProcessingDelay time.Duration
	// Counting skips per-column validation and keeps per-hour totals instead
	// of rows; see the package doc.
	Counting bool
	// FastCount is cheaper still, for measuring the fleet rather than the
	// emulator: rows are counted and their start and cost found by scanning
	// for the two keys, without walking or validating the rest of the JSON
	// (see fastCount). Auth, size, one month per body, idempotency,
	// concurrency and per-hour replace semantics are kept. It implies
	// Counting (no rows are kept).
	FastCount bool
	// Seed makes drop ids and the fault injector's choices repeatable.
	Seed int64
}

// Server emulates the billing_drops API. Its methods are safe for concurrent use.
type Server struct {
	cfg    Config
	lim    limits
	faults *fault.Injector
	mux    *http.ServeMux
	bodies sync.Pool // *[]byte request buffers, FastCount mode

	mu          sync.Mutex
	conns       map[string]*connection
	rng         *rand.Rand      // drop ids
	seq         uint64          // row arrival order
	requests    int             // POSTs to billing_drops of known connections
	validations []int           // row counts of the validate_billing_drop bodies that passed
	refuse      map[string]bool // Config.RefuseResourceIDs
	concurrency int
	keyReuse    int
	maxBody     int64
}

const (
	pathDrops    = "/v2/connections/billing/anycost/{connection_id}/billing_drops"
	pathMonth    = "/v2/connections/billing/anycost/{connection_id}/billing_drops/{month}"
	pathValidate = "/v2/connections/billing/anycost/validate_billing_drop"
)

// New returns an emulator configured by cfg.
func New(cfg Config) *Server {
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if cfg.MaxRowsPerMonth == 0 {
		cfg.MaxRowsPerMonth = DefaultMaxRowsPerMonth
	}
	if cfg.MaxBytesPerMonth == 0 {
		cfg.MaxBytesPerMonth = DefaultMaxBytesPerMonth
	}
	if cfg.FastCount {
		cfg.Counting = true
	}
	cfg.Connections = maps.Clone(cfg.Connections)
	s := &Server{
		cfg:    cfg,
		lim:    limits{rows: cfg.MaxRowsPerMonth, bytes: cfg.MaxBytesPerMonth},
		faults: fault.New(cfg.Seed),
		conns:  map[string]*connection{},
		rng:    rand.New(rand.NewSource(cfg.Seed)),
	}
	for id, key := range cfg.Connections {
		s.conns[id] = newConnection(key)
	}
	if len(cfg.RefuseResourceIDs) > 0 {
		s.refuse = map[string]bool{}
		for _, id := range cfg.RefuseResourceIDs {
			s.refuse[id] = true
		}
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+pathDrops, s.postDrop)
	mux.HandleFunc("GET "+pathDrops, s.listDrops)
	mux.HandleFunc("GET "+pathMonth, s.getMonth)
	mux.HandleFunc("POST "+pathValidate, s.validateDrop)
	mux.HandleFunc("GET /_sandbox/hours", s.adminHours)
	mux.HandleFunc("GET /_sandbox/stats", s.adminStats)
	mux.HandleFunc("POST /_sandbox/reset", s.adminReset)
	mux.HandleFunc("PUT /_sandbox/keys/{connection}", s.adminKey)
	mux.Handle("/_sandbox/faults", s.faults.AdminHandler())
	s.registerLoss(mux) // lose.go
	s.mux = mux
	return s
}

// Handler serves the API and the admin endpoints.
func (s *Server) Handler() http.Handler { return s.mux }

// Faults is the injector applied to POST billing_drops.
func (s *Server) Faults() *fault.Injector { return s.faults }

func messageBody(_ int, msg string) []byte {
	b, _ := json.Marshal(map[string]string{"message": msg})
	return b
}

func errorBody(e *badRequest) []byte {
	b, _ := json.Marshal(map[string]any{"error": map[string]string{"message": e.msg, "type": e.typ}})
	return b
}

func writeMessage(w http.ResponseWriter, code int, msg string) {
	writeBody(w, code, messageBody(code, msg))
}

func writeBody(w http.ResponseWriter, code int, body []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_, _ = w.Write(body)
}

func writeJSON(w http.ResponseWriter, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		writeMessage(w, http.StatusInternalServerError, err.Error())
		return
	}
	writeBody(w, http.StatusOK, b)
}

// keyMatches compares an Authorization header with a key in constant time.
// The documented form is the bare key: "Bearer <key>" does not match. An
// empty (revoked) key matches nothing.
func keyMatches(header, key string) bool {
	return key != "" && subtle.ConstantTimeCompare([]byte(header), []byte(key)) == 1
}

// authorize answers 404 for an unknown connection and 403 for a key that is
// not the connection's, and reports whether the request may go on. The
// answers never repeat what was sent.
func (s *Server) authorize(w http.ResponseWriter, r *http.Request, conn string) bool {
	s.mu.Lock()
	c := s.conns[conn]
	key := ""
	if c != nil {
		key = c.key
	}
	s.mu.Unlock()
	if c == nil {
		writeMessage(w, http.StatusNotFound, fmt.Sprintf("connection %q not found", conn))
		return false
	}
	if !keyMatches(r.Header.Get("Authorization"), key) {
		writeMessage(w, http.StatusForbidden, forbidden(r.Header.Get("Authorization")))
		return false
	}
	return true
}

func forbidden(header string) string {
	switch {
	case header == "":
		return "Forbidden: missing Authorization header"
	case strings.HasPrefix(header, "Bearer "):
		return "Forbidden: the API key is not a bearer token; send it without the Bearer prefix"
	}
	return "Forbidden: invalid API key"
}

// readBody checks the headers and reads the body of a POST. It answers the
// failure itself and returns ok=false.
func (s *Server) readBody(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		writeMessage(w, http.StatusUnsupportedMediaType, "Content-Type must be application/json")
		return nil, false
	}
	// Nothing documents a compressed body, and the limit speaks of the
	// uncompressed size: refuse any encoding rather than guess [INFER].
	if enc := r.Header.Get("Content-Encoding"); enc != "" && !strings.EqualFold(enc, "identity") {
		writeMessage(w, http.StatusUnsupportedMediaType, fmt.Sprintf("Content-Encoding %q is not supported: send uncompressed JSON", enc))
		return nil, false
	}
	limit := s.cfg.MaxBodyBytes
	var buf *bytes.Buffer
	if s.cfg.FastCount {
		if b, _ := s.bodies.Get().(*[]byte); b != nil {
			buf = bytes.NewBuffer((*b)[:0])
		}
	}
	if buf == nil {
		buf = new(bytes.Buffer)
	}
	if r.ContentLength > 0 { // one allocation for a 5 MB body, not a dozen
		buf.Grow(int(min(r.ContentLength, limit) + bytes.MinRead))
	}
	_, err := buf.ReadFrom(io.LimitReader(r.Body, limit+1))
	body := buf.Bytes()
	s.mu.Lock()
	s.maxBody = max(s.maxBody, int64(len(body)))
	s.mu.Unlock()
	if err != nil {
		writeMessage(w, http.StatusBadRequest, "reading the request body failed")
		return nil, false
	}
	if int64(len(body)) > limit {
		writeMessage(w, http.StatusRequestEntityTooLarge, "Request Entity Too Large")
		return nil, false
	}
	return body, true
}
