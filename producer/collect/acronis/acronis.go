package acronis

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
	"strconv"
	"strings"
	"time"

	"github.com/shopspring/decimal"

	"github.com/usagefleet/usagefleet/internal/config"
	"github.com/usagefleet/usagefleet/messages"
	"github.com/usagefleet/usagefleet/producer/collect"
)

// Report kinds the collector asks for.
const (
	KindDaily   = "usage_daily"
	KindSummary = "usage_summary"
)

// FormatCSV2 is the stored format the collector asks for and parses.
const FormatCSV2 = "csv_v2_0"

// documentedColumns are the csv_v2_0 columns Acronis's own parser
// (Acronis\UsageReport\Csv\CsvFormatParser, "Copyright © 2002-2020
// Acronis") requires in every file, edition aside (it defaults a missing
// edition to "standard"). No other column of csv_v2_0 is documented.
var documentedColumns = []string{
	"application.id", "infra.backend_type", "infra.id", "infra.owner_id", "name", "tenant.id", "tenant.kind",
	"usage.absolute.production", "usage.absolute.total", "usage.absolute.trial",
	"usage.delta.production", "usage.delta.total", "usage.delta.trial",
	"usage.effective.production", "usage.effective.total", "usage.effective.trial",
}

// DateColumn is the column usage_daily rows are read with [INFER]: no
// source names it, so the collector fails, naming it, when it is absent.
const DateColumn = "date"

// ComputePointsItem is the offering item of Disaster Recovery compute
// points. csv_v2_0 carries its values in seconds: "To calculate Disaster
// Recovery compute points for the report types other than csv or html,
// divide the value by 3600 and round it to 2 decimal places" [DOC: seed
// 002/003, "Creating a billing report"]. csv_v2_0 is such a type.
const ComputePointsItem = "compute_points"

// ComputePointsUnit is the unit of a converted compute points quantity.
const ComputePointsUnit = "compute points"

// computePoints converts a compute points value from seconds: /3600,
// rounded to 2 places half away from zero ([INFER] the direction; the docs
// say only "round"), exactly.
func computePoints(d messages.Decimal) messages.Decimal {
	r := d.Big().Div(decimal.NewFromInt(3600)).Round(2)
	out, _ := messages.ParseDecimal(r.StringFixed(2))
	return out
}

// DefaultQuantityColumn is the csv_v2_0 column published as the quantity.
const DefaultQuantityColumn = "usage.delta.total"

var usageColumns = []string{
	"usage.absolute.production", "usage.absolute.total", "usage.absolute.trial",
	"usage.delta.production", "usage.delta.total", "usage.delta.trial",
	"usage.effective.production", "usage.effective.total", "usage.effective.trial",
}

var levels = []string{"itself", "direct_partners", "all_partners", "all_customers", "accounts"}

// Settings are the acronis collector's settings (the collector's
// "settings:" block).
type Settings struct {
	// BaseURL is the data center URL, without /api/2
	// (https://eu2-cloud.acronis.com). Required.
	BaseURL      string        `yaml:"base_url"`
	ClientID     string        `yaml:"client_id"`     // API client id (required)
	ClientSecret config.Secret `yaml:"client_secret"` // {env: VAR} or {file: path} (required)
	TenantID     string        `yaml:"tenant_id"`     // the tenant the reports are for (required)
	Level        string        `yaml:"level"`         // default all_customers
	Kind         string        `yaml:"kind"`          // usage_summary (default) or usage_daily
	// HideZeroUsage drops items without usage from the reports (default false).
	HideZeroUsage bool `yaml:"hide_zero_usage"`
	// ShowSKUs asks for the SKU columns (default true).
	ShowSKUs *bool `yaml:"show_skus"`
	// QuantityColumn is the usage column published as ConsumedQuantity
	// (default usage.delta.total).
	QuantityColumn string `yaml:"quantity_column"`
	// MaxReportDays bounds the days one usage_daily report covers (default 31).
	MaxReportDays int `yaml:"max_report_days"`
}

