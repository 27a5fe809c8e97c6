package collect_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/usagefleet/usagefleet/internal/config"
	"github.com/usagefleet/usagefleet/producer/collect"
)

// exampleConfig is the package doc's example.
const exampleConfig = `
nats:
  url: nats://127.0.0.1:4222
collectors:
  - name: acronis-eu
    type: acronis
    feed: msp
    schedule:
      interval: 1h
      period: day
      periods: 3
      lag: 0s
      catch_up: 31
    poll: {interval: 2s, max_interval: 30s, timeout: 1h}
    not_ready_wait: 30m
    reuse_reports_for: 24h
    http_timeout: 60s
    retry_for: 5m
    settings:
      base_url: https://eu2-cloud.acronis.com
      client_id: 7d5e1c9a-0000-4000-8000-000000000001
      client_secret: {env: ACRONIS_CLIENT_SECRET}
      tenant_id: 0c6a0a7e-0000-4000-8000-000000000002
      kind: usage_daily
  - name: here-partner
    type: here
    feed: maps
    schedule: {interval: 6h, periods: 5}
    settings:
      credentials: {file: CREDS}
      realm: org123456789
      sub_accounts: [org112135, org124566]
      detail_level: day
      group_by: [appId, billingTag]
`

const secretValue = "s3cr3t-never-printed"

func writeCreds(t *testing.T) string {
	p := filepath.Join(t.TempDir(), "credentials.properties")
	body := "# HERE credentials\nhere.user.id=HERE-1\nhere.client.id=abc\nhere.access.key.id=KEYID\nhere.access.key.secret=" + secretValue + "==\nhere.token.endpoint.url=https://account.api.here.com/oauth2/token\n"
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestExampleConfig(t *testing.T) {
	t.Setenv("ACRONIS_CLIENT_SECRET", secretValue)
	cfg, err := collect.ParseConfig([]byte(strings.Replace(exampleConfig, "CREDS", writeCreds(t), 1)))
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Collectors) != 2 {
		t.Fatalf("%d collectors", len(cfg.Collectors))
	}
	o := cfg.Collectors[0].Options()
	if o.Name != "acronis-eu" || o.Feed != "msp" || o.Schedule.Interval != time.Hour || o.Schedule.Periods != 3 ||
		o.Poll.Timeout != time.Hour || o.NotReadyWait != 30*time.Minute || o.ReuseReportsFor != 24*time.Hour {
		t.Fatalf("options %+v", o)
	}
	h := cfg.Collectors[1].Options()
	if h.Schedule.Interval != 6*time.Hour || h.Schedule.Periods != 5 || h.NotReadyWait != 30*time.Minute {
		t.Fatalf("here options %+v", h)
	}
}

func TestConfigErrorsNameTheKey(t *testing.T) {
	t.Setenv("ACRONIS_CLIENT_SECRET", secretValue)
	creds := writeCreds(t)
	base := strings.Replace(exampleConfig, "CREDS", creds, 1)
	cases := []struct {
		name, from, to, want string
	}{
		{"unknown schedule key", "      catch_up: 31", "      catch_up: 31\n      perods: 3", "collectors[0].schedule.perods (line 14): unknown key"},
		{"unknown settings key", "      kind: usage_daily", "      kind: usage_daily\n      tennant: x", "collectors[0](acronis-eu).settings.tennant (line 25): unknown key"},
		{"unknown top key", "collectors:", "colectors: []\ncollectors:", "colectors (line 4): unknown key"},
		{"missing secret", "{env: ACRONIS_CLIENT_SECRET}", "{env: NOT_SET_ANYWHERE_42}", "collectors[0](acronis-eu).settings.client_secret: environment variable NOT_SET_ANYWHERE_42 is not set"},
		{"bad type", "type: acronis", "type: acronix", `collectors[0](acronis-eu).type: "acronix" is not a collector type (types: acronis, here)`},
		{"bad kind", "kind: usage_daily", "kind: usage_current", `settings.kind: "usage_current": want usage_daily or usage_summary`},
		{"same name twice", "name: here-partner", "name: acronis-eu", "collectors[1](acronis-eu).name: \"acronis-eu\" is used twice"},
		{"bad feed", "feed: maps", "feed: map.s", `collectors[1](here-partner).feed: "map.s"`},
		{"month rows need month periods", "detail_level: day", "detail_level: month", "collectors[1](here-partner).schedule.period: the reports' rows are per month"},
		{"bad period", "period: day", "period: week", `collectors[0](acronis-eu).schedule.period: "week": want day or month`},
		{"bad group by", "group_by: [appId, billingTag]", "group_by: [appId, user]", `settings.group_by[1]: "user"`},
		{"credentials without keys", creds, "/nonexistent/credentials.properties", "settings.credentials: reading secret file"},
		{"bad duration", "interval: 1h", "interval: soon", `collectors[0].schedule.interval (line 9): "soon" is not a duration`},
		{"bad number", "periods: 3", "periods: three", "collectors[0].schedule.periods (line 11): cannot unmarshal"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if !strings.Contains(base, c.from) {
				t.Fatalf("%q is not in the example", c.from)
			}
			_, err := collect.ParseConfig([]byte(strings.Replace(base, c.from, c.to, 1)))
			var ce *config.Error
			if err == nil || !strings.Contains(err.Error(), c.want) || !errors.As(err, &ce) {
				t.Fatalf("err = %v\nwant %q", err, c.want)
			}
			if strings.Contains(err.Error(), secretValue) {
				t.Fatalf("the error shows the secret: %v", err)
			}
		})
	}
}
