package acronis

import (
	"fmt"
	"hash/fnv"
	"slices"

	"time"

	"github.com/shopspring/decimal"
)

// Report kinds the sandbox generates.
const (
	KindSummary = "usage_summary"
	KindDaily   = "usage_daily"
)

// FormatCSV2 is the only stored format the sandbox produces.
const FormatCSV2 = "csv_v2_0"

// QuantityColumn is the csv_v2_0 column a collector must read as the
// record's quantity, for both usage_summary and usage_daily. Expected sums it.
const QuantityColumn = "usage.delta.total"

// dataEpoch is the first day with usage growth: before it every series
// stays at its base value (absolute usage constant, deltas zero).
var dataEpoch = time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)

// Query is what decides the rows of a report: the same Query always gives
// the same rows, the same file bytes and the same Expected totals.
type Query struct {
	TenantID      string    `json:"tenant_id"`
	Level         string    `json:"level"`
	Kind          string    `json:"kind"`
	Start         time.Time `json:"start"` // first day (UTC date; the time of day is ignored)
	End           time.Time `json:"end"`   // last day, inclusive
	HideZeroUsage bool      `json:"hide_zero_usage"`
	ShowSKUs      bool      `json:"show_skus"` // changes the columns only, never the rows
}

func (q Query) norm() Query {
	q.Start = day(q.Start)
	q.End = day(q.End)
	return q
}

// Usage is one production/trial/total triple of a csv_v2_0 row.
type Usage struct {
	Production decimal.Decimal `json:"production"`
	Trial      decimal.Decimal `json:"trial"`
	Total      decimal.Decimal `json:"total"`
}

func (u Usage) zero() bool {
	return u.Production.IsZero() && u.Trial.IsZero() && u.Total.IsZero()
}

// Row is one csv_v2_0 data row, before any malformation.
type Row struct {
	Date             string `json:"date,omitempty"` // YYYY-MM-DD for usage_daily, "" for usage_summary
	TenantID         string `json:"tenant_id"`
	TenantName       string `json:"tenant_name"`
	TenantKind       string `json:"tenant_kind"`
	ParentID         string `json:"parent_id"`
	ApplicationID    string `json:"application_id"`
	Name             string `json:"name"`
	Edition          string `json:"edition"`
	MeasurementUnit  string `json:"measurement_unit"`
	SKU              string `json:"sku"`
	InfraBackendType string `json:"infra_backend_type"`
	InfraID          string `json:"infra_id"`
	InfraOwnerID     string `json:"infra_owner_id"`
	Absolute         Usage  `json:"absolute"`
	Delta            Usage  `json:"delta"`
	Effective        Usage  `json:"effective"`
}

// Quantity is the value of QuantityColumn.
//
// For the Disaster Recovery compute points item ("compute_points") that is
// the file's value in seconds divided by 3600 and rounded to 2 places,
// half away from zero: the docs say to do so "for the report types other
// than csv or html", which includes csv_v2_0 [DOC: seed 002/003, "Creating
// a billing report"; the rounding direction is INFER].
func (r Row) Quantity() decimal.Decimal {
	if r.Name == ComputePointsItem {
		return r.Delta.Total.Div(decimal.NewFromInt(3600)).Round(2)
	}
	return r.Delta.Total
}

// ComputePointsItem is the offering item of Disaster Recovery compute
// points, whose csv_v2_0 values are seconds.
const ComputePointsItem = "compute_points"

// Total is a record count and a quantity sum.
type Total struct {
	Records  int             `json:"records"`
	Quantity decimal.Decimal `json:"quantity"`
}

func (t *Total) add(q decimal.Decimal) {
	t.Records++
	t.Quantity = t.Quantity.Add(q)
}

// Malformed is a row the sandbox deliberately broke (Config.MalformedRows).
type Malformed struct {
	Line     int    `json:"line"` // CSV line number; the header is line 1
	Reason   string `json:"reason"`
	TenantID string `json:"tenant_id"` // of the row before it was broken
	Name     string `json:"name"`
	Date     string `json:"date,omitempty"`
}

// Totals is what a correct collector ends up with for one report: every
// well-formed row (zero-quantity rows included), none of the malformed ones.
type Totals struct {
	Records   int              `json:"records"`
	Quantity  decimal.Decimal  `json:"quantity"`   // sum of QuantityColumn
	PerDay    map[string]Total `json:"per_day"`    // by row date; usage_summary rows count under the period start
	PerTenant map[string]Total `json:"per_tenant"` // by tenant.id
	PerItem   map[string]Total `json:"per_item"`   // by name (offering item)
	Malformed []Malformed      `json:"malformed"`  // rows in the file a collector must reject
	// Aggregates counts sub-partner rows a collector must skip: with level
	// all_customers or accounts their customers' rows are in the file too.
	Aggregates int   `json:"aggregates,omitempty"`
	Rows       []Row `json:"rows,omitempty"`
}

