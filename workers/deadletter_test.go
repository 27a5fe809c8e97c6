package workers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/usagefleet/usagefleet/internal/broker"
	"github.com/usagefleet/usagefleet/internal/broker/natstest"
	"github.com/usagefleet/usagefleet/internal/config"
	"github.com/usagefleet/usagefleet/messages"
)

// The issue 12 server: a max payload of 1 MB, as a default nats-server.
const testMaxPayload = 1 << 20

// rig is a real embedded nats-server (with the max payload of a default
// server, smaller than natstest's) with the fleet's streams.
type rig struct {
	nc *nats.Conn
	js jetstream.JetStream
}

func newRig(t *testing.T) *rig {
	t.Helper()
	s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: server.RANDOM_PORT, JetStream: true, StoreDir: t.TempDir(), NoSigs: true, MaxPayload: testMaxPayload})
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(30 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	t.Cleanup(s.Shutdown)
	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	r := &rig{nc: nc, js: js}
	r.ensureStreams(t)
	return r
}

func (r *rig) ensureStreams(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := broker.EnsureStreams(ctx, r.js, broker.StreamOptions{LeaseTTL: config.Duration(natstest.LeaseTTL)}); err != nil {
		t.Fatal(err)
	}
}

// pool is a pool set up as Run sets it up, without its consumer: tests
// drive jobs and scans by hand.
func (r *rig) pool(t *testing.T, dest Destination, opts Options) *Pool {
	t.Helper()
	opts.Feeds = []string{"f"}
	opts.LeaseTTL = natstest.LeaseTTL
	if opts.Logger == nil {
		opts.Logger = quietLog
	}
	p, err := NewPool(r.nc, dest, opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if p.usage, err = r.js.Stream(ctx, messages.StreamUsage); err != nil {
		t.Fatal(err)
	}
	leases, err := r.js.KeyValue(ctx, messages.BucketLeases)
	if err != nil {
		t.Fatal(err)
	}
	p.leases = kvLeases{leases}
	if p.units, err = r.js.KeyValue(ctx, messages.BucketUnits); err != nil {
		t.Fatal(err)
	}
	return p
}

var testHour = time.Date(2024, 8, 16, 13, 0, 0, 0, time.UTC)

func hourUnit(h time.Time) Unit {
	return Unit{Key: h.Format("h2006-01-02T15"), Start: h, End: h.Add(time.Hour)}
}

// publishPart stores a part of recs in testHour and returns its sequence.
func (r *rig) publishPart(t *testing.T, batch string, recs []messages.UsageRecord) uint64 {
	t.Helper()
	meta := messages.PartMeta{BatchID: batch, Part: 1, Feed: "f", Source: "s", Kind: messages.KindAppend, Hour: testHour, Records: len(recs)}
	data, err := messages.EncodeRecords(nil, recs)
	if err != nil {
		t.Fatal(err)
	}
	ack, err := r.js.PublishMsg(context.Background(), &nats.Msg{Subject: messages.UsageSubject("f", testHour), Header: meta.Header(), Data: data})
	if err != nil {
		t.Fatalf("publishing part %s (%d bytes): %v", batch, len(data), err)
	}
	return ack.Sequence
}

func record(i int, resource string) messages.UsageRecord {
	return messages.UsageRecord{ChargePeriodStart: testHour.Add(time.Duration(i) * time.Second), ChargePeriodEnd: testHour.Add(time.Hour), ResourceId: fmt.Sprintf("r%d", i), ResourceName: resource, BilledCost: messages.DecimalFromInt(int64(i))}
}

// hourDest is a Replace destination with a unit per hour that rejects
// every record it reads (reject) or accepts them all.
type hourDest struct {
	name      string
	reject    bool
	mu        sync.Mutex
	delivered int
}

func (d *hourDest) Name() string             { return d.name }
func (d *hourDest) Semantics() Semantics     { return Replace }
func (d *hourDest) Units(h time.Time) []Unit { return []Unit{hourUnit(h)} }
func (d *hourDest) LeaseKey(u Unit) string   { return u.Key }
func (d *hourDest) deliveries() int          { d.mu.Lock(); defer d.mu.Unlock(); return d.delivered }
func (d *hourDest) Deliver(ctx context.Context, job Job) error {
	d.mu.Lock()
	d.delivered++
	d.mu.Unlock()
	for _, u := range job.Units() {
		err := job.Records(ctx, u, func(ref RecordRef, r *messages.UsageRecord) error {
			if d.reject {
				job.Reject(ref, r, "Cloud Cruiser refused the record: "+strings.Repeat("&", 100))
			}
			return nil
		})
		if err != nil {
			return err
		}
		job.Done(u)
	}
	return nil
}

// replaceGroup puts the unit of testHour, dirty with seqs, in the pool's
// schedule as a job group, as dueJobs would.
func replaceGroup(p *Pool, seqs ...uint64) *replaceRun {
	u := hourUnit(testHour)
	us := &unitState{unit: u, lease: u.Key, seqs: map[uint64]bool{}, inJob: true}
	for _, s := range seqs {
		us.seqs[s] = true
	}
	p.mu.Lock()
	p.dirty[u.Key] = us
	p.mu.Unlock()
	return &replaceRun{p: p, g: &replaceJob{lease: u.Key, units: []*unitState{us}}, settled: map[string]bool{}}
}

// deadLetters reads every dead letter stored, with its size.
func (r *rig) deadLetters(t *testing.T) (dls []messages.DeadLetter, sizes []int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := r.js.Stream(ctx, messages.StreamDead)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		raw, err := st.GetMsg(ctx, seq)
		if err != nil {
			t.Fatal(err)
		}
		var dl messages.DeadLetter
		if err := json.Unmarshal(raw.Data, &dl); err != nil {
			t.Fatalf("dead letter %d: %v", seq, err)
		}
		dls, sizes = append(dls, dl), append(sizes, len(raw.Data))
	}
	return dls, sizes
}

