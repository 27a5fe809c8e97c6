package webhook_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/usagefleet/usagefleet/internal/broker/natstest"
	"github.com/usagefleet/usagefleet/internal/fleet"
	"github.com/usagefleet/usagefleet/internal/sandbox/fault"
	sbwebhook "github.com/usagefleet/usagefleet/internal/sandbox/webhook"
	"github.com/usagefleet/usagefleet/internal/usagegen"
	"github.com/usagefleet/usagefleet/messages"
	"github.com/usagefleet/usagefleet/producer"
	"github.com/usagefleet/usagefleet/workers"
)

// Signing secrets of these tests (Standard Webhooks form, 32 random bytes
// each): distinctive, so finding one in a log is a leak and nothing else.
const (
	secretNew   = "whsec_Ub9hJ0Uq5Yb3dJvQ2n8cRkz7mX1aW4eTf6gHs0pLyNo="
	secretOld   = "whsec_3kq9ZtV2mB7xR1cN8wE4yU6iO0pA5sD9fG2hJ7kL3zQ="
	secretWrong = "whsec_Pz4xW8nK2vB6mQ0rT5yU9iE3oA7sD1fG4hJ8kL2cV6M="
)

// runPool runs a pool of dest on its own connection until the test ends,
// logging into the returned buffer; retries and pause probes are quick.
func (f *fixture) runPool(dest workers.Destination, opts workers.Options) (*workers.Pool, *lockedBuffer) {
	f.t.Helper()
	var logs lockedBuffer
	opts.Feeds = []string{"cloud"}
	opts.LeaseTTL = natstest.LeaseTTL
	opts.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	if opts.PauseProbe == 0 {
		opts.PauseProbe = 200 * time.Millisecond
	}
	if opts.DrainTimeout == 0 {
		opts.DrainTimeout = 2 * time.Second // a job paused or in backoff is not waited for
	}
	if opts.Retry.Initial == 0 {
		opts.Retry = workers.RetryPolicy{Initial: 50 * time.Millisecond, Max: 300 * time.Millisecond}
	}
	pool, err := workers.NewPool(f.ns.Connect(f.t), dest, opts)
	if err != nil {
		f.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); pool.Run(ctx) }()
	f.t.Cleanup(func() { cancel(); <-done })
	return pool, &logs
}

// publishWait publishes recs as one batch and waits for the hook's acks.
func (f *fixture) publishWait(id string, recs []messages.UsageRecord) *producer.Summary {
	f.t.Helper()
	res, err := f.prod.Publish(context.Background(), &messages.Batch{ID: id, Feed: "cloud", Source: "gen", Records: recs})
	if err != nil {
		f.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	sums, err := f.prod.Wait(ctx, res, []string{"hook"}, nil)
	if err != nil {
		f.t.Fatalf("waiting for the acks of %s: %v; sandbox %+v", id, err, f.sb.Stats())
	}
	return sums["hook"]
}

func costOf(recs []messages.UsageRecord) messages.Sum {
	var s messages.Sum
	for i := range recs {
		s.Add(recs[i].BilledCost)
	}
	return s
}

// headerLog keeps the headers of every request the receiver got.
type headerLog struct {
	mu sync.Mutex
	h  []http.Header
}

func (l *headerLog) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		l.mu.Lock()
		l.h = append(l.h, r.Header.Clone())
		l.mu.Unlock()
		h.ServeHTTP(w, r)
	})
}

func (l *headerLog) all() []http.Header {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.h)
}