// item is one offering item of the catalogue.
type item struct {
	name, edition, app, unit, sku, skuName, backend string
	scale                                           int32 // fraction digits
	baseMax, rateMax, div                           int64 // in units of 10^-scale; div slows growth
}

var (
	appBackup = uuidFrom(hashStr("app:backup"), hashStr("app:backup/2"))
	appDR     = uuidFrom(hashStr("app:disaster-recovery"), hashStr("app:disaster-recovery/2"))
	appM365   = uuidFrom(hashStr("app:m365"), hashStr("app:m365/2"))
	appNotary = uuidFrom(hashStr("app:notary"), hashStr("app:notary/2"))
	catalogue = []item{
		{name: "storage", edition: "per_gigabyte", app: appBackup, unit: "GiB", sku: "SN2AMSENS", skuName: "Cloud storage (per GB)", backend: "acronis", scale: 6, baseMax: 800_000000, rateMax: 3_000000, div: 1},
		{name: "workstations", edition: "per_workload", app: appBackup, unit: "quantity", sku: "SN2AHBENS", skuName: "Workstation", scale: 0, baseMax: 40, rateMax: 3, div: 30},
		{name: "servers", edition: "per_workload", app: appBackup, unit: "quantity", sku: "SN2AEBENS", skuName: "Server", scale: 0, baseMax: 12, rateMax: 2, div: 45},
		{name: "vms", edition: "per_workload", app: appBackup, unit: "quantity", sku: "SN2AGBENS", skuName: "Virtual machine", scale: 0, baseMax: 25, rateMax: 3, div: 40},
		{name: "mobiles", edition: "standard", app: appBackup, unit: "quantity", sku: "SN2AMBENS", skuName: "Mobile device", scale: 0, baseMax: 15, rateMax: 2, div: 60},
		{name: "m365_mailboxes", edition: "per_workload", app: appM365, unit: "quantity", sku: "SN2AXBENS", skuName: "Microsoft 365 mailbox", scale: 0, baseMax: 120, rateMax: 5, div: 20},
		{name: "local_storage", edition: "per_gigabyte", app: appBackup, unit: "GiB", sku: "SN2ALSENS", skuName: "Local backup (per GB)", scale: 6, baseMax: 200_000000, rateMax: 1_500000, div: 1},
		{name: "dr_storage", edition: "per_gigabyte", app: appDR, unit: "GiB", sku: "SN2DRSENS", skuName: "Disaster recovery storage", backend: "azure", scale: 6, baseMax: 100_000000, rateMax: 2_000000, div: 1},
		{name: "compute_points", edition: "per_gigabyte", app: appDR, unit: "seconds", sku: "SN2DRCENS", skuName: "Compute points", scale: 0, baseMax: 36_000, rateMax: 28_800, div: 1},
		{name: "notary_storage", edition: "per_gigabyte", app: appNotary, unit: "GiB", sku: "SN2NTSENS", skuName: "Notary storage", backend: "google", scale: 6, baseMax: 5_000000, rateMax: 200000, div: 1},
	}
	tenantNames = []string{"Northwind Traders", "Smith, Jones & Co", `Contoso "Backup" Ltd`, "Fabrikam GmbH", "Tailspin Toys", "Woodgrove Bank", "Adatum Corp", "Litware Inc"}
)

// series is a non-decreasing usage counter: base before dataEpoch, then
// base + (rate*n + jitter(n)) / div, n = days since dataEpoch.
type series struct {
	base, rate, div int64
	salt            uint64
}

func (s series) at(n int64) int64 {
	if n <= 0 || s.rate == 0 {
		return s.base
	}
	jitter := int64(mix(s.salt^uint64(n)) % uint64(s.rate))
	return s.base + (s.rate*n+jitter)/s.div
}

// profile is the usage of one (tenant, item) pair.
type profile struct {
	prod, trial series
	infraID     string
}

func (s *Server) profile(tenant string, idx int) profile {
	it := catalogue[idx]
	h := mix(uint64(s.cfg.Seed) ^ hashStr(tenant) ^ mix(uint64(idx)+1))
	var p profile
	switch kind := h % 10; {
	case kind < 2: // never used: every usage column is zero
	case kind == 2: // constant: absolute usage, no delta
		p.prod = series{base: 1 + int64(mix(h^1)%uint64(it.baseMax)), div: it.div}
	default: // growing
		p.prod = series{
			base: int64(mix(h^1) % uint64(it.baseMax)),
			rate: 1 + int64(mix(h^2)%uint64(it.rateMax)),
			div:  it.div,
			salt: mix(h ^ 3),
		}
		if mix(h^4)%5 == 0 { // some trial usage on top
			p.trial = series{
				base: int64(mix(h^5) % uint64(it.baseMax/4+1)),
				rate: 1 + int64(mix(h^6)%uint64(it.rateMax/3+1)),
				div:  it.div,
				salt: mix(h ^ 7),
			}
		}
	}
	if it.backend != "" {
		p.infraID = uuidFrom(mix(h^8), mix(h^9))
	}
	return p
}