// Issue 12 item 2: 400 records refused with 2,000 '&' each (6 bytes each
// in JSON) make a 4.8 MB dead letter as one message: it never fit, the job
// was uploaded again and again. They are split to fit, every record kept
// once; a record too large for a dead letter alone is kept as its index,
// reason and an excerpt.
func TestDeadLettersOfRejectedRecordsAreSplitToFit(t *testing.T) {
	r := newRig(t)
	recs := make([]messages.UsageRecord, 400)
	for i := range recs {
		recs[i] = record(i, strings.Repeat("&", 2000))
	}
	seq := r.publishPart(t, "amp", recs)
	// Alone over the limit once in JSON: 200 KB stored, 1.2 MB as JSON.
	huge := r.publishPart(t, "huge", []messages.UsageRecord{record(0, strings.Repeat("&", 200_000))})
	p := r.pool(t, &hourDest{name: "cc", reject: true}, Options{})
	run := replaceGroup(p, seq, huge)
	// A guard against a hang, not a measure: under -race this job takes
	// about 11 s alone on 2 cores (the race runtime instruments every copy
	// of 5 MB of JSON), and minutes on a loaded machine.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if ok, retry := run.deliver(ctx); !ok {
		t.Fatalf("the job did not settle (retry in %v): its dead letters were not stored", retry)
	}
	dls, sizes := r.deadLetters(t)
	got := map[uint64]map[int]bool{seq: {}, huge: {}}
	for i, dl := range dls {
		if sizes[i] > testMaxPayload {
			t.Errorf("dead letter %d: %d bytes, over the max payload", i, sizes[i])
		}
		for _, rr := range dl.Records {
			if got[dl.StreamSeq][rr.Index] {
				t.Errorf("record %d of %d kept twice", rr.Index, dl.StreamSeq)
			}
			got[dl.StreamSeq][rr.Index] = true
			switch dl.StreamSeq {
			case seq:
				if rr.Truncated || rr.Record.ResourceId != fmt.Sprintf("r%d", rr.Index) {
					t.Errorf("record %d not kept whole: truncated %v, resource %q", rr.Index, rr.Truncated, rr.Record.ResourceId)
				}
			case huge:
				if !rr.Truncated || !dl.Truncated || rr.Record.ResourceId != "" || len(rr.Excerpt) == 0 || len(rr.Excerpt) > deadExcerpt || !strings.Contains(rr.Reason, "refused") {
					t.Errorf("the huge record: truncated %v/%v, resource %q, excerpt %d bytes, reason %q", rr.Truncated, dl.Truncated, rr.Record.ResourceId, len(rr.Excerpt), rr.Reason)
				}
			}
		}
	}
	if len(got[seq]) != 400 || len(got[huge]) != 1 {
		t.Fatalf("kept %d of 400 records and %d of 1 huge one in %d dead letters", len(got[seq]), len(got[huge]), len(dls))
	}
	if len(dls) < 5 {
		t.Fatalf("%d dead letters for 4.8 MB of records: not split", len(dls))
	}
}

