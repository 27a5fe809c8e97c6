package cloudcruiser

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/shopspring/decimal"

	"github.com/usagefleet/usagefleet/internal/sandbox/fault"
)

// UploadPath is the path prefix of the upload endpoint; the accounting
// date follows it.
const UploadPath = "/api/upload/v1/schema/usage/daily/"

// Defaults of the store's keep policy for large dates.
const (
	DefaultKeepRecordsUpTo  = 100_000
	DefaultKeepFirstRecords = 1000
)

// Messages of the documented answers.
const (
	authFailedMessage  = "Usage upload authentication failed: The specified token did not match the expected value"
	failWith200Message = "Upload failed: internal error"
)

// Layout is the [INFER]red shape of the uploaded JSON file.
type Layout int

const (
	// LayoutObjects: a JSON array of flat objects keyed by field name
	// (the default).
	LayoutObjects Layout = iota
	// LayoutHeaderRow: a JSON array of arrays whose first row holds the
	// field names ("fields as headers in the first row").
	LayoutHeaderRow
)

// DecimalForm is the [INFER]red JSON form of numeric fields (Quantity,
// Rate, Cost and the FLOAT and INT fields).
type DecimalForm int

const (
	// DecimalNumberOrString accepts a JSON number or a string in JSON number
	// grammar (the default).
	DecimalNumberOrString DecimalForm = iota
	// DecimalNumber accepts JSON numbers only.
	DecimalNumber
	// DecimalString accepts strings in JSON number grammar only.
	DecimalString
)

// Config configures a Server. The zero value of every field but Token is a
// sensible default.
type Config struct {
	// Token is the collection's authorization token; a request must carry
	// "Authorization: Bearer <Token>" exactly. An empty Token rejects every
	// upload.
	Token string
	// MaxBodyBytes caps the request body (413 beyond it); 0 = unlimited, as
	// documented (no limit is).
	MaxBodyBytes int64
	// ProcessingDelay holds each valid upload between reading it and
	// storing it, to widen the window in which concurrent uploads of one
	// date overlap.
	ProcessingDelay time.Duration
	// Seed seeds the fault injector's random choices.
	Seed int64
	// FailWith200 makes every valid upload answer HTTP 200 with
	// {"success": false, "status": 500, ...} and store nothing.
	FailWith200 bool
	// ExtraFieldTypes declares extra typed fields (the seed's
	// extraTypedFields), name -> "FLOAT", "INT" or "STRING": such a field's
	// value must be of its type (a string; a number; an integer). How a
	// collection declares them is not documented [INFER].
	ExtraFieldTypes map[string]string
	// DeclaredExtraFieldsOnly refuses an extra field ExtraFieldTypes does
	// not declare (by default any extra string or number is accepted).
	DeclaredExtraFieldsOnly bool
	// ErrorsWith200 answers every refusal of an upload (400, 401, 413,
	// ...) with HTTP 200 and the same body, whose "status" keeps the real
	// code: the seed shows the status inside the body, and a client must
	// read "success" and "status" rather than the HTTP code alone [INFER].
	ErrorsWith200 bool

	// Layout is the shape of the file ([INFER]); default LayoutObjects.
	Layout Layout
	// Decimals is the accepted JSON form of numbers ([INFER]); default
	// DecimalNumberOrString.
	Decimals DecimalForm
	// AllowOffDateStart accepts records whose Usage Start is not on the
	// URL's accounting date ([INFER]: by default they are rejected).
	AllowOffDateStart bool
	// KeepRecordsUpTo and KeepFirstRecords bound the per-record data kept:
	// a date with more than KeepRecordsUpTo records keeps only its first
	// KeepFirstRecords (totals are always exact). 0 = the defaults.
	KeepRecordsUpTo  int
	KeepFirstRecords int
}

// Record is the compact form kept of an uploaded record.
type Record struct {
	UsageStart time.Time `json:"usage_start"` // the instant, in UTC
	AccountID  string    `json:"account_id"`
	MeterID    string    `json:"meter_id"`
	Quantity   string    `json:"quantity"` // canonical decimal (decimal.Decimal.String)
	Cost       string    `json:"cost"`     // canonical decimal; "" when the record had no Cost
}

// DateTotal is what the store holds for one accounting date.
type DateTotal struct {
	Records    int             `json:"records"`
	Quantity   decimal.Decimal `json:"quantity"`
	Cost       decimal.Decimal `json:"cost"`
	Uploads    int             `json:"uploads"`     // successful uploads of the date since the last Reset
	ZoneOffset string          `json:"zone_offset"` // of the upload that wrote it, as ±hh:mm[:ss]
	Kept       int             `json:"kept"`        // records kept for Records (all unless the date is large)
}