type tenant struct{ id, name, kind, parent string }

// tenantInfo describes a tenant of the sandbox tree; ok is false for a
// tenant the sandbox does not know.
func (s *Server) tenantInfo(id string) (tenant, bool) {
	if id == s.cfg.RootTenantID {
		return tenant{id: id, name: "Sandbox Partner", kind: "partner"}, true
	}
	for i, t := range s.cfg.Tenants {
		if t == id {
			name := tenantNames[i%len(tenantNames)]
			if i >= len(tenantNames) {
				name = fmt.Sprintf("%s %d", name, i/len(tenantNames)+1)
			}
			return tenant{id: id, name: name, kind: "customer", parent: s.cfg.RootTenantID}, true
		}
	}
	for _, sp := range s.subPartners() {
		if sp == id {
			return tenant{id: id, name: "Sub-partner " + id[:8], kind: "partner", parent: s.cfg.RootTenantID}, true
		}
		for _, c := range s.cfg.SubPartners[sp] {
			if c == id {
				return tenant{id: id, name: "Customer " + id[:8] + " of " + sp[:8], kind: "customer", parent: sp}, true
			}
		}
	}
	return tenant{}, false
}

// subPartners lists Config.SubPartners' ids, sorted.
func (s *Server) subPartners() []string {
	out := make([]string, 0, len(s.cfg.SubPartners))
	for id := range s.cfg.SubPartners {
		out = append(out, id)
	}
	slices.Sort(out)
	return out
}

// coversDescendants reports whether a report of level lists the
// customers of sub-partners beside the sub-partners' own (aggregate)
// rows, so that a partner row counts usage listed again below it.
func coversDescendants(level string) bool { return level == "all_customers" || level == "accounts" }

// scope lists the tenants whose rows a report for (tenantID, level) carries.
func (s *Server) scope(tenantID, level string) ([]tenant, bool) {
	t, ok := s.tenantInfo(tenantID)
	if !ok {
		return nil, false
	}
	if level == "itself" {
		return []tenant{t}, true
	}
	if _, sub := s.cfg.SubPartners[tenantID]; sub {
		var out []tenant
		for _, id := range s.cfg.SubPartners[tenantID] {
			c, _ := s.tenantInfo(id)
			out = append(out, c)
		}
		return out, true
	}
	if tenantID != s.cfg.RootTenantID {
		return []tenant{t}, true
	}
	var out []tenant
	if level != "all_partners" {
		for _, id := range s.cfg.Tenants {
			c, _ := s.tenantInfo(id)
			out = append(out, c)
		}
	}
	for _, sp := range s.subPartners() {
		p, _ := s.tenantInfo(sp)
		out = append(out, p)
		if coversDescendants(level) {
			for _, id := range s.cfg.SubPartners[sp] {
				c, _ := s.tenantInfo(id)
				out = append(out, c)
			}
		}
	}
	return out, true
}

func dayNum(t time.Time) int64 { return (day(t).Unix() - dataEpoch.Unix()) / 86400 }

func day(t time.Time) time.Time {
	t = t.UTC()
	return time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
}

func units(v int64, scale int32) decimal.Decimal { return decimal.New(v, -scale) }

func (s *Server) row(t tenant, idx int, p profile, date string, from, to int64) Row {
	it := catalogue[idx]
	pa, ta := p.prod.at(to), p.trial.at(to)
	pd, td := pa-p.prod.at(from-1), ta-p.trial.at(from-1)
	r := Row{
		Date:             date,
		TenantID:         t.id,
		TenantName:       t.name,
		TenantKind:       t.kind,
		ParentID:         t.parent,
		ApplicationID:    it.app,
		Name:             it.name,
		Edition:          it.edition,
		MeasurementUnit:  it.unit,
		SKU:              it.sku,
		InfraBackendType: it.backend,
		InfraID:          p.infraID,
		Absolute:         Usage{units(pa, it.scale), units(ta, it.scale), units(pa+ta, it.scale)},
		Delta:            Usage{units(pd, it.scale), units(td, it.scale), units(pd+td, it.scale)},
		Effective:        Usage{units(pa, it.scale), units(0, it.scale), units(pa, it.scale)},
	}
	if p.infraID != "" {
		r.InfraOwnerID = s.cfg.RootTenantID
	}
	return r
}

