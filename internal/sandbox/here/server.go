package here

import (
	"bytes"
	"compress/gzip"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/usagefleet/usagefleet/internal/sandbox/fault"
)

// Config configures the emulator. The zero value works: every field has a
// default.
type Config struct {
	AccessKeyID     string        // here.access.key.id; default "sandbox-access-key-id"
	AccessKeySecret string        // here.access.key.secret; default "sandbox-access-key-secret"
	TokenTTL        time.Duration // default 24h
	// TokenURL is the URL the client signs (RFC 5849 base string URI), for
	// example "https://account.api.here.com/oauth2/token". Empty: the
	// scheme, Host and path of the request as received.
	TokenURL string
	// BaseURL is the API base used in Location and resultHref, for example
	// "https://usage.bam.api.here.com". Empty: from the request.
	BaseURL string
	// Realms maps each known realm (org id, 5 to 30 characters) to its
	// partner sub-accounts. Default: org1000000001 with two sub-accounts
	// and org1000000002 with none.
	Realms map[string][]string
	// GenerationDelay: a report is "inProgress" for this long, then
	// "completed" (or "failed"). Default 0.
	GenerationDelay time.Duration
	// PendingFor: a report is "pending" for this long before "inProgress"
	// (the 201 then says "pending" too). Default 0.
	PendingFor time.Duration
	// MaxRecords caps a report file; a report over it is cut at the cap and
	// its status says "truncated": true. Default 1_000_000.
	MaxRecords int
	// MaxRange is the longest startDate..endDate. Default 95 days.
	MaxRange time.Duration
	// TimestampSkew is how far oauth_timestamp may be from Now. Default 10m.
	TimestampSkew time.Duration
	Seed          int64
	// Now is the emulator's clock (tokens, timestamps, report status,
	// the future an endDate may not reach). Default time.Now.
	Now func() time.Time
	// AllowFutureEnd accepts an endDate after Now. By default it is 400
	// E706003 [INFER]: the docs do not say the API refuses it, but usage
	// of the future is not known (data arrives up to 48 h late), and a
	// report asked so would pass for complete when it is not.
	AllowFutureEnd bool
	// InclusiveEnd reads endDate as inclusive: an hour H counts when
	// startDate <= H <= endDate. The spec says only "End date for
	// search" [NOT FOUND]; by default the end is exclusive (H < endDate).
	// A collector must get the same data under both readings.
	InclusiveEnd bool
	// FailReports makes every report end "failed".
	FailReports bool
	// MalformedRows breaks that many rows of every file (see ExpectedQuery).
	MalformedRows int
	// RequireCorrelationID answers 400 to an API request without
	// X-Correlation-ID. Default: generate one.
	RequireCorrelationID bool
	// PlainHeaders writes bare field names ("realmId") as the CSV header
	// instead of the documented labels ("Org ID (realmId)").
	PlainHeaders bool
	// UsageDateTimeLayout formats usageDateTime. Default "2006-01-02".
	UsageDateTimeLayout string
	// DefaultGroupBy is the grouping of a report without groupBy, on top of
	// featureId and subscription. Default appId and billingTag (tutorial).
	DefaultGroupBy []string
}

// Server is the HERE usage reports emulator (and its token endpoint).
type Server struct {
	cfg Config
	inj *fault.Injector
	api *http.ServeMux
	adm *http.ServeMux

	mu       sync.Mutex
	tokens   map[string]time.Time
	nonces   map[string]time.Time
	reports  map[string]*report // by id
	order    []string
	seq      int
	failNext int
	stats    counters
}

type counters struct {
	requests, tokensIssued, tokenExpiries, authFailures, signatureFailures, downloads int
}

type report struct {
	id        string
	query     Query
	params    statusParams
	created   time.Time
	failed    bool
	data      []byte // gzipped CSV
	rows      int
	truncated bool
	malformed []Malformed
	downloads int
}