// Signed delivery: every request carries webhook-id (the idempotency key:
// the same for every try of the body), a current webhook-timestamp and a
// signature the receiver verifies; every record arrives, cost exact.
func TestSignedDeliveryVerified(t *testing.T) {
	var hl headerLog
	f := fixtureWith(t, sbwebhook.Config{MaxBodyBytes: 16 << 10, SigningSecrets: []string{secretNew}}, hl.wrap)
	t.Setenv("UF_TEST_HOOK_SIGNING", secretNew)
	dest, err := buildFromYAML(t, fmt.Sprintf("url: %s/ingest\nmax_body_bytes: %d\nsigning_secrets: [{env: UF_TEST_HOOK_SIGNING}]\n", f.srv.URL, 16<<10))
	if err != nil {
		t.Fatal(err)
	}
	f.runPool(dest, workers.Options{})
	recs := usagegen.Generate(600, usagegen.Options{Seed: 41, Hours: 2})
	began := time.Now().Unix()
	s := f.publishWait("signed", recs)
	if s.Records != len(recs) || s.Rejected != 0 || !s.Cost.Equal(costOf(recs).Decimal()) {
		t.Fatalf("summary %+v", s)
	}
	st := f.sb.Stats()
	if st.Verified < 2 || st.Verified != st.Requests || st.BadSignatures != 0 || st.UniqueRecords != len(recs) {
		t.Fatalf("receiver %+v: want every request (more than one) verified", st)
	}
	for i, h := range hl.all() {
		ts, err := strconv.ParseInt(h.Get("webhook-timestamp"), 10, 64)
		if h.Get("webhook-id") == "" || h.Get("webhook-id") != h.Get("Idempotency-Key") || err != nil || ts < began-1 || ts > time.Now().Unix()+1 {
			t.Fatalf("request %d: webhook-id %q (Idempotency-Key %q), webhook-timestamp %q", i, h.Get("webhook-id"), h.Get("Idempotency-Key"), h.Get("webhook-timestamp"))
		}
		if sig := h.Get("webhook-signature"); !strings.HasPrefix(sig, "v1,") || strings.Contains(sig, " ") {
			t.Fatalf("request %d: webhook-signature %q, want one v1 signature", i, sig)
		}
	}
}