// Validate fills defaults, checks the settings and resolves the secret;
// key prefixes errors.
func (s *Settings) Validate(key string) error {
	if s.BaseURL == "" {
		return config.Errorf(key+".base_url", "required (the data center URL, e.g. https://eu2-cloud.acronis.com)")
	}
	if err := collect.CheckURL(s.BaseURL); err != nil {
		return config.Errorf(key+".base_url", "%v", err)
	}
	s.BaseURL = strings.TrimSuffix(strings.TrimRight(s.BaseURL, "/"), "/api/2")
	if s.ClientID == "" {
		return config.Errorf(key+".client_id", "required")
	}
	if err := s.ClientSecret.Resolve(key + ".client_secret"); err != nil {
		return err
	}
	if s.TenantID == "" {
		return config.Errorf(key+".tenant_id", "required (the tenant the reports are for)")
	}
	if s.Level == "" {
		s.Level = "all_customers"
	}
	if !slices.Contains(levels, s.Level) {
		return config.Errorf(key+".level", "%q: want one of %s", s.Level, strings.Join(levels, ", "))
	}
	if s.Kind == "" {
		// usage_summary rows need only the documented csv_v2_0 columns;
		// usage_daily rows need a date column no Acronis source names.
		s.Kind = KindSummary
	}
	if s.Kind != KindDaily && s.Kind != KindSummary {
		return config.Errorf(key+".kind", "%q: want usage_daily or usage_summary", s.Kind)
	}
	if s.ShowSKUs == nil {
		t := true
		s.ShowSKUs = &t
	}
	if s.QuantityColumn == "" {
		s.QuantityColumn = DefaultQuantityColumn
	}
	if !slices.Contains(usageColumns, s.QuantityColumn) {
		return config.Errorf(key+".quantity_column", "%q: want one of %s", s.QuantityColumn, strings.Join(usageColumns, ", "))
	}
	if s.MaxReportDays == 0 {
		s.MaxReportDays = 31
	}
	if s.MaxReportDays < 1 || s.MaxReportDays > 366 {
		return config.Errorf(key+".max_report_days", "%d: want 1 to 366", s.MaxReportDays)
	}
	return nil
}

func init() { collect.RegisterSettings("acronis", New) }

// Platform is the Acronis account-management reports API for one tenant.
type Platform struct {
	s Settings
	collect.Client
}

// New returns the platform; s must have passed Validate.
func New(s Settings, env collect.Env) (*Platform, error) {
	if s.ClientSecret.Value() == "" || s.Kind == "" || s.QuantityColumn == "" {
		return nil, errors.New("acronis: settings not validated")
	}
	p := &Platform{s: s}
	p.Client = collect.NewClient(env, p.fetchToken, errorMessage, notReady)
	return p, nil
}

// Type implements collect.Platform.
func (p *Platform) Type() string { return "acronis" }

// Account implements collect.Platform: the tenant id.
func (p *Platform) Account() string { return p.s.TenantID }

// Fingerprint implements collect.Platform.
func (p *Platform) Fingerprint() string {
	return fmt.Sprintf("%s|%s|%s|%s|%t|%t", p.s.BaseURL, p.s.TenantID, p.s.Level, p.s.Kind, p.s.HideZeroUsage, *p.s.ShowSKUs)
}

// Limits implements collect.Platform: reports take dates; a usage_daily
// report spans up to MaxReportDays, a usage_summary report one period.
func (p *Platform) Limits() collect.Limits {
	l := collect.Limits{Align: 24 * time.Hour, MaxRange: time.Duration(p.s.MaxReportDays) * 24 * time.Hour}
	if p.s.Kind == KindDaily {
		l.RowSpan = collect.Day
	}
	return l
}

func (p *Platform) url(path string) string { return p.s.BaseURL + "/api/2" + path }

