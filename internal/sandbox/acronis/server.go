package acronis

import (
	"bytes"
	"compress/gzip"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/usagefleet/usagefleet/internal/sandbox/fault"
)

// Config configures the emulator. The zero value works: every field has a
// default.
type Config struct {
	// DocumentedColumnsOnly writes only the csv_v2_0 columns a source
	// documents (the Acronis PHP parser's required set, and edition): no
	// tenant.name, tenant.parent_id, measurement_unit, sku, sku.name or
	// date, which are the sandbox's inferences.
	DocumentedColumnsOnly bool
	ClientID              string        // default "sandbox-client"
	ClientSecret          string        // default "sandbox-secret"
	TokenTTL              time.Duration // default 2h, as documented
	// GenerationDelay is how long a stored report stays "in_progress"
	// after the report was created. Default 0: saved at once.
	GenerationDelay time.Duration
	// RootTenantID is the tenant the API client belongs to (a partner).
	// Default: a UUID derived from Seed.
	RootTenantID string
	// Tenants are the customer tenants under the root. Default: four UUIDs
	// derived from Seed.
	Tenants []string
	// SubPartners are partner tenants under the root, each with its own
	// customers (id -> customer ids, not among Tenants). A sub-partner's
	// row carries the sum of its customers' usage [INFER: the seed says a
	// partner's rows may aggregate its customers'].
	SubPartners map[string][]string
	Seed        int64
	// Now is the emulator's clock (token expiry, generation delay, the
	// "usage history not ready" rules). Default time.Now.
	Now func() time.Time
	// NotReadyUntil makes POST /reports answer 500 "Usage history is not
	// ready but should be available already" while Now is before it.
	NotReadyUntil time.Time
	// FailReports makes every stored report end "failed" instead of "saved".
	FailReports bool
	// GzipDownloads gzips the csv_v2_0 file (and its "size"). Default true.
	GzipDownloads *bool
	// ContentEncodingGzip additionally labels a gzipped download with
	// Content-Encoding: gzip, which makes most HTTP clients (Go's included)
	// decompress it transparently. [INFER] Default false.
	ContentEncodingGzip bool
	// MalformedRows breaks that many rows of every file (see Expected).
	MalformedRows int
	// StrictNested rejects unknown keys inside parameters, period and
	// schedule too. The spec only declares additionalProperties: false at
	// the top level, so the default accepts (and ignores) them.
	StrictNested bool
}

// Server is the Acronis account-management reports emulator.
type Server struct {
	cfg  Config
	inj  *fault.Injector
	api  *http.ServeMux
	adm  *http.ServeMux
	gzip bool

	mu            sync.Mutex
	tokens        map[string]time.Time // access token -> expiry
	reports       map[string]*report
	order         []string
	seq           int
	failNext      int
	notReadyUntil time.Time
	stats         counters
}

type counters struct {
	requests, tokensIssued, authFailures, downloads, tokenExpiries int
}

type report struct {
	obj       reportObject
	query     Query
	created   time.Time
	failed    bool
	stored    []*storedFile
	malformed []Malformed
	downloads int
	deleted   bool // DELETE /reports/{id}: the API answers 404 for it; Stats still lists it
}

type storedFile struct {
	id, format string
	data       []byte
	created    time.Time
}

// New returns an emulator for cfg.
func New(cfg Config) *Server {
	if cfg.ClientID == "" {
		cfg.ClientID = "sandbox-client"
	}
	if cfg.ClientSecret == "" {
		cfg.ClientSecret = "sandbox-secret"
	}
	if cfg.TokenTTL <= 0 {
		cfg.TokenTTL = 2 * time.Hour
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	seed := uint64(cfg.Seed)
	if cfg.RootTenantID == "" {
		cfg.RootTenantID = uuidFrom(mix(seed^hashStr("root")), mix(seed^hashStr("root/2")))
	}
	if len(cfg.Tenants) == 0 {
		for i := 0; i < 4; i++ {
			cfg.Tenants = append(cfg.Tenants, uuidFrom(mix(seed^hashStr("tenant")^uint64(i)), mix(seed^hashStr("tenant/2")^uint64(i))))
		}
	}
	cfg.Tenants = append([]string(nil), cfg.Tenants...)
	s := &Server{
		cfg:           cfg,
		inj:           fault.New(cfg.Seed),
		gzip:          cfg.GzipDownloads == nil || *cfg.GzipDownloads,
		notReadyUntil: cfg.NotReadyUntil,
	}
	s.resetState()
	s.api = http.NewServeMux()
	s.api.HandleFunc("POST /api/2/idp/token", s.handleToken)
	s.api.HandleFunc("POST /api/2/reports", s.authed(s.handleCreate))
	s.api.HandleFunc("GET /api/2/reports/{id}", s.authed(s.handleGetReport))
	s.api.HandleFunc("DELETE /api/2/reports/{id}", s.authed(s.handleDeleteReport))
	s.api.HandleFunc("GET /api/2/reports/{id}/stored", s.authed(s.handleStored))
	s.api.HandleFunc("GET /api/2/reports/{id}/stored/{sid}", s.authed(s.handleDownload))
	s.api.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "NotFound", "no such endpoint: "+r.Method+" "+r.URL.Path, "")
	})
	s.adm = http.NewServeMux()
	s.adm.HandleFunc("GET /_sandbox/stats", s.handleStats)
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

