package collect_test

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"github.com/usagefleet/usagefleet/internal/config"
	sbacronis "github.com/usagefleet/usagefleet/internal/sandbox/acronis"
	"github.com/usagefleet/usagefleet/internal/sandbox/fault"
	sbhere "github.com/usagefleet/usagefleet/internal/sandbox/here"
	"github.com/usagefleet/usagefleet/messages"
	"github.com/usagefleet/usagefleet/producer/collect"
	"github.com/usagefleet/usagefleet/producer/collect/acronis"
	"github.com/usagefleet/usagefleet/producer/collect/here"
)

// memSink keeps what a Fetch passes.
type memSink struct {
	recs []messages.UsageRecord
	rej  []string
}

func (s *memSink) Record(row collect.Row, r *messages.UsageRecord) { s.recs = append(s.recs, *r) }
func (s *memSink) Reject(row collect.Row, col, reason string)      { s.rej = append(s.rej, col+" "+reason) }

func (s *memSink) quantity() decimal.Decimal {
	var q messages.Sum
	for i := range s.recs {
		q.Add(s.recs[i].ConsumedQuantity)
	}
	return q.Big()
}

// fetchOne requests, polls and downloads one report straight through a
// platform.
func fetchOne(t *testing.T, p collect.Platform, r collect.Range) *memSink {
	t.Helper()
	ctx, cancel := bg()
	defer cancel()
	id, err := p.Request(ctx, r)
	if err != nil {
		t.Fatal(err)
	}
	var st collect.Status
	for st.State != collect.Ready {
		if st, err = p.Status(ctx, id); err != nil {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	s := &memSink{}
	if _, err := p.Fetch(ctx, id, st, r, s); err != nil {
		t.Fatal(err)
	}
	return s
}

func TestAcronisDownloadsGzippedOrNot(t *testing.T) {
	no := false
	for name, cfg := range map[string]sbacronis.Config{
		"gzip, sniffed":            {Seed: 12},
		"Content-Encoding: gzip":   {Seed: 12, ContentEncodingGzip: true},
		"plain":                    {Seed: 12, GzipDownloads: &no},
		"slow and a 503 in a turn": {Seed: 12, GenerationDelay: 100 * time.Millisecond},
	} {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t)
			sb, p := e.acronis(cfg, nil)
			if cfg.GenerationDelay > 0 {
				sb.Faults().Set(fault.Rule{Kind: fault.Status, Code: 503, RetryAfter: "0", Count: 1, Method: "POST", Path: "/api/2/reports"})
			}
			s := fetchOne(t, p, collect.Range{Start: winStart, End: winEnd})
			_, x := expectedAcronis(sb, acronisQuery(sb))
			if len(s.recs) != x.Records || !s.quantity().Equal(x.Quantity) || len(s.rej) != 0 {
				t.Fatalf("%d records, quantity %s, rejected %v; want %d, %s", len(s.recs), s.quantity(), s.rej, x.Records, x.Quantity)
			}
			if cfg.GenerationDelay > 0 && sb.Faults().Injected()[fault.Status] != 1 {
				t.Fatalf("the 503 was not injected: %v", sb.Faults().Injected())
			}
		})
	}
}

func TestAcronisMapping(t *testing.T) {
	e := newEnv(t)
	sb, p := e.acronis(sbacronis.Config{Seed: 13}, nil)
	s := fetchOne(t, p, collect.Range{Start: winStart, End: winEnd})
	_, x := expectedAcronis(sb, acronisQuery(sb))
	byKey := map[string]sbacronis.Row{}
	for _, r := range x.Rows {
		byKey[r.TenantID+"|"+r.Name+"|"+r.Date] = r
	}
	for _, rec := range s.recs {
		row, ok := byKey[rec.SubAccountId+"|"+rec.SkuMeter+"|"+rec.ChargePeriodStart.Format(time.DateOnly)]
		if !ok {
			t.Fatalf("no row for %+v", rec)
		}
		d := day(row.Date)
		unit, abs, trial := row.MeasurementUnit, row.Absolute.Total, row.Delta.Trial
		if row.Name == sbacronis.ComputePointsItem { // seconds in csv_v2_0: /3600, 2 places
			unit, abs, trial = acronis.ComputePointsUnit, abs.Div(decimal.NewFromInt(3600)).Round(2), trial.Div(decimal.NewFromInt(3600)).Round(2)
		}
		if !rec.ChargePeriodStart.Equal(d) || !rec.ChargePeriodEnd.Equal(d.AddDate(0, 0, 1)) ||
			rec.BillingAccountId != sb.RootTenantID() || rec.SubAccountName != row.TenantName ||
			rec.ProviderName != "Acronis" || rec.ServiceName != row.ApplicationID || rec.ChargeCategory != "Usage" ||
			rec.SkuId != row.SKU || rec.SkuId == "" || rec.ConsumedUnit != unit ||
			!rec.ConsumedQuantity.Big().Equal(row.Quantity()) || rec.ResourceId != row.InfraID ||
			rec.Ext["Edition"].Str != row.Edition || rec.Ext["ParentTenantId"].Str != row.ParentID ||
			!rec.Ext["AbsoluteTotal"].Dec.Big().Equal(abs) || !rec.Ext["Trial"].Dec.Big().Equal(trial) {
			t.Fatalf("record %+v\nfrom row %+v", rec, row)
		}
	}
}

