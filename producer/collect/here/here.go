package here

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/usagefleet/usagefleet/internal/config"
	"github.com/usagefleet/usagefleet/messages"
	"github.com/usagefleet/usagefleet/producer/collect"
)

// Defaults of the public HERE endpoints and limits.
const (
	DefaultBaseURL    = "https://usage.bam.api.here.com/v2"
	DefaultTokenURL   = "https://account.api.here.com/oauth2/token"
	DefaultMaxRecords = 1_000_000
	DefaultMaxDays    = 95
	DateLayout        = "2006-01-02T15:04:05" // startDate/endDate, UTC
)

// Detail levels.
const (
	DetailDay        = "day"
	DetailMonth      = "month"
	DetailSummarized = "summarized"
)

// Settings are the here collector's settings (the collector's "settings:"
// block).
type Settings struct {
	BaseURL string `yaml:"base_url"` // default https://usage.bam.api.here.com/v2
	// TokenURL default: here.token.endpoint.url of the credentials, else
	// https://account.api.here.com/oauth2/token.
	TokenURL string `yaml:"token_url"`
	// Credentials is the credentials.properties text ({file: path} or
	// {env: VAR}): here.access.key.id, here.access.key.secret and
	// optionally here.token.endpoint.url. Or set the two keys below.
	Credentials     config.Secret `yaml:"credentials"`
	AccessKeyID     string        `yaml:"access_key_id"`
	AccessKeySecret config.Secret `yaml:"access_key_secret"`
	// Scope is an optional project HRN for the token.
	Scope       string   `yaml:"scope"`
	Realm       string   `yaml:"realm"`        // the org id (required)
	SubAccounts []string `yaml:"sub_accounts"` // partner sub-accounts; none: the realm itself
	// IncludeOwnOrg, with sub_accounts, also collects the partner org's
	// own usage: a report with subAccounts covers only them, so a second
	// report without a body is asked for the realm itself.
	IncludeOwnOrg bool     `yaml:"include_own_org"`
	DetailLevel   string   `yaml:"detail_level"` // day (default), month, summarized
	GroupBy       []string `yaml:"group_by"`     // appId, billingTag, project (default: the API's)
	ChargeType    string   `yaml:"charge_type"`  // all (the API's default), billable, nonBillable
	MaxRecords    int      `yaml:"max_records"`  // the report record cap (default 1,000,000)
	MaxDays       int      `yaml:"max_days"`     // longest report range in days (default 95)

	keyID, keySecret string
}

// Validate fills defaults, checks the settings and resolves the
// credentials; key prefixes errors. No error holds a secret.
func (s *Settings) Validate(key string) error {
	if s.BaseURL == "" {
		s.BaseURL = DefaultBaseURL
	}
	if err := collect.CheckURL(s.BaseURL); err != nil {
		return config.Errorf(key+".base_url", "%v", err)
	}
	s.BaseURL = strings.TrimRight(s.BaseURL, "/")
	switch {
	case s.Credentials.IsSet() && (s.AccessKeyID != "" || s.AccessKeySecret.IsSet()):
		return config.Errorf(key+".credentials", "set credentials (a credentials.properties) or access_key_id/access_key_secret, not both")
	case s.Credentials.IsSet():
		if err := s.Credentials.Resolve(key + ".credentials"); err != nil {
			return err
		}
		props := parseProperties(s.Credentials.Value())
		s.keyID, s.keySecret = props["here.access.key.id"], props["here.access.key.secret"]
		if s.keyID == "" || s.keySecret == "" {
			return config.Errorf(key+".credentials", "here.access.key.id and here.access.key.secret are required in the credentials")
		}
		if s.TokenURL == "" {
			s.TokenURL = props["here.token.endpoint.url"]
		}
	default:
		if s.AccessKeyID == "" {
			return config.Errorf(key+".credentials", "required: a credentials.properties ({file: path}), or access_key_id and access_key_secret")
		}
		if err := s.AccessKeySecret.Resolve(key + ".access_key_secret"); err != nil {
			return err
		}
		s.keyID, s.keySecret = s.AccessKeyID, s.AccessKeySecret.Value()
	}
	if s.TokenURL == "" {
		s.TokenURL = DefaultTokenURL
	}
	if err := collect.CheckURL(s.TokenURL); err != nil {
		return config.Errorf(key+".token_url", "%v", err)
	}
	if l := len(s.Realm); l < 5 || l > 30 {
		return config.Errorf(key+".realm", "%q: required, the org id (5 to 30 characters)", s.Realm)
	}
	for i, a := range s.SubAccounts {
		if a == "" {
			return config.Errorf(fmt.Sprintf("%s.sub_accounts[%d]", key, i), "empty")
		}
	}
	if s.DetailLevel == "" {
		s.DetailLevel = DetailDay
	}
	if s.DetailLevel != DetailDay && s.DetailLevel != DetailMonth && s.DetailLevel != DetailSummarized {
		return config.Errorf(key+".detail_level", "%q: want day, month or summarized (reports have no hour level)", s.DetailLevel)
	}
	for i, g := range s.GroupBy {
		if g != "appId" && g != "billingTag" && g != "project" {
			return config.Errorf(fmt.Sprintf("%s.group_by[%d]", key, i), "%q: want appId, billingTag or project", g)
		}
	}
	switch s.ChargeType {
	case "", "all", "billable", "nonBillable":
	default:
		return config.Errorf(key+".charge_type", "%q: want all, billable or nonBillable", s.ChargeType)
	}
	if s.MaxRecords == 0 {
		s.MaxRecords = DefaultMaxRecords
	}
	if s.MaxRecords < 1 {
		return config.Errorf(key+".max_records", "must be positive")
	}
	if s.MaxDays == 0 {
		s.MaxDays = DefaultMaxDays
	}
	if s.MaxDays < 1 || s.MaxDays > DefaultMaxDays {
		return config.Errorf(key+".max_days", "%d: want 1 to %d", s.MaxDays, DefaultMaxDays)
	}
	return nil
}

