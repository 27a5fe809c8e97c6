package here

import (
	"bytes"
	"encoding/csv"
	"fmt"
	"hash/fnv"
	"sort"
	"strings"
	"time"

	"github.com/shopspring/decimal"
)

// Detail levels a report accepts.
const (
	DetailSummarized = "summarized"
	DetailDay        = "day"
	DetailMonth      = "month"
)

// QuantityField is the usage field a collector must publish as the
// quantity; Expected sums it.
const QuantityField = "billableValue"

// Query is what decides a report's rows. The same Query always gives the
// same rows, file bytes and Expected totals.
type Query struct {
	Realm       string    `json:"realm"`
	SubAccounts []string  `json:"subAccounts,omitempty"` // empty: the realm itself
	Start       time.Time `json:"startDate"`             // hours H with Start <= H < End count
	End         time.Time `json:"endDate"`
	DetailLevel string    `json:"detailLevel"`       // summarized (default), day, month
	GroupBy     []string  `json:"groupBy,omitempty"` // nil: Config.DefaultGroupBy
	// Filters, as the query parameters of the same names.
	FeatureID              string   `json:"featureId,omitempty"`
	AppID                  string   `json:"appId,omitempty"`
	ProjectHrn             string   `json:"projectHrn,omitempty"`
	BillingTag             string   `json:"billingTag,omitempty"`
	Category               string   `json:"category,omitempty"`
	BillingSubscriptionIDs []string `json:"billingSubscriptionId,omitempty"`
	ChargeType             string   `json:"chargeType,omitempty"` // all (default), billable, nonBillable
	// UsageFields restricts the usage columns (nil: the default set).
	UsageFields []string `json:"usageFields,omitempty"`
}

func (q Query) detail() string {
	if q.DetailLevel == "" {
		return DetailSummarized
	}
	return q.DetailLevel
}

// Row is one report row (before any malformation). Fields a report does not
// group by are empty.
type Row struct {
	UsageDateTime         string          `json:"usageDateTime,omitempty"`
	RealmID               string          `json:"realmId"`
	Category              string          `json:"category"`
	AppID                 string          `json:"appId,omitempty"`
	AppName               string          `json:"appName,omitempty"`
	AppHrn                string          `json:"appHrn,omitempty"`
	FeatureID             string          `json:"featureId"`
	BillingSubscriptionID string          `json:"billingSubscriptionId"`
	BillingChargeNumber   string          `json:"billingChargeNumber"`
	Name                  string          `json:"name"`
	ValueDriver           string          `json:"valueDriver"`
	ProjectHrn            string          `json:"projectHrn,omitempty"`
	BillingTag            string          `json:"billingTag,omitempty"`
	Resource              string          `json:"resource,omitempty"`
	UsageValue            decimal.Decimal `json:"usageValue"`
	BillableValue         decimal.Decimal `json:"billableValue"`
}

// Total is a record count with its sums.
type Total struct {
	Records    int             `json:"records"`
	Quantity   decimal.Decimal `json:"quantity"` // billableValue
	UsageValue decimal.Decimal `json:"usageValue"`
}

func (t *Total) add(r Row) {
	t.Records++
	t.Quantity = t.Quantity.Add(r.BillableValue)
	t.UsageValue = t.UsageValue.Add(r.UsageValue)
}

// Malformed is a row the sandbox deliberately broke (Config.MalformedRows).
type Malformed struct {
	Line      int    `json:"line"` // CSV line; the header is line 1
	Reason    string `json:"reason"`
	RealmID   string `json:"realmId"` // of the row before it was broken
	FeatureID string `json:"featureId"`
	Date      string `json:"usageDateTime,omitempty"`
}

// Totals is what a correct collector ends up with for one request.
type Totals struct {
	Records    int              `json:"records"`
	Quantity   decimal.Decimal  `json:"quantity"` // sum of billableValue
	UsageValue decimal.Decimal  `json:"usageValue"`
	PerDay     map[string]Total `json:"perDay"`     // by usageDateTime (month rows: first of the month; summarized: the start day)
	PerAccount map[string]Total `json:"perAccount"` // by realmId
	PerFeature map[string]Total `json:"perFeature"` // by featureId
	// Truncated: the report for this exact request holds more than
	// MaxRecords rows; its file stops at the cap and a collector must split
	// the range. The totals above are then the full data, with no rows
	// excluded as malformed (malformed rows are per file).
	Truncated bool        `json:"truncated"`
	Malformed []Malformed `json:"malformed"`
	Rows      []Row       `json:"rows,omitempty"`
}