// Rotation: signed with the new and the old secret, a receiver that knows
// either one (or both) verifies every request.
func TestSigningRotation(t *testing.T) {
	dir := t.TempDir()
	oldFile := filepath.Join(dir, "old")
	if err := os.WriteFile(oldFile, []byte(secretOld+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("UF_TEST_HOOK_SIGNING", secretNew)
	for name, knows := range map[string][]string{"old only": {secretOld}, "new only": {secretNew}, "both": {secretOld, secretNew}} {
		t.Run(name, func(t *testing.T) {
			var hl headerLog
			f := fixtureWith(t, sbwebhook.Config{MaxBodyBytes: bodyLimit, SigningSecrets: knows}, hl.wrap)
			dest, err := buildFromYAML(t, fmt.Sprintf("url: %s/ingest\nsigning_secrets:\n  - {env: UF_TEST_HOOK_SIGNING}\n  - {file: %s}\n", f.srv.URL, oldFile))
			if err != nil {
				t.Fatal(err)
			}
			f.runPool(dest, workers.Options{})
			recs := usagegen.Generate(50, usagegen.Options{Seed: 42, Hours: 1})
			if s := f.publishWait("rotation", recs); s.Records != len(recs) {
				t.Fatalf("summary %+v", s)
			}
			if st := f.sb.Stats(); st.Verified == 0 || st.BadSignatures != 0 {
				t.Fatalf("receiver %+v", st)
			}
			for _, h := range hl.all() {
				if n := len(strings.Fields(h.Get("webhook-signature"))); n != 2 {
					t.Fatalf("%d signatures in %q, want one per secret", n, h.Get("webhook-signature"))
				}
			}
		})
	}
}

// A receiver that refuses the signature (401): by default the destination
// pauses, loudly, and nothing is delivered or dead-lettered; with 401 in
// refuse_statuses the part is dead-lettered with the receiver's reason.
func TestWrongSigningSecretPausesOrRefuses(t *testing.T) {
	t.Setenv("UF_TEST_HOOK_SIGNING", secretWrong)
	t.Run("pause (default)", func(t *testing.T) {
		f := fixtureWith(t, sbwebhook.Config{MaxBodyBytes: bodyLimit, SigningSecrets: []string{secretNew}}, nil)
		dest, err := buildFromYAML(t, fmt.Sprintf("url: %s/ingest\nsigning_secrets: [{env: UF_TEST_HOOK_SIGNING}]\n", f.srv.URL))
		if err != nil {
			t.Fatal(err)
		}
		pool, logs := f.runPool(dest, workers.Options{})
		if _, err := f.prod.Publish(context.Background(), &messages.Batch{ID: "wrong", Feed: "cloud", Source: "gen", Records: usagegen.Generate(20, usagegen.Options{Seed: 43, Hours: 1})}); err != nil {
			t.Fatal(err)
		}
		f.waitFor(30*time.Second, "the pause", func() bool { p, _ := pool.Paused(); return p })
		f.waitFor(30*time.Second, "a probe refused again", func() bool { return f.sb.Stats().BadSignatures >= 2 })
		if st := f.sb.Stats(); st.Records != 0 || pool.Stats().Acked != 0 {
			t.Fatalf("delivered under a refused signature: receiver %+v, acked %d", st, pool.Stats().Acked)
		}
		if _, reason := pool.Paused(); !strings.Contains(reason, "auth Unauthorized (401)") || !strings.Contains(reason, "no v1 signature matches") {
			t.Fatalf("pause reason %q", reason)
		}
		if !strings.Contains(logs.String(), "DESTINATION PAUSED: credentials refused") {
			t.Fatalf("the pause is not logged as refused credentials:\n%s", logs)
		}
		if n := deadCount(t, f); n != 0 {
			t.Fatalf("%d dead letters: a paused destination's data waits in the stream", n)
		}
	})
	t.Run("refuse_statuses: [401]", func(t *testing.T) {
		f := fixtureWith(t, sbwebhook.Config{MaxBodyBytes: bodyLimit, SigningSecrets: []string{secretNew}}, nil)
		dest, err := buildFromYAML(t, fmt.Sprintf("url: %s/ingest\nsigning_secrets: [{env: UF_TEST_HOOK_SIGNING}]\nrefuse_statuses: [401]\n", f.srv.URL))
		if err != nil {
			t.Fatal(err)
		}
		pool, _ := f.runPool(dest, workers.Options{})
		recs := usagegen.Generate(20, usagegen.Options{Seed: 44, Hours: 1})
		s := f.publishWait("refused", recs)
		if s.Records != 0 || s.RejectedRecords != len(recs) || len(s.Reasons) == 0 || !strings.Contains(s.Reasons[0], "refuse_statuses") || !strings.Contains(s.Reasons[0], "401") {
			t.Fatalf("summary %+v; want every record refused with the status and the list", s)
		}
		if p, _ := pool.Paused(); p || deadCount(t, f) == 0 {
			t.Fatalf("paused %v, %d dead letters; want the part dead-lettered, the destination running", p, deadCount(t, f))
		}
	})
}

// deadCount is the number of dead letters stored.
func deadCount(t *testing.T, f *fixture) uint64 {
	t.Helper()
	st, info := deadStream(t, f)
	if st == nil {
		return 0
	}
	return info.State.Msgs
}

// deadStream is the dead-letter stream and its state (nil when there is
// no such stream yet).
func deadStream(t *testing.T, f *fixture) (jetstream.Stream, *jetstream.StreamInfo) {
	t.Helper()
	js, err := jetstream.New(f.ns.Connect(t))
	if err != nil {
		t.Fatal(err)
	}
	st, err := js.Stream(context.Background(), messages.StreamDead)
	if err != nil {
		return nil, nil
	}
	info, err := st.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return st, info
}

// checkDeadWhole checks that the dead letters hold every record of recs
// (one part) whole: the pool writes rows from the part without a record's
// maps, and a refused part's records must still carry their tags.
func checkDeadWhole(t *testing.T, f *fixture, recs []messages.UsageRecord) {
	t.Helper()
	st, info := deadStream(t, f)
	if st == nil {
		t.Fatal("no dead-letter stream")
	}
	seen := 0
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		raw, err := st.GetMsg(context.Background(), seq)
		if err != nil {
			t.Fatal(err)
		}
		var dl messages.DeadLetter
		if err := json.Unmarshal(raw.Data, &dl); err != nil {
			t.Fatal(err)
		}
		for _, r := range dl.Records {
			if want := recs[r.Index]; len(want.Tags) == 0 || !maps.Equal(r.Record.Tags, want.Tags) || !r.Record.BilledCost.Equal(want.BilledCost) {
				t.Fatalf("dead-lettered record %d has tags %v and cost %s, want %v and %s", r.Index, r.Record.Tags, r.Record.BilledCost, want.Tags, want.BilledCost)
			}
			seen++
		}
	}
	if seen != len(recs) {
		t.Fatalf("%d records in the dead letters, want %d", seen, len(recs))
	}
}

// gzip: every record arrives byte for byte as the JSON the destination
// encodes, the size limit holds for the bytes sent (which carry more JSON
// than the limit), and every body is signed over its JSON.
func TestGzipRoundTripExact(t *testing.T) {
	const limit = 32 << 10
	f := fixtureWith(t, sbwebhook.Config{MaxBodyBytes: limit, SigningSecrets: []string{secretNew}}, nil)
	t.Setenv("UF_TEST_HOOK_SIGNING", secretNew)
	dest, err := buildFromYAML(t, fmt.Sprintf("url: %s/ingest\nmax_body_bytes: %d\ncompress: gzip\nsigning_secrets: [{env: UF_TEST_HOOK_SIGNING}]\n", f.srv.URL, limit))
	if err != nil {
		t.Fatal(err)
	}
	pool, _ := f.runPool(dest, workers.Options{})
	recs := usagegen.Generate(3000, usagegen.Options{Seed: 45, Hours: 3})
	s := f.publishWait("gzip", recs)
	if s.Records != len(recs) || s.Rejected != 0 || !s.Cost.Equal(costOf(recs).Decimal()) {
		t.Fatalf("summary %+v", s)
	}
	st := f.sb.Stats()
	if st.Gzipped != st.Requests || st.Verified != st.Requests || st.MaxBodyBytes > limit || st.MaxInflatedBytes <= limit || st.Rejected != 0 {
		t.Fatalf("receiver %+v: want every body gzipped and signed, at most %d bytes sent, more JSON than that in one", st, limit)
	}
	var want, got []string
	for i := range recs {
		want = append(want, string(recs[i].AppendJSON(nil)))
	}
	for _, r := range f.sb.UniqueRecords() {
		got = append(got, string(r))
	}
	slices.Sort(want)
	slices.Sort(got)
	if !slices.Equal(want, got) {
		t.Fatalf("the receiver holds %d records, not the %d published byte for byte", len(got), len(want))
	}
	t.Logf("%d requests, %d bytes sent for %d records (largest body %d bytes gzipped, %d inflated)", st.Requests, pool.Stats().BodyBytes, len(recs), st.MaxBodyBytes, st.MaxInflatedBytes)
}

// gzip with a receiver whose limit is below ours: its 413 still splits the
// body; and a record that does not fit the limit even gzipped is rejected
// alone before it is sent, the rest of its part delivered.
func TestGzipBisectionAndOversizeRecord(t *testing.T) {
	t.Run("the receiver's 413", func(t *testing.T) {
		f := fixtureWith(t, sbwebhook.Config{MaxBodyBytes: 3000}, nil)
		dest, err := buildFromYAML(t, fmt.Sprintf("url: %s/ingest\nmax_body_bytes: %d\ncompress: gzip\n", f.srv.URL, bodyLimit))
		if err != nil {
			t.Fatal(err)
		}
		f.runPool(dest, workers.Options{})
		recs := usagegen.Generate(400, usagegen.Options{Seed: 46, Hours: 1})
		if s := f.publishWait("bisect", recs); s.Records != len(recs) || s.Rejected != 0 {
			t.Fatalf("summary %+v", s)
		}
		if st := f.sb.Stats(); st.Rejected == 0 || st.UniqueRecords != len(recs) || st.KeyReuse != 0 {
			t.Fatalf("receiver %+v: want 413s, then every record once, no key reused", st)
		}
	})
	t.Run("over the limit gzipped", func(t *testing.T) {
		const limit = 2048
		f := fixtureWith(t, sbwebhook.Config{MaxBodyBytes: limit}, nil)
		dest, err := buildFromYAML(t, fmt.Sprintf("url: %s/ingest\nmax_body_bytes: %d\ncompress: gzip\n", f.srv.URL, limit))
		if err != nil {
			t.Fatal(err)
		}
		f.runPool(dest, workers.Options{})
		recs := usagegen.Generate(200, usagegen.Options{Seed: 47, Hours: 1})
		big := 77
		recs[big].ChargeDescription = noise(messages.MaxStringLen, 1)
		recs[big].ResourceName = noise(messages.MaxStringLen, 2)
		s := f.publishWait("oversize", recs)
		if s.Records != len(recs)-1 || s.RejectedRecords != 1 || len(s.Reasons) == 0 || !strings.Contains(s.Reasons[0], "gzipped, over the 2048-byte body limit") {
			t.Fatalf("summary %+v; want one record refused as too large gzipped", s)
		}
		if st := f.sb.Stats(); st.Rejected != 0 || st.MaxBodyBytes > limit || st.UniqueRecords != len(recs)-1 {
			t.Fatalf("receiver %+v: nothing over the limit may be sent", st)
		}
	})
}

// noise is n characters that do not compress (a deterministic stream).
func noise(n int, seed uint64) string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
	b := make([]byte, n)
	x := seed*0x9E3779B97F4A7C15 + 1
	for i := range b {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		b[i] = alphabet[x%uint64(len(alphabet))]
	}
	return string(b)
}

