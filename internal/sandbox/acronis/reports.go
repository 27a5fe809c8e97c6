package acronis

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"regexp"
	"strconv"
	"time"
)

// reportObject is the documented report object, as answered by POST
// /reports and GET /reports/{id}.
type reportObject struct {
	ID             string       `json:"id"`
	Version        int          `json:"version"`
	ResultAction   string       `json:"result_action"`
	Recipients     []string     `json:"recipients"`
	Parameters     reportParams `json:"parameters"`
	Schedule       schedule     `json:"schedule"`
	GenerationDate string       `json:"generation_date"`
}

type reportParams struct {
	TenantID      string   `json:"tenant_id"`
	Level         string   `json:"level"`
	Kind          string   `json:"kind"`
	Formats       []string `json:"formats"`
	Period        period   `json:"period"`
	HideZeroUsage *bool    `json:"hide_zero_usage,omitempty"`
	ShowSKUs      *bool    `json:"show_skus,omitempty"`
}

type period struct {
	Start string `json:"start"`
	End   string `json:"end"`
}

type schedule struct {
	Type    string `json:"type"`
	Enabled bool   `json:"enabled"`
}

var (
	uuidRE = regexp.MustCompile(`^[0-9a-f]{8}-([0-9a-f]{4}-){3}[0-9a-f]{12}$`)
	dateRE = regexp.MustCompile(`^\d{4}-\d{2}-\d{2}$`)

	levels       = set("itself", "direct_partners", "all_partners", "all_customers", "accounts")
	kinds        = set(KindDaily, KindSummary, "usage_current", "usage_breakdown")
	formats      = set("csv", "html", "json_v1", FormatCSV2, "json_v2_0")
	topKeys      = set("recipients", "result_action", "parameters", "schedule", "generation_date")
	paramKeys    = set("tenant_id", "level", "kind", "formats", "period", "hide_zero_usage", "show_skus")
	periodKeys   = set("start", "end")
	scheduleKeys = set("type", "enabled")
)

func set(vals ...string) map[string]bool {
	m := make(map[string]bool, len(vals))
	for _, v := range vals {
		m[v] = true
	}
	return m
}

// apiError is a validation failure: status plus the error body fields.
type apiError struct {
	status int
	code   string
	msg    string
	info   string
}

func badRequest(info, format string, args ...any) *apiError {
	return &apiError{status: http.StatusBadRequest, code: "ValidationError", msg: fmt.Sprintf(format, args...), info: info}
}

// object decodes a JSON object into its raw members, rejecting unknown keys
// when strict.
func object(raw json.RawMessage, path string, allowed map[string]bool, strict bool) (map[string]json.RawMessage, *apiError) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil || m == nil {
		return nil, badRequest(path, "%s must be a JSON object", path)
	}
	if strict {
		for k := range m {
			if !allowed[k] {
				return nil, badRequest(path+"."+k, "unknown property %q in %s (additionalProperties is false)", k, path)
			}
		}
	}
	return m, nil
}

func str(m map[string]json.RawMessage, key, path string, required bool) (string, bool, *apiError) {
	raw, ok := m[key]
	if !ok {
		if required {
			return "", false, badRequest(path+"."+key, "%s.%s is required", path, key)
		}
		return "", false, nil
	}
	var v string
	if err := json.Unmarshal(raw, &v); err != nil {
		return "", false, badRequest(path+"."+key, "%s.%s must be a string", path, key)
	}
	return v, true, nil
}