type app struct{ id, name, hrn, project, tag string }

type feature struct {
	id, name, category, driver, sub, charge, resource string
	scale                                             int32 // fraction digits
	max, div                                          int64 // hourly usage is 1..max units of 10^-scale; billable = usage/div
	billable                                          bool
}

var (
	features = []feature{
		{id: "hrn:here:service::olp-here:search-geocoding-1", name: "Geocoder Autosuggest", category: "Location Services", driver: "Transactions", sub: "A-S00000021", charge: "C-00011212", resource: "geocode", scale: 0, max: 480, div: 1, billable: true},
		{id: "hrn:here:service::olp-here:routing-8", name: "Routing", category: "Location Services", driver: "Transactions", sub: "A-S00000021", charge: "C-00011230", resource: "router", scale: 0, max: 260, div: 1, billable: true},
		{id: "hrn:here:service::olp-here:vector-tiles-2", name: "Vector Tiles", category: "Location Services", driver: "Transactions", sub: "A-S00000021", charge: "C-00011251", resource: "vector-tiles", scale: 0, max: 3000, div: 15, billable: true},
		{id: "hrn:here:service::olp-here:network-positioning-2", name: "Network Positioning (included)", category: "Location Services", driver: "Transactions", sub: "A-S00000021", charge: "C-00011277", resource: "positioning", scale: 0, max: 90, div: 1, billable: false},
		{id: "hrn:here:service::olp-here:pipeline-stream-1", name: "Stream Pipeline", category: "Pipelines", driver: "Core-hours", sub: "A-S00000048", charge: "C-00020301", resource: "pipeline", scale: 4, max: 20000, div: 1, billable: true},
		{id: "hrn:here:service::olp-here:data-transfer-out-1", name: "Data Transfer Out", category: "Data Services", driver: "GB", sub: "A-S00000048", charge: "C-00020344", resource: "transfer", scale: 6, max: 2_500000, div: 1, billable: true},
		{id: "hrn:here:service::olp-here:blob-storage-1", name: "Blob Storage", category: "Data Services", driver: "GB-months", sub: "A-S00000048", charge: "C-00020377", resource: "blobstore", scale: 6, max: 40000, div: 1, billable: true},
	}
	appNames = []string{"Fleet Tracker", "Store Locator", "Delivery Planner, EU", "Telematics Hub", "Map Viewer"}
)

const alnum = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

func (s *Server) apps(account string) []app {
	out := make([]app, 3)
	for i := range out {
		h := mix(uint64(s.cfg.Seed) ^ hashStr("app:"+account) ^ uint64(i)*0x9e37)
		id := make([]byte, 20)
		for j := range id {
			h = mix(h + uint64(j))
			id[j] = alnum[h%uint64(len(alnum))]
		}
		a := app{
			id:   string(id),
			name: appNames[(int(mix(h)%uint64(len(appNames)))+i)%len(appNames)],
			hrn:  "hrn:here:account::" + account + ":app/" + string(id),
		}
		if i != 2 {
			a.project = fmt.Sprintf("hrn:here:authorization::%s:project/%s-%04d", account, strings.ToLower(strings.Fields(a.name)[0]), mix(h^1)%10000)
		}
		if i != 1 {
			a.tag = fmt.Sprintf("cc-%04d", mix(h^2)%10000)
		}
		out[i] = a
	}
	return out
}

func comboKey(seed int64, account string, a, f int) uint64 {
	return mix(uint64(seed) ^ hashStr("usage:"+account) ^ mix(uint64(a)+1) ^ mix(uint64(f)+101))
}

// active says whether an app uses a feature at all.
func active(key uint64) bool { return mix(key^0xac71)%10 < 7 }

// hourly is the usage of one (account, app, feature) in the hour starting
// at unix hour h, in units of 10^-scale: (usage, billable).
func hourly(key uint64, f feature, h int64) (int64, int64) {
	if mix(key^uint64(h/24)*0x51ed)%7 == 0 { // a quiet day
		return 0, 0
	}
	x := mix(key ^ uint64(h)*0x2545f491)
	if x%4 == 0 {
		return 0, 0
	}
	u := 1 + int64(x>>8)%f.max
	if !f.billable {
		return u, 0
	}
	return u, u / f.div
}