// Each status list changes what one status means, and nothing else.
func TestStatusLists(t *testing.T) {
	tests := []struct {
		name     string
		settings string
		code     int
		count    int    // answers with code before the receiver takes requests (0: always)
		want     string // delivered, refused, paused
	}{
		{"409 refused by default", "", 409, 0, "refused"},
		{"409 in retry_statuses", "retry_statuses: [409, 425]", 409, 3, "delivered"},
		{"503 retried by default", "", 503, 3, "delivered"},
		{"503 in refuse_statuses", "refuse_statuses: [503]", 503, 0, "refused"},
		{"410 in pause_statuses", "pause_statuses: [410]", 410, 0, "paused"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := fixtureWith(t, sbwebhook.Config{MaxBodyBytes: bodyLimit}, nil)
			f.sb.Faults().Set(fault.Rule{Kind: fault.Status, Code: tc.code, Count: tc.count, Message: "the receiver says " + strconv.Itoa(tc.code)})
			dest, err := buildFromYAML(t, fmt.Sprintf("url: %s/ingest\n%s\n", f.srv.URL, tc.settings))
			if err != nil {
				t.Fatal(err)
			}
			pool, logs := f.runPool(dest, workers.Options{})
			recs := usagegen.Generate(30, usagegen.Options{Seed: 48, Hours: 1})
			switch tc.want {
			case "delivered":
				if s := f.publishWait("lists", recs); s.Records != len(recs) || s.Rejected != 0 {
					t.Fatalf("summary %+v", s)
				}
				if inj := f.sb.Faults().Injected()[fault.Status]; inj != tc.count {
					t.Fatalf("%d answers of %d, want %d: the retries were not exercised", inj, tc.code, tc.count)
				}
			case "refused":
				s := f.publishWait("lists", recs)
				if s.Records != 0 || s.RejectedRecords != len(recs) || len(s.Reasons) == 0 || !strings.Contains(s.Reasons[0], "the receiver says") {
					t.Fatalf("summary %+v; want every record refused with the receiver's message", s)
				}
				if strings.Contains(tc.settings, "refuse_statuses") && !strings.Contains(s.Reasons[0], "listed in refuse_statuses") {
					t.Fatalf("reason %q does not say the status is listed", s.Reasons[0])
				}
				checkDeadWhole(t, f, recs)
			case "paused":
				if _, err := f.prod.Publish(context.Background(), &messages.Batch{ID: "lists", Feed: "cloud", Source: "gen", Records: recs}); err != nil {
					t.Fatal(err)
				}
				f.waitFor(30*time.Second, "the pause", func() bool { p, _ := pool.Paused(); return p })
				if _, reason := pool.Paused(); !strings.Contains(reason, "pause Gone (410): listed in pause_statuses") {
					t.Fatalf("pause reason %q", reason)
				}
				log := logs.String()
				if !strings.Contains(log, "DESTINATION PAUSED: the destination answered 410 Gone") || strings.Contains(log, "credentials refused") {
					t.Fatalf("the pause is not logged with its status:\n%s", log)
				}
				if n := deadCount(t, f); n != 0 || f.sb.Stats().Records != 0 {
					t.Fatalf("%d dead letters, %d records delivered while paused", n, f.sb.Stats().Records)
				}
				// The receiver comes back: the probe finds it, the data waited.
				f.sb.Faults().Set()
				f.waitFor(30*time.Second, "the records after the pause", func() bool { return f.sb.Stats().UniqueRecords == len(recs) })
				f.waitFor(10*time.Second, "the resume", func() bool { p, _ := pool.Paused(); return !p })
			}
		})
	}
}