// UploadLog is one request to the upload endpoint.
type UploadLog struct {
	Date       string     `json:"date"`
	ZoneOffset string     `json:"zone_offset"` // normalised; as sent when it did not parse
	Records    int        `json:"records"`     // records read (0 unless the file was valid)
	Bytes      int64      `json:"bytes"`       // request body bytes read
	Status     int        `json:"status"`      // HTTP status; 0 = connection dropped
	Success    bool       `json:"success"`     // the body's "success"
	Applied    bool       `json:"applied"`     // the upload replaced its date
	Fault      fault.Kind `json:"fault,omitempty"`
	Message    string     `json:"message"`
	Time       time.Time  `json:"time"`
}

type dateData struct {
	total DateTotal
	kept  []Record
}

// Server emulates the Cloud Cruiser upload usage API. It is safe for
// concurrent use.
type Server struct {
	cfg    Config
	faults *fault.Injector

	mu          sync.Mutex
	token       string
	failWith200 bool
	dates       map[string]*dateData
	uploads     []UploadLog
	inflight    map[string]int
	violations  int
}

// New returns a server with an empty store.
func New(cfg Config) *Server {
	if cfg.KeepRecordsUpTo <= 0 {
		cfg.KeepRecordsUpTo = DefaultKeepRecordsUpTo
	}
	if cfg.KeepFirstRecords <= 0 {
		cfg.KeepFirstRecords = DefaultKeepFirstRecords
	}
	return &Server{
		cfg:         cfg,
		faults:      fault.New(cfg.Seed),
		token:       cfg.Token,
		failWith200: cfg.FailWith200,
		dates:       map[string]*dateData{},
		inflight:    map[string]int{},
	}
}

// Faults returns the fault injector of the upload endpoint.
func (s *Server) Faults() *fault.Injector { return s.faults }

// SetToken replaces the expected token (tests revoke and restore it).
func (s *Server) SetToken(token string) {
	s.mu.Lock()
	s.token = token
	s.mu.Unlock()
}

// SetFailWith200 switches the "HTTP 200 with success:false" failure mode.
func (s *Server) SetFailWith200(on bool) {
	s.mu.Lock()
	s.failWith200 = on
	s.mu.Unlock()
}

// Reset forgets every date, the upload log and the concurrency count. The
// configuration (token, faults, fail-with-200) stays.
func (s *Server) Reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.dates = map[string]*dateData{}
	s.uploads = nil
	s.violations = 0
}

// Dates returns the totals of every stored date, keyed by the URL's date.
func (s *Server) Dates() map[string]DateTotal {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]DateTotal, len(s.dates))
	for k, d := range s.dates {
		out[k] = d.total
	}
	return out
}

// Records returns the records kept for date, in upload order (nil if the
// date is not stored). A large date keeps only its first records; see
// DateTotal.Kept.
func (s *Server) Records(date string) []Record {
	s.mu.Lock()
	defer s.mu.Unlock()
	d, ok := s.dates[date]
	if !ok {
		return nil
	}
	return append([]Record(nil), d.kept...)
}

// Uploads returns the log of requests to the upload endpoint.
func (s *Server) Uploads() []UploadLog {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]UploadLog(nil), s.uploads...)
}

// ConcurrencyViolations counts uploads that began while another upload of
// the same date was being processed. Both are applied; it is only measured.
func (s *Server) ConcurrencyViolations() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.violations
}

// Handler serves the upload endpoint and the /_sandbox/ admin endpoints.
func (s *Server) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := r.URL.Path
		switch {
		case strings.HasPrefix(p, UploadPath):
			s.serveUpload(w, r)
		case strings.HasPrefix(p, adminPrefix):
			s.serveAdmin(w, r)
		default:
			writeError(w, http.StatusNotFound, "Not found: "+p)
		}
	})
}

// errorBody renders the Cloud Cruiser error shape, for fault.Write too.
func errorBody(code int, message string) []byte {
	b, _ := json.Marshal(struct {
		Success bool   `json:"success"`
		Status  int    `json:"status"`
		Message string `json:"message"`
	}{false, code, message})
	return append(b, '\n')
}

func writeError(w http.ResponseWriter, code int, message string) {
	writeJSON(w, code, errorBody(code, message))
}

func writeJSON(w http.ResponseWriter, code int, body []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_, _ = w.Write(body)
}

// statusWriter remembers the status written.
type statusWriter struct {
	http.ResponseWriter
	code int
}

func (sw *statusWriter) WriteHeader(code int) {
	if sw.code == 0 {
		sw.code = code
	}
	sw.ResponseWriter.WriteHeader(code)
}