// fetchToken is the client-credentials grant with HTTP Basic client
// authentication.
func (p *Platform) fetchToken(ctx context.Context) (string, time.Time, error) {
	var tr struct {
		AccessToken string `json:"access_token"`
		ExpiresOn   int64  `json:"expires_on"`
		ExpiresIn   int64  `json:"expires_in"`
	}
	h := http.Header{"Content-Type": {"application/x-www-form-urlencoded"}, "Accept": {"application/json"}}
	err := p.FetchToken(ctx, collect.Request{Op: "acronis token", Method: http.MethodPost, URL: p.url("/idp/token"),
		Body: []byte(url.Values{"grant_type": {"client_credentials"}}.Encode()), Header: h,
		Sign: func(r *http.Request) error { r.SetBasicAuth(p.s.ClientID, p.s.ClientSecret.Value()); return nil }}, &tr)
	if err != nil {
		return "", time.Time{}, err
	}
	if tr.AccessToken == "" {
		return "", time.Time{}, collect.Permanent(errors.New("acronis token: the answer holds no access_token"))
	}
	now := p.Env.Now()
	exp := now.Add(2 * time.Hour) // the documented lifetime
	switch {
	case tr.ExpiresOn > 0:
		exp = time.Unix(tr.ExpiresOn, 0)
	case tr.ExpiresIn > 0:
		exp = now.Add(time.Duration(tr.ExpiresIn) * time.Second)
	}
	return tr.AccessToken, exp, nil
}

// Request implements collect.Platform: POST /reports, saved once as csv_v2_0.
func (p *Platform) Request(ctx context.Context, r collect.Range) (string, error) {
	body := map[string]any{
		"parameters": map[string]any{
			"tenant_id":       p.s.TenantID,
			"level":           p.s.Level,
			"kind":            p.s.Kind,
			"formats":         []string{FormatCSV2},
			"period":          map[string]string{"start": r.Start.UTC().Format(time.DateOnly), "end": r.End.UTC().AddDate(0, 0, -1).Format(time.DateOnly)},
			"hide_zero_usage": p.s.HideZeroUsage,
			"show_skus":       *p.s.ShowSKUs,
		},
		"schedule":      map[string]string{"type": "once"},
		"result_action": "save",
	}
	b, _ := json.Marshal(body)
	return p.CreateReport(ctx, collect.Request{Op: "acronis create report", Method: http.MethodPost, URL: p.url("/reports"), Body: b,
		Header: http.Header{"Content-Type": {"application/json"}, "Accept": {"application/json"}}})
}

// Status implements collect.Platform: GET /reports/{id}/stored.
func (p *Platform) Status(ctx context.Context, id string) (collect.Status, error) {
	var list struct {
		Items []struct {
			ID        string `json:"id"`
			Format    string `json:"report_format"`
			Status    string `json:"status"`
			CreatedAt string `json:"created_at"`
		} `json:"items"`
	}
	if err := p.ReportJSON(ctx, collect.Request{Op: "acronis report " + id + " status", Method: http.MethodGet,
		URL: p.url("/reports/" + url.PathEscape(id) + "/stored"), Header: http.Header{"Accept": {"application/json"}}}, 4<<20, &list); err != nil {
		return collect.Status{}, err
	}
	st := collect.Status{State: collect.Pending}
	for _, it := range list.Items {
		if it.Format != FormatCSV2 {
			continue
		}
		switch it.Status {
		case "saved":
			st.State, st.Ref = collect.Ready, it.ID
		case "failed":
			return collect.Status{}, fmt.Errorf("acronis report %s: %w (stored file %s failed to generate)", id, collect.ErrReportFailed, it.ID)
		}
	}
	return st, nil
}

// Fetch implements collect.Platform: download the stored csv_v2_0 file
// (gzipped or not) and map its rows.
func (p *Platform) Fetch(ctx context.Context, id string, st collect.Status, r collect.Range, sink collect.Sink) (collect.FetchInfo, error) {
	return p.Download(ctx, collect.Request{Op: "acronis report " + id + " download", Method: http.MethodGet,
		URL:    p.url("/reports/" + url.PathEscape(id) + "/stored/" + url.PathEscape(st.Ref)),
		Header: http.Header{"Accept": {"application/octet-stream"}}},
		func(body io.Reader) (collect.FetchInfo, error) { return p.parse(body, r, sink) })
}

var _ collect.ReportCleaner = (*Platform)(nil)

// CleanReport implements collect.ReportCleaner: the collector calls it once
// the report's periods are published and the checkpoint no longer names
// it, so a run that fails after the download can still take the report
// over.
func (p *Platform) CleanReport(ctx context.Context, id string) { p.deleteReport(ctx, id) }

