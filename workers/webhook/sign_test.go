package webhook

import (
	"strings"
	"testing"

	"github.com/usagefleet/usagefleet/internal/config"
	"github.com/usagefleet/usagefleet/internal/usagegen"
)

// The test vector the Standard Webhooks reference libraries publish
// (github.com/standard-webhooks/standard-webhooks at b2fa7b8:
// libraries/go/webhook_test.go TestWebhookSign; the same in
// libraries/javascript/src/webhook.test.ts and
// libraries/python/tests/test_webhooks.py): our signer against the world,
// not only against our own verifier.
const (
	vectorSecret    = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	vectorID        = "msg_p5jXN8AQM9LWM0D4loKWxJek"
	vectorTimestamp = 1614265330
	vectorPayload   = `{"test": 2432232314}`
	vectorSignature = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
)

func TestSignerMatchesThePublishedVector(t *testing.T) {
	for _, secret := range []string{vectorSecret, strings.TrimPrefix(vectorSecret, "whsec_")} {
		s, err := newSigner([]config.Secret{config.NewSecret(secret)}, "test.signing_secrets")
		if err != nil {
			t.Fatal(err)
		}
		if got := s.header(vectorID, vectorTimestamp, []byte(vectorPayload)); got != vectorSignature {
			t.Fatalf("secret %.10s...: signature %s, the reference libraries publish %s", secret, got, vectorSignature)
		}
	}
}

// Rotation: one signature per secret, space-separated, the order of the
// secrets kept; each one is the signature that secret alone gives.
func TestSignerSignsWithEverySecret(t *testing.T) {
	other := "whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo0NTY3ODk="
	both, err := newSigner([]config.Secret{config.NewSecret(other), config.NewSecret(vectorSecret)}, "k")
	if err != nil {
		t.Fatal(err)
	}
	alone, _ := newSigner([]config.Secret{config.NewSecret(other)}, "k")
	got := both.header(vectorID, vectorTimestamp, []byte(vectorPayload))
	want := alone.header(vectorID, vectorTimestamp, []byte(vectorPayload)) + " " + vectorSignature
	if got != want {
		t.Fatalf("webhook-signature %q, want %q", got, want)
	}
}

func TestSigningSecretErrorsNeverShowTheSecret(t *testing.T) {
	for _, tc := range []struct{ name, secret, want string }{
		{"not base64", "whsec_not*base64*at*all*0123456789", "test.signing_secrets[0]: not a Standard Webhooks secret: want whsec_ followed by standard base64 (the value is not shown)"},
		{"too short", "whsec_c2hvcnQtc2VjcmV0", "test.signing_secrets[0]: the secret is 12 bytes; the Standard Webhooks specification wants 24 to 64 random bytes (the value is not shown)"},
		{"asymmetric", "whsk_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "test.signing_secrets[0]: an asymmetric (ed25519, v1a) key: only symmetric whsec_ secrets are supported"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := newSigner([]config.Secret{config.NewSecret(tc.secret)}, "test.signing_secrets")
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
			if strings.Contains(err.Error(), strings.TrimPrefix(strings.TrimPrefix(tc.secret, "whsec_"), "whsk_")) {
				t.Fatalf("the error shows the secret: %v", err)
			}
		})
	}
}

// benchBody is about 1 MiB of the JSON the destination sends.
func benchBody(b *testing.B) []byte {
	b.Helper()
	return usagegen.JSONArray(usagegen.Generate(1500, usagegen.Options{Seed: 7, Hours: 2}))
}

// The cost of signing and compressing a body, per byte of JSON:
// go test -run '^$' -bench 'Sign|Gzip' -benchmem ./workers/webhook/
func BenchmarkSignBody(b *testing.B) {
	body := benchBody(b)
	s, err := newSigner([]config.Secret{config.NewSecret(vectorSecret)}, "k")
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		s.header("uf-0123456789abcdef0123456789abcdef01234567", 1614265330, body)
	}
}

func BenchmarkGzipBody(b *testing.B) {
	body := benchBody(b)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	var n int
	for b.Loop() {
		n = len(gzipBody(body))
	}
	b.ReportMetric(float64(len(body))/float64(n), "ratio")
}
