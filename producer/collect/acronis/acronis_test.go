package acronis

import (
	"net/http"
	"strings"
	"testing"

	"github.com/usagefleet/usagefleet/internal/config"
)

func TestSettingsDefaults(t *testing.T) {
	s := Settings{BaseURL: "https://eu2-cloud.acronis.com/api/2/", ClientID: "id", ClientSecret: config.NewSecret("x"), TenantID: "t"}
	if err := s.Validate("s"); err != nil {
		t.Fatal(err)
	}
	if s.BaseURL != "https://eu2-cloud.acronis.com" || s.Level != "all_customers" || s.Kind != KindSummary || !*s.ShowSKUs ||
		s.QuantityColumn != DefaultQuantityColumn || s.MaxReportDays != 31 {
		t.Fatalf("%+v", s)
	}
	for _, c := range []struct {
		edit func(*Settings)
		want string
	}{
		{func(s *Settings) { s.BaseURL = "https://user:pw@host" }, "s.base_url"},
		{func(s *Settings) { s.ClientSecret = config.Secret{} }, "s.client_secret: required"},
		{func(s *Settings) { s.QuantityColumn = "usage.delta" }, "s.quantity_column"},
		{func(s *Settings) { s.Level = "everyone" }, "s.level"},
	} {
		s := Settings{BaseURL: "https://h", ClientID: "id", ClientSecret: config.NewSecret("x"), TenantID: "t"}
		c.edit(&s)
		if err := s.Validate("s"); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("err = %v; want %q", err, c.want)
		}
	}
}

func TestErrorMessageAndNotReady(t *testing.T) {
	body := []byte(`{"error":{"code":"UsageHistoryNotReady","domain":"PlatformAccountServer","message":"Usage history is not ready but should be available already (after 6 am)","details":{"info":null},"context":{},"data":[]}}`)
	m := errorMessage(body)
	if !notReady(http.StatusInternalServerError, m) || !notReady(http.StatusBadRequest, "Usage history is not ready and shouldn't be ready yet (from 1 to 6 am)") {
		t.Fatalf("not ready not recognised: %q", m)
	}
	if notReady(http.StatusBadRequest, "parameters.period: bad") || notReady(http.StatusForbidden, m) {
		t.Fatal("another answer taken for not ready")
	}
	if got := errorMessage([]byte(`{"error":{"code":"X","message":"bad","details":{"info":"parameters.kind"}}}`)); got != "bad (parameters.kind)" {
		t.Fatal(got)
	}
	if errorMessage([]byte("<html>")) != "" {
		t.Fatal("html taken for a message")
	}
}
