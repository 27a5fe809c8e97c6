package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/shopspring/decimal"

	sbacronis "github.com/usagefleet/usagefleet/internal/sandbox/acronis"
	sbhere "github.com/usagefleet/usagefleet/internal/sandbox/here"
	"github.com/usagefleet/usagefleet/messages"
	"github.com/usagefleet/usagefleet/producer/collect"
)

// tokenRecorder passes requests to an emulator and remembers the access
// tokens it hands out, so a test can look for them in the output.
type tokenRecorder struct {
	h      http.Handler
	mu     sync.Mutex
	tokens []string
}

var accessTokenRE = regexp.MustCompile(`"(?:access_token|accessToken|id_token)":"([^"]+)"`)

func (s *tokenRecorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rec := httptest.NewRecorder()
	s.h.ServeHTTP(rec, r)
	for _, m := range accessTokenRE.FindAllStringSubmatch(rec.Body.String(), -1) {
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

func (s *tokenRecorder) seen() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.tokens...)
}

// runLine is the stdout line of one collector's run.
type runLine struct {
	collector       string
	day             time.Time // the one day collected (periods: 1)
	generation      int64
	records         int
	rejected        int
	deadSubject     string
	stored, already int
}

var runLineRE = regexp.MustCompile(`^(\S+): collected (\d{4}-\d\d-\d\d)\.\.(\d{4}-\d\d-\d\d), generation (\d+): 1 report\(s\), 1 period\(s\) published, (\d+) record\(s\), (\d+) row\(s\) rejected(?: \(dead letters on (\S+): (\d+) stored, (\d+) already there\))?$`)

// runLines parses the stdout of `collect --once` by collector.
func runLines(t *testing.T, stdout string) map[string]runLine {
	t.Helper()
	out := map[string]runLine{}
	for _, l := range strings.Split(strings.TrimSpace(stdout), "\n") {
		m := runLineRE.FindStringSubmatch(l)
		if m == nil {
			t.Fatalf("stdout line %q is not a complete run of one day", l)
		}
		if m[2] != m[3] {
			t.Fatalf("stdout line %q: want one day", l)
		}
		d, _ := time.Parse(time.DateOnly, m[2])
		gen, _ := strconv.ParseInt(m[4], 10, 64)
		r := runLine{collector: m[1], day: d, generation: gen, deadSubject: m[7]}
		r.records, _ = strconv.Atoi(m[5])
		r.rejected, _ = strconv.Atoi(m[6])
		r.stored, _ = strconv.Atoi(m[8])
		r.already, _ = strconv.Atoi(m[9])
		out[r.collector] = r
	}
	return out
}

// checkpoint reads a collector's checkpoint from the KV bucket.
func (n *testNATS) checkpoint(t *testing.T, name string) collect.Checkpoint {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	kv, err := n.js.KeyValue(ctx, messages.BucketCheckpoints)
	if err != nil {
		t.Fatal(err)
	}
	e, err := kv.Get(ctx, name)
	if err != nil {
		t.Fatalf("checkpoint %s: %v", name, err)
	}
	var ck collect.Checkpoint
	if err := json.Unmarshal(e.Value(), &ck); err != nil {
		t.Fatalf("checkpoint %s: %v: %s", name, err, e.Value())
	}
	return ck
}

// messagesOn reads every message stored in stream on subject filter subj.
func (n *testNATS) messagesOn(t *testing.T, stream, subj string) []jetstream.Msg {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := n.js.Stream(ctx, stream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx, jetstream.WithSubjectFilter(subj))
	if err != nil {
		t.Fatal(err)
	}
	want := 0
	for _, c := range info.State.Subjects {
		want += int(c)
	}
	var out []jetstream.Msg
	if want == 0 {
		return out
	}
	cons, err := st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{FilterSubjects: []string{subj}})
	if err != nil {
		t.Fatal(err)
	}
	for len(out) < want {
		m, err := cons.Next(jetstream.FetchMaxWait(5 * time.Second))
		if err != nil {
			t.Fatalf("reading %s on %s: %v (%d of %d)", stream, subj, err, len(out), want)
		}
		out = append(out, m)
	}
	return out
}