// flexBool accepts a JSON boolean or the strings "true"/"false" (the
// official example sends strings).
func flexBool(m map[string]json.RawMessage, key, path string) (*bool, *apiError) {
	raw, ok := m[key]
	if !ok {
		return nil, nil
	}
	var b bool
	if err := json.Unmarshal(raw, &b); err == nil {
		return &b, nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err == nil && (s == "true" || s == "false") {
		b = s == "true"
		return &b, nil
	}
	return nil, badRequest(path+"."+key, "%s.%s must be a boolean", path, key)
}

func date(v, field string) (time.Time, *apiError) {
	if !dateRE.MatchString(v) {
		return time.Time{}, badRequest(field, "%s must be a date YYYY-MM-DD, got %q", field, v)
	}
	t, err := time.Parse(time.DateOnly, v)
	if err != nil {
		return time.Time{}, badRequest(field, "%s is not a valid date: %q", field, v)
	}
	return t, nil
}

// parseReportPost validates a reportPost body against the documented schema.
func (s *Server) parseReportPost(body []byte) (reportObject, Query, *apiError) {
	var obj reportObject
	var q Query
	top, e := object(body, "body", topKeys, true)
	if e != nil {
		return obj, q, e
	}
	if e := parseAction(top, &obj); e != nil {
		return obj, q, e
	}
	start, end, e := s.parseParameters(top, &obj.Parameters)
	if e != nil {
		return obj, q, e
	}
	if e := s.parseSchedule(top, &obj.Schedule); e != nil {
		return obj, q, e
	}
	obj.GenerationDate = end.AddDate(0, 0, 1).Format(time.DateOnly)
	if gd, present, e := str(top, "generation_date", "body", false); e != nil {
		return obj, q, e
	} else if present {
		if _, e := date(gd, "generation_date"); e != nil {
			return obj, q, e
		}
		obj.GenerationDate = gd
	}

	p := &obj.Parameters
	q = Query{TenantID: p.TenantID, Level: p.Level, Kind: p.Kind, Start: start, End: end,
		HideZeroUsage: p.HideZeroUsage != nil && *p.HideZeroUsage, ShowSKUs: p.ShowSKUs != nil && *p.ShowSKUs}
	return obj, q, nil
}

// parseAction reads result_action and the recipients it needs.
func parseAction(top map[string]json.RawMessage, obj *reportObject) *apiError {
	action, _, e := str(top, "result_action", "body", true)
	if e != nil {
		return e
	}
	if action != "save" && action != "send" {
		return badRequest("result_action", "result_action must be save or send, got %q", action)
	}
	obj.ResultAction = action
	obj.Recipients = []string{}
	if raw, ok := top["recipients"]; ok {
		if err := json.Unmarshal(raw, &obj.Recipients); err != nil || obj.Recipients == nil {
			return badRequest("recipients", "recipients must be an array of user UUIDs")
		}
		for _, id := range obj.Recipients {
			if !uuidRE.MatchString(id) {
				return badRequest("recipients", "recipient %q is not a UUID", id)
			}
		}
	}
	if action == "send" && len(obj.Recipients) == 0 {
		return badRequest("recipients", "recipients is required when result_action is send")
	}
	return nil
}

// parseParameters reads the report's parameters into p and returns its
// period's first and last day.
func (s *Server) parseParameters(top map[string]json.RawMessage, p *reportParams) (start, end time.Time, e *apiError) {
	rawParams, ok := top["parameters"]
	if !ok {
		return start, end, badRequest("parameters", "parameters is required")
	}
	params, e := object(rawParams, "parameters", paramKeys, s.cfg.StrictNested)
	if e != nil {
		return start, end, e
	}
	if p.TenantID, _, e = str(params, "tenant_id", "parameters", true); e != nil {
		return start, end, e
	}
	if !uuidRE.MatchString(p.TenantID) {
		return start, end, badRequest("parameters.tenant_id", "parameters.tenant_id must be a UUID, got %q", p.TenantID)
	}
	if p.Level, _, e = str(params, "level", "parameters", true); e != nil {
		return start, end, e
	}
	if !levels[p.Level] {
		return start, end, badRequest("parameters.level", "parameters.level %q is not one of itself, direct_partners, all_partners, all_customers, accounts", p.Level)
	}
	if p.Kind, _, e = str(params, "kind", "parameters", true); e != nil {
		return start, end, e
	}
	if !kinds[p.Kind] {
		return start, end, badRequest("parameters.kind", "parameters.kind %q is not one of usage_daily, usage_summary, usage_current, usage_breakdown", p.Kind)
	}
	p.Formats = []string{FormatCSV2}
	if raw, ok := params["formats"]; ok {
		if err := json.Unmarshal(raw, &p.Formats); err != nil || len(p.Formats) == 0 {
			return start, end, badRequest("parameters.formats", "parameters.formats must be a non-empty array of formats")
		}
		for _, f := range p.Formats {
			if !formats[f] {
				return start, end, badRequest("parameters.formats", "format %q is not one of csv, html, json_v1, csv_v2_0, json_v2_0", f)
			}
		}
	}
	rawPeriod, ok := params["period"]
	if !ok {
		return start, end, badRequest("parameters.period", "parameters.period is required")
	}
	per, e := object(rawPeriod, "parameters.period", periodKeys, s.cfg.StrictNested)
	if e != nil {
		return start, end, e
	}
	if p.Period.Start, _, e = str(per, "start", "parameters.period", true); e != nil {
		return start, end, e
	}
	if p.Period.End, _, e = str(per, "end", "parameters.period", true); e != nil {
		return start, end, e
	}
	start, e = date(p.Period.Start, "parameters.period.start")
	if e != nil {
		return start, end, e
	}
	end, e = date(p.Period.End, "parameters.period.end")
	if e != nil {
		return start, end, e
	}
	if end.Before(start) {
		return start, end, badRequest("parameters.period", "parameters.period.end %s is before start %s", p.Period.End, p.Period.Start)
	}
	if p.HideZeroUsage, e = flexBool(params, "hide_zero_usage", "parameters"); e != nil {
		return start, end, e
	}
	if p.ShowSKUs, e = flexBool(params, "show_skus", "parameters"); e != nil {
		return start, end, e
	}
	return start, end, nil
}

// parseSchedule reads the report's schedule into sc.
func (s *Server) parseSchedule(top map[string]json.RawMessage, sc *schedule) *apiError {
	rawSched, ok := top["schedule"]
	if !ok {
		return badRequest("schedule", "schedule is required")
	}
	sched, e := object(rawSched, "schedule", scheduleKeys, s.cfg.StrictNested)
	if e != nil {
		return e
	}
	if sc.Type, _, e = str(sched, "type", "schedule", true); e != nil {
		return e
	}
	if sc.Type != "once" && sc.Type != "monthly" {
		return badRequest("schedule.type", "schedule.type must be once or monthly, got %q", sc.Type)
	}
	sc.Enabled = true
	if raw, ok := sched["enabled"]; ok {
		if err := json.Unmarshal(raw, &sc.Enabled); err != nil {
			return badRequest("schedule.enabled", "schedule.enabled must be a boolean")
		}
	}
	return nil
}

// Messages of the documented "usage history" answers.
const (
	MsgNotReadyYet    = "Usage history is not ready and shouldn't be ready yet (from 1 to 6 am)"
	MsgShouldBeReady  = "Usage history is not ready but should be available already (after 6 am)"
	MsgFormatNotInBox = "format not supported by the sandbox"
)

func (s *Server) handleCreate(w http.ResponseWriter, r *http.Request) {
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/json" {
		writeError(w, http.StatusUnsupportedMediaType, "UnsupportedMediaType", "Content-Type must be application/json", "")
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<20))
	if err != nil {
		writeError(w, http.StatusBadRequest, "ValidationError", "cannot read the request body", "")
		return
	}
	if !json.Valid(bytes.TrimSpace(body)) {
		writeError(w, http.StatusBadRequest, "ValidationError", "the request body is not valid JSON", "")
		return
	}
	obj, q, e := s.parseReportPost(body)
	if e == nil {
		e = s.checkCreatable(obj, q)
	}
	if e != nil {
		writeError(w, e.status, e.code, e.msg, e.info)
		return
	}

	now := s.now()
	s.mu.Lock()
	s.seq++
	obj.ID = uuidFrom(mix(uint64(s.cfg.Seed)^hashStr("report")^uint64(s.seq)), mix(uint64(s.cfg.Seed)^hashStr("report/2")^uint64(s.seq)))
	obj.Version = 1
	rep := &report{obj: obj, query: q, created: now, failed: s.cfg.FailReports}
	if s.failNext > 0 {
		s.failNext--
		rep.failed = true
	}
	seq := s.seq
	s.mu.Unlock()

	if obj.ResultAction == "save" {
		data, malformed, err := s.File(q)
		if err != nil {
			writeError(w, http.StatusInternalServerError, "InternalError", "cannot generate the report: "+err.Error(), "")
			return
		}
		if s.gzip {
			data = gzipBytes(data)
		}
		rep.malformed = malformed
		rep.stored = []*storedFile{{
			id:      uuidFrom(mix(uint64(s.cfg.Seed)^hashStr("stored")^uint64(seq)), mix(uint64(s.cfg.Seed)^hashStr("stored/2")^uint64(seq))),
			format:  FormatCSV2,
			data:    data,
			created: now,
		}}
	}
	s.mu.Lock()
	s.reports[obj.ID] = rep
	s.order = append(s.order, obj.ID)
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, obj)
}