// New returns an emulator for cfg.
func New(cfg Config) *Server {
	if cfg.AccessKeyID == "" {
		cfg.AccessKeyID = "sandbox-access-key-id"
	}
	if cfg.AccessKeySecret == "" {
		cfg.AccessKeySecret = "sandbox-access-key-secret"
	}
	if cfg.TokenTTL <= 0 {
		cfg.TokenTTL = 24 * time.Hour
	}
	if cfg.Realms == nil {
		cfg.Realms = map[string][]string{
			"org1000000001": {"org1000000101", "org1000000102"},
			"org1000000002": nil,
		}
	}
	realms := make(map[string][]string, len(cfg.Realms))
	for k, v := range cfg.Realms {
		realms[k] = append([]string(nil), v...)
	}
	cfg.Realms = realms
	if cfg.MaxRecords <= 0 {
		cfg.MaxRecords = 1_000_000
	}
	if cfg.MaxRange <= 0 {
		cfg.MaxRange = 95 * 24 * time.Hour
	}
	if cfg.TimestampSkew <= 0 {
		cfg.TimestampSkew = 10 * time.Minute
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.UsageDateTimeLayout == "" {
		cfg.UsageDateTimeLayout = time.DateOnly
	}
	if cfg.DefaultGroupBy == nil {
		cfg.DefaultGroupBy = []string{"appId", "billingTag"}
	}
	s := &Server{cfg: cfg, inj: fault.New(cfg.Seed)}
	s.resetState()
	s.api = http.NewServeMux()
	s.api.HandleFunc("POST /oauth2/token", s.handleToken)
	s.api.HandleFunc("POST /v2/usage/realms/{realm}/reports", s.authed(s.handleCreate))
	s.api.HandleFunc("GET /v2/usage/realms/{realm}/reports", s.authed(s.handleList))
	s.api.HandleFunc("GET /v2/usage/realms/{realm}/reports/{id}", s.authed(s.handleStatus))
	s.api.HandleFunc("GET /v2/usage/realms/{realm}/reports/{id}/output", s.authed(s.handleOutput))
	s.api.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeProblem(w, r, http.StatusNotFound, "E706404", "Resource not found", "no such endpoint: "+r.Method+" "+r.URL.Path, "Check the request URL")
	})
	s.adm = http.NewServeMux()
	s.adm.HandleFunc("GET /_sandbox/stats", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, http.StatusOK, s.Stats()) })
	s.adm.HandleFunc("POST /_sandbox/reset", func(w http.ResponseWriter, r *http.Request) {
		s.Reset()
		w.WriteHeader(http.StatusNoContent)
	})
	s.adm.HandleFunc("POST /_sandbox/expire-tokens", func(w http.ResponseWriter, r *http.Request) {
		s.ExpireTokens()
		w.WriteHeader(http.StatusNoContent)
	})
	s.adm.HandleFunc("POST /_sandbox/fail-reports", s.handleFailNext)
	s.adm.HandleFunc("GET /_sandbox/expected", s.handleExpected)
	s.adm.Handle("/_sandbox/faults", s.inj.AdminHandler())
	return s
}

// Handler returns the HTTP handler: the token endpoint (/oauth2/token), the
// API under /v2 and the sandbox admin endpoints under /_sandbox.
func (s *Server) Handler() http.Handler { return s }

// Faults returns the fault injector applied to every token and API request
// (never to /_sandbox).
func (s *Server) Faults() *fault.Injector { return s.inj }

// Config returns the effective configuration (defaults filled in).
func (s *Server) Config() Config {
	c := s.cfg
	c.Realms = make(map[string][]string, len(s.cfg.Realms))
	for k, v := range s.cfg.Realms {
		c.Realms[k] = append([]string(nil), v...)
	}
	c.DefaultGroupBy = append([]string(nil), s.cfg.DefaultGroupBy...)
	return c
}

// ServeHTTP applies faults, then serves the request.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if strings.HasPrefix(r.URL.Path, "/_sandbox/") {
		s.adm.ServeHTTP(w, r)
		return
	}
	s.mu.Lock()
	s.stats.requests++
	s.mu.Unlock()
	corr := r.Header.Get("X-Correlation-ID")
	if corr == "" {
		corr = newUUID()
	}
	w.Header().Set("X-Correlation-ID", corr)
	if id := r.Header.Get("X-Request-ID"); id != "" {
		w.Header().Set("X-Request-ID", id)
	}
	f := s.inj.Pick(r)
	body := faultBody(r, corr)
	if fault.Before(w, r, f, body) {
		return
	}
	bw := &bufferedWriter{h: http.Header{}}
	bw.h.Set("X-Correlation-ID", corr)
	s.api.ServeHTTP(bw, r)
	if fault.After(w, f, body) {
		return
	}
	bw.flushTo(w)
}

func (s *Server) now() time.Time { return s.cfg.Now().UTC() }

// ExpireTokens invalidates every issued token.
func (s *Server) ExpireTokens() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tokens = map[string]time.Time{}
	s.stats.tokenExpiries++
}

// FailNextReports makes the next n reports created end "failed".
func (s *Server) FailNextReports(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failNext = n
}

// FailReport makes an existing report "failed"; it reports whether the
// report exists.
func (s *Server) FailReport(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	rep, ok := s.reports[id]
	if ok {
		rep.failed = true
	}
	return ok
}

// Reset forgets tokens, nonces, reports and counters (fault rules stay).
func (s *Server) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.resetState()
}

func (s *Server) resetState() {
	s.tokens = map[string]time.Time{}
	s.nonces = map[string]time.Time{}
	s.reports = map[string]*report{}
	s.order = nil
	s.seq = 0
	s.failNext = 0
	s.stats = counters{}
}

// Malformed returns the malformed rows of a created report's file.
func (s *Server) Malformed(reportID string) ([]Malformed, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rep, ok := s.reports[reportID]
	if !ok {
		return nil, false
	}
	return append([]Malformed(nil), rep.malformed...), true
}

// ReportQuery returns the Query a created report was generated from.
func (s *Server) ReportQuery(reportID string) (Query, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rep, ok := s.reports[reportID]
	if !ok {
		return Query{}, false
	}
	return rep.query, true
}