// The signature is made when the request leaves, not when it was built: a
// request that hung and is sent again (Job.Do's resend of a request that
// got no answer) carries a new timestamp, so a receiver with a tight
// tolerance takes it.
func TestSignatureTimestampIsTheAttempts(t *testing.T) {
	var hl headerLog
	f := fixtureWith(t, sbwebhook.Config{MaxBodyBytes: bodyLimit, SigningSecrets: []string{secretNew}, SigningTolerance: 2 * time.Second}, hl.wrap)
	// The first request hangs past the client's timeout (3s): its resend
	// leaves over 3s after it was built, beyond the 2s tolerance. The
	// resend is answered 503: the job is tried again, a new request.
	f.sb.Faults().Set(fault.Rule{Kind: fault.Timeout, Delay: 4 * time.Second, Count: 1}, fault.Rule{Kind: fault.Status, Code: 503, Count: 1})
	t.Setenv("UF_TEST_HOOK_SIGNING", secretNew)
	dest, err := buildFromYAML(t, fmt.Sprintf("url: %s/ingest\nsigning_secrets: [{env: UF_TEST_HOOK_SIGNING}]\n", f.srv.URL))
	if err != nil {
		t.Fatal(err)
	}
	pool, _ := f.runPool(dest, workers.Options{HTTPTimeout: 3 * time.Second})
	recs := usagegen.Generate(20, usagegen.Options{Seed: 49, Hours: 1})
	if s := f.publishWait("fresh", recs); s.Records != len(recs) {
		t.Fatalf("summary %+v", s)
	}
	st := f.sb.Stats()
	if f.sb.Faults().Injected()[fault.Timeout] != 1 || pool.Stats().Resends == 0 {
		t.Fatalf("no hung request was re-sent (faults %v, resends %d): the check proved nothing", f.sb.Faults().Injected(), pool.Stats().Resends)
	}
	if st.BadSignatures != 0 || st.Verified == 0 {
		t.Fatalf("receiver %+v: the resend carried the first try's timestamp", st)
	}
	// Every try of the one body has the same webhook-id (the receiver
	// dedups on it) and its own timestamp.
	hs := hl.all()
	if len(hs) < 3 {
		t.Fatalf("%d requests, want the hung one, its resend (503) and the retry", len(hs))
	}
	first, _ := strconv.ParseInt(hs[0].Get("webhook-timestamp"), 10, 64)
	last, _ := strconv.ParseInt(hs[len(hs)-1].Get("webhook-timestamp"), 10, 64)
	for i, h := range hs {
		if h.Get("webhook-id") != hs[0].Get("webhook-id") {
			t.Fatalf("try %d has webhook-id %q, the first had %q", i, h.Get("webhook-id"), hs[0].Get("webhook-id"))
		}
	}
	if last < first+3 {
		t.Fatalf("timestamps %d then %d: the tries were not signed when they left", first, last)
	}
}

