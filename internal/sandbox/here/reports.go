package here

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// DateLayout is the documented startDate/endDate format yyyy-MM-dd'T'HH:mm:ss (UTC).
const DateLayout = "2006-01-02T15:04:05"

// Report statuses.
const (
	StatusPending    = "pending"
	StatusInProgress = "inProgress"
	StatusCompleted  = "completed"
	StatusFailed     = "failed"
)

type statusParams struct {
	Realm       string   `json:"realm"`
	StartDate   string   `json:"startDate"`
	EndDate     string   `json:"endDate"`
	EmailID     string   `json:"emailId"`
	Username    string   `json:"username"`
	FeatureID   string   `json:"featureId,omitempty"`
	AppID       string   `json:"appId,omitempty"`
	ChannelID   string   `json:"channelId,omitempty"`
	ChargeType  string   `json:"chargeType,omitempty"`
	ProjectID   string   `json:"projectId,omitempty"`
	BillingTag  string   `json:"billingTag,omitempty"`
	Category    string   `json:"category,omitempty"`
	Detail      string   `json:"detail,omitempty"`
	GroupBy     string   `json:"groupBy,omitempty"`
	UsageFields []string `json:"usageFields,omitempty"`
	SubAccounts []string `json:"subAccounts,omitempty"`
}

type statusObject struct {
	ID         string       `json:"id"`
	Status     string       `json:"status"`
	ResultHref string       `json:"resultHref,omitempty"`
	Created    string       `json:"created"`
	Parameters statusParams `json:"parameters"`
	// Truncated is the sandbox's way of saying the report hit MaxRecords. [INFER]
	Truncated bool `json:"truncated,omitempty"`
}

type problemErr struct {
	status                       int
	code, cause, message, action string
}

func invalid(code, cause, format string, args ...any) *problemErr {
	return &problemErr{status: http.StatusBadRequest, code: code, cause: cause, message: fmt.Sprintf(format, args...), action: "Correct input data and retry request"}
}

var appIDRE = regexp.MustCompile(`^[a-zA-Z0-9_-]*$`)

var (
	groupByValues = map[string]string{"project": "project", "billingTag": "billingTag", "appId": "appId",
		// the defaults, accepted and ignored
		"featureId": "", "subscription": "", "subscriptionId": "", "billingSubscriptionId": ""}
	usageFieldSet = map[string]bool{}
)

func init() {
	for _, f := range usageFieldOrder {
		usageFieldSet[f] = true
	}
}

func maxLen(v url.Values, name string, n int) *problemErr {
	if len(v.Get(name)) > n {
		return invalid("E706000", "Invalid "+name, "%s must be at most %d characters", name, n)
	}
	return nil
}

// parseQuery validates the create-report query parameters of realm.
func (s *Server) parseQuery(realm string, v url.Values) (Query, statusParams, *problemErr) {
	q := Query{Realm: realm}
	p := statusParams{Realm: realm, StartDate: v.Get("startDate"), EndDate: v.Get("endDate"), EmailID: "sandbox@example.invalid", Username: "sandbox"}
	if e := s.parseDates(&q, &p); e != nil {
		return q, p, e
	}
	switch d := v.Get("detailLevel"); d {
	case "", DetailSummarized, DetailDay, DetailMonth:
		q.DetailLevel, p.Detail = d, d
		if d == "" {
			q.DetailLevel = DetailSummarized
		}
	case "hour":
		return q, p, invalid("E706003", "Invalid detailLevel", "detailLevel hour is not supported for reports (summarized, day, month are)")
	default:
		return q, p, invalid("E706000", "Invalid detailLevel", "detailLevel %q is not one of summarized, day, month", d)
	}
	if e := parseGroupBy(v, &q, &p); e != nil {
		return q, p, e
	}
	for _, c := range []struct {
		name string
		n    int
	}{{"featureId", 256}, {"appId", 128}, {"projectHrn", 256}, {"billingTag", 500}, {"category", 128}} {
		if e := maxLen(v, c.name, c.n); e != nil {
			return q, p, e
		}
	}
	q.FeatureID, q.AppID, q.ProjectHrn, q.BillingTag, q.Category = v.Get("featureId"), v.Get("appId"), v.Get("projectHrn"), v.Get("billingTag"), v.Get("category")
	p.FeatureID, p.AppID, p.ProjectID, p.BillingTag, p.Category = q.FeatureID, q.AppID, q.ProjectHrn, q.BillingTag, q.Category
	if !appIDRE.MatchString(q.AppID) {
		return q, p, invalid("E706000", "Invalid appId", "appId must match ^[a-zA-Z0-9-_]*$")
	}
	if v.Has("billingSubscriptionId") {
		for _, id := range strings.Split(v.Get("billingSubscriptionId"), ",") {
			if id = strings.TrimSpace(id); id != "" {
				q.BillingSubscriptionIDs = append(q.BillingSubscriptionIDs, id)
			}
		}
		if n := len(q.BillingSubscriptionIDs); n < 1 || n > 20 {
			return q, p, invalid("E706000", "Invalid billingSubscriptionId", "billingSubscriptionId takes 1 to 20 ids, got %d", n)
		}
	}
	switch ct := v.Get("chargeType"); ct {
	case "", "all", "billable", "nonBillable":
		q.ChargeType, p.ChargeType = ct, ct
	default:
		return q, p, invalid("E706000", "Invalid chargeType", "chargeType %q is not one of all, billable, nonBillable", ct)
	}
	switch ch := v.Get("channelId"); ch {
	case "", "hot", "cold", "ds":
		p.ChannelID = ch
	default:
		return q, p, invalid("E706000", "Invalid channelId", "channelId %q is not one of hot, cold, ds", ch)
	}
	if e := parseUsageFields(v, &q, &p); e != nil {
		return q, p, e
	}
	return q, p, nil
}