// Handler returns the HTTP handler: the API under /api/2 and the sandbox
// admin endpoints under /_sandbox.
func (s *Server) Handler() http.Handler { return s }

// Faults returns the fault injector applied to every API request (the
// /_sandbox endpoints are never faulted).
func (s *Server) Faults() *fault.Injector { return s.inj }

// Config returns the effective configuration (defaults filled in).
func (s *Server) Config() Config {
	c := s.cfg
	c.Tenants = append([]string(nil), c.Tenants...)
	return c
}

// RootTenantID is the tenant the client credentials belong to.
func (s *Server) RootTenantID() string { return s.cfg.RootTenantID }

// Tenants are the customer tenants under the root.
func (s *Server) Tenants() []string { return append([]string(nil), s.cfg.Tenants...) }

// ServeHTTP applies faults, then serves the API.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if strings.HasPrefix(r.URL.Path, "/_sandbox/") {
		s.adm.ServeHTTP(w, r)
		return
	}
	s.mu.Lock()
	s.stats.requests++
	s.mu.Unlock()
	f := s.inj.Pick(r)
	if fault.Before(w, r, f, faultBody) {
		return
	}
	bw := &bufferedWriter{h: http.Header{}}
	s.api.ServeHTTP(bw, r)
	if fault.After(w, f, faultBody) {
		return
	}
	bw.flushTo(w)
}

func (s *Server) now() time.Time { return s.cfg.Now().UTC() }

// ExpireTokens invalidates every token issued so far: the next API call
// with one of them gets 401.
func (s *Server) ExpireTokens() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tokens = map[string]time.Time{}
	s.stats.tokenExpiries++
}

// SetNotReadyUntil changes Config.NotReadyUntil at run time.
func (s *Server) SetNotReadyUntil(t time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.notReadyUntil = t
}

// FailNextReports makes the next n reports created end "failed".
func (s *Server) FailNextReports(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failNext = n
}

// FailReport makes an existing report's stored files "failed" (and not
// downloadable). It reports whether the report exists.
func (s *Server) FailReport(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	rep, ok := s.reports[id]
	if ok {
		rep.failed = true
	}
	return ok
}

// Reset forgets tokens, reports and counters. Fault rules are kept (clear
// them through Faults or DELETE /_sandbox/faults).
func (s *Server) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.resetState()
}

func (s *Server) resetState() {
	s.tokens = map[string]time.Time{}
	s.reports = map[string]*report{}
	s.order = nil
	s.seq = 0
	s.failNext = 0
	s.stats = counters{}
}

// Malformed returns the malformed rows of a created report's file, with
// their CSV line numbers.
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
	Requests      int                `json:"requests"`
	TokensIssued  int                `json:"tokens_issued"`
	TokenExpiries int                `json:"token_expiries"` // ExpireTokens calls
	AuthFailures  int                `json:"auth_failures"`  // 401 answers
	Reports       []ReportInfo       `json:"reports"`        // in creation order
	Downloads     int                `json:"downloads"`
	Faults        map[fault.Kind]int `json:"faults"`
}

// ReportInfo describes one created report.
type ReportInfo struct {
	ID           string    `json:"id"`
	ResultAction string    `json:"result_action"`
	Query        Query     `json:"query"`
	Created      time.Time `json:"created"`
	StoredIDs    []string  `json:"stored_ids"`
	Failed       bool      `json:"failed"`
	Downloads    int       `json:"downloads"`
	Deleted      bool      `json:"deleted"` // deleted through the API
}

// ReportsCreated is len(Reports).
func (st Stats) ReportsCreated() int { return len(st.Reports) }

// ReportsKept counts the reports not deleted: what the tenant still holds.
func (st Stats) ReportsKept() int {
	n := 0
	for _, r := range st.Reports {
		if !r.Deleted {
			n++
		}
	}
	return n
}

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
		Requests:      s.stats.requests,
		TokensIssued:  s.stats.tokensIssued,
		TokenExpiries: s.stats.tokenExpiries,
		AuthFailures:  s.stats.authFailures,
		Downloads:     s.stats.downloads,
		Reports:       []ReportInfo{},
	}
	for _, id := range s.order {
		rep := s.reports[id]
		if rep == nil {
			continue
		}
		info := ReportInfo{ID: id, ResultAction: rep.obj.ResultAction, Query: rep.query, Created: rep.created, Failed: rep.failed, Downloads: rep.downloads, Deleted: rep.deleted, StoredIDs: []string{}}
		for _, f := range rep.stored {
			info.StoredIDs = append(info.StoredIDs, f.id)
		}
		st.Reports = append(st.Reports, info)
	}
	s.mu.Unlock()
	st.Faults = s.inj.Injected()
	return st
}

