// Package webhook is the sandbox receiver for the generic HTTP (append)
// destination. It accepts JSON arrays of records, keeps every record it was
// given, and counts what a test of the worker fleet needs to tell "delivered
// exactly once" from "delivered twice": requests that repeat an
// Idempotency-Key, records counted once per key, and exact cost sums.
//
// Protocol (POST Config.Path, default /ingest):
//
//   - Authorization: "Bearer <Token>" when Config.Token is set, else 401.
//   - Content-Type: application/json, else 415.
//   - Content-Encoding: none, identity or gzip, else 415. A gzip body is
//     inflated (to at most Config.MaxInflatedBytes, else 413; not gzip:
//     400) and everything below applies to the inflated JSON.
//   - Body at most Config.MaxBodyBytes (default 1 MiB) as it comes over
//     the wire, compressed or not, else 413.
//   - Standard Webhooks signatures, when Config.SigningSecrets is set (as
//     the specification's receivers check them: spec/standard-webhooks.md
//     of github.com/standard-webhooks/standard-webhooks, "Verifying
//     signatures"): webhook-id, webhook-timestamp and webhook-signature
//     must all be present, the timestamp within Config.SigningTolerance
//     (default 5 minutes, the reference libraries') of now either way,
//     and one of the space-separated "v1,<base64>" signatures must be
//     HMAC-SHA256 under one of the secrets of
//     "<webhook-id>.<webhook-timestamp>.<JSON body>" (the body after any
//     Content-Encoding is removed), else 401. The answer never echoes a
//     signature.
//   - Body: a JSON array of JSON objects, else 400 naming the problem.
//     Config.CostField (default "BilledCost") must be absent, null, "" or a
//     JSON string holding a decimal; anything else is a 400.
//   - Idempotency-Key (or, without one, webhook-id): optional. A request
//     whose key was already applied is
//     still appended (this is a receiver that shows mistakes, not one that
//     hides them) and is counted in Stats.DuplicateRequests.
//   - Success: 200 {"received": N}. Errors: {"error": "..."}.
//
// Faults from Faults() apply to POST Config.Path only; Before-faults are
// answered before authentication, so a Status fault needs no valid token.
//
// Admin endpoints for other processes:
//
//	GET  /_sandbox/stats   Stats as JSON, decimals as strings
//	POST /_sandbox/reset   forget every request and record (fault rules stay)
//	     /_sandbox/faults  the fault injector's AdminHandler
package webhook

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/shopspring/decimal"

	"github.com/usagefleet/usagefleet/internal/sandbox/fault"
)

// Defaults for the zero values of Config.
const (
	DefaultPath         = "/ingest"
	DefaultMaxBodyBytes = 1 << 20
	DefaultCostField    = "BilledCost"
)

// Config configures a Server. Zero values take the defaults above.
type Config struct {
	// Path is where records are POSTed. Default DefaultPath.
	Path string
	// Token, when set, must arrive as "Authorization: Bearer <Token>".
	Token string
	// MaxBodyBytes is the largest accepted body; a larger one gets 413.
	MaxBodyBytes int64
	// CostField names the JSON string decimal field summed into Stats.Cost.
	CostField string
	// Seed makes the fault injector's random choices repeatable.
	Seed int64
	// SigningSecrets, when set, are the Standard Webhooks secrets
	// ("whsec_" + base64) a request must be signed with, any one of them
	// (a receiver rotating its secret). New panics on one that does not
	// decode: check outside input with DecodeSecret first.
	SigningSecrets []string
	// SigningTolerance is how far webhook-timestamp may be from now.
	// Default DefaultSigningTolerance.
	SigningTolerance time.Duration
	// MaxInflatedBytes is the largest body a gzip body may inflate to.
	// Default 32 times MaxBodyBytes.
	MaxInflatedBytes int64
}

// DefaultSigningTolerance is the reference libraries' tolerance.
const DefaultSigningTolerance = 5 * time.Minute

// Stats is what the receiver has seen since it started or was Reset.
type Stats struct {
	// Requests counts applied requests (answered 200 or by an apply-then fault).
	Requests int
	// Rejected counts requests refused by validation (401, 413, 415, 400).
	Rejected int
	// Records counts every appended record, duplicates included.
	Records int
	// DuplicateRequests counts applied requests whose Idempotency-Key had
	// already been applied.
	DuplicateRequests int
	// KeyReuse counts duplicate requests whose body differed from the body
	// first applied under the same key: a client bug, since a key names one body.
	KeyReuse int
	// UniqueRecords counts records once per Idempotency-Key; requests without
	// a key all count.
	UniqueRecords int
	// Cost and UniqueCost are exact sums of CostField over Records and
	// UniqueRecords.
	Cost       decimal.Decimal
	UniqueCost decimal.Decimal
	// MaxBodyBytes is the largest body read, as it came over the wire
	// (compressed, for a gzip body). A body over the limit is read only to
	// limit+1 bytes, so it shows as limit+1.
	MaxBodyBytes int64
	// Gzipped counts requests that came with Content-Encoding: gzip and
	// inflated; MaxInflatedBytes is the largest body one inflated to.
	Gzipped          int
	MaxInflatedBytes int64
	// Verified counts requests whose signature verified; BadSignatures
	// those refused 401 for their signature headers (missing, stale,
	// matching no secret).
	Verified      int
	BadSignatures int
}