// parseDates checks the report's startDate and endDate (in p) and sets
// q's range from them.
func (s *Server) parseDates(q *Query, p *statusParams) *problemErr {
	if p.StartDate == "" || p.EndDate == "" {
		return invalid("E706003", "start or end Date validation failed", "startDate and endDate are required (yyyy-MM-dd'T'HH:mm:ss)")
	}
	var err1, err2 error
	q.Start, err1 = time.Parse(DateLayout, p.StartDate)
	q.End, err2 = time.Parse(DateLayout, p.EndDate)
	if err1 != nil || err2 != nil {
		return invalid("E706003", "start or end Date validation failed", "Invalid Start or end date: want yyyy-MM-dd'T'HH:mm:ss, got startDate=%q endDate=%q", p.StartDate, p.EndDate)
	}
	if !q.End.After(q.Start) {
		return invalid("E706003", "start or end Date validation failed", "endDate must be after startDate")
	}
	if !s.cfg.AllowFutureEnd && q.End.After(s.now()) {
		return invalid("E706003", "start or end Date validation failed", "endDate %s is in the future (now %s): usage is only known up to now", p.EndDate, s.now().Format(DateLayout))
	}
	if q.End.Sub(q.Start) > s.cfg.MaxRange {
		return invalid("E706003", "start or end Date validation failed", "the time range must not exceed %d days", int(s.cfg.MaxRange/(24*time.Hour)))
	}
	return nil
}

// parseGroupBy reads groupBy into q and p.
func parseGroupBy(v url.Values, q *Query, p *statusParams) *problemErr {
	if v.Has("groupBy") && v.Get("groupBy") != "" {
		gb := v.Get("groupBy")
		if len(gb) > 256 {
			return invalid("E706004", "Invalid group by field. Supported are appId, billingTag, and project", "groupBy must be at most 256 characters")
		}
		q.GroupBy = []string{}
		for _, g := range strings.Split(gb, ",") {
			g = strings.TrimSpace(g)
			mapped, ok := groupByValues[g]
			if !ok {
				return invalid("E706004", "Invalid group by field. Supported are appId, billingTag, and project", "Invalid group by field %q. Supported values are appId, billingTag, and project.", g)
			}
			if mapped != "" {
				q.GroupBy = append(q.GroupBy, mapped)
			}
		}
		p.GroupBy = gb
	}
	return nil
}

// parseUsageFields reads usageFields into q and p.
func parseUsageFields(v url.Values, q *Query, p *statusParams) *problemErr {
	if v.Has("usageFields") {
		seen := map[string]bool{}
		for _, f := range strings.Split(v.Get("usageFields"), ",") {
			f = strings.TrimSpace(f)
			if !usageFieldSet[f] {
				return invalid("E706000", "Invalid usageFields", "usage field %q is not one of %s", f, strings.Join(usageFieldOrder, ", "))
			}
			if seen[f] {
				return invalid("E706000", "Invalid usageFields", "usage field %q is repeated", f)
			}
			seen[f] = true
			q.UsageFields = append(q.UsageFields, f)
		}
		p.UsageFields = q.UsageFields
	}
	return nil
}