// Issue 12 item 2: a job that cannot settle (its dead letters cannot be
// stored) backs off like any failure: the retry policy's growing delay,
// not the same first step after every upload.
func TestAJobThatCannotSettleBacksOff(t *testing.T) {
	r := newRig(t)
	seq := r.publishPart(t, "b", []messages.UsageRecord{record(1, "x")})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := r.js.DeleteStream(ctx, messages.StreamDead); err != nil {
		t.Fatal(err)
	}
	dest := &hourDest{name: "cc", reject: true}
	pol := RetryPolicy{Initial: 10 * time.Millisecond, Max: time.Minute}
	p := r.pool(t, dest, Options{Retry: pol})
	run := replaceGroup(p, seq)
	for try := 1; try <= 8; try++ {
		run.g.units[0].inJob = true
		p.busy[run.g.lease] = true
		ok, retry := run.deliver(ctx)
		if ok {
			t.Fatal("settled with no DEAD stream")
		}
		// backoffDelay(try) is in [d/2, d], d = Initial·2^(try-1).
		if least := (pol.Initial << (try - 1)) / 2; retry < least {
			t.Fatalf("try %d: retry in %v, want at least %v (the policy's delay for the %d-th failure)", try, retry, least, try)
		}
		run.end(ok, retry)
	}
	if failing, why := p.DeadLettersFailing(); !failing || !strings.Contains(why, "dead letter") {
		t.Fatalf("DeadLettersFailing = %v %q, want failing", failing, why)
	}
	if dest.deliveries() != 8 {
		t.Fatalf("%d deliveries, want 8", dest.deliveries())
	}
}

// Issue 12 item 7: a rebuild that reads fewer messages than its subjects
// held at the covered position fails (transient) instead of passing on
// part of the unit, and its ordered consumers are deleted when it ends.
func TestOrderedRebuildShortReadFailsAndLeavesNoConsumer(t *testing.T) {
	r := newRig(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var seqs []uint64
	for i := 0; i < 3; i++ {
		seqs = append(seqs, r.publishPart(t, fmt.Sprintf("b%d", i), []messages.UsageRecord{record(i, "x")}))
	}
	p := r.pool(t, &hourDest{name: "cz"}, Options{})
	usage := p.usage
	// The destination's durable consumer, as Run creates it.
	if _, err := usage.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{Durable: ConsumerName("cz"), AckPolicy: jetstream.AckExplicitPolicy}); err != nil {
		t.Fatal(err)
	}
	u := hourUnit(testHour)
	read := func() (int, error) {
		j, err := p.newReplaceJob(ctx, []Unit{u}, 0)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		err = j.Records(ctx, u, func(RecordRef, *messages.UsageRecord) error { n++; return nil })
		return n, err
	}
	// The pool holds none of the parts: every rebuild reads through an
	// ordered consumer.
	const rebuilds = 6
	for i := 0; i < rebuilds; i++ {
		if n, err := read(); err != nil || n != 3 {
			t.Fatalf("rebuild %d: %d records, %v; want 3", i, n, err)
		}
	}
	waitConsumers(ctx, t, usage, 1, fmt.Sprintf("after %d rebuilds", rebuilds))

	// A part removed between the count and the read.
	j, err := p.newReplaceJob(ctx, []Unit{u}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := usage.DeleteMsg(ctx, seqs[1]); err != nil {
		t.Fatal(err)
	}
	n := 0
	err = j.Records(ctx, u, func(RecordRef, *messages.UsageRecord) error { n++; return nil })
	if err == nil || !errors.Is(err, ErrTransient) || !strings.Contains(err.Error(), "read 2 of the 3") {
		t.Fatalf("a short read (%d of 3 records) gave %v, want a transient failure", n, err)
	}
	// Tried again, the count is new and the rebuild whole.
	if n, err := read(); err != nil || n != 2 {
		t.Fatalf("the retry: %d records, %v; want 2", n, err)
	}
	waitConsumers(ctx, t, usage, 1, "after the short read and its retry")
}

// waitConsumers waits until the stream has want consumers: the client
// deletes an ordered consumer's earlier instances on its own goroutines.
func waitConsumers(ctx context.Context, t *testing.T, st jetstream.Stream, want int, when string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second) // far below the consumers' inactivity threshold
	for {
		info, err := st.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if info.State.Consumers == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d consumers on %s, want %d (the durable one)", when, info.State.Consumers, messages.StreamUsage, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// runPool runs p until the test ends.
func runPool(t *testing.T, p *Pool) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("pool: %v", err)
		}
	})
}

// waitFor polls cond until it holds, or fails the test after d.
func waitUntil(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(d); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", d, what)
		}
	}
}

