package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/usagefleet/usagefleet/internal/broker"
	"github.com/usagefleet/usagefleet/messages"
)

// testNATS is an embedded JetStream server with the fleet's streams.
type testNATS struct {
	url string
	js  jetstream.JetStream
}

func startNATS(t *testing.T) *testNATS {
	t.Helper()
	e, err := broker.StartEmbedded(t.TempDir(), 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	nc, err := nats.Connect(e.URL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := broker.EnsureStreams(ctx, js, broker.StreamOptions{}); err != nil {
		t.Fatal(err)
	}
	return &testNATS{url: e.URL, js: js}
}

// usageMsgs is how many messages the USAGE stream holds.
func (n *testNATS) usageMsgs(t *testing.T) uint64 {
	t.Helper()
	st, err := n.js.Stream(context.Background(), messages.StreamUsage)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

// fakeWorker acks every stored part at each destination of outcomes:
// delivered with its records and exact cost, or rejected with a reason.
func (n *testNATS) fakeWorker(t *testing.T, outcomes map[string]messages.AckStatus) {
	t.Helper()
	ctx := context.Background()
	cons, err := n.js.OrderedConsumer(ctx, messages.StreamUsage, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	// Callbacks hold mu while they run; cleanup takes it and sets stopped,
	// so no callback reports to a finished test or uses a closed connection.
	var (
		mu      sync.RWMutex
		stopped bool
	)
	cc, err := cons.Consume(func(m jetstream.Msg) {
		mu.RLock()
		defer mu.RUnlock()
		if stopped {
			return
		}
		part, err := messages.DecodePart(m.Headers(), m.Data())
		if err != nil {
			t.Errorf("fake worker: %v", err)
			return
		}
		var cost messages.CurrencySums
		for i := range part.Records {
			cost.Add(part.Records[i].BillingCurrency, part.Records[i].BilledCost)
		}
		for dest, status := range outcomes {
			a := messages.Ack{BatchID: part.Meta.BatchID, Part: part.Meta.Part, Feed: part.Meta.Feed, Source: part.Meta.Source,
				Destination: dest, Status: status, Records: len(part.Records), Cost: cost.Total(), Costs: cost.Decimals(), Time: time.Now().UTC()}
			if status == messages.AckRejected {
				a.Records, a.Rejected, a.Cost, a.Costs, a.Reason = 0, len(part.Records), messages.MustDecimal("0"), nil, "SkuId is required"
				a.Reasons = map[string]int{"SkuId is required": len(part.Records)}
			}
			b, _ := messages.EncodeAck(a)
			msg := &nats.Msg{Subject: messages.AckSubject(a.Source, dest), Data: b, Header: nats.Header{messages.HdrMsgID: []string{a.MsgID()}}}
			if _, err := n.js.PublishMsg(ctx, msg); err != nil {
				t.Errorf("fake worker: publishing ack: %v", err)
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		mu.Lock()
		stopped = true
		mu.Unlock()
		cc.Stop()
	})
}

// syncBuffer is a bytes.Buffer safe to read while a command writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func cli(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var out, errb syncBuffer
	code = runContext(ctx, args, &out, &errb)
	return code, out.String(), errb.String()
}

func write(t *testing.T, dir, name, content string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	data := []byte(content)
	if strings.HasSuffix(name, ".gz") {
		var b bytes.Buffer
		zw := gzip.NewWriter(&b)
		zw.Write(data)
		zw.Close()
		data = b.Bytes()
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func batchIDOf(t *testing.T, source, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	file := sha256.Sum256(b)
	sum := sha256.Sum256(append([]byte("f\x00"), file[:]...)) // the tests publish to feed "f"
	return source + "-" + hex.EncodeToString(sum[:])[:16]
}

// goodCSV has three records in two hours costing 3.30 USD.
const goodCSV = `ChargePeriodStart,BillingAccountId,SkuId,ConsumedQuantity,ConsumedUnit,BilledCost,BillingCurrency
2024-05-01T10:00:00Z,acct,sku,1,GB,1.10,USD
2024-05-01T10:30:00Z,acct,sku,1,GB,1.10,USD
2024-05-01T11:00:00Z,acct,sku,1,GB,1.10,USD
`

func hasLine(out, line string) bool {
	for _, l := range strings.Split(out, "\n") {
		if l == line {
			return true
		}
	}
	return false
}

func TestPublishRefusesFilesWithErrors(t *testing.T) {
	n := startNATS(t)
	dir := t.TempDir()
	good := write(t, dir, "good.csv", goodCSV)
	tests := []struct {
		name, file, content string
		wantErr             string // a whole line of stderr, after the file's path
	}{
		{"bad decimal", "dec.csv", goodCSV + "2024-05-01T12:00:00Z,acct,sku,1,GB,1.1O,USD\n", `:5: BilledCost: "1.1O": not a decimal number`},
		{"missing ChargePeriodStart", "start.ndjson", "{\"ChargePeriodStart\":\"2024-05-01T10:00:00Z\"}\n{\"SkuId\":\"sku\"}\n", ":2: ChargePeriodStart: required"},
		{"bad column type", "col.csv", "ChargePeriodStart,x_Cost:money\n2024-05-01T10:00:00Z,1\n", `:1: x_Cost:money: extension column type "money" is not string, int or decimal`},
		{"bad currency", "cur.csv", "ChargePeriodStart,BilledCost,BillingCurrency\n2024-05-01T10:00:00Z,1,ZZZ\n", `:2: BillingCurrency: "ZZZ" is not an ISO 4217 currency code`},
		{"bad time", "time.json", "[\n  {\"ChargePeriodStart\": \"2024-05-01T10:00:00Z\"},\n  {\"ChargePeriodStart\": \"2024-13-01\"}\n]\n", `:3: ChargePeriodStart: "2024-13-01" is not an RFC 3339 time`},
		{"bad JSON line", "json.ndjson", "{\"ChargePeriodStart\":\"2024-05-01T10:00:00Z\"}\n{\"ChargePeriodStart\":\"2024-05-01T10:00:00Z\"\n", ":2: invalid JSON: unexpected end of input"},
		{"gzipped bad row", "gz.csv.gz", goodCSV + ",acct,sku,1,GB,1.10,USD\n", ":5: ChargePeriodStart: required"},
		{"no records", "empty.ndjson", "\n", ": no records"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			bad := write(t, dir, tc.file, tc.content)
			code, stdout, stderr := cli(t, "publish", "--feed", "f", "--source", "svc", "--nats", n.url, good, bad)
			if code != exitFail {
				t.Errorf("exit %d, want %d", code, exitFail)
			}
			if !hasLine(stderr, bad+tc.wantErr) {
				t.Errorf("stderr lacks the line %q:\n%s", bad+tc.wantErr, stderr)
			}
			if !strings.Contains(stderr, "nothing published") {
				t.Errorf("stderr does not say nothing was published:\n%s", stderr)
			}
			if stdout != "" {
				t.Errorf("stdout: %q, want nothing", stdout)
			}
			if got := n.usageMsgs(t); got != 0 {
				t.Errorf("USAGE holds %d messages after a refused publish, want 0", got)
			}
		})
	}
}

func TestPublishAndRepublish(t *testing.T) {
	n := startNATS(t)
	dir := t.TempDir()
	a := write(t, dir, "a.csv", goodCSV)
	b := write(t, dir, "b.ndjson.gz", `{"ChargePeriodStart":"2024-05-01T10:00:00Z","BilledCost":0.0000000001,"BillingCurrency":"EUR"}
{"ChargePeriodStart":"2024-05-01T10:05:00Z","BilledCost":"2","BillingCurrency":"USD"}
`)
	// Flags may follow the files.
	code, stdout, stderr := cli(t, "publish", a, b, "--feed", "f", "--source", "svc", "--nats", n.url)
	if code != exitOK {
		t.Fatalf("exit %d, stderr:\n%s", code, stderr)
	}
	wantLines := []string{
		fmt.Sprintf("%s: 3 records, 2 parts, cost 3.30 USD, batch %s", a, batchIDOf(t, "svc", a)),
		fmt.Sprintf("%s: 2 records, 1 part, cost 0.0000000001 EUR + 2 USD, batch %s", b, batchIDOf(t, "svc", b)),
		"total: 5 records, 3 parts, cost 0.0000000001 EUR + 5.30 USD in 2 batches",
	}
	for _, l := range wantLines {
		if !hasLine(stdout, l) {
			t.Errorf("stdout lacks %q:\n%s", l, stdout)
		}
	}
	if got := n.usageMsgs(t); got != 3 {
		t.Fatalf("USAGE holds %d messages, want 3", got)
	}

	// The same file again is the same batch: JetStream drops the parts.
	code, stdout, stderr = cli(t, "publish", "--feed", "f", "--source", "svc", "--nats", n.url, a)
	if code != exitOK {
		t.Fatalf("republish: exit %d, stderr:\n%s", code, stderr)
	}
	if !strings.Contains(stdout, "(already stored: nothing new published)") {
		t.Errorf("republish does not say it was a duplicate:\n%s", stdout)
	}
	if got := n.usageMsgs(t); got != 3 {
		t.Errorf("USAGE holds %d messages after a republish, want still 3", got)
	}

	// An explicit batch id is a new batch.
	code, stdout, stderr = cli(t, "publish", "--feed", "f", "--source", "svc", "--batch-id", "manual-1", "--nats", n.url, a)
	if code != exitOK || !strings.Contains(stdout, "batch manual-1") {
		t.Fatalf("--batch-id: exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	if got := n.usageMsgs(t); got != 5 {
		t.Errorf("USAGE holds %d messages, want 5", got)
	}

	// Two files with the same content: refused, nothing published.
	c := write(t, dir, "copy.csv", goodCSV)
	code, _, stderr = cli(t, "publish", "--feed", "f", "--source", "svc2", "--nats", n.url, a, c)
	if code != exitFail || !strings.Contains(stderr, c+": same content as "+a) {
		t.Errorf("same content twice: exit %d, stderr:\n%s", code, stderr)
	}
	if got := n.usageMsgs(t); got != 5 {
		t.Errorf("USAGE holds %d messages, want still 5", got)
	}
}

func TestPublishGoodRowsOnly(t *testing.T) {
	n := startNATS(t)
	dir := t.TempDir()
	mixed := write(t, dir, "mixed.csv", goodCSV+"2024-05-01T12:00:00Z,acct,sku,1,GB,oops,USD\n")
	badHeader := write(t, dir, "header.csv", "ChargePeriodStart,x_Nope:money\n2024-05-01T10:00:00Z,1\n")

	code, stdout, stderr := cli(t, "publish", "--good-rows-only", "--feed", "f", "--source", "svc", "--nats", n.url, mixed, badHeader)
	if code != exitSkipped {
		t.Errorf("exit %d, want %d; stderr:\n%s", code, exitSkipped, stderr)
	}
	for _, l := range []string{mixed + `:5: BilledCost: "oops": not a decimal number`, badHeader + `:1: x_Nope:money: extension column type "money" is not string, int or decimal`} {
		if !hasLine(stderr, l) {
			t.Errorf("stderr lacks %q:\n%s", l, stderr)
		}
	}
	if want := fmt.Sprintf("%s: 3 records, 2 parts, cost 3.30 USD, batch %s (1 problem skipped)", mixed, batchIDOf(t, "svc", mixed)); !hasLine(stdout, want) {
		t.Errorf("stdout lacks %q:\n%s", want, stdout)
	}
	if strings.Contains(stdout, badHeader) {
		t.Errorf("a file whose header is bad must publish nothing:\n%s", stdout)
	}
	if got := n.usageMsgs(t); got != 2 {
		t.Errorf("USAGE holds %d messages, want 2", got)
	}

	// Nothing good anywhere: a failure, nothing published.
	code, _, stderr = cli(t, "publish", "--good-rows-only", "--feed", "f", "--source", "svc", "--nats", n.url, badHeader)
	if code != exitFail || !strings.Contains(stderr, "nothing published") {
		t.Errorf("all bad: exit %d, stderr:\n%s", code, stderr)
	}
	if got := n.usageMsgs(t); got != 2 {
		t.Errorf("USAGE holds %d messages, want still 2", got)
	}
}

var spaces = regexp.MustCompile(` +`)

func TestPublishWait(t *testing.T) {
	n := startNATS(t)
	n.fakeWorker(t, map[string]messages.AckStatus{"ok": messages.AckDelivered, "picky": messages.AckRejected})
	// A durable consumer makes "ok" a destination of feed f for discovery.
	if _, err := n.js.CreateOrUpdateConsumer(context.Background(), messages.StreamUsage, jetstream.ConsumerConfig{Durable: "uf_ok", FilterSubject: messages.FeedFilter("f")}); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	tests := []struct {
		name      string
		file      string
		args      []string
		wantCode  int
		wantRows  []string // summary rows, spaces squeezed
		wantInErr []string
	}{
		{
			name:      "delivered, destinations discovered",
			file:      "w1.csv",
			args:      []string{"--feed", "f"},
			wantCode:  exitOK,
			wantRows:  []string{"ok 2 2 0 0 0 3 0 0 3.30 USD"},
			wantInErr: []string{"waiting for 2 part outcomes at ok", "acks: 2/2 part outcomes (100%)"},
		},
		{
			name:      "rejected at one destination",
			file:      "w2.csv",
			args:      []string{"--feed", "f", "--dest", "ok,picky"},
			wantCode:  exitFail,
			wantRows:  []string{"ok 2 2 0 0 0 3 0 0 3.30 USD", "picky 2 0 2 0 0 0 3 0 0", "picky: 3 records: SkuId is required"},
			wantInErr: []string{"picky: 3 records dead-lettered (2 parts with rejected records, 0 parts undecodable)"},
		},
		{
			name:      "timeout",
			file:      "w3.csv",
			args:      []string{"--feed", "f", "--dest", "nobody", "--timeout", "1s"},
			wantCode:  exitFail,
			wantRows:  []string{"nobody 2 0 0 0 0 0 0 0 0"},
			wantInErr: []string{"timed out after 1s with 0 of 2 part outcomes"},
		},
		{
			name:      "no destination for the feed",
			file:      "w4.csv",
			args:      []string{"--feed", "other"},
			wantCode:  exitFail,
			wantInErr: []string{"no destination consumes feed other yet"},
		},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// A different first row per case: a new batch each time.
			path := write(t, dir, tc.file, strings.Replace(goodCSV, "1,GB,1.10", fmt.Sprintf("1,GB%d,1.10", i), 1))
			args := append([]string{"publish", "--wait", "--source", "svc", "--nats", n.url}, tc.args...)
			code, stdout, stderr := cli(t, append(args, path)...)
			if code != tc.wantCode {
				t.Errorf("exit %d, want %d; stderr:\n%s", code, tc.wantCode, stderr)
			}
			squeezed := spaces.ReplaceAllString(stdout, " ")
			for _, row := range tc.wantRows {
				re := regexp.MustCompile(`(?m)^` + strings.ReplaceAll(regexp.QuoteMeta(row), `\*`, `[0-9a-f]+`) + `$`)
				if !re.MatchString(squeezed) {
					t.Errorf("summary lacks %q:\n%s", row, stdout)
				}
			}
			for _, s := range tc.wantInErr {
				if !strings.Contains(stderr, s) {
					t.Errorf("stderr lacks %q:\n%s", s, stderr)
				}
			}
		})
	}
}

func TestAcks(t *testing.T) {
	n := startNATS(t)
	ctx := context.Background()
	at := time.Date(2024, 5, 1, 10, 0, 0, 0, time.UTC)
	for _, a := range []messages.Ack{
		{BatchID: "b1", Part: 1, Source: "svc", Destination: "cz", Status: messages.AckDelivered, Records: 3, Cost: messages.MustDecimal("3.30"), Time: at},
		{BatchID: "b1", Part: 2, Source: "svc", Destination: "cz", Status: messages.AckRejected, Records: 1, Rejected: 2, Cost: messages.MustDecimal("1.10"), Reason: "SkuId is required", Time: at},
		{BatchID: "b2", Part: 1, Source: "other", Destination: "cz", Status: messages.AckDelivered, Records: 1, Time: at},
		{BatchID: "b1", Part: 3, Source: "svc", Destination: "cz", Status: messages.AckRejected, Records: 2, Rejected: 3, Cost: messages.MustDecimal("3.00"), Warnings: 1, Reason: "no cost",
			Costs: map[string]messages.Decimal{"USD": messages.MustDecimal("2.00"), "EUR": messages.MustDecimal("1.00")}, Reasons: map[string]int{"no cost": 1, "bad hour": 2}, Time: at},
	} {
		b, _ := messages.EncodeAck(a)
		if _, err := n.js.Publish(ctx, messages.AckSubject(a.Source, a.Destination), b); err != nil {
			t.Fatal(err)
		}
	}
	var out, errb syncBuffer
	cctx, cancel := context.WithCancel(ctx)
	done := make(chan int)
	go func() {
		done <- runContext(cctx, []string{"acks", "--source", "svc", "--since", "1h", "--nats", n.url}, &out, &errb)
	}()
	deadline := time.Now().Add(20 * time.Second)
	for strings.Count(out.String(), "\n") < 3 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	cancel() // as SIGINT would
	if code := <-done; code != exitOK {
		t.Errorf("exit %d after interrupt, want 0; stderr:\n%s", code, errb.String())
	}
	want := "2024-05-01T10:00:00Z delivered  svc -> cz batch b1 part 1: 3 records, cost 3.30\n" +
		"2024-05-01T10:00:00Z rejected   svc -> cz batch b1 part 2: 1 record, cost 1.10, 2 rejected: SkuId is required\n" +
		"2024-05-01T10:00:00Z rejected   svc -> cz batch b1 part 3: 2 records, cost 1.00 EUR + 2.00 USD, 3 rejected, 1 warning: bad hour (2); no cost (1)\n"
	if got := out.String(); got != want {
		t.Errorf("output:\n%s\nwant:\n%s", got, want)
	}
}

func TestUsage(t *testing.T) {
	dir := t.TempDir()
	f := write(t, dir, "a.csv", goodCSV)
	t.Setenv("UF_TEST_EMPTY", "")
	tests := []struct {
		name     string
		args     []string
		wantCode int
		wantOut  string // in stdout
		wantErr  string // in stderr
	}{
		{"no command", nil, exitUsage, "", "usage: usage-producer <command>"},
		{"help", []string{"help"}, exitOK, "publish  check usage files", ""},
		{"help publish", []string{"help", "publish"}, exitOK, "-good-rows-only", ""},
		{"publish -h", []string{"publish", "-h"}, exitOK, "-dry-run", ""},
		{"collect -h", []string{"collect", "-h"}, exitOK, "-once", ""},
		{"validate -h", []string{"validate", "--help"}, exitOK, "-config", ""},
		{"version", []string{"version"}, exitOK, "usage-producer ", ""},
		{"validate without config", []string{"validate"}, exitUsage, "", "--config is required"},
		{"unknown command", []string{"frobnicate"}, exitUsage, "", `unknown command "frobnicate"`},
		{"unknown flag", []string{"publish", "--nope"}, exitUsage, "", "flag provided but not defined: -nope"},
		{"missing feed", []string{"publish", "--source", "s", f}, exitUsage, "", "--feed is required"},
		{"bad source", []string{"publish", "--feed", "f", "--source", "a.b", f}, exitUsage, "", `--source "a.b"`},
		{"no files", []string{"publish", "--feed", "f", "--source", "s"}, exitUsage, "", "no FILE to publish"},
		{"batch id for two files", []string{"publish", "--feed", "f", "--source", "s", "--batch-id", "x", f, f}, exitUsage, "", "--batch-id names one batch"},
		{"dest without wait", []string{"publish", "--feed", "f", "--source", "s", "--dest", "a", f}, exitUsage, "", "--dest only matters with --wait"},
		{"bad format", []string{"publish", "--feed", "f", "--source", "s", "--format", "xml", f}, exitUsage, "", `unknown format "xml"`},
		{"password without user", []string{"publish", "--feed", "f", "--source", "s", "--password-env", "P", f}, exitUsage, "", "--password-env needs --user"},
		{"token variable unset", []string{"publish", "--feed", "f", "--source", "s", "--token-env", "UF_TEST_EMPTY", f}, exitUsage, "", "--token-env: environment variable UF_TEST_EMPTY is not set"},
		{"two credentials", []string{"publish", "--feed", "f", "--source", "s", "--token-env", "T", "--creds", f, f}, exitUsage, "", "use only one of"},
		{"acks bad since", []string{"acks", "--since", "yesterday"}, exitUsage, "", "--since: want a duration"},
		{"acks argument", []string{"acks", "x"}, exitUsage, "", `unexpected argument "x"`},
		{"dry run", []string{"publish", "--dry-run", "--feed", "f", "--source", "s", f}, exitOK, "a.csv: 3 records, 2 parts, cost 3.30 USD, batch s-", ""},
		{"missing file", []string{"publish", "--dry-run", "--feed", "f", "--source", "s", filepath.Join(dir, "missing.csv")}, exitFail, "", "no such file"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, stdout, stderr := cli(t, tc.args...)
			if code != tc.wantCode {
				t.Errorf("exit %d, want %d; stderr:\n%s", code, tc.wantCode, stderr)
			}
			if !strings.Contains(stdout, tc.wantOut) {
				t.Errorf("stdout lacks %q:\n%s", tc.wantOut, stdout)
			}
			if !strings.Contains(stderr, tc.wantErr) {
				t.Errorf("stderr lacks %q:\n%s", tc.wantErr, stderr)
			}
		})
	}
}

func TestProgress(t *testing.T) {
	tests := []struct {
		name string
		tty  bool
		want []string // in the output, in order
	}{
		{"terminal bar redrawn in place", true, []string{"\r[..............................] 0/4", "\r[###############...............] 2/4 part outcomes  50%", "\r[##############################] 4/4 part outcomes 100%"}},
		{"log lines", false, []string{"acks: 2/4 part outcomes (50%)", "acks: 4/4 part outcomes (100%)"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var b syncBuffer
			p := startProgress(&b, tc.tty, 4, 20*time.Millisecond)
			p.set(2)
			p.set(1) // never goes back
			time.Sleep(60 * time.Millisecond)
			p.set(4)
			if got := p.finish(); got != 4 {
				t.Errorf("finish = %d, want 4", got)
			}
			out := b.String()
			pos := 0
			for _, w := range tc.want {
				i := strings.Index(out[pos:], w)
				if i < 0 {
					t.Fatalf("output lacks %q after offset %d:\n%q", w, pos, out)
				}
				pos += i + len(w)
			}
			if !strings.HasSuffix(out, "\n") {
				t.Errorf("the output must end its line: %q", out)
			}
		})
	}
}

func TestHelpers(t *testing.T) {
	now := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	for in, want := range map[string]time.Time{
		"":                     {},
		"90m":                  now.Add(-90 * time.Minute),
		"2024-04-30T00:00:00Z": time.Date(2024, 4, 30, 0, 0, 0, 0, time.UTC),
	} {
		got, err := parseSince(in, now)
		if err != nil || !got.Equal(want) {
			t.Errorf("parseSince(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"-1h", "soon"} {
		if _, err := parseSince(in, now); err == nil {
			t.Errorf("parseSince(%q): want an error", in)
		}
	}
	c := costOf([]messages.UsageRecord{
		{BilledCost: messages.MustDecimal("0.1"), BillingCurrency: "USD"},
		{BilledCost: messages.MustDecimal("0.2"), BillingCurrency: "USD"},
		{BilledCost: messages.MustDecimal("1e-20"), BillingCurrency: "EUR"},
		{},
	})
	if got, want := c.String(), "0.00000000000000000001 EUR + 0.3 USD"; got != want {
		t.Errorf("costs = %q, want %q (exact, per currency)", got, want)
	}
	if got := (costs{}).String(); got != "0" {
		t.Errorf("empty costs = %q, want 0", got)
	}
	if got := plural(2, "batch"); got != "2 batches" {
		t.Errorf("plural = %q", got)
	}
}

// validate checks a collector config as collect does at start: the same
// error (key path and line) from both, nothing connected.
func TestValidateCollectorConfig(t *testing.T) {
	dir := t.TempDir()
	bad := write(t, dir, "bad.yaml", "nats: {url: \"nats://127.0.0.1:1\"}\ncolectors: []\n")
	code, _, stderr := cli(t, "validate", "--config", bad)
	if code != exitFail || !strings.Contains(stderr, "colectors (line 2): unknown key") {
		t.Fatalf("validate: exit %d, stderr %q", code, stderr)
	}
	want := strings.TrimPrefix(stderr, "usage-producer validate: ")
	ccode, _, cstderr := cli(t, "collect", "--once", "--config", bad)
	if ccode != exitFail || !strings.Contains(cstderr, want) {
		t.Fatalf("collect at start says %q (exit %d), validate said %q", cstderr, ccode, want)
	}
	t.Setenv("UF_TEST_ACRONIS_SECRET", "x")
	good := write(t, dir, "good.yaml", `nats: {url: "nats://127.0.0.1:1"}
collectors:
  - name: acronis-eu
    type: acronis
    feed: msp
    settings:
      base_url: http://127.0.0.1:1
      client_id: 7d5e1c9a-0000-4000-8000-000000000001
      client_secret: {env: UF_TEST_ACRONIS_SECRET}
      tenant_id: 0c6a0a7e-0000-4000-8000-000000000002
      kind: usage_daily
`)
	if code, stdout, stderr := cli(t, "validate", "--config", good); code != exitOK || !strings.Contains(stdout, "good.yaml: ok (1 collector(s))") {
		t.Fatalf("a good config: exit %d, %q %q", code, stdout, stderr)
	}
}