// deleteReport deletes a report once its data is published: DELETE
// /reports/{id}?version=<version> [DOC: seed 003 step 6, "Store the UUID
// and revision number of the report, in case if you need to delete it";
// the reports API's DELETE takes both]. Otherwise an hourly schedule
// leaves 24 report objects a day in the tenant, forever. The version is
// read first (GET /reports/{id}): the collector keeps only report ids in
// its checkpoint. A failure is logged, not returned: the usage is read,
// and a report left behind costs nothing but clutter.
func (p *Platform) deleteReport(ctx context.Context, id string) {
	base := p.url("/reports/" + url.PathEscape(id))
	resp, err := p.API.Do(ctx, collect.Request{Op: "acronis report " + id + " version", Method: http.MethodGet, URL: base,
		Header: http.Header{"Accept": {"application/json"}}})
	if err == nil {
		var obj struct {
			Version *int `json:"version"`
		}
		err = json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&obj)
		resp.Body.Close()
		if err == nil && obj.Version == nil {
			err = errors.New("the report object holds no version")
		}
		if err == nil {
			resp, err = p.API.Do(ctx, collect.Request{Op: "acronis delete report " + id, Method: http.MethodDelete,
				URL: base + "?version=" + strconv.Itoa(*obj.Version), Header: http.Header{"Accept": {"application/json"}}})
			if err == nil {
				resp.Body.Close()
			}
		}
	}
	if err != nil {
		p.Env.Log.Warn("acronis: the downloaded report could not be deleted; it stays in the tenant", "report", id, "err", err)
	}
}

// parse maps a csv_v2_0 file to records (see the package doc's table).
func (p *Platform) parse(body io.Reader, r collect.Range, sink collect.Sink) (collect.FetchInfo, error) {
	trialCol := p.s.QuantityColumn[:strings.LastIndexByte(p.s.QuantityColumn, '.')] + ".trial"
	aggregates := 0
	defer func() {
		if aggregates > 0 {
			p.Env.Log.Info("acronis: skipped partner rows, whose customers' rows carry the same usage", "rows", aggregates, "level", p.s.Level)
		}
	}()
	return collect.ParseReport(body, "csv_v2_0", nil, p.checkHeader, sink, func(c *collect.CSV) (*messages.UsageRecord, string, string) {
		if p.aggregate(c) {
			aggregates++
			return nil, "", ""
		}
		return p.record(c, r, trialCol)
	})
}

// checkHeader refuses a file without the columns every csv_v2_0 file has,
// or, for usage_daily, without the date column.
func (p *Platform) checkHeader(c *collect.CSV) error {
	if err := c.Require(documentedColumns...); err != nil {
		return fmt.Errorf("%w: these are the columns Acronis's own csv_v2_0 parser requires", err)
	}
	if p.s.Kind == KindDaily && !c.Has(DateColumn) {
		return fmt.Errorf("header: column %q missing: kind usage_daily needs a date on every row, "+
			"and no Acronis source documents which csv_v2_0 column holds it; use kind usage_summary (one report per period)", DateColumn)
	}
	return nil
}

// aggregate reports whether the current row is a partner's (or a folder's)
// that a report of level all_customers or accounts also breaks down into
// its customers' rows: publishing both would count the usage twice. A
// row of the report's own tenant is kept (it is what level itself asks
// for, and is no one's sum in the other levels' files). [INFER: the seed
// says a partner's rows may aggregate its customers'; no source says
// which rows do, so every partner row under the report's tenant is
// treated as a sum.]
func (p *Platform) aggregate(c *collect.CSV) bool {
	if p.s.Level != "all_customers" && p.s.Level != "accounts" {
		return false
	}
	switch strings.TrimSpace(c.Get("tenant.kind")) {
	case "partner", "folder", "root":
		return strings.TrimSpace(c.Get("tenant.id")) != p.s.TenantID
	}
	return false
}