// parseSubAccounts validates the optional body {"subAccounts": [...]}.
func (s *Server) parseSubAccounts(w http.ResponseWriter, r *http.Request, realm string) ([]string, *problemErr) {
	raw, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<20))
	if err != nil {
		return nil, invalid("E706000", "Invalid request body", "cannot read the request body")
	}
	if len(bytes.TrimSpace(raw)) == 0 {
		return nil, nil
	}
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/json" {
		return nil, &problemErr{status: http.StatusUnsupportedMediaType, code: "E706000", cause: "Unsupported media type",
			message: "the request body must be application/json", action: "Send Content-Type: application/json"}
	}
	var body map[string]json.RawMessage
	if err := json.Unmarshal(raw, &body); err != nil || body == nil {
		return nil, invalid("E706000", "Invalid request body", "the body must be a JSON object {\"subAccounts\": [...]}")
	}
	for k := range body {
		if k != "subAccounts" {
			return nil, invalid("E706000", "Invalid request body", "unknown property %q (only subAccounts)", k)
		}
	}
	var subs []string
	if err := json.Unmarshal(body["subAccounts"], &subs); err != nil || len(subs) == 0 {
		return nil, invalid("E706000", "Invalid request body", "subAccounts must be a non-empty array of org ids")
	}
	allowed := map[string]bool{}
	for _, a := range s.cfg.Realms[realm] {
		allowed[a] = true
	}
	for _, a := range subs {
		if !allowed[a] {
			return nil, invalid("E706001", "Invalid Realm", "sub-account %q is not a sub-account of %s", a, realm)
		}
	}
	return subs, nil
}

func (e *problemErr) write(w http.ResponseWriter, r *http.Request) {
	writeProblem(w, r, e.status, e.code, e.cause, e.message, e.action)
}

