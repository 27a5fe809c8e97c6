package main

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/usagefleet/usagefleet/internal/usagegen"
	"github.com/usagefleet/usagefleet/messages"
	"github.com/usagefleet/usagefleet/producer"
)

// The secrets of the two replace destinations. The CloudZero key is made
// of the characters an identifier may hold (a real key is alphanumeric),
// so an answer may echo it where the API puts its error type; the Cloud
// Cruiser token holds the characters every encoder escapes (& < > " ' /
// + = and a space).
const (
	echoCZKey   = "czK3y-0123456789_abcdef.XYZ"
	echoCCToken = `cc&t0k<en>/9+x=y 'q"z`
)

// echoForms are the ways a receiver may write secret s back: as it is,
// JSON-escaped the way Go and most encoders do (\u0026, \u003c, \"), with
// every character \u-escaped, URL-encoded, HTML-escaped, base64 (alone and
// inside a Basic credential) and hex.
func echoForms(s string) []string {
	j, _ := json.Marshal(s)
	var all strings.Builder
	for _, r := range s {
		fmt.Fprintf(&all, `\u%04x`, r)
	}
	return []string{
		s,
		strings.Trim(string(j), `"`),
		all.String(),
		url.QueryEscape(s),
		url.PathEscape(s),
		html.EscapeString(s),
		base64.StdEncoding.EncodeToString([]byte(s)),
		base64.StdEncoding.EncodeToString([]byte("user:" + s)),
		hex.EncodeToString([]byte(s)),
	}
}

// leakForms are what must appear nowhere: the echo forms, and the forms a
// JSON writer (a log handler, an ack's reason) makes of the raw secret.
func leakForms(s string) []string {
	forms := echoForms(s)
	for _, f := range []string{s, strings.ReplaceAll(s, `"`, `\"`)} {
		j, _ := json.Marshal(f)
		forms = append(forms, strings.Trim(string(j), `"`))
	}
	return forms
}

// echoText is what the careless receiver says: every form of the secret
// it was sent, and every header.
func echoText(r *http.Request, secret string) string {
	var b strings.Builder
	b.WriteString("refused; you sent")
	for _, f := range echoForms(secret) {
		b.WriteString(" <" + f + ">")
	}
	for k, vs := range r.Header {
		for _, v := range vs {
			fmt.Fprintf(&b, " %s=%s", k, v)
		}
	}
	return b.String()
}

// TestEchoedSecretsOfReplaceDestinations: a CloudZero and a Cloud Cruiser
// API that answer an error echoing the API key or token (as sent, JSON-
// escaped, \u-escaped, URL, HTML, base64, hex; in the error type where
// CloudZero names one) put it nowhere the worker writes: not in its logs,
// the dead letters (DEAD, kept 90 days), the acks (ACKS, read by every
// producer), the status bucket, nor the unauthenticated /readyz body,
// which names a paused destination but never carries the API's answer. A
// refusal (400: the records are dead-lettered with the reason), refused
// credentials (401: the destinations pause) and a server error (500:
// retried) each run the worker command as a process does.
func TestEchoedSecretsOfReplaceDestinations(t *testing.T) {
	for _, status := range []int{http.StatusBadRequest, http.StatusUnauthorized, http.StatusInternalServerError} {
		t.Run(fmt.Sprint(status), func(t *testing.T) { testEchoedSecrets(t, status) })
	}
}