// checkCreatable applies the rules that need more than the body: tenant
// access, what the sandbox generates, the period and the clock.
func (s *Server) checkCreatable(obj reportObject, q Query) *apiError {
	if _, ok := s.tenantInfo(q.TenantID); !ok {
		return &apiError{status: http.StatusForbidden, code: "Forbidden", msg: "Current user is not authorized to access tenant " + q.TenantID, info: "parameters.tenant_id"}
	}
	if q.Kind != KindSummary && q.Kind != KindDaily {
		return badRequest("parameters.kind", "kind %q is not supported by the sandbox (usage_summary and usage_daily are)", q.Kind)
	}
	for _, f := range obj.Parameters.Formats {
		if f != FormatCSV2 {
			return badRequest("parameters.formats", "%s: %q (the sandbox produces csv_v2_0 only)", MsgFormatNotInBox, f)
		}
	}
	now := s.now()
	today := day(now)
	if q.End.After(today) {
		return badRequest("parameters.period", "the report period must not be in the future (end %s, today %s)", q.End.Format(time.DateOnly), today.Format(time.DateOnly))
	}
	if h := now.Hour(); h >= 1 && h < 6 && !q.End.Before(today.AddDate(0, 0, -1)) {
		return &apiError{status: http.StatusBadRequest, code: "UsageHistoryNotReady", msg: MsgNotReadyYet}
	}
	s.mu.Lock()
	until := s.notReadyUntil
	s.mu.Unlock()
	if now.Before(until) {
		return &apiError{status: http.StatusInternalServerError, code: "UsageHistoryNotReady", msg: MsgShouldBeReady}
	}
	return nil
}