func (s *Server) baseURL(r *http.Request) string {
	if s.cfg.BaseURL != "" {
		return strings.TrimRight(s.cfg.BaseURL, "/")
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}

func (s *Server) handleCreate(w http.ResponseWriter, r *http.Request) {
	realm := r.PathValue("realm")
	q, p, e := s.parseQuery(realm, r.URL.Query())
	if e != nil {
		e.write(w, r)
		return
	}
	if s.cfg.InclusiveEnd {
		// The hour that starts at endDate (or contains it) counts too.
		q.End = q.End.Truncate(time.Hour).Add(time.Hour)
	}
	subs, e := s.parseSubAccounts(w, r, realm)
	if e != nil {
		e.write(w, r)
		return
	}
	q.SubAccounts, p.SubAccounts = subs, subs
	f, err := s.render(q)
	if err != nil {
		writeProblem(w, r, http.StatusInternalServerError, "E706500", "Report generation failed", err.Error(), "Retry the request later")
		return
	}
	now := s.now()
	s.mu.Lock()
	s.seq++
	rep := &report{id: fmt.Sprintf("REPORT-%d", 1000+s.seq), query: q, params: p, created: now, failed: s.cfg.FailReports,
		data: gzipBytes(f.csv), rows: f.rows, truncated: f.truncated, malformed: f.malformed}
	if s.failNext > 0 {
		s.failNext--
		rep.failed = true
	}
	s.reports[rep.id] = rep
	s.order = append(s.order, rep.id)
	s.mu.Unlock()
	status := StatusInProgress
	if s.cfg.PendingFor > 0 {
		status = StatusPending
	}
	w.Header().Set("Location", s.baseURL(r)+"/v2/usage/realms/"+realm+"/reports/"+rep.id)
	writeJSON(w, http.StatusCreated, map[string]string{"id": rep.id, "status": status})
}

func (s *Server) state(rep *report) string {
	el := s.now().Sub(rep.created)
	if el < s.cfg.PendingFor {
		return StatusPending
	}
	if el < s.cfg.GenerationDelay {
		return StatusInProgress
	}
	s.mu.Lock()
	failed := rep.failed
	s.mu.Unlock()
	if failed {
		return StatusFailed
	}
	return StatusCompleted
}

func (s *Server) statusOf(r *http.Request, rep *report) statusObject {
	st := statusObject{ID: rep.id, Status: s.state(rep), Created: rep.created.Format(time.RFC3339), Parameters: rep.params}
	if st.Status == StatusCompleted {
		st.ResultHref = s.baseURL(r) + "/v2/usage/realms/" + rep.query.Realm + "/reports/" + rep.id + "/output"
		st.Truncated = rep.truncated
	}
	return st
}

func (s *Server) lookup(w http.ResponseWriter, r *http.Request) (*report, bool) {
	id := r.PathValue("id")
	if len(id) < 11 || len(id) > 30 {
		writeProblem(w, r, http.StatusBadRequest, "E706000", "Invalid reportId", "reportId must be 11 to 30 characters", "Correct input data and retry request")
		return nil, false
	}
	s.mu.Lock()
	rep, ok := s.reports[id]
	s.mu.Unlock()
	if !ok || rep.query.Realm != r.PathValue("realm") {
		writeProblem(w, r, http.StatusNotFound, "E706404", "Report not found", "report "+id+" not found in realm "+r.PathValue("realm"), "Check the report id")
		return nil, false
	}
	return rep, true
}

func (s *Server) handleStatus(w http.ResponseWriter, r *http.Request) {
	if rep, ok := s.lookup(w, r); ok {
		writeJSON(w, http.StatusOK, s.statusOf(r, rep))
	}
}

type statusList struct {
	Total      int            `json:"total"`
	Limit      int            `json:"limit"`
	Count      int            `json:"count"`
	NextOffset *int           `json:"nextOffset,omitempty"`
	LastOffset int            `json:"lastOffset"`
	Items      []statusObject `json:"items"`
}

func (s *Server) handleList(w http.ResponseWriter, r *http.Request) {
	v := r.URL.Query()
	limit, offset := 100, 0
	if l := v.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > 100 {
			writeProblem(w, r, http.StatusBadRequest, "E706002", "Invalid Limit", "Limit value should not be greater than 100.", "Correct input data and retry request")
			return
		}
		limit = n
	}
	if o := v.Get("offset"); o != "" {
		n, err := strconv.Atoi(o)
		if err != nil || n < 0 {
			writeProblem(w, r, http.StatusBadRequest, "E706000", "Invalid offset", "offset must be an integer >= 0", "Correct input data and retry request")
			return
		}
		offset = n
	}
	sortDir := v.Get("sort")
	if sortDir != "" && sortDir != "asc" && sortDir != "desc" {
		writeProblem(w, r, http.StatusBadRequest, "E706000", "Invalid sort", "sort must be asc or desc", "Correct input data and retry request")
		return
	}
	realm := r.PathValue("realm")
	s.mu.Lock()
	var reps []*report
	for _, id := range s.order {
		if rep := s.reports[id]; rep.query.Realm == realm {
			reps = append(reps, rep)
		}
	}
	s.mu.Unlock()
	if sortDir != "asc" { // newest first (s.order is creation order)
		for i, j := 0, len(reps)-1; i < j; i, j = i+1, j-1 {
			reps[i], reps[j] = reps[j], reps[i]
		}
	}
	out := statusList{Total: len(reps), Limit: limit, Items: []statusObject{}}
	if len(reps) > 0 {
		out.LastOffset = (len(reps) - 1) / limit * limit
	}
	for i := offset; i < len(reps) && i < offset+limit; i++ {
		out.Items = append(out.Items, s.statusOf(r, reps[i]))
	}
	out.Count = len(out.Items)
	if next := offset + limit; next < len(reps) {
		out.NextOffset = &next
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) handleOutput(w http.ResponseWriter, r *http.Request) {
	rep, ok := s.lookup(w, r)
	if !ok {
		return
	}
	if st := s.state(rep); st != StatusCompleted {
		writeProblem(w, r, http.StatusNotFound, "E706404", "Report not available", "report "+rep.id+" is "+st+", not completed", "Poll the report status until it is completed")
		return
	}
	s.mu.Lock()
	s.stats.downloads++
	rep.downloads++
	s.mu.Unlock()
	w.Header().Set("Content-Type", "application/x-gzip")
	w.Header().Set("Content-Disposition", `attachment; filename="`+rep.id+`.csv.gz"`)
	w.Header().Set("Content-Length", strconv.Itoa(len(rep.data)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(rep.data)
}

// ---- admin ----

func (s *Server) handleFailNext(w http.ResponseWriter, r *http.Request) {
	if id := r.URL.Query().Get("id"); id != "" {
		if !s.FailReport(id) {
			http.Error(w, "report not found", http.StatusNotFound)
			return
		}
		w.WriteHeader(http.StatusNoContent)
		return
	}
	n, err := strconv.Atoi(r.URL.Query().Get("count"))
	if err != nil || n < 0 {
		http.Error(w, "want ?count=<n> or ?id=<report id>", http.StatusBadRequest)
		return
	}
	s.FailNextReports(n)
	w.WriteHeader(http.StatusNoContent)
}

// handleExpected serves ExpectedQuery over HTTP: the create-report query
// parameters plus realm=, subAccounts=a,b and rows=1.
func (s *Server) handleExpected(w http.ResponseWriter, r *http.Request) {
	v := r.URL.Query()
	realm := v.Get("realm")
	if _, ok := s.cfg.Realms[realm]; !ok {
		http.Error(w, "unknown realm", http.StatusBadRequest)
		return
	}
	q, _, e := s.parseQuery(realm, v)
	if e != nil {
		http.Error(w, e.message, http.StatusBadRequest)
		return
	}
	if subs := v.Get("subAccounts"); subs != "" {
		q.SubAccounts = strings.Split(subs, ",")
	}
	t := s.ExpectedQuery(q)
	if v.Get("rows") != "1" {
		t.Rows = nil
	}
	writeJSON(w, http.StatusOK, t)
}