// Server is the receiver. Its methods are safe for concurrent use.
type Server struct {
	cfg    Config
	keys   [][]byte // decoded SigningSecrets
	faults *fault.Injector
	mux    *http.ServeMux

	mu      sync.Mutex
	stats   Stats
	records []json.RawMessage
	unique  []json.RawMessage
	keyBody map[string][sha256.Size]byte // Idempotency-Key → hash of the first body applied with it
}

// New returns a receiver configured by cfg.
func New(cfg Config) *Server {
	if cfg.Path == "" {
		cfg.Path = DefaultPath
	}
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if cfg.CostField == "" {
		cfg.CostField = DefaultCostField
	}
	if cfg.SigningTolerance <= 0 {
		cfg.SigningTolerance = DefaultSigningTolerance
	}
	if cfg.MaxInflatedBytes <= 0 {
		cfg.MaxInflatedBytes = 32 * cfg.MaxBodyBytes
	}
	s := &Server{cfg: cfg, faults: fault.New(cfg.Seed), keyBody: map[string][sha256.Size]byte{}}
	for i, sec := range cfg.SigningSecrets {
		k, err := DecodeSecret(sec)
		if err != nil {
			panic(fmt.Sprintf("sandbox webhook: signing secret %d: %v", i, err))
		}
		s.keys = append(s.keys, k)
	}
	s.mux = http.NewServeMux()
	s.mux.HandleFunc(cfg.Path, s.ingest)
	s.mux.HandleFunc("/_sandbox/stats", s.serveStats)
	s.mux.HandleFunc("/_sandbox/reset", s.serveReset)
	s.mux.Handle("/_sandbox/faults", s.faults.AdminHandler())
	s.Reset()
	return s
}

// Handler serves the ingest path and the admin endpoints.
func (s *Server) Handler() http.Handler { return s.mux }

// Faults is the injector applied to POSTs on the ingest path.
func (s *Server) Faults() *fault.Injector { return s.faults }

func errorBody(_ int, msg string) []byte {
	b, _ := json.Marshal(map[string]string{"error": msg})
	return b
}

func writeError(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_, _ = w.Write(errorBody(code, msg))
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

func (s *Server) ingest(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		writeError(w, http.StatusMethodNotAllowed, "method not allowed: use POST")
		return
	}
	f := s.faults.Pick(r)
	if fault.Before(w, r, f, errorBody) {
		return
	}
	body, code, err := s.check(r)
	if err != nil {
		s.mu.Lock()
		s.stats.Rejected++
		s.mu.Unlock()
		writeError(w, code, err.Error())
		return
	}
	key := r.Header.Get("Idempotency-Key")
	if key == "" {
		key = r.Header.Get("Webhook-Id")
	}
	n := s.apply(key, body)
	if fault.After(w, f, errorBody) {
		return
	}
	writeJSON(w, map[string]int{"received": n})
}

// parsed is a validated request body.
type parsed struct {
	raw     []byte
	records []json.RawMessage
	cost    decimal.Decimal
}

// check authenticates and validates r; on failure it returns the status to answer.
func (s *Server) check(r *http.Request) (parsed, int, error) {
	var code int
	if s.cfg.Token != "" {
		want := []byte("Bearer " + s.cfg.Token)
		got := []byte(r.Header.Get("Authorization"))
		if subtle.ConstantTimeCompare(want, got) != 1 {
			// Never echo what was sent: it may be a real key.
			return parsed{}, http.StatusUnauthorized, errors.New("missing or invalid bearer token")
		}
	}
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/json" {
		return parsed{}, http.StatusUnsupportedMediaType, fmt.Errorf("Content-Type must be application/json, got %q", r.Header.Get("Content-Type"))
	}
	enc := strings.ToLower(strings.TrimSpace(r.Header.Get("Content-Encoding")))
	if enc != "" && enc != "identity" && enc != "gzip" {
		return parsed{}, http.StatusUnsupportedMediaType, fmt.Errorf("Content-Encoding %q is not supported (gzip is)", r.Header.Get("Content-Encoding"))
	}
	raw, err := io.ReadAll(io.LimitReader(r.Body, s.cfg.MaxBodyBytes+1))
	s.seen(int64(len(raw)))
	if err != nil {
		return parsed{}, http.StatusBadRequest, fmt.Errorf("reading body: %v", err)
	}
	if int64(len(raw)) > s.cfg.MaxBodyBytes {
		return parsed{}, http.StatusRequestEntityTooLarge, fmt.Errorf("body larger than %d bytes", s.cfg.MaxBodyBytes)
	}
	if enc == "gzip" {
		if raw, code, err = s.inflate(raw); err != nil {
			return parsed{}, code, err
		}
	}
	if len(s.keys) > 0 {
		if err := s.verify(r.Header, raw, time.Now()); err != nil {
			s.mu.Lock()
			s.stats.BadSignatures++
			s.mu.Unlock()
			return parsed{}, http.StatusUnauthorized, err
		}
		s.mu.Lock()
		s.stats.Verified++
		s.mu.Unlock()
	}
	p := parsed{raw: raw, cost: decimal.Zero}
	if err := json.Unmarshal(raw, &p.records); err != nil || p.records == nil {
		return parsed{}, http.StatusBadRequest, errors.New("body must be a JSON array of objects")
	}
	for i, rec := range p.records {
		var obj map[string]json.RawMessage
		if err := json.Unmarshal(rec, &obj); err != nil || obj == nil {
			return parsed{}, http.StatusBadRequest, fmt.Errorf("element %d: not a JSON object", i)
		}
		c, err := costOf(obj[s.cfg.CostField])
		if err != nil {
			return parsed{}, http.StatusBadRequest, fmt.Errorf("element %d: %q: %v", i, s.cfg.CostField, err)
		}
		p.cost = p.cost.Add(c)
	}
	return p, 0, nil
}