func (s *Server) lookup(w http.ResponseWriter, r *http.Request) (*report, bool) {
	id := r.PathValue("id")
	if !uuidRE.MatchString(id) {
		writeError(w, http.StatusBadRequest, "ValidationError", "report_id must be a UUID", "report_id")
		return nil, false
	}
	s.mu.Lock()
	rep, ok := s.reports[id]
	if ok && rep.deleted {
		ok = false
	}
	s.mu.Unlock()
	if !ok {
		writeError(w, http.StatusNotFound, "NotFound", "report "+id+" not found", "report_id")
		return nil, false
	}
	return rep, true
}

func (s *Server) handleGetReport(w http.ResponseWriter, r *http.Request) {
	if rep, ok := s.lookup(w, r); ok {
		writeJSON(w, http.StatusOK, rep.obj)
	}
}

func (s *Server) handleDeleteReport(w http.ResponseWriter, r *http.Request) {
	rep, ok := s.lookup(w, r)
	if !ok {
		return
	}
	v, err := strconv.Atoi(r.URL.Query().Get("version"))
	if err != nil {
		writeError(w, http.StatusBadRequest, "ValidationError", "the version query parameter is required (an integer)", "version")
		return
	}
	if v != rep.obj.Version {
		writeError(w, http.StatusConflict, "VersionMismatch", fmt.Sprintf("version %d does not match the report's version %d", v, rep.obj.Version), "version")
		return
	}
	s.mu.Lock()
	rep.deleted = true
	s.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

type storedItem struct {
	ID           string `json:"id"`
	ReportFormat string `json:"report_format"`
	Size         int    `json:"size"`
	CreatedAt    string `json:"created_at"`
	Status       string `json:"status"`
}

func (s *Server) status(rep *report) string {
	s.mu.Lock()
	failed := rep.failed
	s.mu.Unlock()
	if s.now().Sub(rep.created) < s.cfg.GenerationDelay {
		return "in_progress"
	}
	if failed {
		return "failed"
	}
	return "saved"
}

func (s *Server) handleStored(w http.ResponseWriter, r *http.Request) {
	rep, ok := s.lookup(w, r)
	if !ok {
		return
	}
	st := s.status(rep)
	items := []storedItem{}
	for _, f := range rep.stored {
		it := storedItem{ID: f.id, ReportFormat: f.format, CreatedAt: f.created.Format("2006-01-02T15:04:05-07:00"), Status: st}
		if st == "saved" {
			it.Size = len(f.data)
		}
		items = append(items, it)
	}
	writeJSON(w, http.StatusOK, map[string]any{"items": items})
}

func (s *Server) handleDownload(w http.ResponseWriter, r *http.Request) {
	rep, ok := s.lookup(w, r)
	if !ok {
		return
	}
	sid := r.PathValue("sid")
	if !uuidRE.MatchString(sid) {
		writeError(w, http.StatusBadRequest, "ValidationError", "stored_report_id must be a UUID", "stored_report_id")
		return
	}
	var f *storedFile
	for _, c := range rep.stored {
		if c.id == sid {
			f = c
		}
	}
	if f == nil {
		writeError(w, http.StatusNotFound, "NotFound", "stored report "+sid+" not found", "stored_report_id")
		return
	}
	switch st := s.status(rep); st {
	case "in_progress":
		writeError(w, http.StatusNotFound, "NotFound", "stored report "+sid+" is still being generated", "stored_report_id")
		return
	case "failed":
		writeError(w, http.StatusNotFound, "NotFound", "stored report "+sid+" failed to generate", "stored_report_id")
		return
	}
	s.mu.Lock()
	s.stats.downloads++
	rep.downloads++
	s.mu.Unlock()
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Length", strconv.Itoa(len(f.data)))
	if s.gzip && s.cfg.ContentEncodingGzip {
		w.Header().Set("Content-Encoding", "gzip")
	}
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(f.data)
}

// ---- admin ----

func (s *Server) handleStats(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.Stats())
}