// published sums the records a collector's generation stored in USAGE.
func (n *testNATS) published(t *testing.T, feed, source string, gen int64) (int, decimal.Decimal) {
	t.Helper()
	records := 0
	var qty messages.Sum
	for _, m := range n.messagesOn(t, messages.StreamUsage, messages.FeedFilter(feed)) {
		p, err := messages.DecodePart(m.Headers(), m.Data())
		if err != nil {
			t.Fatal(err)
		}
		if p.Meta.Source != source || p.Meta.Generation != gen {
			continue
		}
		for i := range p.Records {
			records++
			qty.Add(p.Records[i].ConsumedQuantity)
		}
	}
	d, err := decimal.NewFromString(qty.Decimal().String())
	if err != nil {
		t.Fatal(err)
	}
	return records, d
}

// TestCollectOnce runs `usage-producer collect --config F --once` end to
// end against the Acronis and HERE emulators on loopback and an embedded
// nats-server: exit 0 when every row was delivered, 2 when rows were
// rejected (each one kept in DEAD, once however often the report is
// collected), 1 when a collector failed; the checkpoint in KV; exact
// records and quantities in USAGE; no secret or token in the output.
//
// The CLI has no clock setting, so the runs collect one real day: lag 72h
// makes it the day three days ago, which keeps every run clear of the
// Acronis emulator's "usage history not ready" hours (1 to 6 am UTC, for
// periods ending yesterday or later) and of "period in the future". What
// a run must publish is computed from the day it printed, not from the
// test's clock, so a run that starts before 00:00 UTC and one that starts
// after it are both checked exactly. The exactly-once check needs two runs
// of the same day: when midnight falls between them, the test runs once
// more (that run and the one before it collect the same day).
func TestCollectOnce(t *testing.T) {
	n := startNATS(t)
	const (
		acronisSecret = "acronis-once-secret-7f3a9c"
		hereSecret    = "here-once-secret-91bc44"
		wrongSecret   = "wrong-once-secret-5d20e1"
	)
	asb := sbacronis.New(sbacronis.Config{Seed: 31, ClientID: "once-client", ClientSecret: acronisSecret, MalformedRows: 2})
	aspy := &tokenRecorder{h: asb.Handler()}
	asrv := httptest.NewServer(aspy)
	defer asrv.Close()
	hsb := sbhere.New(sbhere.Config{Seed: 31, AccessKeyID: "once-key-id", AccessKeySecret: hereSecret})
	hspy := &tokenRecorder{h: hsb.Handler()}
	hsrv := httptest.NewServer(hspy)
	defer hsrv.Close()

	dir := t.TempDir()
	creds := write(t, dir, "credentials.properties", "here.access.key.id=once-key-id\nhere.access.key.secret="+hereSecret+"\n")
	t.Setenv("UF_ONCE_ACRONIS_SECRET", acronisSecret)
	t.Setenv("UF_ONCE_WRONG_SECRET", wrongSecret)
	const schedule = `
    schedule: {interval: 1h, period: day, periods: 1, lag: 72h}
    poll: {interval: 100ms, max_interval: 200ms, timeout: 30s}
    not_ready_wait: 5s
    retry_for: 2s`
	acronisCollector := func(name, secretEnv string) string {
		return fmt.Sprintf(`
  - name: %s
    type: acronis
    feed: msp%s
    settings:
      base_url: %s
      client_id: once-client
      client_secret: {env: %s}
      tenant_id: %s
      kind: usage_daily
`, name, schedule, asrv.URL, secretEnv, asb.RootTenantID())
	}
	hereCollector := fmt.Sprintf(`
  - name: here-once
    type: here
    feed: maps%s
    settings:
      credentials: {file: %s}
      token_url: %s/oauth2/token
      base_url: %s/v2
      realm: org1000000001
      sub_accounts: [org1000000101, org1000000102]
      detail_level: day
`, schedule, creds, hsrv.URL, hsrv.URL)
	header := fmt.Sprintf("nats: {url: %s}\ncollectors:", n.url)
	hereOnly := write(t, dir, "here.yaml", header+hereCollector)
	acronisOnly := write(t, dir, "acronis.yaml", header+acronisCollector("acronis-once", "UF_ONCE_ACRONIS_SECRET"))
	mixed := write(t, dir, "mixed.yaml", header+hereCollector+acronisCollector("acronis-bad", "UF_ONCE_WRONG_SECRET"))

	var output strings.Builder // everything the CLI printed, for the secret check
	collectOnce := func(config string, wantCode int) map[string]runLine {
		t.Helper()
		code, stdout, stderr := cli(t, "collect", "--config", config, "--once")
		output.WriteString(stdout + stderr)
		if code != wantCode {
			t.Fatalf("collect --once --config %s: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", config, code, wantCode, stdout, stderr)
		}
		t.Logf("%s: exit %d\n%s", config, code, stdout)
		return runLines(t, stdout)
	}
	checkHERE := func(r runLine) {
		t.Helper()
		q := sbhere.Query{Realm: "org1000000001", SubAccounts: []string{"org1000000101", "org1000000102"}, Start: r.day, End: r.day.AddDate(0, 0, 1), DetailLevel: sbhere.DetailDay}
		x := hsb.ExpectedQuery(q)
		recs, qty := n.published(t, "maps", "here-once", r.generation)
		if x.Records == 0 || r.records != x.Records || r.rejected != 0 || recs != x.Records || !qty.Equal(x.Quantity) {
			t.Fatalf("here-once %s: printed %d records, %d rejected; USAGE holds %d, quantity %s; the emulator says %d, %s",
				r.day.Format(time.DateOnly), r.records, r.rejected, recs, qty, x.Records, x.Quantity)
		}
		ck := n.checkpoint(t, "here-once")
		if ck.Run != nil || ck.LastWindow == nil || !ck.LastWindow.Start.Equal(r.day) || !ck.LastWindow.End.Equal(r.day.AddDate(0, 0, 1)) ||
			ck.Generation != r.generation || ck.Type != "here" || ck.Account != "org1000000001" || ck.PeriodUnit != collect.Day {
			t.Fatalf("here-once checkpoint after collecting %s (generation %d): %+v", r.day.Format(time.DateOnly), r.generation, ck)
		}
	}

	// 0: every row delivered.
	h := collectOnce(hereOnly, exitOK)["here-once"]
	checkHERE(h)

	// 2: rows rejected, each kept in DEAD once, however often the day is
	// collected; the good rows published exactly.
	deadSubj := messages.DeadSubject(collect.DeadDestination, "acronis-once")
	type dayWant struct {
		malformed []sbacronis.Malformed
		report    string // the report of the first run of the day: its dead letters name it
	}
	days := map[time.Time]*dayWant{}
	var last runLine
	for i := 0; i < 3; i++ {
		before := len(asb.Stats().Reports)
		out := collectOnce(acronisOnly, exitSkipped)
		a := out["acronis-once"]
		q := sbacronis.Query{TenantID: asb.RootTenantID(), Level: "all_customers", Kind: sbacronis.KindDaily, Start: a.day, End: a.day, ShowSKUs: true}
		x := asb.Expected(q)
		if len(x.Malformed) != 2 || x.Records == 0 {
			t.Fatalf("the emulator broke %d rows of %d on %s; want 2", len(x.Malformed), x.Records, a.day.Format(time.DateOnly))
		}
		repeat := days[a.day] != nil
		if !repeat {
			days[a.day] = &dayWant{malformed: x.Malformed, report: asb.Stats().Reports[before].ID}
		}
		stored := map[bool]int{false: 2, true: 0}[repeat]
		if a.rejected != 2 || a.deadSubject != deadSubj || a.stored != stored || a.already != 2-stored {
			t.Fatalf("run %d of %s: %d rejected, dead letters on %s: %d stored, %d already there; want 2, %s, %d, %d",
				i+1, a.day.Format(time.DateOnly), a.rejected, a.deadSubject, a.stored, a.already, deadSubj, stored, 2-stored)
		}
		recs, qty := n.published(t, "msp", "acronis-once", a.generation)
		if a.records != x.Records || recs != x.Records || !qty.Equal(x.Quantity) {
			t.Fatalf("run %d: printed %d records; USAGE holds %d, quantity %s; the emulator says %d, %s", i+1, a.records, recs, qty, x.Records, x.Quantity)
		}
		// Each rejected row is on stderr with its report, line and reason.
		rep := asb.Stats().Reports[before].ID
		for _, m := range x.Malformed {
			col, _, _ := strings.Cut(m.Reason, " ")
			if line := fmt.Sprintf("acronis-once: rejected report %s line %d: %s: ", rep, m.Line, col); !strings.Contains(output.String(), line) {
				t.Errorf("stderr has no line starting %q", line)
			}
		}
		last = a
		if repeat {
			break
		}
		if i == 1 {
			t.Logf("00:00 UTC fell between two runs (they collected different days): running once more")
		}
	}
	if len(days) == 3 {
		t.Fatal("three runs collected three different days")
	}

	// DEAD holds one dead letter per broken row of each day collected.
	dead := n.messagesOn(t, messages.StreamDead, deadSubj)
	wantDead := 0
	for _, d := range days {
		wantDead += len(d.malformed)
	}
	if len(dead) != wantDead {
		t.Fatalf("DEAD holds %d dead letters on %s; want %d", len(dead), deadSubj, wantDead)
	}
	type key struct {
		report string
		line   int
	}
	got := map[key]messages.DeadLetter{}
	for _, m := range dead {
		var dl messages.DeadLetter
		if err := json.Unmarshal(m.Data(), &dl); err != nil {
			t.Fatalf("dead letter %q: %v", m.Data(), err)
		}
		line, _ := strconv.Atoi(strings.Join(dl.Header[collect.DeadHdrLine], ""))
		got[key{strings.Join(dl.Header[collect.DeadHdrReport], ""), line}] = dl
	}
	for day, d := range days {
		file, _, err := asb.File(sbacronis.Query{TenantID: asb.RootTenantID(), Level: "all_customers", Kind: sbacronis.KindDaily, Start: day, End: day, ShowSKUs: true})
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(string(file), "\n")
		for _, m := range d.malformed {
			dl, ok := got[key{d.report, m.Line}]
			col, _, _ := strings.Cut(m.Reason, " ")
			prefix := fmt.Sprintf("report %s line %d: %s: ", d.report, m.Line, col)
			if !ok || dl.Destination != collect.DeadDestination || dl.Source != "acronis-once" || dl.Feed != "msp" ||
				!strings.HasPrefix(dl.Reason, prefix) || string(dl.Payload) != lines[m.Line-1] {
				t.Errorf("%s line %d (%s): dead letter %+v; want reason %q and the raw row %q", day.Format(time.DateOnly), m.Line, m.Reason, dl, prefix, lines[m.Line-1])
			}
		}
	}

	ck := n.checkpoint(t, "acronis-once")
	if ck.Run != nil || ck.LastWindow == nil || !ck.LastWindow.Start.Equal(last.day) || !ck.LastWindow.End.Equal(last.day.AddDate(0, 0, 1)) ||
		ck.Generation != last.generation || ck.Type != "acronis" || ck.Account != asb.RootTenantID() {
		t.Fatalf("acronis-once checkpoint after collecting %s (generation %d): %+v", last.day.Format(time.DateOnly), last.generation, ck)
	}

	// 1: a collector failed (the other one still collected).
	code, stdout, stderr := cli(t, "collect", "--config", mixed, "--once")
	output.WriteString(stdout + stderr)
	if code != exitFail || !strings.Contains(stderr, "acronis-bad: failed: ") || !strings.Contains(stderr, "401") {
		t.Fatalf("one collector failing: exit %d, want 1\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	checkHERE(runLines(t, stdout)["here-once"])
	if bad := n.checkpoint(t, "acronis-bad"); bad.Run == nil || bad.LastWindow != nil || len(bad.Run.Reports) != 0 {
		t.Fatalf("acronis-bad checkpoint: %+v", bad)
	}

	// Nothing secret was printed: not the secrets, not a token.
	secrets := append([]string{acronisSecret, hereSecret, wrongSecret}, append(aspy.seen(), hspy.seen()...)...)
	if len(secrets) < 5 {
		t.Fatalf("the emulators handed out %d tokens", len(secrets)-3)
	}
	for _, s := range secrets {
		if strings.Contains(output.String(), s) {
			t.Errorf("the output holds a secret or token %q", s)
		}
	}
}