// parseProperties reads the key=value (or key: value) lines of a Java
// properties file; # and ! start comments. Values keep any later '=' (a
// base64 secret ends with them).
func parseProperties(text string) map[string]string {
	out := map[string]string{}
	for _, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' || line[0] == '!' {
			continue
		}
		i := strings.IndexAny(line, "=:")
		if i < 0 {
			continue
		}
		out[strings.TrimSpace(line[:i])] = strings.TrimSpace(line[i+1:])
	}
	return out
}

func init() { collect.RegisterSettings("here", New) }

// Platform is the HERE usage reports API for one realm.
type Platform struct {
	s Settings
	collect.Client
}

// New returns the platform; s must have passed Validate.
func New(s Settings, env collect.Env) (*Platform, error) {
	if s.keyID == "" || s.DetailLevel == "" {
		return nil, errors.New("here: settings not validated")
	}
	p := &Platform{s: s}
	p.Client = collect.NewClient(env, p.fetchToken, errorMessage, nil)
	return p, nil
}

// Type implements collect.Platform.
func (p *Platform) Type() string { return "here" }

// Account implements collect.Platform: the realm.
func (p *Platform) Account() string { return p.s.Realm }

// Fingerprint implements collect.Platform.
func (p *Platform) Fingerprint() string {
	subs := slices.Clone(p.s.SubAccounts)
	slices.Sort(subs)
	return fmt.Sprintf("%s|%s|%v|%t|%s|%v|%s", p.s.BaseURL, p.s.Realm, subs, p.s.IncludeOwnOrg && len(subs) > 0, p.s.DetailLevel, p.s.GroupBy, p.s.ChargeType)
}

// Limits implements collect.Platform: ranges of whole hours up to MaxDays,
// the record cap; day and month rows carry their date, summarized rows
// cover the whole report.
func (p *Platform) Limits() collect.Limits {
	l := collect.Limits{MaxRange: time.Duration(p.s.MaxDays) * 24 * time.Hour, Align: time.Hour, MaxRecords: p.s.MaxRecords}
	switch p.s.DetailLevel {
	case DetailDay:
		l.RowSpan = collect.Day
	case DetailMonth:
		l.RowSpan = collect.Month
	}
	return l
}