// Stats is what the emulator saw.
type Stats struct {
	Requests          int                `json:"requests"`
	TokensIssued      int                `json:"tokensIssued"`
	TokenExpiries     int                `json:"tokenExpiries"`     // ExpireTokens calls
	AuthFailures      int                `json:"authFailures"`      // 401 answers
	SignatureFailures int                `json:"signatureFailures"` // token requests refused
	Reports           []ReportInfo       `json:"reports"`           // creation order
	Downloads         int                `json:"downloads"`
	Faults            map[fault.Kind]int `json:"faults"`
}

// ReportInfo describes one created report.
type ReportInfo struct {
	ID        string    `json:"id"`
	Query     Query     `json:"query"`
	Created   time.Time `json:"created"`
	Records   int       `json:"records"` // rows in the file
	Truncated bool      `json:"truncated"`
	Failed    bool      `json:"failed"`
	Downloads int       `json:"downloads"`
}

// ReportsCreated is len(Reports).
func (st Stats) ReportsCreated() int { return len(st.Reports) }

// ReportIDs lists the created reports' ids in creation order.
func (st Stats) ReportIDs() []string {
	out := make([]string, len(st.Reports))
	for i, r := range st.Reports {
		out[i] = r.ID
	}
	return out
}

// Stats returns a snapshot of the counters and reports.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	st := Stats{
		Requests: s.stats.requests, TokensIssued: s.stats.tokensIssued, TokenExpiries: s.stats.tokenExpiries,
		AuthFailures: s.stats.authFailures, SignatureFailures: s.stats.signatureFailures, Downloads: s.stats.downloads,
		Reports: []ReportInfo{},
	}
	for _, id := range s.order {
		rep := s.reports[id]
		st.Reports = append(st.Reports, ReportInfo{ID: id, Query: rep.query, Created: rep.created, Records: rep.rows,
			Truncated: rep.truncated, Failed: rep.failed, Downloads: rep.downloads})
	}
	s.mu.Unlock()
	st.Faults = s.inj.Injected()
	return st
}

// ---- token endpoint ----

// ---- helpers ----

// ErrorResponse is the usage API's documented error body.
type ErrorResponse struct {
	Title         string        `json:"title"`
	Status        int           `json:"status"`
	Code          string        `json:"code"`
	Cause         string        `json:"cause"`
	Action        string        `json:"action"`
	ErrorID       string        `json:"errorId"`
	CorrelationID string        `json:"correlationId"`
	Details       []ErrorDetail `json:"details"`
}

// ErrorDetail is one entry of ErrorResponse.Details.
type ErrorDetail struct {
	Code    string `json:"code"`
	Title   string `json:"title"`
	Source  string `json:"source,omitempty"`
	Message string `json:"message"`
}

func problem(status int, code, cause, message, action, corr string) ErrorResponse {
	title := "Input data failed validation"
	if status == http.StatusNotFound {
		title = "Resource not found"
	} else if status >= 500 {
		title = "Service error"
	}
	return ErrorResponse{Title: title, Status: status, Code: code, Cause: cause, Action: action, ErrorID: "ERROR-" + newUUID(),
		CorrelationID: corr, Details: []ErrorDetail{{Code: code, Title: cause, Message: message}}}
}

func writeProblem(w http.ResponseWriter, r *http.Request, status int, code, cause, message, action string) {
	writeJSON(w, status, problem(status, code, cause, message, action, w.Header().Get("X-Correlation-ID")))
}

// faultBody renders injected faults in the shape of the endpoint: the auth
// shape for the token endpoint and for 401/403, ErrorResponse otherwise.
func faultBody(r *http.Request, corr string) fault.ErrorBody {
	return func(code int, msg string) []byte {
		var v any
		if r.URL.Path == "/oauth2/token" || code == http.StatusUnauthorized || code == http.StatusForbidden {
			name := http.StatusText(code)
			v = authBody{Error: name, ErrorDescription: msg, ErrorID: "ERROR-" + newUUID(), HTTPStatus: code, ErrorCode: code * 1000, Message: msg}
		} else {
			v = problem(code, fmt.Sprintf("E706%d", code), http.StatusText(code), msg, "Retry the request later", corr)
		}
		b, _ := json.Marshal(v)
		return b
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, "cannot encode the answer", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

func newUUID() string {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b)
	return h[:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// bufferedWriter holds an answer until the fault injector has decided
// whether the client gets it.
type bufferedWriter struct {
	h    http.Header
	code int
	buf  bytes.Buffer
}

func (b *bufferedWriter) Header() http.Header { return b.h }

func (b *bufferedWriter) WriteHeader(code int) {
	if b.code == 0 {
		b.code = code
	}
}

func (b *bufferedWriter) Write(p []byte) (int, error) {
	if b.code == 0 {
		b.code = http.StatusOK
	}
	return b.buf.Write(p)
}

func (b *bufferedWriter) flushTo(w http.ResponseWriter) {
	for k, v := range b.h {
		w.Header()[k] = v
	}
	if b.code == 0 {
		b.code = http.StatusOK
	}
	w.WriteHeader(b.code)
	_, _ = w.Write(b.buf.Bytes())
}

func gzipBytes(p []byte) []byte {
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	_, _ = zw.Write(p)
	_ = zw.Close()
	return buf.Bytes()
}
