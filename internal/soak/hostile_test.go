//go:build soak

package soak

import (
	"context"
	"crypto/rand"
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/usagefleet/usagefleet/messages"
	"github.com/usagefleet/usagefleet/producer"
)

// wantDead is a message that must end in DEAD at each of dests, with a
// reason that starts with reason ("" = any reason).
type wantDead struct {
	what   string
	dests  []string
	reason string
	match  func(messages.DeadLetter) bool
}

type hostileResult struct {
	wantDead []wantDead
}

func (h *hostileResult) expected() int {
	n := 0
	for _, w := range h.wantDead {
		n += len(w.dests)
	}
	return n
}

// legit says whether dl is of a well-behaved batch (none may be
// dead-lettered: every record they publish is deliverable everywhere).
func (h *hostileResult) legit(dl messages.DeadLetter) bool {
	for _, p := range []string{"a-", "b-", "snap-", "probe-"} {
		if strings.HasPrefix(dl.BatchID, p) {
			return true
		}
	}
	return false
}

func byBatch(id string) func(messages.DeadLetter) bool {
	return func(dl messages.DeadLetter) bool { return dl.BatchID == id }
}

func bySeq(seq uint64) func(messages.DeadLetter) bool {
	return func(dl messages.DeadLetter) bool { return dl.StreamSeq == seq }
}

