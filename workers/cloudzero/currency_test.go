package cloudzero

import (
	"strings"
	"testing"
	"time"

	"github.com/usagefleet/usagefleet/internal/config"
	sandbox "github.com/usagefleet/usagefleet/internal/sandbox/cloudzero"
)

// CBF has no currency column: a connection fed USD and JPY would add them.
// With settings.currency the record in another currency is refused alone,
// with the reason, and the hour still holds every USD cent.
func TestCurrencyOfTheConnection(t *testing.T) {
	s, url := emulator(t, sandbox.Config{})
	d, err := New("cz", Settings{BaseURL: url, ConnectionID: testConn, APIKey: config.NewSecret(testKey),
		Mode: ModeReplaceHourly, HTTPTimeout: config.Duration(5 * time.Second), Currency: "USD"})
	if err != nil {
		t.Fatal(err)
	}
	h := hourAt(14, 10)
	recs := hourRecords(h, 4, 0, "2")
	recs[2].BillingCurrency = "JPY"
	j := newFakeJob(hourUnits(h), recs)
	j.Encode = d.EncodeRow // as the pool encodes: with the destination's own encoder
	if err := deliver(t, d, j); err != nil {
		t.Fatalf("Deliver: %v", err)
	}
	checkDone(t, j)
	if len(j.Rejects) != 1 || j.Rejects[0].Ref.Index != 2 || !strings.Contains(j.Rejects[0].Reason, "billed in JPY") {
		t.Fatalf("rejects %+v: want record 2 alone, for its currency", j.Rejects)
	}
	checkTotals(t, s, expectTotals(append(recs[:2:2], recs[3])))

	if _, err := New("cz", Settings{BaseURL: url, ConnectionID: testConn, APIKey: config.NewSecret(testKey), Currency: "US$"}); err == nil || !strings.Contains(err.Error(), "currency") {
		t.Fatalf("currency US$: err = %v", err)
	}
}