func (q Query) grouped(by string, def []string) bool {
	g := q.GroupBy
	if g == nil {
		g = def
	}
	for _, v := range g {
		if v == by {
			return true
		}
	}
	return false
}

func (q Query) accounts() []string {
	if len(q.SubAccounts) == 0 {
		return []string{q.Realm}
	}
	seen := map[string]bool{}
	var out []string
	for _, a := range q.SubAccounts {
		if !seen[a] {
			seen[a] = true
			out = append(out, a)
		}
	}
	sort.Strings(out)
	return out
}

func (q Query) keep(f feature, a app) bool {
	switch {
	case q.FeatureID != "" && q.FeatureID != f.id,
		q.AppID != "" && q.AppID != a.id,
		q.ProjectHrn != "" && q.ProjectHrn != a.project,
		q.BillingTag != "" && q.BillingTag != a.tag,
		q.Category != "" && !strings.EqualFold(q.Category, f.category),
		q.ChargeType == "billable" && !f.billable,
		q.ChargeType == "nonBillable" && f.billable:
		return false
	}
	if len(q.BillingSubscriptionIDs) > 0 {
		for _, id := range q.BillingSubscriptionIDs {
			if id == f.sub {
				return true
			}
		}
		return false
	}
	return true
}

func ceilHour(t time.Time) time.Time {
	h := t.Truncate(time.Hour)
	if h.Before(t) {
		h = h.Add(time.Hour)
	}
	return h
}

// bucketStart is the start of the bucket holding hour h.
func bucketStart(detail string, h time.Time) time.Time {
	switch detail {
	case DetailDay:
		return time.Date(h.Year(), h.Month(), h.Day(), 0, 0, 0, 0, time.UTC)
	case DetailMonth:
		return time.Date(h.Year(), h.Month(), 1, 0, 0, 0, 0, time.UTC)
	}
	return time.Time{}
}

type agg struct {
	row         Row
	usage, bill int64
	scale       int32
}