func TestAcronisSummaryTakesOneReportPerPeriod(t *testing.T) {
	e := newEnv(t)
	sb, p := e.acronis(sbacronis.Config{Seed: 14}, func(s *acronis.Settings) { s.Kind = acronis.KindSummary })
	res := run(t, e.collector(p, "acr", collect.Options{}))
	st := sb.Stats()
	if st.ReportsCreated() != 3 || len(res.Batches) != 3 {
		t.Fatalf("%d reports, %d batches", st.ReportsCreated(), len(res.Batches))
	}
	records := 0
	for _, r := range st.Reports {
		if !r.Query.Start.Equal(r.Query.End) || r.Query.Kind != sbacronis.KindSummary {
			t.Fatalf("report %+v", r.Query)
		}
		records += sb.Expected(r.Query).Records
	}
	if res.Records != records {
		t.Fatalf("%d records; want %d", res.Records, records)
	}
}

func TestHEREPlainHeadersAndSummaries(t *testing.T) {
	t.Run("bare field names", func(t *testing.T) {
		e := newEnv(t)
		sb, p := e.here(sbhere.Config{Seed: 15, PlainHeaders: true}, nil)
		s := fetchOne(t, p, collect.Range{Start: winStart, End: winEnd})
		x := sb.ExpectedQuery(hereQuery(winStart, winEnd))
		if len(s.recs) != x.Records || !s.quantity().Equal(x.Quantity) {
			t.Fatalf("%d records %s; want %d %s", len(s.recs), s.quantity(), x.Records, x.Quantity)
		}
		r := s.recs[0]
		if r.BillingAccountId != realm || r.ProviderName != "HERE" || r.SkuId == "" || r.ConsumedUnit == "" ||
			r.ServiceName == "" || r.ResourceId == "" || r.Ext["UsageValue"].Kind != messages.ExtDecimal || r.Ext["BillingSubscriptionId"].Str == "" {
			t.Fatalf("record %+v", r)
		}
	})
	t.Run("summarized: one report per period", func(t *testing.T) {
		e := newEnv(t)
		sb, p := e.here(sbhere.Config{Seed: 15}, func(s *here.Settings) { s.DetailLevel = here.DetailSummarized })
		res := run(t, e.collector(p, "here", collect.Options{}))
		st := sb.Stats()
		var qs []sbhere.Query
		for _, r := range st.Reports {
			qs = append(qs, r.Query)
		}
		want := expectedHERE(sb, qs...)
		if st.ReportsCreated() != 3 || res.Records != want.Records || want.Records == 0 {
			t.Fatalf("%d reports, %d records; want 3 and %d", st.ReportsCreated(), res.Records, want.Records)
		}
	})
	t.Run("months", func(t *testing.T) {
		e := newEnv(t)
		e.startPool()
		sb, p := e.here(sbhere.Config{Seed: 15}, func(s *here.Settings) { s.DetailLevel = here.DetailMonth })
		res := run(t, e.collector(p, "here", collect.Options{Schedule: collect.Schedule{Period: collect.Month, Periods: 2}}))
		st := sb.Stats()
		if st.ReportsCreated() != 1 || len(res.Batches) != 2 {
			t.Fatalf("%d reports %d batches", st.ReportsCreated(), len(res.Batches))
		}
		q := st.Reports[0].Query
		if !q.Start.Equal(day("2024-07-01")) || q.End.After(e.clock.Now().Add(time.Hour)) {
			t.Fatalf("asked %s..%s", q.Start, q.End)
		}
		e.waitDelivered(res)
		e.waitTotals(expectedHERE(sb, q))
	})
}

// tokenSpy records the tokens an emulator hands out.
type tokenSpy struct {
	mu     sync.Mutex
	tokens []string
	h      http.Handler
}

var tokenRE = regexp.MustCompile(`"(?:access_token|accessToken|id_token)":"([^"]+)"`)

