package acronis

import (
	"bytes"
	"encoding/csv"
	"fmt"
	"time"
)

// malformedAt picks which rows of an n-row file are broken: m rows spread
// evenly, a pure function of n and m.
func malformedAt(n, m int) map[int]string {
	if m > n {
		m = n
	}
	out := make(map[int]string, m)
	reasons := []string{
		QuantityColumn + " is not a number",
		"tenant.id is empty",
		"name is empty",
	}
	for k := 0; k < m; k++ {
		out[(2*k+1)*n/(2*m)] = reasons[k%len(reasons)]
	}
	return out
}

// columns returns the header of a report's file, shuffled deterministically
// per report so that a parser has to map columns by name.
func (s *Server) columns(q Query) []string {
	cols := []string{
		"application.id", "edition", "infra.backend_type", "infra.id", "infra.owner_id", "name",
		"tenant.id", "tenant.kind",
		"usage.absolute.production", "usage.absolute.total", "usage.absolute.trial",
		"usage.delta.production", "usage.delta.total", "usage.delta.trial",
		"usage.effective.production", "usage.effective.total", "usage.effective.trial",
	}
	if !s.cfg.DocumentedColumnsOnly {
		cols = append(cols, "tenant.name", "tenant.parent_id", "measurement_unit")
		if q.ShowSKUs {
			cols = append(cols, "sku", "sku.name")
		}
		if q.Kind == KindDaily {
			cols = append(cols, "date")
		}
	}
	h := mix(uint64(s.cfg.Seed) ^ hashStr(fmt.Sprintf("%s|%s|%s|%s|%s|%t|%t", q.TenantID, q.Level, q.Kind,
		q.Start.Format(time.DateOnly), q.End.Format(time.DateOnly), q.HideZeroUsage, q.ShowSKUs)))
	for i := len(cols) - 1; i > 0; i-- {
		h = mix(h + uint64(i))
		j := int(h % uint64(i+1))
		cols[i], cols[j] = cols[j], cols[i]
	}
	return cols
}

func (r Row) field(col string) string {
	switch col {
	case "application.id":
		return r.ApplicationID
	case "edition":
		return r.Edition
	case "infra.backend_type":
		return r.InfraBackendType
	case "infra.id":
		return r.InfraID
	case "infra.owner_id":
		return r.InfraOwnerID
	case "name":
		return r.Name
	case "tenant.id":
		return r.TenantID
	case "tenant.kind":
		return r.TenantKind
	case "tenant.name":
		return r.TenantName
	case "tenant.parent_id":
		return r.ParentID
	case "measurement_unit":
		return r.MeasurementUnit
	case "usage.absolute.production":
		return r.Absolute.Production.String()
	case "usage.absolute.total":
		return r.Absolute.Total.String()
	case "usage.absolute.trial":
		return r.Absolute.Trial.String()
	case "usage.delta.production":
		return r.Delta.Production.String()
	case "usage.delta.total":
		return r.Delta.Total.String()
	case "usage.delta.trial":
		return r.Delta.Trial.String()
	case "usage.effective.production":
		return r.Effective.Production.String()
	case "usage.effective.total":
		return r.Effective.Total.String()
	case "usage.effective.trial":
		return r.Effective.Trial.String()
	case "sku":
		return r.SKU
	case "sku.name":
		for _, it := range catalogue {
			if it.name == r.Name {
				return it.skuName
			}
		}
		return ""
	case "date":
		return r.Date
	}
	return ""
}

// File renders the csv_v2_0 file of a report created with q (uncompressed),
// with the malformed rows Config.MalformedRows asks for.
func (s *Server) File(q Query) ([]byte, []Malformed, error) {
	q = q.norm()
	rows, err := s.rows(q)
	if err != nil {
		return nil, nil, err
	}
	cols := s.columns(q)
	bad := malformedAt(len(rows), s.cfg.MalformedRows)
	var buf bytes.Buffer
	w := csv.NewWriter(&buf)
	if err := w.Write(cols); err != nil {
		return nil, nil, err
	}
	var malformed []Malformed
	rec := make([]string, len(cols))
	for i, r := range rows {
		for c, col := range cols {
			rec[c] = r.field(col)
		}
		if reason, ok := bad[i]; ok {
			malformed = append(malformed, Malformed{Line: i + 2, Reason: reason, TenantID: r.TenantID, Name: r.Name, Date: r.Date})
			breakRow(rec, cols, reason)
		}
		if err := w.Write(rec); err != nil {
			return nil, nil, err
		}
	}
	w.Flush()
	return buf.Bytes(), malformed, w.Error()
}

func breakRow(rec, cols []string, reason string) {
	target, value := QuantityColumn, "n/a"
	switch reason {
	case "tenant.id is empty":
		target, value = "tenant.id", ""
	case "name is empty":
		target, value = "name", ""
	}
	for c, col := range cols {
		if col == target {
			rec[c] = value
		}
	}
}
