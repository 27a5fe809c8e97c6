package messages

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
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

// optionalSignedHeaders are covered only when present, after the others:
// a part signed before they were covered (without them) verifies as it
// did, and one that has them cannot lose, gain or change one (re-address
// a replay to another destination, say) without breaking its signature.
var optionalSignedHeaders = []string{HdrDestination, HdrReplayOf, HdrReplayRecords}

// signedBytes is what is signed: the subject and the covered headers, one
// "name: value" line each (values may not hold a newline: NATS headers
// cannot).
func signedBytes(subject string, h nats.Header) []byte {
	var b strings.Builder
	b.WriteString("usagefleet-part-v1\nsubject: ")
	b.WriteString(subject)
	line := func(k string) {
		b.WriteString("\n")
		b.WriteString(k)
		b.WriteString(": ")
		b.WriteString(strings.Join(h.Values(k), ","))
	}
	for _, k := range signedHeaders {
		line(k)
	}
	for _, k := range optionalSignedHeaders {
		if len(h.Values(k)) > 0 {
			line(k)
		}
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
// than one while a key is rotated). The reserved name ReplaySource lists
// the operators' replay keys.
type SourceKeys map[string][]string

// Replaying a dead letter where sources are bound (usage-worker dead
// replay --signing-key-file). The operator is not a source and must not
// become one: a replay key cannot sign a source's data, only say "send
// this again". It signs exactly two shapes (CheckReplay):
//
//   - a rebuild nudge, for a replace destination: an empty snapshot
//     closing marker of source ReplaySource (kind snapshot-end, 0 parts,
//     0 records). It makes a unit dirty and adds no record to any rebuild:
//     no part of source ReplaySource is ever admitted, so its generations
//     are empty.
//   - a redelivery, for an append destination: an append part addressed
//     to exactly one destination (HdrDestination) that names the stored
//     part it replays (HdrReplayOf, its USAGE sequence, and
//     HdrReplayRecords, the indexes of the records sent again, absent for
//     all). The worker reads that part, checks it is signed by the source
//     the replay names, on the same subject, and that the replay's records
//     are exactly those records (VerifyReplayed): a replay key can send a
//     source's own records to the destination that refused them, never
//     records of its own making, and never to a replace destination.
//
// A part that a binding refused (reason "source binding: ...") is not
// made good by a replay: its original does not verify.
const (
	// ReplaySource is the reserved source of replay nudges and the name
	// under sources: of the operators' public replay keys.
	ReplaySource = "uf-replay"
	// HdrReplayOf is the USAGE stream sequence of the part a redelivery
	// replays; HdrReplayRecords the indexes (comma-separated, ascending)
	// of its records that are sent again, absent when all are.
	HdrReplayOf      = "Usage-Replay-Of"
	HdrReplayRecords = "Usage-Replay-Records"
)

// CheckReplay refuses a part signed by a replay key (headers h, parsed to
// meta) that is not one of the two shapes a replay key may sign.
func CheckReplay(h nats.Header, meta PartMeta) error {
	dests := h.Values(HdrDestination)
	switch {
	case meta.Kind == KindSnapshotEnd && meta.Source == ReplaySource:
		if meta.Parts != 0 || meta.Records != 0 || len(dests) != 0 {
			return fmt.Errorf("signed by a replay key: a rebuild nudge has 0 parts, 0 records and no %s (this one: %d parts, %d records, %d destinations)", HdrDestination, meta.Parts, meta.Records, len(dests))
		}
		return nil
	case meta.Kind == KindAppend && meta.Source != ReplaySource:
		if len(dests) != 1 || !ValidToken(dests[0]) {
			return fmt.Errorf("signed by a replay key: an append part is a redelivery, which is addressed to exactly one destination by %s (this one: %q)", HdrDestination, dests)
		}
		if _, _, err := ReplayOf(h); err != nil {
			return fmt.Errorf("signed by a replay key: %w", err)
		}
		return nil
	}
	return fmt.Errorf("signed by a replay key, but not a replay: a replay key signs only a rebuild nudge (source %s, kind %s, 0 parts) or a redelivery (kind %s of the original source, one %s, %s); this is a %s of source %q", ReplaySource, KindSnapshotEnd, KindAppend, HdrDestination, HdrReplayOf, meta.Kind, meta.Source)
}

// ReplayOf reads what a redelivery replays: the original's USAGE
// sequence, and the indexes of its records sent again (nil: all).
func ReplayOf(h nats.Header) (uint64, []int, error) {
	seq, err := strconv.ParseUint(h.Get(HdrReplayOf), 10, 64)
	if err != nil || seq == 0 {
		return 0, nil, fmt.Errorf("header %s: %q is not a stream sequence", HdrReplayOf, h.Get(HdrReplayOf))
	}
	v := h.Get(HdrReplayRecords)
	if v == "" {
		return seq, nil, nil
	}
	var idx []int
	for _, f := range strings.Split(v, ",") {
		i, err := strconv.Atoi(f)
		if err != nil || i < 0 || (len(idx) > 0 && i <= idx[len(idx)-1]) {
			return 0, nil, fmt.Errorf("header %s: %q is not a list of ascending record indexes", HdrReplayRecords, v)
		}
		idx = append(idx, i)
	}
	return seq, idx, nil
}

// FormatReplayRecords is the HdrReplayRecords value of indexes (ascending).
func FormatReplayRecords(idx []int) string {
	s := make([]string, len(idx))
	for i, n := range idx {
		s[i] = strconv.Itoa(n)
	}
	return strings.Join(s, ",")
}

// VerifyReplayed checks a redelivery (subject, headers h, payload data,
// whose signature and shape were checked) against the stored part it
// names (origSubject, origH, origData, read from USAGE at its HdrReplayOf
// sequence): on the same subject, signed by a key of the source the
// replay names (not a replay key), its payload intact, and the replay's
// records exactly the original's records it lists. Records are compared
// as this reader encodes them, so a replay written by another version of
// the codec still matches.
func (k SourceKeys) VerifyReplayed(subject string, h nats.Header, data []byte, origSubject string, origH nats.Header, origData []byte) error {
	seq, idx, err := ReplayOf(h)
	if err != nil {
		return err
	}
	src := h.Get(HdrSource)
	if origSubject != subject {
		return fmt.Errorf("replay of stream message %d: it is on %s, the replay on %s", seq, origSubject, subject)
	}
	if got := origH.Get(HdrSource); got != src {
		return fmt.Errorf("replay of stream message %d: it is of source %q, the replay claims %q", seq, got, src)
	}
	if err := k.VerifyPart(origSubject, origH); err != nil {
		return fmt.Errorf("replay of stream message %d: the original does not verify: %w", seq, err)
	}
	if err := VerifyPayload(origH, origData); err != nil {
		return fmt.Errorf("replay of stream message %d: the original: %w", seq, err)
	}
	orig, err := DecodePart(origH, origData)
	if err != nil {
		return fmt.Errorf("replay of stream message %d: the original: %w", seq, err)
	}
	if orig.Meta.Kind == KindSnapshotEnd {
		return fmt.Errorf("replay of stream message %d: a closing marker has no records to replay", seq)
	}
	want := orig.Records
	if idx != nil {
		want = make([]UsageRecord, len(idx))
		for i, n := range idx {
			if n >= len(orig.Records) {
				return fmt.Errorf("replay of stream message %d: record %d: it has %d", seq, n, len(orig.Records))
			}
			want[i] = orig.Records[n]
		}
	}
	got, err := DecodePart(h, data)
	if err != nil {
		return fmt.Errorf("replay of stream message %d: %w", seq, err)
	}
	a, errA := EncodeRecords(nil, want)
	b, errB := EncodeRecords(nil, got.Records)
	if errA != nil || errB != nil || !bytes.Equal(a, b) {
		return fmt.Errorf("replay of stream message %d: its %d records are not the original's records it lists: %w", seq, len(got.Records), ErrBadSignature)
	}
	return nil
}

// ErrUnsigned, ErrBadSignature: why VerifyPart refused a part.
var (
	ErrUnsigned     = errors.New("part is not signed")
	ErrBadSignature = errors.New("part's signature does not verify")
)

// Validate checks every key; key is the config path for errors.
func (k SourceKeys) Validate(key string) error {
	if _, ok := k[ReplaySource]; ok && len(k) == 1 {
		return fmt.Errorf("%s: only %s keys: no source is bound, so every part would be refused (list each source's keys too)", key, ReplaySource)
	}
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
			if src != ReplaySource && slices.Contains(k[ReplaySource], pk) {
				return fmt.Errorf("%s.%s[%d]: also a replay key (%s.%s): a source's key and an operator's replay key must differ", key, src, i, key, ReplaySource)
			}
		}
	}
	return nil
}