func (p *Platform) record(c *collect.CSV, r collect.Range, trialCol string) (*messages.UsageRecord, string, string) {
	for _, col := range []string{"tenant.id", "name", "application.id"} {
		if strings.TrimSpace(c.Get(col)) == "" {
			return nil, col, "is empty"
		}
	}
	start, end := r.Start, r.End
	if p.s.Kind == KindDaily {
		d, err := time.Parse(time.DateOnly, strings.TrimSpace(c.Get(DateColumn)))
		if err != nil {
			return nil, DateColumn, collect.Quote(c.Get(DateColumn)) + " is not a date (YYYY-MM-DD)"
		}
		var ok bool
		if start, end, ok = collect.Clip(d, d.AddDate(0, 0, 1), r); !ok {
			return nil, DateColumn, fmt.Sprintf("%s is outside the report period %s", d.Format(time.DateOnly), r)
		}
	}
	points := strings.TrimSpace(c.Get("name")) == ComputePointsItem
	dec := func(col string) (messages.Decimal, string) {
		v := strings.TrimSpace(c.Get(col))
		if v == "" && col != p.s.QuantityColumn && !c.Has(col) {
			return messages.Decimal{}, ""
		}
		d, err := messages.ParseDecimal(v)
		if err != nil {
			return d, collect.Quote(v) + " is not a number"
		}
		if points {
			d = computePoints(d)
		}
		return d, ""
	}
	qty, bad := dec(p.s.QuantityColumn)
	if bad != "" {
		return nil, p.s.QuantityColumn, bad
	}
	rec := &messages.UsageRecord{
		ChargePeriodStart: start,
		ChargePeriodEnd:   end,
		BillingAccountId:  p.s.TenantID,
		SubAccountId:      strings.TrimSpace(c.Get("tenant.id")),
		SubAccountName:    c.Get("tenant.name"),
		ProviderName:      "Acronis",
		PublisherName:     "Acronis",
		ServiceName:       c.Get("application.id"),
		ChargeCategory:    "Usage",
		ChargeDescription: cmp.Or(c.Get("sku.name"), c.Get("name")),
		SkuId:             c.Get("sku"),
		SkuMeter:          c.Get("name"),
		ResourceId:        c.Get("infra.id"),
		ResourceType:      c.Get("infra.backend_type"),
		ConsumedQuantity:  qty,
		ConsumedUnit:      cmp.Or(c.Get("measurement_unit"), "units"),
		Ext:               map[string]messages.ExtValue{},
	}
	if points {
		rec.ConsumedUnit = ComputePointsUnit
	}
	edition := c.Get("edition")
	if !c.Has("edition") {
		edition = "standard" // as the Acronis csv_v2_0 parser defaults it
	}
	for name, v := range map[string]string{
		"Edition": edition, "ApplicationId": c.Get("application.id"), "TenantKind": c.Get("tenant.kind"),
		"ParentTenantId": c.Get("tenant.parent_id"), "InfraOwnerId": c.Get("infra.owner_id"),
	} {
		if v != "" {
			rec.Ext[name] = messages.ExtStr(v)
		}
	}
	for name, col := range map[string]string{
		"AbsoluteTotal": "usage.absolute.total", "DeltaTotal": "usage.delta.total",
		"EffectiveTotal": "usage.effective.total", "Trial": trialCol,
	} {
		d, bad := dec(col)
		if bad != "" {
			return nil, col, bad
		}
		if d.IsSet() {
			rec.Ext[name] = messages.ExtDec(d)
		}
	}
	return rec, "", ""
}

// errorMessage reads {"error": {"message": ...}}.
func errorMessage(body []byte) string {
	var e struct {
		Error struct {
			Code    any    `json:"code"`
			Message string `json:"message"`
			Details struct {
				Info *string `json:"info"`
			} `json:"details"`
		} `json:"error"`
	}
	if json.Unmarshal(bytes.TrimSpace(body), &e) != nil || e.Error.Message == "" {
		return ""
	}
	m := e.Error.Message
	if e.Error.Details.Info != nil && *e.Error.Details.Info != "" {
		m += " (" + *e.Error.Details.Info + ")"
	}
	return m
}

// notReady: the documented "Usage history is not ready" answers, 400
// before 6 am and 500 after.
func notReady(status int, msg string) bool {
	return (status == http.StatusBadRequest || status == http.StatusInternalServerError) &&
		strings.Contains(strings.ToLower(msg), "usage history is not ready")
}