func (sw *statusWriter) Write(b []byte) (int, error) {
	if sw.code == 0 {
		sw.code = http.StatusOK
	}
	return sw.ResponseWriter.Write(b)
}

// okWriter sends HTTP 200 in place of any 4xx or 5xx status
// (Config.ErrorsWith200); the body is left as written.
type okWriter struct{ http.ResponseWriter }

func (o *okWriter) WriteHeader(code int) {
	if code >= 400 {
		code = http.StatusOK
	}
	o.ResponseWriter.WriteHeader(code)
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

func (s *Server) serveUpload(w http.ResponseWriter, r *http.Request) {
	if s.cfg.ErrorsWith200 {
		w = &okWriter{ResponseWriter: w}
	}
	date, ok := uploadTarget(w, r)
	if !ok {
		return
	}

	sw := &statusWriter{ResponseWriter: w}
	body := &countingReader{r: r.Body}
	lg := UploadLog{Date: date, Time: time.Now().UTC()}
	// Deferred so that a dropped connection (a panic with
	// http.ErrAbortHandler) is logged too.
	defer func() {
		lg.Status, lg.Bytes = sw.code, body.n
		s.mu.Lock()
		s.uploads = append(s.uploads, lg)
		s.mu.Unlock()
	}()
	fail := func(e *uploadError) {
		lg.Message = e.msg
		writeError(sw, e.status, e.msg)
	}

	f := s.faults.Pick(r)
	lg.Fault = f.Kind
	if fault.Before(sw, r, f, errorBody) {
		lg.Message = "injected fault"
		return
	}
	s.mu.Lock()
	token := s.token
	s.mu.Unlock()
	if !authorized(r.Header.Get("Authorization"), token) {
		fail(&uploadError{http.StatusUnauthorized, authFailedMessage})
		return
	}

	year, month, day, err := parseDate(date)
	if err != nil {
		fail(badRequest("%v", err))
		return
	}
	offset, zone, uerr := parseQuery(r.URL.RawQuery)
	lg.ZoneOffset = zone
	if uerr != nil {
		fail(uerr)
		return
	}

	defer s.enter(date)()

	if s.cfg.MaxBodyBytes > 0 {
		body.r = http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes)
	}
	opt := s.uploadOptions(date, zone, offset, year, month, day)
	res, uerr := readMultipart(r.Header.Get("Content-Type"), body, opt)
	if uerr != nil {
		fail(uerr)
		return
	}
	lg.Records = res.records

	if s.cfg.ProcessingDelay > 0 {
		time.Sleep(s.cfg.ProcessingDelay)
	}

	if !s.store(date, zone, res) {
		lg.Message = failWith200Message
		writeJSON(sw, http.StatusOK, errorBody(http.StatusInternalServerError, failWith200Message))
		return
	}
	lg.Applied = true

	if fault.After(sw, f, errorBody) {
		lg.Message = "applied, then injected fault"
		return
	}
	lg.Success = true
	lg.Message = fmt.Sprintf("Completed upload of %d record(s)", res.records)
	writeSuccess(sw, lg.Message)
}

// uploadTarget is the date an upload request names; a path that names
// none (404) or a method other than PUT (405) is answered here.
func uploadTarget(w http.ResponseWriter, r *http.Request) (string, bool) {
	date, ok := strings.CutPrefix(r.URL.Path, UploadPath)
	if ok {
		date = strings.TrimSuffix(date, "/")
	}
	if !ok || date == "" || strings.Contains(date, "/") {
		writeError(w, http.StatusNotFound, "Not found: "+r.URL.Path)
		return "", false
	}
	if r.Method != http.MethodPut {
		w.Header().Set("Allow", http.MethodPut)
		writeError(w, http.StatusMethodNotAllowed, "Method "+r.Method+" not allowed; use PUT")
		return "", false
	}
	return date, true
}

// writeSuccess writes the API's success body with message.
func writeSuccess(w http.ResponseWriter, message string) {
	b, _ := json.Marshal(struct {
		Success bool   `json:"success"`
		Message string `json:"message"`
		Status  int    `json:"status"`
	}{true, message, http.StatusOK})
	writeJSON(w, http.StatusOK, append(b, '\n'))
}

// enter counts an upload of date in flight (a second one at the same time
// is a concurrency violation); the returned func counts it out.
func (s *Server) enter(date string) (leave func()) {
	s.mu.Lock()
	if s.inflight[date] > 0 {
		s.violations++
	}
	s.inflight[date]++
	s.mu.Unlock()
	return func() {
		s.mu.Lock()
		if s.inflight[date]--; s.inflight[date] == 0 {
			delete(s.inflight, date)
		}
		s.mu.Unlock()
	}
}

