package main

import (
	"context"
	"fmt"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/usagefleet/usagefleet/internal/config"
	sbcz "github.com/usagefleet/usagefleet/internal/sandbox/cloudzero"
	"github.com/usagefleet/usagefleet/messages"
	"github.com/usagefleet/usagefleet/workers"
	"github.com/usagefleet/usagefleet/workers/cloudzero"
)

// picky is an append destination of the test that refuses every record
// whose SkuId starts with "bad-", each SkuId for a reason of its own.
type picky struct{}

func (picky) Name() string                   { return "picky" }
func (picky) Semantics() workers.Semantics   { return workers.Append }
func (picky) Units(time.Time) []workers.Unit { return nil }
func (picky) LeaseKey(workers.Unit) string   { return "" }
func (picky) Deliver(ctx context.Context, j workers.Job) error {
	return j.Records(ctx, workers.Unit{}, func(ref workers.RecordRef, r *messages.UsageRecord) error {
		if strings.HasPrefix(r.SkuId, "bad-") {
			j.Reject(ref, r, "SkuId "+r.SkuId+" is unknown here")
		}
		return nil
	})
}

func runPool(t *testing.T, url string, dest workers.Destination) {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	pool, err := workers.NewPool(nc, dest, workers.Options{Feeds: []string{"f"}, Flush: workers.FlushPolicy{MaxDelay: 300 * time.Millisecond, Quiet: 100 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); pool.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
}

// TestPublishWaitRealWorkers: a file in USD and EUR, with a tag key
// CloudZero cannot take and 48 SkuIds another destination refuses, twice
// each, goes through real worker pools. --wait reports the exact cost per
// currency, the repaired tag as a warning, every one of the 48 reasons with
// its count, and the records dead-lettered.
func TestPublishWaitRealWorkers(t *testing.T) {
	n := startNATS(t)
	const conn, key = "1234abcd-1234-abcd-1234-abcd1234efgh", "AbCd1234EfGh5678AbCd1234EfGh5678AbCd12"
	sb := sbcz.New(sbcz.Config{Connections: map[string]string{conn: key}})
	srv := httptest.NewServer(sb.Handler())
	t.Cleanup(srv.Close)
	cz, err := cloudzero.New("cz", cloudzero.Settings{BaseURL: srv.URL, ConnectionID: conn, APIKey: config.NewSecret(key), HTTPTimeout: config.Duration(5 * time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	runPool(t, n.url, cz)
	runPool(t, n.url, picky{})

	var b strings.Builder
	b.WriteString("ChargePeriodStart,BillingAccountId,SkuId,ConsumedQuantity,ConsumedUnit,BilledCost,BillingCurrency,ResourceId,Tags\n")
	for range 3 {
		b.WriteString("2024-05-01T10:00:00Z,acct,sku,1,GB,1.10,USD,,\n")
	}
	b.WriteString(`2024-05-01T10:10:00Z,acct,sku,1,GB,1.10,USD,i-1,"{""Cost department"":""eng""}"` + "\n")
	for range 2 {
		b.WriteString("2024-05-01T10:20:00Z,acct,sku,1,GB,2.05,EUR,,\n")
	}
	for i := range 96 {
		fmt.Fprintf(&b, "2024-05-01T11:%02d:00Z,acct,bad-%02d,1,GB,0.01,USD,,\n", i%60, i%48)
	}
	path := write(t, t.TempDir(), "two.csv", b.String())
	code, stdout, stderr := cli(t, "publish", "--wait", "--timeout", "45s", "--source", "svc", "--feed", "f", "--dest", "cz,picky", "--nats", n.url, path)
	if code != exitFail { // picky dead-lettered records
		t.Errorf("exit %d, want %d; stderr:\n%s", code, exitFail, stderr)
	}
	squeezed := spaces.ReplaceAllString(stdout, " ")
	for _, row := range []string{
		`cz \d+ \d+ 0 0 0 102 0 1 4\.10 EUR \+ 5\.36 USD`,
		`picky \d+ \d+ 1 0 0 6 96 0 4\.10 EUR \+ 4\.40 USD`,
	} {
		if !regexp.MustCompile(`(?m)^` + row + `$`).MatchString(squeezed) {
			t.Errorf("summary lacks %s:\n%s", row, stdout)
		}
	}
	for i := range 48 {
		line := fmt.Sprintf("picky: 2 records: SkuId bad-%02d is unknown here\n", i)
		if !strings.Contains(stdout, line) {
			t.Errorf("summary lacks %q:\n%s", line, stdout)
		}
	}
	if got := strings.Count(stdout, "picky: "); got != 48 {
		t.Errorf("%d reason lines for picky, want 48:\n%s", got, stdout)
	}
	for _, s := range []string{"picky: 96 records dead-lettered (1 part with rejected records, 0 parts undecodable)", "cz: warning: 1 record delivered with labels repaired or dropped"} {
		if !strings.Contains(stderr, s) {
			t.Errorf("stderr lacks %q:\n%s", s, stderr)
		}
	}
	// CloudZero holds the record under the repaired key.
	found := false
	for _, row := range sb.Rows(conn, time.Date(2024, 5, 1, 10, 0, 0, 0, time.UTC)) {
		if row["resource/tag:Cost_department"] == "eng" {
			found = true
		}
	}
	if !found {
		t.Error("CloudZero lacks the row tagged Cost_department")
	}
}