// rows generates the rows of a report, in file order: by tenant (scope
// order), offering item (catalogue order), then day.
func (s *Server) rows(q Query) ([]Row, error) {
	q = q.norm()
	if q.End.Before(q.Start) {
		return nil, fmt.Errorf("period end %s is before start %s", q.End.Format(time.DateOnly), q.Start.Format(time.DateOnly))
	}
	if q.Kind != KindSummary && q.Kind != KindDaily {
		return nil, fmt.Errorf("kind %q is not supported by the sandbox", q.Kind)
	}
	ts, ok := s.scope(q.TenantID, q.Level)
	if !ok {
		return nil, fmt.Errorf("unknown tenant %q", q.TenantID)
	}
	first, last := dayNum(q.Start), dayNum(q.End)
	var out []Row
	for _, t := range ts {
		for idx := range catalogue {
			if q.Kind == KindSummary {
				out = appendRow(out, s.tenantRow(t, idx, "", first, last), q.HideZeroUsage)
				continue
			}
			for d := q.Start; !d.After(q.End); d = d.AddDate(0, 0, 1) {
				n := dayNum(d)
				out = appendRow(out, s.tenantRow(t, idx, d.Format(time.DateOnly), n, n), q.HideZeroUsage)
			}
		}
	}
	return out, nil
}

// tenantRow is t's row for an item: its own usage, or for a sub-partner
// the sum of its customers' rows.
func (s *Server) tenantRow(t tenant, idx int, date string, from, to int64) Row {
	kids, sub := s.cfg.SubPartners[t.id]
	if !sub {
		return s.row(t, idx, s.profile(t.id, idx), date, from, to)
	}
	r := s.row(t, idx, profile{}, date, from, to)
	for _, id := range kids {
		c, _ := s.tenantInfo(id)
		k := s.row(c, idx, s.profile(id, idx), date, from, to)
		r.Absolute, r.Delta, r.Effective = r.Absolute.plus(k.Absolute), r.Delta.plus(k.Delta), r.Effective.plus(k.Effective)
	}
	r.InfraID, r.InfraOwnerID = "", ""
	return r
}

// plus adds two usage triples.
func (u Usage) plus(o Usage) Usage {
	return Usage{u.Production.Add(o.Production), u.Trial.Add(o.Trial), u.Total.Add(o.Total)}
}

func appendRow(rows []Row, r Row, hideZero bool) []Row {
	if hideZero && r.Absolute.zero() && r.Delta.zero() && r.Effective.zero() {
		return rows
	}
	return append(rows, r)
}

// Expected returns what a correct collector must end up with after
// collecting the csv_v2_0 file of a report created with q. It is a pure
// function of the configuration and q. An invalid q gives empty Totals.
func (s *Server) Expected(q Query) Totals {
	tot := Totals{PerDay: map[string]Total{}, PerTenant: map[string]Total{}, PerItem: map[string]Total{}}
	rows, err := s.rows(q)
	if err != nil {
		return tot
	}
	bad := malformedAt(len(rows), s.cfg.MalformedRows)
	periodStart := day(q.Start).Format(time.DateOnly)
	for i, r := range rows {
		if r.TenantKind == "partner" && coversDescendants(q.Level) && r.TenantID != q.TenantID {
			tot.Aggregates++ // the partner's customers' rows carry this usage
			continue
		}
		if reason, ok := bad[i]; ok {
			tot.Malformed = append(tot.Malformed, Malformed{Line: i + 2, Reason: reason, TenantID: r.TenantID, Name: r.Name, Date: r.Date})
			continue
		}
		tot.Records++
		tot.Quantity = tot.Quantity.Add(r.Quantity())
		key := r.Date
		if key == "" {
			key = periodStart
		}
		addTo(tot.PerDay, key, r.Quantity())
		addTo(tot.PerTenant, r.TenantID, r.Quantity())
		addTo(tot.PerItem, r.Name, r.Quantity())
		tot.Rows = append(tot.Rows, r)
	}
	return tot
}

func addTo(m map[string]Total, k string, q decimal.Decimal) {
	t := m[k]
	t.add(q)
	m[k] = t
}

// Hashing: FNV-64a for strings, SplitMix64 finalizer for mixing.

func hashStr(s string) uint64 {
	h := fnv.New64a()
	_, _ = h.Write([]byte(s))
	return h.Sum64()
}

func mix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9
	x = (x ^ (x >> 27)) * 0x94d049bb133111eb
	return x ^ (x >> 31)
}

// uuidFrom formats 128 bits as a version-4-shaped UUID.
func uuidFrom(a, b uint64) string {
	return fmt.Sprintf("%08x-%04x-4%03x-%04x-%012x",
		uint32(a>>32), uint16(a>>16), uint16(a)&0x0fff, (uint16(b>>48)&0x3fff)|0x8000, b&0xffffffffffff)
}