// publishRaw stores a message as given on the hour subject of testHour.
func (r *rig) publishRaw(t *testing.T, hour time.Time, h nats.Header, data []byte) uint64 {
	t.Helper()
	ack, err := r.js.PublishMsg(context.Background(), &nats.Msg{Subject: messages.UsageSubject("f", hour), Header: h, Data: data})
	if err != nil {
		t.Fatal(err)
	}
	return ack.Sequence
}

var fastFlush = FlushPolicy{MaxDelay: 100 * time.Millisecond, Quiet: 20 * time.Millisecond}

// Issue 12 item 1: a 900 KB undecodable message (server max payload 1 MB)
// made a dead letter over the max payload, retried forever on the fetch
// goroutine: nothing after it was ever delivered. Its dead letter keeps a
// reference and an excerpt, and what follows is delivered; the same for a
// part whose headers read but whose payload does not (found by a rebuild).
func TestOversizedUndecodableMessagesAreDeadLetteredAndTheRestGoes(t *testing.T) {
	r := newRig(t)
	big := []byte(strings.Repeat("\xff", 900_000))
	badHeaders := r.publishRaw(t, testHour, nats.Header{"Nats-Msg-Id": {"bad-headers"}, "X-Junk": {strings.Repeat("j", 20_000)}}, big)
	meta := messages.PartMeta{BatchID: "bad-payload", Part: 1, Feed: "f", Source: "s", Kind: messages.KindAppend, Hour: testHour, Records: 3}
	badPayload := r.publishRaw(t, testHour, meta.Header(), big)
	good := r.publishPart(t, "good", []messages.UsageRecord{record(1, "x"), record(2, "y")})
	p := r.pool(t, &hourDest{name: "cz"}, Options{Flush: fastFlush})
	runPool(t, p)
	// The rebuild of the hour meets the first one too: it dead-letters it
	// again under the same id (the stream keeps one). Acked counts the
	// parts delivered, not the dead ones.
	waitUntil(t, 30*time.Second, "the parts after the oversized ones were not delivered", func() bool {
		st := p.Stats()
		return st.Acked == 1 && st.DeadLetters >= 2 && st.AckEvents == 2
	})
	dls, sizes := r.deadLetters(t)
	if len(dls) != 2 {
		t.Fatalf("%d dead letters, want 2", len(dls))
	}
	for i, dl := range dls {
		if dl.StreamSeq != badHeaders && dl.StreamSeq != badPayload || dl.StreamSeq == good {
			t.Errorf("dead letter of stream seq %d", dl.StreamSeq)
		}
		if sizes[i] > 64<<10 || len(dl.Payload) != 0 || len(dl.PayloadExcerpt) != deadExcerpt || dl.PayloadSize != len(big) || !dl.Truncated || !strings.HasPrefix(dl.Reason, "undecodable: ") || dl.Subject != messages.UsageSubject("f", testHour) {
			t.Errorf("dead letter of %d: %d bytes, payload %d, excerpt %d, size %d, truncated %v, reason %q, subject %q", dl.StreamSeq, sizes[i], len(dl.Payload), len(dl.PayloadExcerpt), dl.PayloadSize, dl.Truncated, dl.Reason, dl.Subject)
		}
		if dl.StreamSeq == badHeaders && len(dl.Header["X-Junk"]) != 1 || len(dl.Header["X-Junk"]) == 1 && len(dl.Header["X-Junk"][0]) != deadValueMax {
			t.Errorf("dead letter of %d: header X-Junk not kept clipped: %d values", dl.StreamSeq, len(dl.Header["X-Junk"]))
		}
	}
	if failing, why := p.DeadLettersFailing(); failing {
		t.Fatalf("dead letters failing: %s", why)
	}
}