// uploadOptions is how the upload of date, in the zone of the query, is
// parsed under the server's configuration.
func (s *Server) uploadOptions(date, zone string, offset, year int, month time.Month, day int) parseOptions {
	loc := time.FixedZone(zone, offset)
	dayStart := time.Date(year, month, day, 0, 0, 0, 0, loc)
	return parseOptions{
		extraTypes:   s.cfg.ExtraFieldTypes,
		declaredOnly: s.cfg.DeclaredExtraFieldsOnly,
		layout:       s.cfg.Layout,
		decimals:     s.cfg.Decimals,
		allowOffDate: s.cfg.AllowOffDateStart,
		loc:          loc,
		dayStart:     dayStart,
		dayEnd:       dayStart.AddDate(0, 0, 1),
		date:         date,
		zone:         zone,
		keepUpTo:     s.cfg.KeepRecordsUpTo,
		keepFirst:    s.cfg.KeepFirstRecords,
	}
}

// store replaces what date holds with the parsed upload, unless the
// server is set to fail with 200 (then it stores nothing and says false).
func (s *Server) store(date, zone string, res *parseResult) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failWith200 {
		return false
	}
	uploads := 1
	if prev, ok := s.dates[date]; ok {
		uploads += prev.total.Uploads
	}
	s.dates[date] = &dateData{
		total: DateTotal{
			Records:    res.records,
			Quantity:   res.quantity,
			Cost:       res.cost,
			Uploads:    uploads,
			ZoneOffset: zone,
			Kept:       len(res.kept),
		},
		kept: res.kept,
	}
	return true
}

// authorized checks "Bearer <token>" exactly, in constant time.
func authorized(header, token string) bool {
	if token == "" {
		return false
	}
	got, ok := strings.CutPrefix(header, "Bearer ")
	return ok && subtle.ConstantTimeCompare([]byte(got), []byte(token)) == 1
}

// parseQuery accepts only zoneOffset, at most once. It returns the offset
// in seconds and its normalised form (UTC when absent).
func parseQuery(raw string) (int, string, *uploadError) {
	q, err := url.ParseQuery(raw)
	if err != nil {
		return 0, "", badRequest("Malformed query string: %v", err)
	}
	for k := range q {
		if k != "zoneOffset" {
			return 0, "", badRequest("Unknown query parameter %s; the only parameter is zoneOffset (as in ?zoneOffset=-07:00)", quote(k))
		}
	}
	vals, ok := q["zoneOffset"]
	if !ok {
		return 0, formatOffset(0), nil
	}
	if len(vals) != 1 {
		return 0, "", badRequest("zoneOffset is given %d times", len(vals))
	}
	secs, err := parseZoneOffset(vals[0])
	if err != nil {
		return 0, vals[0], badRequest("%v", err)
	}
	return secs, formatOffset(secs), nil
}

// readMultipart finds the part named "data" in a multipart/form-data body
// and parses it as it streams in. Other parts are read and ignored.
func readMultipart(contentType string, body io.Reader, opt parseOptions) (*parseResult, *uploadError) {
	mt, params, err := mime.ParseMediaType(contentType)
	if err != nil || mt != "multipart/form-data" {
		return nil, &uploadError{http.StatusUnsupportedMediaType,
			fmt.Sprintf("Content-Type must be multipart/form-data with the file in the part named \"data\", not %s", quote(contentType))}
	}
	if params["boundary"] == "" {
		return nil, badRequest("Content-Type multipart/form-data lacks a boundary")
	}
	mr := multipart.NewReader(body, params["boundary"])
	var res *parseResult
	var names []string
	for {
		part, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, multipartErr(err)
		}
		name := part.FormName()
		switch {
		case name != "data":
			names = append(names, fmt.Sprintf("%q", name))
			if _, err := io.Copy(io.Discard, part); err != nil {
				return nil, multipartErr(err)
			}
		case res != nil:
			return nil, badRequest("More than one part named \"data\"; upload one file per accounting date")
		default:
			r, uerr := parseUpload(part, opt)
			if uerr != nil {
				return nil, uerr
			}
			res = r
		}
		_ = part.Close()
	}
	if res == nil {
		msg := "Missing the file: no multipart part named \"data\""
		if len(names) > 0 {
			msg += " (found " + strings.Join(names, ", ") + ")"
		}
		return nil, badRequest("%s", msg)
	}
	return res, nil
}

func multipartErr(err error) *uploadError {
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return &uploadError{http.StatusRequestEntityTooLarge,
			fmt.Sprintf("Request body exceeds the limit of %d bytes", mbe.Limit)}
	}
	return badRequest("Malformed multipart/form-data body: %v", err)
}