// rows generates the full (untruncated) rows of a request, in file order:
// bucket, realmId, featureId, appId, billingTag, projectHrn.
func (s *Server) rows(q Query) []Row {
	q.Start, q.End = q.Start.UTC(), q.End.UTC()
	detail := q.detail()
	byApp := q.grouped("appId", s.cfg.DefaultGroupBy)
	byTag := q.grouped("billingTag", s.cfg.DefaultGroupBy)
	byProject := q.grouped("project", s.cfg.DefaultGroupBy)
	first := ceilHour(q.Start)
	groups := map[string]*agg{}
	for _, account := range q.accounts() {
		for ai, a := range s.apps(account) {
			for fi, f := range features {
				key := comboKey(s.cfg.Seed, account, ai, fi)
				if !active(key) || !q.keep(f, a) {
					continue
				}
				var g *agg
				var cur time.Time
				for h := first; h.Before(q.End); h = h.Add(time.Hour) {
					if b := bucketStart(detail, h); g == nil || !b.Equal(cur) {
						cur = b
						r := Row{RealmID: account, Category: f.category, FeatureID: f.id, BillingSubscriptionID: f.sub,
							BillingChargeNumber: f.charge, Name: f.name, ValueDriver: f.driver, Resource: f.resource}
						if detail != DetailSummarized {
							r.UsageDateTime = b.Format(s.cfg.UsageDateTimeLayout)
						}
						if byApp {
							r.AppID, r.AppName, r.AppHrn = a.id, a.name, a.hrn
						}
						if byTag {
							r.BillingTag = a.tag
						}
						if byProject {
							r.ProjectHrn = a.project
						}
						k := fmt.Sprintf("%020d|%s|%s|%s|%s|%s|%s", b.Unix(), r.RealmID, r.FeatureID, r.BillingSubscriptionID, r.AppID, r.BillingTag, r.ProjectHrn)
						if g = groups[k]; g == nil {
							g = &agg{row: r, scale: f.scale}
							groups[k] = g
						}
					}
					u, bl := hourly(key, f, h.Unix()/3600)
					g.usage += u
					g.bill += bl
				}
			}
		}
	}
	keys := make([]string, 0, len(groups))
	for k := range groups {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make([]Row, len(keys))
	for i, k := range keys {
		g := groups[k]
		g.row.UsageValue = decimal.New(g.usage, -g.scale)
		g.row.BillableValue = decimal.New(g.bill, -g.scale)
		out[i] = g.row
	}
	return out
}

// columns lists the report's fields (before shuffling).
func (s *Server) columns(q Query) []string {
	var cols []string
	if q.detail() != DetailSummarized {
		cols = append(cols, "usageDateTime")
	}
	if q.grouped("appId", s.cfg.DefaultGroupBy) {
		cols = append(cols, "appId", "appName", "appHrn")
	}
	if q.grouped("billingTag", s.cfg.DefaultGroupBy) {
		cols = append(cols, "billingTag")
	}
	if q.grouped("project", s.cfg.DefaultGroupBy) {
		cols = append(cols, "projectHrn")
	}
	fields := q.UsageFields
	if len(fields) == 0 {
		fields = defaultUsageFields
	}
	for _, f := range usageFieldOrder {
		for _, want := range fields {
			if f == want {
				cols = append(cols, f)
			}
		}
	}
	h := mix(uint64(s.cfg.Seed) ^ hashStr(queryKey(q)))
	for i := len(cols) - 1; i > 0; i-- {
		h = mix(h + uint64(i))
		j := int(h % uint64(i+1))
		cols[i], cols[j] = cols[j], cols[i]
	}
	return cols
}

var (
	usageFieldOrder    = []string{"realmId", "featureId", "billingSubscriptionId", "billingChargeNumber", "category", "name", "valueDriver", "usageValue", "billableValue", "resource"}
	defaultUsageFields = usageFieldOrder[:9] // all but resource
	// labels are the CSV header labels, in the style of the documented
	// sync CSV ("Org ID (realmId)"). [INFER] for billingChargeNumber,
	// usageValue and resource, which the documented header lacks.
	labels = map[string]string{
		"usageDateTime":         "Date and time (usageDateTime)",
		"realmId":               "Org ID (realmId)",
		"category":              "Category (category)",
		"appId":                 "App ID (appId)",
		"appName":               "App Name (appName)",
		"appHrn":                "App Hrn (appHrn)",
		"featureId":             "Item (featureId)",
		"billingSubscriptionId": "Subscription ID (billingSubscriptionId)",
		"billingChargeNumber":   "Charge number (billingChargeNumber)",
		"name":                  "Item description (name)",
		"valueDriver":           "Unit (valueDriver)",
		"projectHrn":            "Project ID (projectHrn)",
		"billingTag":            "Billing tag (billingTag)",
		"usageValue":            "Usage (usageValue)",
		"billableValue":         "Usage Amount (billableValue)",
		"resource":              "Resource (resource)",
	}
)

func queryKey(q Query) string {
	return fmt.Sprintf("%s|%v|%s|%s|%s|%v|%s|%s|%s|%s|%s|%v|%s|%v", q.Realm, q.accounts(), q.Start.UTC().Format(time.RFC3339), q.End.UTC().Format(time.RFC3339),
		q.detail(), q.GroupBy, q.FeatureID, q.AppID, q.ProjectHrn, q.BillingTag, q.Category, q.BillingSubscriptionIDs, q.ChargeType, q.UsageFields)
}

func (r Row) field(col string) string {
	switch col {
	case "usageDateTime":
		return r.UsageDateTime
	case "realmId":
		return r.RealmID
	case "category":
		return r.Category
	case "appId":
		return r.AppID
	case "appName":
		return r.AppName
	case "appHrn":
		return r.AppHrn
	case "featureId":
		return r.FeatureID
	case "billingSubscriptionId":
		return r.BillingSubscriptionID
	case "billingChargeNumber":
		return r.BillingChargeNumber
	case "name":
		return r.Name
	case "valueDriver":
		return r.ValueDriver
	case "projectHrn":
		return r.ProjectHrn
	case "billingTag":
		return r.BillingTag
	case "resource":
		return r.Resource
	case "usageValue":
		return r.UsageValue.String()
	case "billableValue":
		return r.BillableValue.String()
	}
	return ""
}

// breakage is one way to break a row: the column and the value put there.
type breakage struct{ col, value, reason string }

var breakages = []breakage{
	{"billableValue", "n/a", "billableValue is not a number"},
	{"realmId", "", "realmId is empty"},
	{"featureId", "", "featureId is empty"},
	{"usageDateTime", "someday", "usageDateTime is not a date"},
}

// malformedAt picks the broken rows of an n-row file: m rows spread evenly,
// cycling through the breakages whose column the file has.
func malformedAt(n, m int, cols []string) map[int]breakage {
	has := map[string]bool{}
	for _, c := range cols {
		has[c] = true
	}
	var usable []breakage
	for _, b := range breakages {
		if has[b.col] {
			usable = append(usable, b)
		}
	}
	if m > n {
		m = n
	}
	out := map[int]breakage{}
	if len(usable) == 0 {
		return out
	}
	for k := 0; k < m; k++ {
		out[(2*k+1)*n/(2*m)] = usable[k%len(usable)]
	}
	return out
}

// file is a rendered report: the CSV (uncompressed) and what it holds.
type file struct {
	csv       []byte
	rows      int
	truncated bool
	malformed []Malformed
}

func (s *Server) render(q Query) (file, error) {
	rows := s.rows(q)
	var f file
	if len(rows) > s.cfg.MaxRecords {
		rows, f.truncated = rows[:s.cfg.MaxRecords], true
	}
	f.rows = len(rows)
	cols := s.columns(q)
	bad := malformedAt(len(rows), s.cfg.MalformedRows, cols)
	var buf bytes.Buffer
	w := csv.NewWriter(&buf)
	header := make([]string, len(cols))
	for i, c := range cols {
		header[i] = c
		if !s.cfg.PlainHeaders {
			header[i] = labels[c]
		}
	}
	if err := w.Write(header); err != nil {
		return f, err
	}
	rec := make([]string, len(cols))
	for i, r := range rows {
		for c, col := range cols {
			rec[c] = r.field(col)
		}
		if b, ok := bad[i]; ok {
			f.malformed = append(f.malformed, Malformed{Line: i + 2, Reason: b.reason, RealmID: r.RealmID, FeatureID: r.FeatureID, Date: r.UsageDateTime})
			for c, col := range cols {
				if col == b.col {
					rec[c] = b.value
				}
			}
		}
		if err := w.Write(rec); err != nil {
			return f, err
		}
	}
	w.Flush()
	f.csv = buf.Bytes()
	return f, w.Error()
}

// Expected returns what a correct collector must end up with for a report
// of realm (or its subAccounts) over [start, end) at detailLevel, with the
// default grouping and no filters. See ExpectedQuery.
func (s *Server) Expected(realm string, subAccounts []string, start, end time.Time, detailLevel string) Totals {
	return s.ExpectedQuery(Query{Realm: realm, SubAccounts: subAccounts, Start: start, End: end, DetailLevel: detailLevel})
}

// ExpectedQuery returns the totals of the report for exactly q: every row
// the file holds (zero rows included) minus the rows Config.MalformedRows
// breaks, or, when the report would be truncated (Totals.Truncated), the
// full untruncated data.
func (s *Server) ExpectedQuery(q Query) Totals {
	tot := Totals{PerDay: map[string]Total{}, PerAccount: map[string]Total{}, PerFeature: map[string]Total{}, Malformed: []Malformed{}}
	rows := s.rows(q)
	tot.Truncated = len(rows) > s.cfg.MaxRecords
	bad := map[int]breakage{}
	if !tot.Truncated {
		bad = malformedAt(len(rows), s.cfg.MalformedRows, s.columns(q))
	}
	startDay := q.Start.UTC().Format(s.cfg.UsageDateTimeLayout)
	for i, r := range rows {
		if b, ok := bad[i]; ok {
			tot.Malformed = append(tot.Malformed, Malformed{Line: i + 2, Reason: b.reason, RealmID: r.RealmID, FeatureID: r.FeatureID, Date: r.UsageDateTime})
			continue
		}
		tot.Records++
		tot.Quantity = tot.Quantity.Add(r.BillableValue)
		tot.UsageValue = tot.UsageValue.Add(r.UsageValue)
		k := r.UsageDateTime
		if k == "" {
			k = startDay
		}
		addTo(tot.PerDay, k, r)
		addTo(tot.PerAccount, r.RealmID, r)
		addTo(tot.PerFeature, r.FeatureID, r)
		tot.Rows = append(tot.Rows, r)
	}
	return tot
}

func addTo(m map[string]Total, k string, r Row) {
	t := m[k]
	t.add(r)
	m[k] = t
}

func hashStr(s string) uint64 {
	h := fnv.New64a()
	_, _ = h.Write([]byte(s))
	return h.Sum64()
}

// mix is the SplitMix64 finalizer.
func mix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}