// VerifyPart checks, from the headers alone, that the part on subject was
// signed by a key of the source its Usage-Source header names. A part of
// a source with no keys configured is refused too: once a fleet binds
// sources, an unknown source is nobody's. A replay key's signature is not
// the source's: see Signer. The payload is checked against the signed sum
// by VerifyPayload when it is read.
func (k SourceKeys) VerifyPart(subject string, h nats.Header) error {
	signer, err := k.Signer(subject, h)
	if err != nil {
		return err
	}
	if src := h.Get(HdrSource); signer != src {
		return fmt.Errorf("source %q: signed by a %s key, not one of the source's: %w", src, signer, ErrBadSignature)
	}
	return nil
}

// Signer checks, from the headers alone, the signature of the part on
// subject, and says whose key made it: the source its Usage-Source names,
// or ReplaySource when the key is an operator's replay key (listed under
// sources.uf-replay). What a replay key may sign is narrow: CheckReplay.
func (k SourceKeys) Signer(subject string, h nats.Header) (string, error) {
	src := h.Get(HdrSource)
	v := h.Get(HdrSignature)
	pub, sigText, ok := strings.Cut(v, ".")
	signer := src
	if v != "" && slices.Contains(k[ReplaySource], pub) {
		signer = ReplaySource
	}
	allowed := k[signer]
	if len(allowed) == 0 {
		return "", fmt.Errorf("source %q has no signing key configured: refused (sources: %s)", src, strings.Join(k.names(), ", "))
	}
	if v == "" {
		return "", fmt.Errorf("source %q: %w", src, ErrUnsigned)
	}
	if !ok {
		return "", fmt.Errorf("source %q: header %s is malformed: %w", src, HdrSignature, ErrBadSignature)
	}
	if !slices.Contains(allowed, pub) {
		return "", fmt.Errorf("source %q: signed by %s, which is not one of its keys: %w", src, pub, ErrBadSignature)
	}
	sig, err := base64.RawURLEncoding.DecodeString(sigText)
	if err != nil {
		return "", fmt.Errorf("source %q: %w", src, ErrBadSignature)
	}
	kp, err := nkeys.FromPublicKey(pub)
	if err != nil {
		return "", fmt.Errorf("source %q: %w", src, ErrBadSignature)
	}
	if err := kp.Verify(signedBytes(subject, h), sig); err != nil {
		return "", fmt.Errorf("source %q: headers or subject changed after signing: %w", src, ErrBadSignature)
	}
	return signer, nil
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