// costOf reads a cost field: absent, null and "" are zero; otherwise it must
// be a JSON string holding a decimal, so no float ever touches money.
func costOf(v json.RawMessage) (decimal.Decimal, error) {
	if len(v) == 0 || string(v) == "null" {
		return decimal.Zero, nil
	}
	var s string
	if err := json.Unmarshal(v, &s); err != nil {
		return decimal.Zero, fmt.Errorf("%s is not a JSON string", v)
	}
	if s == "" {
		return decimal.Zero, nil
	}
	d, err := decimal.NewFromString(s)
	if err != nil {
		return decimal.Zero, fmt.Errorf("%q is not a decimal", s)
	}
	return d, nil
}

func (s *Server) seen(n int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stats.MaxBodyBytes = max(s.stats.MaxBodyBytes, n)
}

// apply appends the records of p and returns how many there were.
func (s *Server) apply(key string, p parsed) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	recs := make([]json.RawMessage, len(p.records))
	for i, r := range p.records {
		recs[i] = bytes.Clone(r)
	}
	s.stats.Requests++
	s.stats.Records += len(recs)
	s.stats.Cost = s.stats.Cost.Add(p.cost)
	s.records = append(s.records, recs...)
	if key != "" {
		sum := sha256.Sum256(p.raw)
		if first, ok := s.keyBody[key]; ok {
			s.stats.DuplicateRequests++
			if first != sum {
				s.stats.KeyReuse++
			}
			return len(recs)
		}
		s.keyBody[key] = sum
	}
	s.stats.UniqueRecords += len(recs)
	s.stats.UniqueCost = s.stats.UniqueCost.Add(p.cost)
	s.unique = append(s.unique, recs...)
	return len(recs)
}

// Stats returns a snapshot of the counters.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stats
}

// Records returns every appended record in arrival order.
func (s *Server) Records() []json.RawMessage {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]json.RawMessage(nil), s.records...)
}

// UniqueRecords returns the records counting each Idempotency-Key once, in
// arrival order.
func (s *Server) UniqueRecords() []json.RawMessage {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]json.RawMessage(nil), s.unique...)
}

// Reset forgets every request and record. Fault rules are kept.
func (s *Server) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stats = Stats{Cost: decimal.Zero, UniqueCost: decimal.Zero}
	s.records, s.unique = nil, nil
	s.keyBody = map[string][sha256.Size]byte{}
}

// statsJSON is Stats on the wire: decimals as strings whatever the decimal
// package's global marshalling setting.
type statsJSON struct {
	Requests          int    `json:"requests"`
	Rejected          int    `json:"rejected"`
	Records           int    `json:"records"`
	DuplicateRequests int    `json:"duplicate_requests"`
	KeyReuse          int    `json:"key_reuse"`
	UniqueRecords     int    `json:"unique_records"`
	Cost              string `json:"cost"`
	UniqueCost        string `json:"unique_cost"`
	MaxBodyBytes      int64  `json:"max_body_bytes"`
	Gzipped           int    `json:"gzipped"`
	MaxInflatedBytes  int64  `json:"max_inflated_bytes"`
	Verified          int    `json:"verified"`
	BadSignatures     int    `json:"bad_signatures"`
}

func (s *Server) serveStats(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", http.MethodGet)
		writeError(w, http.StatusMethodNotAllowed, "method not allowed: use GET")
		return
	}
	st := s.Stats()
	writeJSON(w, statsJSON{
		Requests: st.Requests, Rejected: st.Rejected, Records: st.Records,
		DuplicateRequests: st.DuplicateRequests, KeyReuse: st.KeyReuse,
		UniqueRecords: st.UniqueRecords, Cost: st.Cost.String(),
		UniqueCost: st.UniqueCost.String(), MaxBodyBytes: st.MaxBodyBytes,
		Gzipped: st.Gzipped, MaxInflatedBytes: st.MaxInflatedBytes,
		Verified: st.Verified, BadSignatures: st.BadSignatures,
	})
}

func (s *Server) serveReset(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		writeError(w, http.StatusMethodNotAllowed, "method not allowed: use POST")
		return
	}
	s.Reset()
	w.WriteHeader(http.StatusNoContent)
}