func testEchoedSecrets(t *testing.T, status int) {
	t.Setenv("UF_ECHO_CZ_KEY", echoCZKey)
	t.Setenv("UF_ECHO_CC_TOKEN", echoCCToken)
	var requests atomic.Int64
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		requests.Add(1)
		secret := echoCCToken
		if strings.Contains(r.URL.Path, "billing") { // CloudZero
			secret = echoCZKey
		}
		echo := echoText(r, secret)
		var body []byte
		switch {
		case status == http.StatusInternalServerError:
			// Not JSON: the worker keeps the text.
			w.Header().Set("Content-Type", "text/plain")
			w.WriteHeader(status)
			_, _ = io.WriteString(w, echo)
			return
		case strings.Contains(r.URL.Path, "billing"): // CloudZero
			body, _ = json.Marshal(map[string]any{"error": map[string]any{"type": echoCZKey, "message": echo}})
		default: // Cloud Cruiser
			body, _ = json.Marshal(map[string]any{"success": false, "status": status, "message": echo})
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = w.Write(body)
	}))
	defer api.Close()

	natsPort, metricsPort := freePort(t), freePort(t)
	path := writeConfig(t, fmt.Sprintf(`
nats:
  data_dir: %q
  port: %d
streams: {lease_ttl: 10s}
worker:
  log_format: json
  log_level: debug
  drain_timeout: 5s
  metrics: {listen: "127.0.0.1:%d"}
destinations:
  - name: cz
    type: cloudzero
    feeds: [cloud]
    flush: {max_delay: 200ms, quiet: 50ms}
    retry: {initial: 50ms, max: 200ms}
    pause_probe: 1s
    settings:
      base_url: %s
      connection_id: echo-connection
      api_key: {env: UF_ECHO_CZ_KEY}
  - name: cc
    type: cloudcruiser
    feeds: [msp]
    flush: {max_delay: 200ms, quiet: 50ms}
    retry: {initial: 50ms, max: 200ms}
    pause_probe: 1s
    settings:
      base_url: %s
      token: {env: UF_ECHO_CC_TOKEN}
`, filepath.Join(t.TempDir(), "nats"), natsPort, metricsPort, api.URL, api.URL))

	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	var logs syncBuffer
	exit := make(chan int, 1)
	go func() { exit <- cmdRun(ctx, []string{"--config", path}, &logs) }()
	stopped := false
	defer func() {
		if !stopped {
			stop()
			<-exit
		}
	}()

	base := fmt.Sprintf("http://127.0.0.1:%d", metricsPort)
	get := httpGetter(base)
	waitFor := pollUntil(t, 60*time.Second, &logs)
	waitFor("/readyz", func() bool { c, _ := get("/readyz"); return c == 200 })

	nc, err := nats.Connect(fmt.Sprintf("nats://127.0.0.1:%d", natsPort))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	prod, err := producer.New(nc, producer.Options{})
	if err != nil {
		t.Fatal(err)
	}
	const n = 6
	results := map[string]*producer.Result{}
	for dest, feed := range map[string]string{"cz": "cloud", "cc": "msp"} {
		res, err := prod.Publish(ctx, &messages.Batch{ID: "echo-" + dest, Feed: feed, Source: "echo", Records: usagegen.Generate(n, usagegen.Options{Seed: 12, Hours: 1})})
		if err != nil {
			t.Fatal(err)
		}
		results[dest] = res
	}

	var readyz string
	switch status {
	case http.StatusBadRequest:
		// Every record is refused: each is dead-lettered and acked with
		// the API's answer as its reason.
		for dest, res := range results {
			wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
			sums, err := prod.Wait(wctx, res, []string{dest}, nil)
			cancel()
			if err != nil {
				t.Fatalf("%s: %v; logs:\n%s", dest, err, logs.String())
			}
			if s := sums[dest]; s == nil || s.RejectedRecords != n {
				t.Fatalf("%s: summary %+v; want %d records rejected", dest, s, n)
			}
		}
		_, readyz = get("/readyz")
	case http.StatusUnauthorized:
		// Both destinations pause; /readyz says so, by name.
		waitFor("both destinations to pause", func() bool {
			_, m := get("/metrics")
			return strings.Contains(m, `usagefleet_destination_paused{destination="cz"`) &&
				pausedMetric(m, "cz") && pausedMetric(m, "cc")
		})
		var c int
		c, readyz = get("/readyz")
		if c != http.StatusServiceUnavailable || !strings.Contains(readyz, "paused") {
			t.Fatalf("/readyz answers %d %q with both destinations paused", c, readyz)
		}
	case http.StatusInternalServerError:
		// Retried: the failures are logged with the API's answer.
		waitFor("a logged retry of each destination", func() bool {
			text := logs.String()
			return retryLogged(text, "cz") && retryLogged(text, "cc")
		})
		_, readyz = get("/readyz")
	}
	if requests.Load() == 0 {
		t.Fatal("no request reached the API")
	}
	if strings.Contains(readyz, "refused; you sent") || strings.Contains(readyz, "[redacted]") {
		t.Errorf("/readyz carries the API's answer: %q", readyz)
	}

	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	dead := readStream(t, js, messages.StreamDead)
	acks := readStream(t, js, messages.StreamAcks)
	status2 := readStream(t, js, "KV_uf_status")

	stop() // as SIGTERM does
	select {
	case <-exit:
	case <-time.After(30 * time.Second):
		t.Fatal("the worker did not stop within 30s of SIGTERM")
	}
	stopped = true
	logText := logs.String()

	// The answers reached each place (else the check proves nothing), and
	// redacted.
	if !strings.Contains(logText, "refused; you sent <[redacted]>") {
		t.Fatalf("the logs do not show the API's answer redacted: the check proved nothing\n%.3000s", logText)
	}
	if status == http.StatusBadRequest {
		for _, where := range []struct{ name, text string }{{"DEAD", dead}, {"ACKS", acks}} {
			if !strings.Contains(where.text, `refused; you sent \u003c[redacted]\u003e`) {
				t.Fatalf("%s does not hold the API's answer redacted: the check proved nothing\n%.3000s", where.name, where.text)
			}
		}
	}
	for _, where := range []struct{ name, text string }{
		{"the logs", logText}, {"DEAD", dead}, {"ACKS", acks}, {"the status bucket", status2}, {"/readyz", readyz},
	} {
		for _, secret := range []string{echoCZKey, echoCCToken} {
			for _, f := range leakForms(secret) {
				if i := strings.Index(where.text, f); i >= 0 {
					lo, hi := max(0, i-200), min(len(where.text), i+len(f)+100)
					t.Errorf("%s show a secret as %q: ...%s...", where.name, f, where.text[lo:hi])
					break // one form of it is enough to say
				}
			}
		}
	}
}