// Issue 12 item 1: when a dead letter cannot be stored (here: no DEAD
// stream) the consumer moves on, the message is handed back, not
// terminated, readiness says so, and once DEAD is back the message is
// dead-lettered when it comes again.
func TestDeadLetterStoreFailureDoesNotStopTheConsumer(t *testing.T) {
	r := newRig(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := r.js.DeleteStream(ctx, messages.StreamDead); err != nil {
		t.Fatal(err)
	}
	// In another hour than the good part: the rebuild of the good part's
	// unit must not meet it (its dead letter comes before the unit's ack).
	bad := r.publishRaw(t, testHour.Add(-time.Hour), nats.Header{"Nats-Msg-Id": {"bad"}}, []byte("junk"))
	r.publishPart(t, "good", []messages.UsageRecord{record(1, "x")})
	p := r.pool(t, &hourDest{name: "cz"}, Options{Flush: fastFlush, Retry: RetryPolicy{Initial: 20 * time.Millisecond, Max: 300 * time.Millisecond}})
	runPool(t, p)
	waitUntil(t, 30*time.Second, "the part after an undecodable one whose dead letter cannot be stored was not delivered", func() bool {
		failing, _ := p.DeadLettersFailing()
		return p.Stats().Acked == 1 && failing
	})
	r.ensureStreams(t)
	waitUntil(t, 30*time.Second, "the undecodable message was not dead-lettered once DEAD was back", func() bool {
		failing, _ := p.DeadLettersFailing()
		return p.Stats().DeadLetters == 1 && !failing
	})
	dls, _ := r.deadLetters(t)
	if len(dls) != 1 || dls[0].StreamSeq != bad {
		t.Fatalf("dead letters %+v, want one of stream seq %d", dls, bad)
	}
}

// encodeDead fits a dead letter in the limit by cutting, in order, the
// payload excerpt, the headers and the reason, and says when even that
// cannot fit; what it keeps is marked truncated.
func TestEncodeDeadFitsTheLimit(t *testing.T) {
	base := messages.DeadLetter{Destination: "d", Reason: strings.Repeat("r", 2000), StreamSeq: 7, Subject: "usage.f.2024.08.16.13",
		Header: map[string][]string{"A": {strings.Repeat("a", 900)}}, PayloadExcerpt: []byte(strings.Repeat("p", deadExcerpt)), PayloadSize: 1 << 20}
	for _, tc := range []struct {
		name                        string
		limit                       int
		excerpt, header, fullReason bool
		fails                       bool
	}{
		{name: "fits whole", limit: 64 << 10, excerpt: true, header: true, fullReason: true},
		{name: "a shorter excerpt", limit: 6000, excerpt: true, header: true, fullReason: true},
		{name: "no excerpt, no header", limit: 2500, fullReason: true},
		{name: "the reason clipped", limit: 600},
		{name: "cannot fit", limit: 100, fails: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := encodeDead(base, tc.limit)
			if tc.fails {
				if err == nil {
					t.Fatalf("%d bytes in a limit of %d, want an error", len(b), tc.limit)
				}
				return
			}
			if err != nil || len(b) > tc.limit {
				t.Fatalf("%d bytes, %v; limit %d", len(b), err, tc.limit)
			}
			var dl messages.DeadLetter
			if err := json.Unmarshal(b, &dl); err != nil {
				t.Fatal(err)
			}
			if got := len(dl.PayloadExcerpt) > 0; got != tc.excerpt {
				t.Errorf("excerpt %d bytes, want kept %v", len(dl.PayloadExcerpt), tc.excerpt)
			}
			if got := len(dl.Header) > 0; got != tc.header {
				t.Errorf("header %v, want kept %v", dl.Header, tc.header)
			}
			if got := dl.Reason == base.Reason; got != tc.fullReason {
				t.Errorf("reason %d bytes, want whole %v", len(dl.Reason), tc.fullReason)
			}
			if whole := tc.excerpt && len(dl.PayloadExcerpt) == deadExcerpt; dl.Truncated == whole {
				t.Errorf("truncated %v with excerpt %d bytes", dl.Truncated, len(dl.PayloadExcerpt))
			}
			if dl.StreamSeq != 7 || dl.PayloadSize != 1<<20 {
				t.Errorf("the reference is lost: %+v", dl)
			}
		})
	}
}

// boundHeader clips every value and keeps at most deadHeaderMax bytes.
func TestBoundHeader(t *testing.T) {
	h := map[string][]string{"Usage-Batch": {"b1"}, "X-Big": {strings.Repeat("é", 5000)}}
	for i := 0; i < 20; i++ {
		h[fmt.Sprintf("X-%02d", i)] = []string{strings.Repeat("v", 900)}
	}
	out, cut := boundHeader(h)
	total := 0
	for k, vs := range out {
		for _, v := range vs {
			if len(v) > deadValueMax || !utf8.ValidString(v) {
				t.Errorf("%s: %d bytes, valid UTF-8 %v", k, len(v), utf8.ValidString(v))
			}
			total += len(k) + len(v)
		}
	}
	if !cut || total > deadHeaderMax || out["Usage-Batch"][0] != "b1" {
		t.Fatalf("cut %v, %d bytes, batch %v", cut, total, out["Usage-Batch"])
	}
	if out, cut := boundHeader(map[string][]string{"A": {"x"}}); cut || out["A"][0] != "x" {
		t.Fatalf("a small header: %v, cut %v", out, cut)
	}
}