// runHostile plays the hostile producer and the poison of issue 12, once:
//
//   - team-b, with its own valid key, publishes records claiming team-a's
//     source, and an empty snapshot of team-a's snapshot period with a newer
//     generation (it emptied CloudZero hours once): refused, source binding;
//   - a snapshot marker of generation 2^63-1 for team-a's period, signed
//     with team-a's key: refused, implausible generation;
//   - a part of schema 99 signed by team-a: it may hold its hour only until
//     worker.newer_schema_max_hold (1m here), then it is refused; an
//     unsigned one is refused at once (source binding);
//   - team-b reuses team-a's batch id "a-3": stored, its own (scoped ids);
//     team-a reusing "a-3" with other content is refused at the producer;
//   - poison: an undecodable payload under valid signed headers, a 900 KB
//     undecodable one (near the 1 MB max payload), and a message without
//     headers: each dead-lettered with a reason at every destination.
//
// It runs on its own goroutine: it reports with t.Error, never t.Fatal.
func runHostile(ctx context.Context, t *testing.T, nc *nats.Conn, js jetstream.JetStream, pubs *publishers, kpA, kpB nkeys.KeyPair) *hostileResult {
	h := &hostileResult{}
	forger, err := producer.New(nc, producer.Options{SigningKey: kpB})
	if err != nil {
		t.Error(err)
		return h
	}
	pubCtx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()

	forged := &messages.Batch{ID: "forged-1", Feed: feed, Source: "team-a", Records: records("team-a", "forged-1", 40, 1<<50, false)}
	if _, err := forger.Publish(pubCtx, forged); err != nil {
		t.Errorf("publishing the forged batch: %v", err)
	}
	h.wantDead = append(h.wantDead, wantDead{"forged records (team-b's key, team-a's source)", allDests, "source binding: ", byBatch("forged-1")})
	gen := time.Now().UnixNano()
	empty := &messages.Batch{ID: "forged-snap", Feed: feed, Source: "team-a", Snapshot: &messages.Snapshot{Period: snapPeriod, Generation: gen}}
	if _, err := forger.Publish(pubCtx, empty); err != nil {
		t.Errorf("publishing the forged empty snapshot: %v", err)
	}
	h.wantDead = append(h.wantDead, wantDead{"forged empty snapshot of team-a's period", allDests, "source binding: ", byBatch("forged-snap")})

	marker := messages.PartMeta{BatchID: "forever", Feed: feed, Source: "team-a", Kind: messages.KindSnapshotEnd, Hour: snapStart, Period: snapPeriod, Generation: math.MaxInt64}.Header()
	subj := messages.UsageSubject(feed, snapStart)
	if err := messages.SignPart(subj, marker, nil, kpA); err != nil {
		t.Error(err)
	}
	rawPublish(t, pubCtx, js, subj, marker, nil)
	h.wantDead = append(h.wantDead, wantDead{"snapshot generation 2^63-1", allDests, "implausible generation: ", byBatch("forever")})

	// A part of schema 99 signed by its source may hold its hour until
	// newer_schema_max_hold; an unsigned one (anyone could publish it) is
	// refused at once, so no publisher can freeze another's hour.
	newerHour := usdStart.Add(5 * time.Hour)
	newer := messages.PartMeta{BatchID: "from-the-future", Part: 1, Feed: feed, Source: "team-a", Kind: messages.KindAppend, Hour: newerHour, Records: 1}.Header()
	newer.Set(messages.HdrSchema, "99")
	if err := messages.SignPart(messages.UsageSubject(feed, newerHour), newer, []byte{0x90}, kpA); err != nil {
		t.Error(err)
	}
	rawPublish(t, pubCtx, js, messages.UsageSubject(feed, newerHour), newer, []byte{0x90})
	h.wantDead = append(h.wantDead, wantDead{"a signed part of schema 99", allDests, "newer schema held too long: ", byBatch("from-the-future")})
	unsigned := messages.PartMeta{BatchID: "unsigned-future", Part: 1, Feed: feed, Source: "team-a", Kind: messages.KindAppend, Hour: newerHour.Add(time.Hour), Records: 1}.Header()
	unsigned.Set(messages.HdrSchema, "99")
	rawPublish(t, pubCtx, js, messages.UsageSubject(feed, newerHour.Add(time.Hour)), unsigned, []byte{0x90})
	h.wantDead = append(h.wantDead, wantDead{"an unsigned part of schema 99", allDests, "source binding: ", byBatch("unsigned-future")})

	// team-b's "a-3" is its own; team-a's "a-3" with other content fails.
	for pubs.batchesOf("team-a") < 4 && ctx.Err() == nil {
		time.Sleep(100 * time.Millisecond)
	}
	if _, err := pubs.publish(&messages.Batch{ID: "a-3", Feed: feed, Source: "team-b", Records: records("team-b", "a-3", 30, 1<<51, false)}); err != nil {
		t.Errorf("team-b publishing its own batch a-3 (team-a has an a-3 too): %v", err)
	}
	_, err = pubs.prod["team-a"].Publish(pubCtx, &messages.Batch{ID: "a-3", Feed: feed, Source: "team-a", Records: records("team-a", "a-3-again", 30, 1<<52, false)})
	if !errors.Is(err, producer.ErrBatchConflict) {
		t.Errorf("team-a reusing its batch id a-3 with other content: err = %v, want %v", err, producer.ErrBatchConflict)
	}

	// Poison.
	for _, p := range []struct {
		what   string
		hour   time.Time
		size   int
		header bool
	}{
		{"an undecodable payload under signed headers", usdStart.Add(30 * time.Hour), 2048, true},
		{"a 900 KB undecodable payload", usdStart.Add(31 * time.Hour), 900 << 10, true},
		{"a message without headers", usdStart.Add(32 * time.Hour), 1024, false},
	} {
		data := make([]byte, p.size)
		_, _ = rand.Read(data)
		subj := messages.UsageSubject(feed, p.hour)
		var hdr nats.Header
		if p.header {
			hdr = messages.PartMeta{BatchID: "poison", Part: p.size, Feed: feed, Source: "team-a", Kind: messages.KindAppend, Hour: p.hour, Records: 5}.Header()
			if err := messages.SignPart(subj, hdr, data, kpA); err != nil {
				t.Error(err)
			}
		}
		seq := rawPublish(t, pubCtx, js, subj, hdr, data)
		h.wantDead = append(h.wantDead, wantDead{p.what, allDests, "", bySeq(seq)})
	}
	t.Logf("%s hostile producer and poison published", time.Now().Format("15:04:05"))
	return h
}

// rawPublish stores a message the producer would refuse to build; it
// returns its USAGE stream sequence (0 if it could not be stored).
func rawPublish(t *testing.T, ctx context.Context, js jetstream.JetStream, subj string, h nats.Header, data []byte) uint64 {
	t.Helper()
	for {
		ack, err := js.PublishMsg(ctx, &nats.Msg{Subject: subj, Header: h, Data: data})
		if err == nil {
			return ack.Sequence
		}
		if ctx.Err() != nil {
			t.Errorf("raw publish on %s: %v", subj, err)
			return 0
		}
		time.Sleep(500 * time.Millisecond)
	}
}
