package webhook_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/usagefleet/usagefleet/internal/config"
	sbwebhook "github.com/usagefleet/usagefleet/internal/sandbox/webhook"
	"github.com/usagefleet/usagefleet/internal/usagegen"
	"github.com/usagefleet/usagefleet/messages"
	"github.com/usagefleet/usagefleet/workers"
	"github.com/usagefleet/usagefleet/workers/webhook"
)

func configSecret(v string) config.Secret { return config.NewSecret(v) }

// Signing secrets, from env and file, appear nowhere: not in the printed
// destination or settings, not in the logs of a destination the receiver
// refuses 401 (with an answer that echoes every header it got and, as a
// careless receiver might, the secret in the form it was given), not in
// the dead-letter reasons.
func TestSigningSecretsNeverShown(t *testing.T) {
	oldFile := filepath.Join(t.TempDir(), "old")
	if err := os.WriteFile(oldFile, []byte(secretOld+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("UF_TEST_HOOK_SIGNING", secretNew)
	echo := func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, fmt.Sprintf(`{"error":"bad signature %s for id %s; keys tried: %s, %s"}`, r.Header.Get("Webhook-Signature"), r.Header.Get("Webhook-Id"), secretNew, strings.TrimPrefix(secretOld, "whsec_")), http.StatusUnauthorized)
		})
	}
	for _, refuse := range []bool{false, true} {
		t.Run(fmt.Sprintf("refuse_statuses=%v", refuse), func(t *testing.T) {
			f := fixtureWith(t, sbwebhook.Config{MaxBodyBytes: bodyLimit}, echo)
			settings := fmt.Sprintf("url: %s/ingest\nsigning_secrets:\n  - {env: UF_TEST_HOOK_SIGNING}\n  - {file: %s}\n", f.srv.URL, oldFile)
			if refuse {
				settings += "refuse_statuses: [401]\n"
			}
			dest, err := buildFromYAML(t, settings)
			if err != nil {
				t.Fatal(err)
			}
			pool, logs := f.runPool(dest, workers.Options{})
			recs := usagegen.Generate(10, usagegen.Options{Seed: 51, Hours: 1})
			var shown strings.Builder
			if refuse {
				s := f.publishWait("leak", recs)
				if s.RejectedRecords != len(recs) {
					t.Fatalf("summary %+v", s)
				}
				fmt.Fprintln(&shown, s.Reasons)
			} else {
				if _, err := f.prod.Publish(context.Background(), &messages.Batch{ID: "leak", Feed: "cloud", Source: "gen", Records: recs}); err != nil {
					t.Fatal(err)
				}
				f.waitFor(30*time.Second, "the pause", func() bool { p, _ := pool.Paused(); return p })
				_, reason := pool.Paused()
				fmt.Fprintln(&shown, reason)
			}
			fmt.Fprintf(&shown, "%v %+v %#v\n%s", dest, dest, dest, logs)
			text := shown.String()
			if !strings.Contains(text, "keys tried: [redacted], [redacted]") {
				t.Fatalf("the receiver's echo is not shown redacted: the check proved nothing\n%s", text)
			}
			for _, v := range []string{secretNew, secretOld, secretNew[6:], secretOld[6:]} {
				if strings.Contains(text, v) {
					t.Fatalf("a signing secret is shown (%.12s...):\n%s", v, text)
				}
			}
		})
	}
}

// In code, SigningSecrets take config.Secret values; printing the
// settings or the destination shows none, and the caller's settings are
// left unresolved.
func TestSigningSecretsInCode(t *testing.T) {
	s := webhook.Settings{URL: "http://127.0.0.1:9/ingest", SigningSecrets: []config.Secret{configSecret(secretNew), {Env: "UF_TEST_HOOK_SIGNING"}}}
	t.Setenv("UF_TEST_HOOK_SIGNING", secretOld)
	d, err := webhook.New("hook", s, "test")
	if err != nil {
		t.Fatal(err)
	}
	if s.SigningSecrets[1].Value() != "" {
		t.Fatal("New resolved the caller's secret in place")
	}
	p := fmt.Sprintf("%v %+v %#v %v %+v %#v", d, d, d, s, s, s)
	for _, v := range []string{secretNew[6:], secretOld[6:]} {
		if strings.Contains(p, v) {
			t.Fatalf("printed: %s", p)
		}
	}
}