// fetchToken is the OAuth 2.0 client-credentials grant, authenticated by
// an OAuth 1.0 HMAC-SHA256 signature.
func (p *Platform) fetchToken(ctx context.Context) (string, time.Time, error) {
	u, err := url.Parse(p.s.TokenURL)
	if err != nil {
		return "", time.Time{}, collect.Permanent(err)
	}
	form := url.Values{"grant_type": {"client_credentials"}}
	if p.s.Scope != "" {
		form.Set("scope", p.s.Scope)
	}
	var tr struct {
		AccessToken  string `json:"access_token"`
		AccessToken2 string `json:"accessToken"`
		ExpiresIn    int64  `json:"expires_in"`
		ExpiresIn2   int64  `json:"expiresIn"`
	}
	err = p.FetchToken(ctx, collect.Request{Op: "here token", Method: http.MethodPost, URL: p.s.TokenURL, Body: []byte(form.Encode()),
		Header: http.Header{"Content-Type": {"application/x-www-form-urlencoded"}, "Accept": {"application/json"}},
		Sign: func(r *http.Request) error {
			r.Header.Set("Authorization", oauthHeader(http.MethodPost, u, form, p.s.keyID, p.s.keySecret, p.Env.Now(), newNonce()))
			return nil
		}}, &tr)
	if err != nil {
		return "", time.Time{}, err
	}
	tok := cmp.Or(tr.AccessToken, tr.AccessToken2)
	if tok == "" {
		return "", time.Time{}, collect.Permanent(errors.New("here token: the answer holds no access token"))
	}
	ttl := max(tr.ExpiresIn, tr.ExpiresIn2)
	if ttl <= 0 {
		ttl = 3600
	}
	return tok, p.Env.Now().Add(time.Duration(ttl) * time.Second), nil
}

func (p *Platform) reportsURL() string {
	return p.s.BaseURL + "/usage/realms/" + url.PathEscape(p.s.Realm) + "/reports"
}

// Request implements collect.Platform: POST .../reports with the range as
// query parameters and the sub-accounts in the body. With
// include_own_org, a second report without a body covers the realm's own
// usage; the id is then both report ids joined by "+".
func (p *Platform) Request(ctx context.Context, r collect.Range) (string, error) {
	if !p.s.IncludeOwnOrg || len(p.s.SubAccounts) == 0 {
		return p.requestOne(ctx, r, p.s.SubAccounts)
	}
	own, err := p.requestOne(ctx, r, nil)
	if err != nil {
		return "", err
	}
	subs, err := p.requestOne(ctx, r, p.s.SubAccounts)
	if err != nil {
		return "", err
	}
	return own + "+" + subs, nil
}

// requestOne asks for one report: of subs, or of the realm itself when
// subs is empty (then no body is sent: the body is optional, and when sent
// it must hold subAccounts [DOC: the spec's requestBody required: false;
// UsageReportRequest required: subAccounts]).
func (p *Platform) requestOne(ctx context.Context, r collect.Range, subs []string) (string, error) {
	q := url.Values{}
	q.Set("startDate", r.Start.UTC().Format(DateLayout))
	q.Set("endDate", endDate(r, p.Env.Now()).Format(DateLayout))
	q.Set("detailLevel", p.s.DetailLevel)
	if len(p.s.GroupBy) > 0 {
		q.Set("groupBy", strings.Join(p.s.GroupBy, ","))
	}
	if p.s.ChargeType != "" {
		q.Set("chargeType", p.s.ChargeType)
	}
	corr := collect.NewUUID()
	h := http.Header{"Accept": {"application/json"}, "X-Correlation-ID": {corr}}
	var body []byte
	if len(subs) > 0 {
		body, _ = json.Marshal(map[string][]string{"subAccounts": subs})
		h.Set("Content-Type", "application/json")
	}
	id, err := p.CreateReport(ctx, collect.Request{Op: "here create report", Method: http.MethodPost, URL: p.reportsURL() + "?" + q.Encode(), Body: body, Header: h})
	if err != nil {
		return "", fmt.Errorf("%w (X-Correlation-ID %s)", err, corr)
	}
	return id, nil
}

// endDate is the endDate sent for r: reportEnd (never the future), one
// second earlier. The spec says only "End date for search" [NOT FOUND:
// whether it is inclusive]; usage is hourly, so an end of hh:59:59 covers
// the hour before an exclusive end under either reading, and never the
// hour that starts at it.
func endDate(r collect.Range, now time.Time) time.Time {
	end := reportEnd(r, now)
	if e := end.Add(-time.Second); e.After(r.Start) {
		return e
	}
	return end
}