func (s *tokenSpy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rec := httptest.NewRecorder()
	s.h.ServeHTTP(rec, r)
	for _, m := range tokenRE.FindAllStringSubmatch(rec.Body.String(), -1) {
		s.mu.Lock()
		s.tokens = append(s.tokens, m[1])
		s.mu.Unlock()
	}
	for k, v := range rec.Header() {
		w.Header()[k] = v
	}
	w.WriteHeader(rec.Code)
	_, _ = w.Write(rec.Body.Bytes())
}

func TestNoSecretOrTokenInLogsOrErrors(t *testing.T) {
	var logs bytes.Buffer
	var mu sync.Mutex
	log := slog.New(slog.NewTextHandler(writerFunc(func(p []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		return logs.Write(p)
	}), &slog.HandlerOptions{Level: slog.LevelDebug}))
	e := newEnv(t)
	env := e.platformEnv()
	env.Log = log
	var errs []string

	asb := sbacronis.New(sbacronis.Config{Seed: 21, Now: e.clock.Now, GenerationDelay: 200 * time.Millisecond, MalformedRows: 2})
	aspy := &tokenSpy{h: asb.Handler()}
	asrv := httptest.NewServer(aspy)
	defer asrv.Close()
	as := acronis.Settings{BaseURL: asrv.URL, ClientID: "sandbox-client", ClientSecret: config.NewSecret("sandbox-secret"), TenantID: asb.RootTenantID(), Kind: acronis.KindDaily}
	if err := as.Validate("t"); err != nil {
		t.Fatal(err)
	}
	ap, _ := acronis.New(as, env)
	hsb := sbhere.New(sbhere.Config{Seed: 21, Now: e.clock.Now, GenerationDelay: 200 * time.Millisecond, MalformedRows: 2})
	hspy := &tokenSpy{h: hsb.Handler()}
	hsrv := httptest.NewServer(hspy)
	defer hsrv.Close()
	hs := here.Settings{BaseURL: hsrv.URL + "/v2", TokenURL: hsrv.URL + "/oauth2/token", AccessKeyID: "sandbox-access-key-id",
		AccessKeySecret: config.NewSecret("sandbox-access-key-secret"), Realm: realm}
	if err := hs.Validate("t"); err != nil {
		t.Fatal(err)
	}
	hp, _ := here.New(hs, env)

	for _, c := range []struct {
		p      collect.Platform
		expire func()
	}{{ap, asb.ExpireTokens}, {hp, hsb.ExpireTokens}} {
		col := e.collector(c.p, c.p.Type(), collect.Options{})
		o := col.Options()
		o.Log = log
		col, _ = collect.New(c.p, e.prod, e.kv, o)
		go func() { time.Sleep(100 * time.Millisecond); c.expire() }()
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		res, err := col.Run(ctx)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range res.Rejected {
			errs = append(errs, r.Error())
		}
	}
	// Errors: wrong credentials and a refused request.
	bad := as
	bad.ClientSecret = config.NewSecret("wrong-secret-value")
	bp, _ := acronis.New(bad, env)
	if _, err := bp.Request(context.Background(), collect.Range{Start: winStart, End: winEnd}); err == nil {
		t.Fatal("wrong secret accepted")
	} else {
		errs = append(errs, err.Error())
	}
	badh := hs
	badh.AccessKeySecret = config.NewSecret("wrong-here-secret")
	if err := badh.Validate("t"); err != nil {
		t.Fatal(err)
	}
	bh, _ := here.New(badh, env)
	if _, err := bh.Request(context.Background(), collect.Range{Start: winStart, End: winEnd}); err == nil || !strings.Contains(err.Error(), "401") {
		t.Fatalf("wrong secret: %v", err)
	} else {
		errs = append(errs, err.Error())
	}
	text := logs.String() + "\n" + strings.Join(errs, "\n")
	secrets := append(append([]string{"sandbox-secret", "sandbox-access-key-secret", "wrong-secret-value", "wrong-here-secret"}, aspy.tokens...), hspy.tokens...)
	if len(aspy.tokens) < 2 || len(hspy.tokens) < 2 {
		t.Fatalf("tokens seen: %d acronis, %d here", len(aspy.tokens), len(hspy.tokens))
	}
	for _, s := range secrets {
		if strings.Contains(text, s) {
			t.Fatalf("%q appears in the logs or errors:\n%s", s, text)
		}
	}
	if !strings.Contains(text, "fetching a new one") || !strings.Contains(text, "report row rejected") {
		t.Fatalf("the logs do not show the refresh and rejections:\n%s", text)
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

var _ io.Writer = writerFunc(nil)