// ---- token endpoint ----

type tokenResponse struct {
	AccessToken string `json:"access_token"`
	TokenType   string `json:"token_type"`
	ExpiresOn   int64  `json:"expires_on"`
	IDToken     string `json:"id_token"`
}

func (s *Server) handleToken(w http.ResponseWriter, r *http.Request) {
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/x-www-form-urlencoded" {
		writeError(w, http.StatusUnsupportedMediaType, "UnsupportedMediaType", "Content-Type must be application/x-www-form-urlencoded", "")
		return
	}
	id, secret, ok := r.BasicAuth()
	if !ok {
		s.unauthorized(w, "client credentials must be sent with HTTP Basic authentication")
		return
	}
	idOK := subtle.ConstantTimeCompare([]byte(id), []byte(s.cfg.ClientID)) == 1
	secretOK := subtle.ConstantTimeCompare([]byte(secret), []byte(s.cfg.ClientSecret)) == 1
	if !idOK || !secretOK {
		s.unauthorized(w, "invalid client credentials")
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		writeError(w, http.StatusBadRequest, "invalid_request", "cannot parse the form body", "")
		return
	}
	switch gt := r.PostForm.Get("grant_type"); gt {
	case "client_credentials":
	case "":
		writeError(w, http.StatusBadRequest, "invalid_request", "grant_type is required", "")
		return
	default:
		writeError(w, http.StatusBadRequest, "unsupported_grant_type", "grant_type must be client_credentials", "")
		return
	}
	tok, idTok := randomToken(), randomToken()
	exp := s.now().Add(s.cfg.TokenTTL)
	s.mu.Lock()
	s.tokens[tok] = exp
	s.stats.tokensIssued++
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, tokenResponse{AccessToken: tok, TokenType: "bearer", ExpiresOn: exp.Unix(), IDToken: idTok})
}

func randomToken() string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return "sbx." + hex.EncodeToString(b)
}

func (s *Server) unauthorized(w http.ResponseWriter, msg string) {
	s.mu.Lock()
	s.stats.authFailures++
	s.mu.Unlock()
	writeError(w, http.StatusUnauthorized, "Unauthorized", msg, "")
}

// authed checks the bearer token and the Accept header before h.
func (s *Server) authed(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		scheme, tok, ok := strings.Cut(r.Header.Get("Authorization"), " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") || tok == "" {
			s.unauthorized(w, "Method required an authenticated user.")
			return
		}
		s.mu.Lock()
		exp, known := s.tokens[tok]
		s.mu.Unlock()
		if !known || !s.now().Before(exp) {
			s.unauthorized(w, "access token is invalid or expired")
			return
		}
		want := "application/json"
		if r.PathValue("sid") != "" {
			want = "application/octet-stream"
		}
		if !accepts(r.Header.Get("Accept"), want) {
			writeError(w, http.StatusUnsupportedMediaType, "UnsupportedMediaType", "Requested type in the Accept request header is not supported.", "")
			return
		}
		h(w, r)
	}
}

// accepts reports whether an Accept header allows mediaType.
func accepts(header, mediaType string) bool {
	if strings.TrimSpace(header) == "" {
		return true
	}
	major, _, _ := strings.Cut(mediaType, "/")
	for _, part := range strings.Split(header, ",") {
		mt, params, err := mime.ParseMediaType(strings.TrimSpace(part))
		if err != nil {
			continue
		}
		if q, ok := params["q"]; ok {
			if v, err := strconv.ParseFloat(q, 64); err == nil && v == 0 {
				continue
			}
		}
		if mt == "*/*" || mt == mediaType || mt == major+"/*" {
			return true
		}
	}
	return false
}

// ---- helpers ----

type errorDetails struct {
	Info *string `json:"info"`
}

type errorInner struct {
	Code    any            `json:"code"`
	Domain  *string        `json:"domain"`
	Message string         `json:"message"`
	Details errorDetails   `json:"details"`
	Context map[string]any `json:"context"`
	Data    []string       `json:"data"`
}

type errorBody struct {
	Error errorInner `json:"error"`
}

const errorDomain = "PlatformAccountServer"

func errorJSON(code any, msg, info string) []byte {
	d := errorDomain
	e := errorBody{Error: errorInner{Code: code, Domain: &d, Message: msg, Context: map[string]any{}, Data: []string{}}}
	if info != "" {
		e.Error.Details.Info = &info
	}
	b, _ := json.Marshal(e)
	return b
}

func faultBody(code int, msg string) []byte { return errorJSON(code, msg, "injected by the sandbox") }

func writeError(w http.ResponseWriter, status int, code, msg, info string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(errorJSON(code, msg, info))
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "InternalError", "cannot encode the answer", "")
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(b)
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
