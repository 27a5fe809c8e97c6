package webhook

// Standard Webhooks signatures (the symmetric scheme, "v1"), as the
// specification defines them: spec/standard-webhooks.md, version 1.0.0, of
// github.com/standard-webhooks/standard-webhooks (read at commit b2fa7b8),
// sections "Signature scheme" and "Webhook headers":
//
//   - the signed content is "<webhook-id>.<webhook-timestamp>.<body>";
//   - the signature is HMAC-SHA256 of it under the secret's bytes, base64
//     (standard alphabet, padded), written "v1,<signature>";
//   - the secret is presented as "whsec_" + base64 of 24 to 64 random bytes;
//   - webhook-signature is a space-separated list, one signature per
//     secret, so a receiver rotating its secret accepts either;
//   - webhook-timestamp is the integer Unix time of the attempt (a retry
//     gets a new one: receivers refuse stale ones against replays);
//   - webhook-id stays the same for every retry of the same message (the
//     receiver's idempotency key).
//
// sign_test.go checks the signer against the test vector the reference
// libraries publish (libraries/go/webhook_test.go TestWebhookSign, and the
// JavaScript and Python suites).

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"strconv"
	"strings"

	"github.com/usagefleet/usagefleet/internal/config"
)

// secretPrefix marks a symmetric Standard Webhooks secret.
const secretPrefix = "whsec_"

// minSecretBytes is the specification's smallest symmetric secret (192 bits).
const minSecretBytes = 24

// signer signs bodies with one or more secrets (rotation: the newest
// first). It never prints its keys.
type signer struct {
	keys [][]byte
}

func (signer) String() string   { return "webhook signer [redacted]" }
func (signer) GoString() string { return "webhook.signer{[redacted]}" }

// newSigner resolves and decodes the secrets; key is their config path
// (signing_secrets). No error shows a secret's value.
func newSigner(secrets []config.Secret, key string) (*signer, error) {
	if len(secrets) == 0 {
		return nil, nil
	}
	s := &signer{}
	for i := range secrets {
		k := key + "[" + strconv.Itoa(i) + "]"
		if err := secrets[i].Resolve(k); err != nil {
			return nil, err
		}
		b, err := decodeSecret(secrets[i].Value())
		if err != nil {
			return nil, config.Errorf(k, "%s (the value is not shown)", err)
		}
		s.keys = append(s.keys, b)
	}
	return s, nil
}

// secretError is why a value is not a symmetric secret; it never holds the
// value.
type secretError string

func (e secretError) Error() string { return string(e) }

// decodeSecret reads a "whsec_<base64>" secret (the prefix may be left
// out, as the reference libraries allow).
func decodeSecret(v string) ([]byte, error) {
	if strings.HasPrefix(v, "whsk_") || strings.HasPrefix(v, "whpk_") {
		return nil, secretError("an asymmetric (ed25519, v1a) key: only symmetric whsec_ secrets are supported")
	}
	b, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(v, secretPrefix))
	if err != nil {
		return nil, secretError("not a Standard Webhooks secret: want whsec_ followed by standard base64")
	}
	if len(b) < minSecretBytes {
		return nil, secretError("the secret is " + strconv.Itoa(len(b)) + " bytes; the Standard Webhooks specification wants 24 to 64 random bytes")
	}
	return b, nil
}

// header returns the webhook-signature value for id, the Unix timestamp
// ts and body: one "v1,<base64>" per secret, space-separated.
func (s *signer) header(id string, ts int64, body []byte) string {
	var prefix [64]byte
	signed := append(append(append(append(prefix[:0], id...), '.'), strconv.AppendInt(nil, ts, 10)...), '.')
	var out []byte
	var sum [sha256.Size]byte
	for i, k := range s.keys {
		m := hmac.New(sha256.New, k)
		m.Write(signed)
		m.Write(body)
		if i > 0 {
			out = append(out, ' ')
		}
		out = append(out, "v1,"...)
		out = base64.StdEncoding.AppendEncode(out, m.Sum(sum[:0]))
	}
	return string(out)
}