func (s *Server) handleFailNext(w http.ResponseWriter, r *http.Request) {
	if id := r.URL.Query().Get("id"); id != "" {
		if !s.FailReport(id) {
			writeError(w, http.StatusNotFound, "NotFound", "report "+id+" not found", "")
			return
		}
		w.WriteHeader(http.StatusNoContent)
		return
	}
	n, err := strconv.Atoi(r.URL.Query().Get("count"))
	if err != nil || n < 0 {
		writeError(w, http.StatusBadRequest, "ValidationError", "want ?count=<n> or ?id=<report id>", "")
		return
	}
	s.FailNextReports(n)
	w.WriteHeader(http.StatusNoContent)
}

// handleExpected serves Expected over HTTP: GET /_sandbox/expected?tenant_id=
// &level=&kind=&start=&end=&hide_zero_usage=&rows=1.
func (s *Server) handleExpected(w http.ResponseWriter, r *http.Request) {
	v := r.URL.Query()
	start, e1 := time.Parse(time.DateOnly, v.Get("start"))
	end, e2 := time.Parse(time.DateOnly, v.Get("end"))
	if e1 != nil || e2 != nil {
		writeError(w, http.StatusBadRequest, "ValidationError", "start and end (YYYY-MM-DD) are required", "")
		return
	}
	q := Query{TenantID: v.Get("tenant_id"), Level: v.Get("level"), Kind: v.Get("kind"), Start: start, End: end,
		HideZeroUsage: v.Get("hide_zero_usage") == "true"}
	if q.TenantID == "" {
		q.TenantID = s.cfg.RootTenantID
	}
	if q.Level == "" {
		q.Level = "accounts"
	}
	if q.Kind == "" {
		q.Kind = KindSummary
	}
	t := s.Expected(q)
	if v.Get("rows") != "1" {
		t.Rows = nil
	}
	writeJSON(w, http.StatusOK, t)
}