// Every setting of sign.go and post.go that is wrong stops the start with
// its key, and no error shows a secret.
func TestDeliverySettingsErrorsNameTheKey(t *testing.T) {
	dir := t.TempDir()
	short := filepath.Join(dir, "short")
	os.WriteFile(short, []byte("whsec_c2hvcnQtc2VjcmV0\n"), 0o600)
	t.Setenv("UF_TEST_HOOK_SIGNING", secretNew)
	t.Setenv("UF_TEST_HOOK_NOT_BASE64", "whsec_"+strings.Repeat("*", 40))
	const base = "nats:\n  data_dir: /tmp/x\ndestinations:\n  - name: hook\n    type: webhook\n    feeds: [cloud]\n    settings:\n      url: http://127.0.0.1:9/ingest\n"
	const key = "config: destinations[0](hook).settings."
	tests := []struct{ name, settings, want string }{
		{"2xx", "retry_statuses: [200]", key + "retry_statuses[0]: 200 is outside 300-599: 1xx are interim answers and 2xx success"},
		{"not three digits", "pause_statuses: [4040]", key + "pause_statuses[0]: 4040 is not an HTTP status (three digits)"},
		{"413", "refuse_statuses: [404, 413]", key + "refuse_statuses[1]: 413 cannot be listed"},
		{"in two lists", "retry_statuses: [409]\n      refuse_statuses: [404, 409]", key + "refuse_statuses[1]: 409 is also in retry_statuses: a status has one meaning"},
		{"twice", "pause_statuses: [410, 410]", key + "pause_statuses[1]: 410 is listed twice"},
		{"not a number", "retry_statuses: [5xx]", key + "retry_statuses[0] (line 9): cannot unmarshal"},
		{"compress", "compress: brotli", key + `compress: "brotli" is not a compression: use gzip, or none`},
		{"inline secret", "signing_secrets: [" + secretNew + "]", key + "signing_secrets[0] (line 9): write a secret as {env: VARIABLE} or {file: PATH}, never inline"},
		{"env not set", "signing_secrets: [{env: UF_TEST_HOOK_UNSET}]", key + "signing_secrets[0]: environment variable UF_TEST_HOOK_UNSET is not set"},
		{"not base64", "signing_secrets: [{env: UF_TEST_HOOK_SIGNING}, {env: UF_TEST_HOOK_NOT_BASE64}]", key + "signing_secrets[1]: not a Standard Webhooks secret"},
		{"too short", "signing_secrets: [{file: " + short + "}]", key + "signing_secrets[0]: the secret is 12 bytes"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := fleet.Parse([]byte(base + "      " + tc.settings + "\n"))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error\n  %v\nwant it to contain\n  %s", err, tc.want)
			}
			for _, v := range []string{secretNew[6:], strings.Repeat("*", 40), "c2hvcnQtc2VjcmV0"} {
				if strings.Contains(err.Error(), v) {
					t.Fatalf("the error shows a secret: %v", err)
				}
			}
		})
	}
	good := "retry_statuses: [409, 425]\n      refuse_statuses: [404]\n      pause_statuses: [410]\n      compress: gzip\n      signing_secrets: [{env: UF_TEST_HOOK_SIGNING}]"
	if _, err := fleet.Parse([]byte(base + "      " + good + "\n")); err != nil {
		t.Fatal(err)
	}
}