// reportEnd is the endDate asked for r at now: r.End, but never after now.
// The collector clamps a range to now rounded UP to the hour, which would
// ask HERE about up to 59 minutes of the future; the end is rounded DOWN
// to the hour instead, or, when that leaves nothing (the range starts in
// the current hour), to the second. Usage of the future is not known, and
// HERE's data arrives up to 2 h (location services) to 48 h late anyway.
func reportEnd(r collect.Range, now time.Time) time.Time {
	end, now := r.End.UTC(), now.UTC()
	if !end.After(now) {
		return end
	}
	if h := now.Truncate(time.Hour); h.After(r.Start) {
		return h
	}
	if s := now.Truncate(time.Second); s.After(r.Start) {
		return s
	}
	return end // now is within a second of the start: nothing is known yet either way
}

// Status implements collect.Platform: GET .../reports/{id}.
func (p *Platform) Status(ctx context.Context, id string) (collect.Status, error) {
	ids := strings.Split(id, "+")
	if len(ids) == 1 {
		return p.statusOne(ctx, id)
	}
	all := collect.Status{State: collect.Ready}
	for _, one := range ids {
		st, err := p.statusOne(ctx, one)
		if err != nil {
			return collect.Status{}, err
		}
		if st.State != collect.Ready {
			all.State = st.State
		}
		all.Truncated = all.Truncated || st.Truncated
	}
	return all, nil
}

func (p *Platform) statusOne(ctx context.Context, id string) (collect.Status, error) {
	var st struct {
		Status    string `json:"status"`
		Truncated bool   `json:"truncated"`
	}
	if err := p.ReportJSON(ctx, collect.Request{Op: "here report " + id + " status", Method: http.MethodGet,
		URL: p.reportsURL() + "/" + url.PathEscape(id), Header: http.Header{"Accept": {"application/json"}, "X-Correlation-ID": {collect.NewUUID()}}}, 1<<20, &st); err != nil {
		return collect.Status{}, err
	}
	switch st.Status {
	case "completed":
		return collect.Status{State: collect.Ready, Truncated: st.Truncated}, nil
	case "failed":
		return collect.Status{}, fmt.Errorf("here report %s: %w", id, collect.ErrReportFailed)
	case "archived":
		return collect.Status{}, fmt.Errorf("here report %s is archived: %w", id, collect.ErrReportGone)
	case "pending", "inProgress", "":
		return collect.Status{State: collect.Pending}, nil
	}
	return collect.Status{State: collect.Pending}, nil
}

// Fetch implements collect.Platform: GET .../reports/{id}/output, a
// gzipped CSV.
func (p *Platform) Fetch(ctx context.Context, id string, st collect.Status, r collect.Range, sink collect.Sink) (collect.FetchInfo, error) {
	var total collect.FetchInfo
	for _, one := range strings.Split(id, "+") {
		info, err := p.fetchOne(ctx, one, r, sink)
		total.Rows += info.Rows
		total.Truncated = total.Truncated || info.Truncated
		if err != nil {
			return total, err
		}
	}
	return total, nil
}

func (p *Platform) fetchOne(ctx context.Context, id string, r collect.Range, sink collect.Sink) (collect.FetchInfo, error) {
	return p.Download(ctx, collect.Request{Op: "here report " + id + " download", Method: http.MethodGet,
		URL:    p.reportsURL() + "/" + url.PathEscape(id) + "/output",
		Header: http.Header{"Accept": {"application/x-gzip, text/csv, */*"}, "X-Correlation-ID": {collect.NewUUID()}}},
		func(body io.Reader) (collect.FetchInfo, error) { return p.parse(body, r, sink) })
}

func (p *Platform) parse(body io.Reader, r collect.Range, sink collect.Sink) (collect.FetchInfo, error) {
	required := []string{"realmId", "featureId", "billableValue"}
	if p.s.DetailLevel != DetailSummarized {
		required = append(required, "usageDateTime")
	}
	return collect.ParseReport(body, "report CSV", required, nil, sink, func(c *collect.CSV) (*messages.UsageRecord, string, string) {
		return p.record(c, r)
	})
}

var dateLayouts = []string{time.DateOnly, DateLayout, time.RFC3339, "2006-01-02 15:04:05", "2006-01"}

