package webhook

import (
	"bytes"
	"compress/gzip"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The reference libraries' published vector (standard-webhooks at
// b2fa7b8, libraries/go/webhook_test.go TestWebhookSign): the receiver
// verifies what the world signs, independently of our sender.
const (
	vectorSecret    = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	vectorID        = "msg_p5jXN8AQM9LWM0D4loKWxJek"
	vectorTimestamp = 1614265330
	vectorPayload   = `{"test": 2432232314}`
	vectorSignature = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
)

func vectorHeader(sig string) http.Header {
	h := http.Header{}
	h.Set("webhook-id", vectorID)
	h.Set("webhook-timestamp", strconv.Itoa(vectorTimestamp))
	h.Set("webhook-signature", sig)
	return h
}

func TestVerifyThePublishedVector(t *testing.T) {
	s := New(Config{SigningSecrets: []string{vectorSecret}})
	at := time.Unix(vectorTimestamp, 0)
	for _, tc := range []struct {
		name    string
		sig     string
		payload string
		now     time.Time
		want    string // "" verifies
	}{
		{"the vector", vectorSignature, vectorPayload, at, ""},
		{"among others (rotation)", "v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc= v2,x " + vectorSignature, vectorPayload, at, ""},
		{"a changed body", vectorSignature, `{"test": 2432232315}`, at, "no v1 signature matches"},
		{"another version", strings.Replace(vectorSignature, "v1,", "v1a,", 1), vectorPayload, at, "no v1 signature matches"},
		{"stale", vectorSignature, vectorPayload, at.Add(5*time.Minute + 2*time.Second), "webhook-timestamp is 5m2s old, over the 5m0s tolerance"},
		{"from the future", vectorSignature, vectorPayload, at.Add(-6 * time.Minute), "in the future"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := s.verify(vectorHeader(tc.sig), []byte(tc.payload), tc.now)
			if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
				t.Fatalf("verify: %v; want %q", err, tc.want)
			}
		})
	}
}

// sign signs body as a Standard Webhooks sender does, here in the test.
func sign(secret, id string, ts int64, body []byte) string {
	k, _ := DecodeSecret(secret)
	m := hmac.New(sha256.New, k)
	fmt.Fprintf(m, "%s.%d.%s", id, ts, body)
	return "v1," + base64.StdEncoding.EncodeToString(m.Sum(nil))
}

func gz(t *testing.T, b []byte) []byte {
	t.Helper()
	var out bytes.Buffer
	zw := gzip.NewWriter(&out)
	zw.Write(b)
	zw.Close()
	return out.Bytes()
}

func postRaw(t *testing.T, url string, body []byte, hdr http.Header) reply {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	req.Header = hdr
	if req.Header.Get("Content-Type") == "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	b.ReadFrom(resp.Body)
	return reply{resp.StatusCode, b.String(), resp.Header}
}

