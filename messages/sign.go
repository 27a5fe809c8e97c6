package messages

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"
)

// Binding a source to its publisher.
//
// A header is a claim, not an identity: without a binding any producer
// could publish an empty snapshot as another team's source and replace its
// period. A source is bound by a signing key: the producer of source S
// signs every part with S's private key (an NATS user nkey seed, "SU...",
// made with `nk -gen user`), and the workers hold only the public keys
// ("U...") each source may sign with, in their configuration:
//
//	sources:
//	  team-a: [UDXU4RCSJNZOIQHZNWXHXORDPRTGNJAHAHFRGZNEEJCPQTT2M7NLCNF4]
//
// The signature covers the subject and every routing header (schema,
// batch, part, feed, source, kind, hour, period, generation, records,
// parts, message id) and the payload's SHA-256, which is a header too, so
// a consumer that reads headers only (the workers' mark step) verifies the
// claim there, and checks the payload against its sum when it reads it
// (rebuild).
//
// Why signatures and not subjects that carry the source (usage.<feed>.
// <source>.<hour>) restricted by NATS permissions: that moves every stored
// part to a new subject layout, which the worker runtime's rebuild filters
// and subject counts are built on, so it must change in one step with the
// workers; signatures are additive (a fleet without keys configured works
// as before) and bind the data itself, whoever relays it (the ingest
// gateway, a replay, a mirror). [Decision of this change; the subject
// binding remains possible later: SignPart does not exclude it.]

// MaxGenerationLead is how far past the time a part was stored a snapshot
// generation may be. Generations are meant to be unix-nanosecond
// timestamps of the collection (or small counters): 2^63-1 would freeze
// the period for every later generation.
const MaxGenerationLead = 10 * time.Minute

// CheckGeneration refuses a generation that is not plausible at time now
// (for a stored part: the time JetStream stored it): below 1, or more than
// MaxGenerationLead beyond now as unix nanoseconds.
func CheckGeneration(gen int64, now time.Time) error {
	if gen < 1 {
		return fmt.Errorf("generation %d: must be positive", gen)
	}
	if limit := now.Add(MaxGenerationLead).UnixNano(); gen > limit {
		return fmt.Errorf("generation %d is after %s (the store time plus %s): generations are unix-nanosecond times of the collection, and one from the future would freeze the period", gen, time.Unix(0, limit).UTC().Format(time.RFC3339), MaxGenerationLead)
	}
	return nil
}

// signedHeaders are the headers a signature covers, in this order.
var signedHeaders = []string{HdrSchema, HdrBatch, HdrPart, HdrFeed, HdrSource, HdrKind, HdrHour, HdrPeriod, HdrGeneration, HdrRecords, HdrParts, HdrMsgID, HdrPayloadSum}

// signedBytes is what is signed: the subject and the covered headers, one
// "name: value" line each (values may not hold a newline: NATS headers
// cannot).
func signedBytes(subject string, h nats.Header) []byte {
	var b strings.Builder
	b.WriteString("usagefleet-part-v1\nsubject: ")
	b.WriteString(subject)
	for _, k := range signedHeaders {
		b.WriteString("\n")
		b.WriteString(k)
		b.WriteString(": ")
		b.WriteString(strings.Join(h.Values(k), ","))
	}
	return []byte(b.String())
}

// PayloadSum is the hex SHA-256 of a payload.
func PayloadSum(payload []byte) string {
	s := sha256.Sum256(payload)
	return hex.EncodeToString(s[:])
}

// SignPart sets the payload sum and the signature of a part about to be
// published on subject. kp is the source's user nkey (its seed).
func SignPart(subject string, h nats.Header, payload []byte, kp nkeys.KeyPair) error {
	pub, err := kp.PublicKey()
	if err != nil {
		return fmt.Errorf("signing key: %w", err)
	}
	h.Set(HdrPayloadSum, PayloadSum(payload))
	sig, err := kp.Sign(signedBytes(subject, h))
	if err != nil {
		return fmt.Errorf("signing: %w", err)
	}
	h.Set(HdrSignature, pub+"."+base64.RawURLEncoding.EncodeToString(sig))
	return nil
}

// SourceKeys lists the public user nkeys each source may sign with (more
// than one while a key is rotated).
type SourceKeys map[string][]string

// ErrUnsigned, ErrBadSignature: why VerifyPart refused a part.
var (
	ErrUnsigned     = errors.New("part is not signed")
	ErrBadSignature = errors.New("part's signature does not verify")
)

// Validate checks every key; key is the config path for errors.
func (k SourceKeys) Validate(key string) error {
	for src, keys := range k {
		if !ValidToken(src) {
			return fmt.Errorf("%s: %q is not a source name (1-64 of A-Z a-z 0-9 _ -)", key, src)
		}
		if len(keys) == 0 {
			return fmt.Errorf("%s.%s: no public key", key, src)
		}
		for i, pk := range keys {
			if !nkeys.IsValidPublicUserKey(pk) {
				return fmt.Errorf("%s.%s[%d]: not a public user nkey (U..., from nk -gen user -pubout); a seed (S...) never goes here", key, src, i)
			}
		}
	}
	return nil
}

// VerifyPart checks, from the headers alone, that the part on subject was
// signed by a key of the source its Usage-Source header names. A part of
// a source with no keys configured is refused too: once a fleet binds
// sources, an unknown source is nobody's. The payload is checked against
// the signed sum by VerifyPayload when it is read.
func (k SourceKeys) VerifyPart(subject string, h nats.Header) error {
	src := h.Get(HdrSource)
	allowed := k[src]
	if len(allowed) == 0 {
		return fmt.Errorf("source %q has no signing key configured: refused (sources: %s)", src, strings.Join(k.names(), ", "))
	}
	v := h.Get(HdrSignature)
	if v == "" {
		return fmt.Errorf("source %q: %w", src, ErrUnsigned)
	}
	pub, sigText, ok := strings.Cut(v, ".")
	if !ok {
		return fmt.Errorf("source %q: header %s is malformed: %w", src, HdrSignature, ErrBadSignature)
	}
	known := false
	for _, a := range allowed {
		known = known || a == pub
	}
	if !known {
		return fmt.Errorf("source %q: signed by %s, which is not one of its keys: %w", src, pub, ErrBadSignature)
	}
	sig, err := base64.RawURLEncoding.DecodeString(sigText)
	if err != nil {
		return fmt.Errorf("source %q: %w", src, ErrBadSignature)
	}
	kp, err := nkeys.FromPublicKey(pub)
	if err != nil {
		return fmt.Errorf("source %q: %w", src, ErrBadSignature)
	}
	if err := kp.Verify(signedBytes(subject, h), sig); err != nil {
		return fmt.Errorf("source %q: headers or subject changed after signing: %w", src, ErrBadSignature)
	}
	return nil
}

// VerifyPayload checks a payload against the signed sum in h.
func VerifyPayload(h nats.Header, payload []byte) error {
	want := h.Get(HdrPayloadSum)
	if want == "" {
		return fmt.Errorf("header %s missing: %w", HdrPayloadSum, ErrUnsigned)
	}
	if PayloadSum(payload) != want {
		return fmt.Errorf("payload does not match its signed %s: %w", HdrPayloadSum, ErrBadSignature)
	}
	return nil
}

func (k SourceKeys) names() []string {
	n := make([]string, 0, len(k))
	for s := range k {
		n = append(n, s)
	}
	sort.Strings(n)
	return n
}