func (p *Platform) record(c *collect.CSV, r collect.Range) (*messages.UsageRecord, string, string) {
	for _, col := range []string{"realmId", "featureId"} {
		if strings.TrimSpace(c.Get(col)) == "" {
			return nil, col, "is empty"
		}
	}
	start, end := r.Start, r.End
	if p.s.DetailLevel != DetailSummarized {
		v := strings.TrimSpace(c.Get("usageDateTime"))
		var t time.Time
		var err error = errors.New("empty")
		for _, l := range dateLayouts {
			if t, err = time.Parse(l, v); err == nil {
				break
			}
		}
		if err != nil {
			return nil, "usageDateTime", collect.Quote(v) + " is not a date"
		}
		t = t.UTC()
		var bs, be time.Time
		if p.s.DetailLevel == DetailMonth {
			bs = time.Date(t.Year(), t.Month(), 1, 0, 0, 0, 0, time.UTC)
			be = bs.AddDate(0, 1, 0)
		} else {
			bs = time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
			be = bs.AddDate(0, 0, 1)
		}
		var ok bool
		if start, end, ok = collect.Clip(bs, be, r); !ok {
			return nil, "usageDateTime", fmt.Sprintf("%s is outside the report range %s", collect.Quote(v), r)
		}
	}
	v := strings.TrimSpace(c.Get("billableValue"))
	qty, err := messages.ParseDecimal(v)
	if err != nil {
		return nil, "billableValue", collect.Quote(v) + " is not a number"
	}
	rec := &messages.UsageRecord{
		ChargePeriodStart: start,
		ChargePeriodEnd:   end,
		BillingAccountId:  p.s.Realm,
		SubAccountId:      strings.TrimSpace(c.Get("realmId")),
		ProviderName:      "HERE",
		PublisherName:     "HERE",
		ServiceName:       c.Get("category"),
		ChargeCategory:    "Usage",
		ChargeDescription: c.Get("name"),
		SkuId:             strings.TrimSpace(c.Get("featureId")),
		SkuMeter:          c.Get("name"),
		ResourceId:        c.Get("appId"),
		ResourceName:      c.Get("appName"),
		ConsumedQuantity:  qty,
		ConsumedUnit:      cmp.Or(c.Get("valueDriver"), "units"),
		Ext:               map[string]messages.ExtValue{},
	}
	if uv := strings.TrimSpace(c.Get("usageValue")); uv != "" || c.Has("usageValue") {
		d, err := messages.ParseDecimal(uv)
		if err != nil {
			return nil, "usageValue", collect.Quote(uv) + " is not a number"
		}
		rec.Ext["UsageValue"] = messages.ExtDec(d)
	}
	for name, col := range map[string]string{
		"BillingSubscriptionId": "billingSubscriptionId", "BillingChargeNumber": "billingChargeNumber",
		"AppHrn": "appHrn", "ProjectHrn": "projectHrn", "BillingTag": "billingTag", "Resource": "resource",
	} {
		if v := c.Get(col); v != "" {
			rec.Ext[name] = messages.ExtStr(v)
		}
	}
	return rec, "", ""
}

// errorMessage reads HERE's ErrorResponse (title, cause, code, details)
// and the auth error shape (error, error_description).
func errorMessage(body []byte) string {
	var e struct {
		Title   string `json:"title"`
		Code    string `json:"code"`
		Cause   string `json:"cause"`
		Message string `json:"message"`
		Details []struct {
			Message string `json:"message"`
		} `json:"details"`
		Error            any    `json:"error"`
		ErrorDescription string `json:"error_description"`
		ErrorCode        any    `json:"errorCode"`
	}
	if json.Unmarshal(bytes.TrimSpace(body), &e) != nil {
		return ""
	}
	var parts []string
	if e.Code != "" {
		parts = append(parts, e.Code)
	}
	for _, s := range []string{e.Title, e.Cause} {
		if s != "" && !slices.Contains(parts, s) {
			parts = append(parts, s)
		}
	}
	for _, d := range e.Details {
		if d.Message != "" && !slices.Contains(parts, d.Message) {
			parts = append(parts, d.Message)
		}
	}
	if e.ErrorDescription != "" {
		if s, ok := e.Error.(string); ok && s != "" {
			parts = append(parts, s)
		}
		parts = append(parts, e.ErrorDescription)
		if e.ErrorCode != nil {
			parts = append(parts, fmt.Sprintf("errorCode %v", e.ErrorCode))
		}
	} else if e.Message != "" {
		parts = append(parts, e.Message)
	}
	return strings.Join(parts, ": ")
}
