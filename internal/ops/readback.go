package ops

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/shopspring/decimal"

	"github.com/usagefleet/usagefleet/internal/config"
	"github.com/usagefleet/usagefleet/workers/cloudzero"
)

// readBack reads what the destination holds per UTC hour over [from, to),
// where its API can be read: CloudZero's GET billing_drops/{month}
// ({"billing_drop": [CBF rows]}, /work/shared/apis/README.md; seed 001:
// "you can retrieve existing billing data for a given month by sending a
// GET request ... passing the desired month as a path parameter"). Other
// types answer nil and say why.
func (env *Env) readBack(ctx context.Context, d *Dest, from, to time.Time) (map[time.Time]*Totals, string, error) {
	if d.Type != cloudzero.Type {
		return nil, "not possible: the " + d.Type + " API has no read endpoint", nil
	}
	var s cloudzero.Settings
	key := "destinations(" + d.Name + ").settings"
	if err := config.Decode(&d.Config.Settings, &s, key); err != nil {
		return nil, "", err
	}
	if err := s.APIKey.Resolve(key + ".api_key"); err != nil {
		return nil, "", err
	}
	base := strings.TrimRight(orDefault(s.BaseURL, cloudzero.DefaultBaseURL), "/")
	endpoint := base + "/v2/connections/billing/anycost/" + s.ConnectionID + "/billing_drops/"
	out := map[time.Time]*Totals{}
	client := &http.Client{Timeout: 60 * time.Second}
	for m := time.Date(from.Year(), from.Month(), 1, 0, 0, 0, 0, time.UTC); m.Before(to); m = m.AddDate(0, 1, 0) {
		month := m.Format("2006-01")
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, endpoint+month, nil)
		if err != nil {
			return nil, "", err
		}
		req.Header.Set("Authorization", s.APIKey.Value())
		resp, err := client.Do(req)
		if err != nil {
			return nil, "", fmt.Errorf("cloudzero %s: GET billing_drops/%s: %w", d.Name, month, err)
		}
		body, err := io.ReadAll(io.LimitReader(resp.Body, 512<<20))
		resp.Body.Close()
		if err != nil {
			return nil, "", fmt.Errorf("cloudzero %s: GET billing_drops/%s: %w", d.Name, month, err)
		}
		switch {
		case resp.StatusCode == http.StatusNotFound:
			continue // no drop for the month: it holds nothing
		case resp.StatusCode != http.StatusOK:
			return nil, "", fmt.Errorf("cloudzero %s: GET billing_drops/%s: %s: %s", d.Name, month, resp.Status, apiMessage(body))
		}
		var doc struct {
			Rows []map[string]any `json:"billing_drop"`
		}
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.UseNumber() // costs stay exact decimals
		if err := dec.Decode(&doc); err != nil {
			return nil, "", fmt.Errorf("cloudzero %s: GET billing_drops/%s: answer: %w", d.Name, month, err)
		}
		for i, r := range doc.Rows {
			if id, _ := r["lineitem/id"].(string); id == cloudzero.PlaceholderLineItemID {
				continue // the row that empties an hour holds no usage
			}
			ts, _ := r["time/usage_start"].(string)
			t, err := time.Parse(time.RFC3339, ts)
			if err != nil {
				return nil, "", fmt.Errorf("cloudzero %s: billing_drops/%s row %d: time/usage_start %q: %v", d.Name, month, i, ts, err)
			}
			h := t.UTC().Truncate(time.Hour)
			if h.Before(from) || !h.Before(to) {
				continue
			}
			cs := fmt.Sprint(r["cost/cost"])
			c, err := decimal.NewFromString(cs)
			if err != nil {
				return nil, "", fmt.Errorf("cloudzero %s: billing_drops/%s row %d: cost/cost %q: %v", d.Name, month, i, cs, err)
			}
			tot := out[h]
			if tot == nil {
				tot = &Totals{}
				out[h] = tot
			}
			tot.Records++
			tot.Cost = tot.Cost.Add(c)
		}
	}
	return out, "GET " + base + "/v2/connections/billing/anycost/" + s.ConnectionID + "/billing_drops/{month}", nil
}

func apiMessage(b []byte) string {
	var m struct {
		Message string `json:"message"`
		Error   struct {
			Message string `json:"message"`
		} `json:"error"`
	}
	if json.Unmarshal(b, &m) == nil {
		if m.Message != "" {
			return m.Message
		}
		if m.Error.Message != "" {
			return m.Error.Message
		}
	}
	if len(b) > 200 {
		b = b[:200]
	}
	return string(b)
}