func pausedMetric(metrics, dest string) bool {
	sc := bufio.NewScanner(strings.NewReader(metrics))
	for sc.Scan() {
		l := sc.Text()
		if strings.HasPrefix(l, `usagefleet_destination_paused{destination="`+dest+`"`) && strings.HasSuffix(l, " 1") {
			return true
		}
	}
	return false
}

func retryLogged(logs, dest string) bool {
	sc := bufio.NewScanner(strings.NewReader(logs))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var rec map[string]any
		if json.Unmarshal(sc.Bytes(), &rec) == nil && rec["msg"] == "delivery failed, will retry" && rec["destination"] == dest {
			return true
		}
	}
	return false
}

// readStream returns every message of stream, headers and data, as text.
func readStream(t *testing.T, js jetstream.JetStream, stream string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, stream)
	if err != nil {
		if stream == "KV_uf_status" {
			return "" // not every run writes a status
		}
		t.Fatalf("%s: %v", stream, err)
	}
	last := s.CachedInfo().State.LastSeq
	var b strings.Builder
	if last == 0 {
		return ""
	}
	c, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	for {
		m, err := c.Next(jetstream.FetchMaxWait(5 * time.Second))
		if err != nil {
			t.Fatalf("%s: %v", stream, err)
		}
		fmt.Fprintf(&b, "%v %s\n", m.Headers(), m.Data())
		md, _ := m.Metadata()
		if md.Sequence.Stream >= last {
			return b.String()
		}
	}
}
