package main

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

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

// TestServesTheChosenEmulatorsUntilStopped starts the webhook emulator on
// a random port, asks its admin endpoint through the URL the command
// printed, and stops it as SIGTERM does.
func TestServesTheChosenEmulatorsUntilStopped(t *testing.T) {
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	var out, errb syncBuffer
	exit := make(chan int, 1)
	go func() { exit <- run(ctx, []string{"--only", "webhook", "--webhook-port", "0"}, &out, &errb) }()

	line := regexp.MustCompile(`(?m)^webhook +(http://127\.0\.0\.1:\d+) `)
	var url string
	for deadline := time.Now().Add(10 * time.Second); url == ""; time.Sleep(10 * time.Millisecond) {
		if m := line.FindStringSubmatch(out.String()); m != nil {
			url = m[1]
		} else if time.Now().After(deadline) {
			t.Fatalf("no webhook URL printed; stdout %q, stderr %q", out.String(), errb.String())
		}
	}
	if strings.Contains(out.String(), "cloudzero") {
		t.Errorf("--only webhook also served another emulator:\n%s", out.String())
	}
	resp, err := http.Get(url + "/_sandbox/stats")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "{") {
		t.Errorf("GET /_sandbox/stats: %d %q", resp.StatusCode, body)
	}
	stop()
	select {
	case code := <-exit:
		if code != 0 {
			t.Errorf("exit %d after the stop, want 0; stderr %q", code, errb.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the sandbox did not stop")
	}
}

func TestRefusesBadArguments(t *testing.T) {
	for name, tc := range map[string]struct {
		args []string
		code int
		want string
	}{
		"a command":           {[]string{"sandbox"}, 2, `unexpected argument "sandbox"`},
		"an unknown flag":     {[]string{"--nope"}, 2, "flag provided but not defined: -nope"},
		"a public address":    {[]string{"--host", "0.0.0.0", "--only", "webhook", "--webhook-port", "0"}, 1, `host "0.0.0.0" is not a loopback address`},
		"an unknown emulator": {[]string{"--only", "stripe"}, 1, `unknown emulator "stripe"`},
	} {
		t.Run(name, func(t *testing.T) {
			var out, errb syncBuffer
			if code := run(context.Background(), tc.args, &out, &errb); code != tc.code || !strings.Contains(errb.String(), tc.want) {
				t.Errorf("exit %d, stderr %q; want exit %d and %q", code, errb.String(), tc.code, tc.want)
			}
		})
	}
}

// --webhook-signing-secret-env: the emulator then refuses an unsigned
// request 401 and takes a signed one; a bad or missing secret stops the
// start (exit 2) without showing the value.
func TestWebhookSigningSecretFlag(t *testing.T) {
	const secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	t.Run("refused", func(t *testing.T) {
		t.Setenv("UF_TEST_SANDBOX_BAD", "whsec_"+secret[6:]+" whsec_not*base64")
		for _, tc := range []struct{ env, want string }{
			{"UF_TEST_SANDBOX_UNSET", "environment variable UF_TEST_SANDBOX_UNSET is not set"},
			{"UF_TEST_SANDBOX_BAD", "secret 2 of UF_TEST_SANDBOX_BAD: not a whsec_ secret"},
		} {
			var out, errb syncBuffer
			code := run(context.Background(), []string{"--only", "webhook", "--webhook-port", "0", "--webhook-signing-secret-env", tc.env}, &out, &errb)
			if code != 2 || !strings.Contains(errb.String(), tc.want) || strings.Contains(errb.String(), "not*base64") || strings.Contains(errb.String(), secret[6:]) {
				t.Errorf("exit %d, stderr %q; want 2 and %q, without the value", code, errb.String(), tc.want)
			}
		}
	})
	t.Setenv("UF_TEST_SANDBOX_SIGNING", secret)
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	var out, errb syncBuffer
	exit := make(chan int, 1)
	go func() {
		exit <- run(ctx, []string{"--only", "webhook", "--webhook-port", "0", "--webhook-signing-secret-env", "UF_TEST_SANDBOX_SIGNING"}, &out, &errb)
	}()
	line := regexp.MustCompile(`(?m)^webhook +(http://127\.0\.0\.1:\d+) `)
	var url string
	for deadline := time.Now().Add(10 * time.Second); url == ""; time.Sleep(10 * time.Millisecond) {
		if m := line.FindStringSubmatch(out.String()); m != nil {
			url = m[1]
		} else if time.Now().After(deadline) {
			t.Fatalf("no webhook URL printed; stdout %q, stderr %q", out.String(), errb.String())
		}
	}
	body := `[{"BilledCost":"1"}]`
	send := func(signed bool) int {
		req, _ := http.NewRequest(http.MethodPost, url+"/ingest", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		if signed {
			key, _ := base64.StdEncoding.DecodeString(secret[6:])
			ts := strconv.FormatInt(time.Now().Unix(), 10)
			m := hmac.New(sha256.New, key)
			io.WriteString(m, "msg_1."+ts+"."+body)
			req.Header.Set("webhook-id", "msg_1")
			req.Header.Set("webhook-timestamp", ts)
			req.Header.Set("webhook-signature", "v1,"+base64.StdEncoding.EncodeToString(m.Sum(nil)))
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if unsigned, signed := send(false), send(true); unsigned != 401 || signed != 200 {
		t.Errorf("unsigned request %d (want 401), signed %d (want 200)", unsigned, signed)
	}
	stop()
	if code := <-exit; code != 0 {
		t.Errorf("exit %d", code)
	}
}