// Over HTTP: a signed request passes, an unsigned, stale or wrongly signed
// one gets 401 as a real receiver answers, counted, and the answer never
// echoes a signature.
func TestSignedIngest(t *testing.T) {
	const wrong = "whsec_QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo0NTY3ODk="
	s, url := start(t, Config{SigningSecrets: []string{vectorSecret}})
	body := []byte(`[{"BilledCost":"1.5"}]`)
	now := time.Now().Unix()
	hdr := func(id string, ts int64, sig string) http.Header {
		h := http.Header{}
		if id != "" {
			h.Set("webhook-id", id)
			h.Set("webhook-timestamp", strconv.FormatInt(ts, 10))
			h.Set("webhook-signature", sig)
		}
		return h
	}
	for _, tc := range []struct {
		name string
		h    http.Header
		body []byte
		code int
		want string
	}{
		{"unsigned", hdr("", 0, ""), body, 401, "are required"},
		{"wrong secret", hdr("m1", now, sign(wrong, "m1", now, body)), body, 401, "no v1 signature matches"},
		{"stale", hdr("m1", now-400, sign(vectorSecret, "m1", now-400, body)), body, 401, "old, over the 5m0s tolerance"},
		{"another id", hdr("m2", now, sign(vectorSecret, "m1", now, body)), body, 401, "no v1 signature matches"},
		{"signed", hdr("m1", now, sign(vectorSecret, "m1", now, body)), body, 200, `"received":1`},
		{"rotation", hdr("m3", now, sign(wrong, "m3", now, body)+" "+sign(vectorSecret, "m3", now, body)), body, 200, `"received":1`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := postRaw(t, url+"/ingest", tc.body, tc.h)
			if got.code != tc.code || !strings.Contains(got.body, tc.want) {
				t.Fatalf("%d %s; want %d %q", got.code, got.body, tc.code, tc.want)
			}
			if sig := tc.h.Get("webhook-signature"); sig != "" && strings.Contains(got.body, sig[3:]) {
				t.Fatalf("the answer echoes the signature: %s", got.body)
			}
		})
	}
	if st := s.Stats(); st.Verified != 2 || st.BadSignatures != 4 || st.Requests != 2 || st.Rejected != 4 {
		t.Fatalf("stats %+v; want 2 verified and applied, 4 bad signatures rejected", st)
	}
}

// A gzip body is inflated; the limit applies to the bytes on the wire,
// the signature to the inflated JSON.
func TestGzipIngest(t *testing.T) {
	var rec bytes.Buffer
	rec.WriteString("[")
	for i := 0; i < 200; i++ {
		if i > 0 {
			rec.WriteString(",")
		}
		fmt.Fprintf(&rec, `{"BilledCost":"0.01","ServiceName":"compute %d"}`, i%3)
	}
	rec.WriteString("]")
	json := rec.Bytes()
	wire := gz(t, json)
	limit := int64(len(wire)) + 64 // the JSON is many times that
	s, url := start(t, Config{MaxBodyBytes: limit, MaxInflatedBytes: int64(len(json)), SigningSecrets: []string{vectorSecret}})
	signed := func(body []byte, enc string) http.Header {
		h := http.Header{}
		ts := time.Now().Unix()
		h.Set("webhook-id", "g1")
		h.Set("webhook-timestamp", strconv.FormatInt(ts, 10))
		h.Set("webhook-signature", sign(vectorSecret, "g1", ts, body))
		if enc != "" {
			h.Set("Content-Encoding", enc)
		}
		return h
	}
	bigger := append(append([]byte(nil), json[:len(json)-1]...), `,{}]`...)
	for _, tc := range []struct {
		name string
		wire []byte
		h    http.Header
		code int
		want string
	}{
		{"gzip, signed over the JSON", wire, signed(json, "gzip"), 200, `"received":200`},
		{"signed over the gzip bytes", wire, signed(wire, "gzip"), 401, "no v1 signature matches"},
		{"the JSON itself is over the wire limit", json, signed(json, ""), 413, "body larger than"},
		{"inflates over its limit", gz(t, bigger), signed(bigger, "gzip"), 413, "inflates to more than"},
		{"not gzip", []byte(`[{}]`), signed([]byte(`[{}]`), "gzip"), 400, "the body is not"},
		{"another encoding", wire, signed(json, "br"), 415, `is not supported (gzip is)`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := postRaw(t, url+"/ingest", tc.wire, tc.h); got.code != tc.code || !strings.Contains(got.body, tc.want) {
				t.Fatalf("%d %s; want %d %q", got.code, got.body, tc.code, tc.want)
			}
		})
	}
	st := s.Stats()
	if st.Requests != 1 || st.Records != 200 || st.Gzipped < 2 || st.MaxInflatedBytes < int64(len(json)) {
		t.Fatalf("stats %+v", st)
	}
	if got := s.Records(); string(got[7]) != `{"BilledCost":"0.01","ServiceName":"compute 1"}` {
		t.Fatalf("record 7 is %s", got[7])
	}
}
