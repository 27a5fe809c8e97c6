package workers

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/usagefleet/usagefleet/messages"
)

func (p *Pool) newReplaceJob(ctx context.Context, units []Unit, attempt int) (*job, error) {
	j := newJob(p, units, attempt)
	keys := make([]string, len(units))
	for i, u := range units {
		keys[i] = u.Key
	}
	j.log = p.log.With("units", summarizeKeys(keys), "attempt", attempt)
	info, err := p.coveredCounts(ctx, coveringFilter(units))
	if err != nil {
		return nil, err
	}
	j.covered = info.State.LastSeq
	j.counts = make(map[string]uint64, len(info.State.Subjects))
	for s, n := range info.State.Subjects {
		j.counts[s] = n
	}
	return j, nil
}

// coveredCounts is one stream info that gives both the covered position
// and the number of messages on every subject at that position. The
// server reads the stream's state before it counts subjects, so a message
// stored in between is counted but lies past LastSeq: a rebuild would read
// fewer than counted and fail. When the stream's last sequence has not
// moved by the next info, nothing was stored in between and the counts are
// exact; a few tries, then the counts are taken as they are (a short read
// then fails the job, which is tried again).
func (p *Pool) coveredCounts(ctx context.Context, filter string) (*jetstream.StreamInfo, error) {
	for try := 0; ; try++ {
		info, err := p.usage.Info(ctx, jetstream.WithSubjectFilter(filter))
		if err != nil {
			return nil, fmt.Errorf("stream info: %w", err)
		}
		if try == 4 {
			return info, nil
		}
		after, err := p.usage.Info(ctx)
		if err != nil {
			return nil, fmt.Errorf("stream info: %w", err)
		}
		if after.State.LastSeq == info.State.LastSeq {
			return info, nil
		}
	}
}

func summarizeKeys(keys []string) string {
	if len(keys) <= 3 {
		return strings.Join(keys, ",")
	}
	return fmt.Sprintf("%s..%s (%d)", keys[0], keys[len(keys)-1], len(keys))
}

// coveringFilter is one subject filter covering every hour of the units.
func coveringFilter(units []Unit) string {
	first, last := units[0].Start.UTC(), units[0].End.UTC()
	for _, u := range units {
		if u.Start.Before(first) {
			first = u.Start.UTC()
		}
		if u.End.After(last) {
			last = u.End.UTC()
		}
	}
	lastHour := last.Add(-time.Nanosecond)
	y1, m1, d1 := first.Date()
	y2, m2, d2 := lastHour.Date()
	switch {
	case y1 == y2 && m1 == m2 && d1 == d2 && first.Hour() == lastHour.Hour():
		return fmt.Sprintf("usage.*.%04d.%02d.%02d.%02d", y1, m1, d1, first.Hour())
	case y1 == y2 && m1 == m2 && d1 == d2:
		return fmt.Sprintf("usage.*.%04d.%02d.%02d.*", y1, m1, d1)
	case y1 == y2 && m1 == m2:
		return fmt.Sprintf("usage.*.%04d.%02d.*.*", y1, m1)
	case y1 == y2:
		return fmt.Sprintf("usage.*.%04d.*.*.*", y1)
	}
	return "usage.*.*.*.*.*"
}

// unitSubjects lists the hour subjects of u for the destination's feeds
// that hold messages at the covered position, and how many they hold.
func (j *job) unitSubjects(u Unit) ([]string, uint64) {
	var subs []string
	var n uint64
	for h := u.Start.UTC().Truncate(time.Hour); h.Before(u.End); h = h.Add(time.Hour) {
		for _, f := range j.p.opts.Feeds {
			s := messages.UsageSubject(f, h)
			if c := j.counts[s]; c > 0 {
				subs = append(subs, s)
				n += c
			}
		}
	}
	sort.Strings(subs)
	return subs, n
}

// localSeqs lists, in order, the messages of unit key this worker holds
// that were stored at or before covered.
func (p *Pool) localSeqs(key string, covered uint64) []uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	us := p.dirty[key]
	if us == nil {
		return nil
	}
	out := make([]uint64, 0, len(us.seqs))
	for seq := range us.seqs {
		if seq <= covered {
			out = append(out, seq)
		}
	}
	sort.Slice(out, func(a, b int) bool { return out[a] < out[b] })
	return out
}

// payloadSizes is the stored payload size of each message (from the
// headers-only delivery's Nats-Msg-Size), 1 MiB where it is not known.
func (p *Pool) payloadSizes(seqs []uint64) []int {
	out := make([]int, len(seqs))
	p.mu.Lock()
	defer p.mu.Unlock()
	for i, seq := range seqs {
		out[i] = 1 << 20
		if pm := p.pending[seq]; pm != nil && pm.size > 0 {
			out[i] = pm.size
		}
	}
	return out
}

type snapPart struct {
	seq  uint64
	key  string
	gen  int64
	hour time.Time
}

type markerKey struct {
	key  string
	gen  int64
	hour time.Time
}

// Records streams the records of u as the stream held them at Covered:
// every append part, and for each (source, period) the newest snapshot
// generation that is complete in the hour.
func (j *job) Records(ctx context.Context, u Unit, fn func(RecordRef, *messages.UsageRecord) error) error {
	if j.part != nil {
		return j.appendRecords(fn)
	}
	ctx, span := j.p.metrics.tracer.Start(ctx, "rebuild "+u.Key, trace.WithAttributes(attribute.Int64("usagefleet.covered_seq", int64(j.covered))))
	defer span.End()
	stats := map[uint64]*seqStat{}
	j.stats[u.Key] = stats // a re-read starts the unit's count afresh
	var recs []messages.UsageRecord
	return j.scan(ctx, u, nil, j.dead, j.included, func(seq uint64, h nats.Header, data []byte, meta messages.PartMeta) error {
		var err error
		recs, err = decodeInto(recs[:0], h, data, meta)
		if err != nil {
			j.dead[seq] = err.Error()
			return nil
		}
		j.included[seq] = true
		st := &seqStat{}
		for i := range recs {
			r := &recs[i]
			if !u.Contains(r.ChargePeriodStart) {
				continue
			}
			st.records++
			st.cost.Add(r.BillingCurrency, r.BilledCost)
			if err := fn(RecordRef{Seq: seq, Index: i}, r); err != nil {
				stats[seq] = st
				return err
			}
		}
		if st.records > 0 {
			stats[seq] = st
		}
		return nil
	})
}

// scan reads the parts of u as the stream held them at Covered and calls
// part for each that counts, in stream order: every append part, then for
// each (source, period) and hour the parts of the newest snapshot
// generation whose closing marker and every part are stored. A part whose
// headers cannot be read is recorded in dead and skipped; part decodes and
// records its own failures there and in included.
func (j *job) scan(ctx context.Context, u Unit, gets *getAhead, dead map[uint64]string, included map[uint64]bool, part func(seq uint64, h nats.Header, data []byte, meta messages.PartMeta) error) error {
	subs, expected := j.unitSubjects(u)
	if expected == 0 {
		return nil
	}
	s := &unitScan{j: j, u: u, dead: dead, part: part, markers: map[markerKey]int{}}
	// Fast path: when this worker holds every message the unit's subjects
	// had at the covered position (the common case when one worker drains
	// its backlog), read exactly those with direct gets instead of creating
	// an ordered consumer per unit.
	var err error
	if seqs := j.p.localSeqs(u.Key, j.covered); uint64(len(seqs)) == expected {
		err = s.direct(ctx, seqs, gets)
	} else {
		err = s.ordered(ctx, subs, expected)
	}
	if err != nil {
		return err
	}
	return j.finishSnapshots(ctx, u, s.snaps, s.markers, dead, part)
}

// unitScan is one scan of a unit's subjects: the snapshot parts and
// closing markers it met, for finishSnapshots.
type unitScan struct {
	j       *job
	u       Unit
	dead    map[uint64]string
	part    func(seq uint64, h nats.Header, data []byte, meta messages.PartMeta) error
	snaps   []snapPart
	markers map[markerKey]int
}

// handle processes one stored message of the unit.
func (s *unitScan) handle(ctx context.Context, seq uint64, subject string, stored time.Time, h nats.Header, data []byte) error {
	if len(data) > 0 {
		s.j.p.metrics.add(ctx, s.j.p.metrics.streamRead, int64(len(data)))
	}
	if !messages.ForDestination(h, s.j.p.dest.Name()) {
		return nil // another destination's part (a dead letter replayed to it)
	}
	meta, err := s.j.p.admitStored(subject, h, data, stored) // sources.go: a refused part is dead, so no snapshot generation
	if errors.Is(err, messages.ErrNewerSchema) {
		// The unit cannot be rebuilt whole by this worker: sending it
		// without the part would replace it with less than the stream
		// holds. It waits for an upgraded worker.
		return &newerSchemaError{unit: s.u.Key, seq: seq, err: err}
	}
	if err != nil {
		s.dead[seq] = err.Error()
		return nil
	}
	switch meta.Kind {
	case messages.KindSnapshotEnd:
		s.markers[markerKey{meta.SnapshotKey(), meta.Generation, meta.Hour}] = meta.Parts
	case messages.KindSnapshot:
		s.snaps = append(s.snaps, snapPart{seq: seq, key: meta.SnapshotKey(), gen: meta.Generation, hour: meta.Hour})
	default:
		return s.part(seq, h, data, meta)
	}
	return nil
}

// direct reads the messages seqs (all the unit's, held by this worker) by
// direct get, taking them from the read-ahead's gets when it has them.
func (s *unitScan) direct(ctx context.Context, seqs []uint64, gets *getAhead) error {
	for i, seq := range seqs {
		var raw *jetstream.RawStreamMsg
		var err error
		if gets != nil && i == 0 {
			gets.skipTo(seq)
		}
		if gets != nil && gets.next() == seq {
			raw, err = gets.take(ctx)
		} else {
			raw, err = s.j.p.usage.GetMsg(ctx, seq)
		}
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return Transient(fmt.Errorf("rebuild %s: message %d: %w", s.u.Key, seq, err))
		}
		if err := s.handle(ctx, seq, raw.Subject, raw.Time, raw.Header, raw.Data); err != nil {
			return err
		}
	}
	return nil
}

// ordered reads the unit's subjects with an ordered consumer, up to the
// covered position: exactly the expected messages, or the rebuild fails
// (transient) and is tried again with a new count. Fewer means some aged
// out or were removed since the count, or the read stopped short: sending
// what was read would replace the unit with part of it. The ordered
// consumer is deleted when the scan ends, not left to its inactivity
// threshold.
func (s *unitScan) ordered(ctx context.Context, subs []string, expected uint64) error {
	j, key := s.j, s.u.Key
	if j.p.nc.IsClosed() {
		return Transient(fmt.Errorf("rebuild %s: %w", key, nats.ErrConnectionClosed))
	}
	// A bounded number of resets: by default an ordered consumer retries
	// its reset forever and ignores the context, so a worker whose
	// connection closed mid-rebuild could never stop. A short inactivity
	// threshold: should the delete below not reach the server (a crash,
	// a lost connection), the server removes it soon anyway.
	cons, err := j.p.usage.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{FilterSubjects: subs, MaxResetAttempts: 5, InactiveThreshold: orderedInactive})
	if err != nil {
		return Transient(fmt.Errorf("rebuild %s: %w", key, err))
	}
	defer j.p.deleteOrdered(ctx, cons)
	read, err := s.readOrdered(ctx, cons, expected)
	if err != nil {
		return err
	}
	if read < expected {
		return Transient(fmt.Errorf("rebuild %s: read %d of the %d messages its subjects held at stream position %d (aged out or removed since, or the read stopped short): not uploading part of the unit", key, read, expected, j.covered))
	}
	return nil
}

// orderedInactive is the inactivity threshold of a rebuild's ordered
// consumer: the server deletes one its worker left behind after this.
const orderedInactive = 30 * time.Second

// orderedNoResponders bounds the re-fetches in a row that may find no
// responder (a new ordered consumer whose interest has not reached the
// client's server yet) before the rebuild fails; the waits between them
// are orderedRefetch's.
const orderedNoResponders = 10

// readOrdered reads up to expected messages at or before the covered
// position, and says how many it read.
func (s *unitScan) readOrdered(ctx context.Context, cons jetstream.Consumer, expected uint64) (uint64, error) {
	var read uint64
	for read < expected {
		got, end, err := s.fetchRefetching(ctx, cons, min(expected-read, 32))
		read += got
		if err != nil || end {
			return read, err
		}
		if got == 0 && ctx.Err() != nil {
			return read, ctx.Err()
		}
		if got == 0 {
			// Nothing came within the wait: messages may have aged out
			// of the stream since the count. Stop rather than wait.
			return read, nil
		}
	}
	return read, nil
}

// fetchRefetching is fetch, tried again (at most orderedNoResponders
// times, waiting as orderedRefetch says) while it finds no responder.
// Each fetch of an ordered consumer creates a consumer and pulls from it
// at once; on a cluster the pull can reach the client's server before the
// interest of the new consumer (on another node) has: "no responders".
// Nothing was delivered from it, so fetch again (a new consumer, from the
// same position) after a short pause, instead of failing the job: a job of
// hundreds of units, each with such a chance, never completed under load
// (the soak test).
func (s *unitScan) fetchRefetching(ctx context.Context, cons jetstream.Consumer, n uint64) (read uint64, end bool, err error) {
	key := s.u.Key
	_, err = backoff.Retry(ctx, func() (struct{}, error) {
		// A closed connection or an ended job stops the rebuild here: the
		// ordered consumer would otherwise retry its resets on a closed
		// connection for seconds, whatever the context says.
		if err := ctx.Err(); err != nil {
			return struct{}{}, backoff.Permanent(err)
		}
		if s.j.p.nc.IsClosed() {
			return struct{}{}, backoff.Permanent(Transient(fmt.Errorf("rebuild %s: %w", key, nats.ErrConnectionClosed)))
		}
		got, e, err := s.fetch(ctx, cons, n-read)
		read, end = read+uint64(got), e
		if err != nil && !errors.Is(err, nats.ErrNoResponders) {
			return struct{}{}, backoff.Permanent(err)
		}
		return struct{}{}, err
	}, backoff.WithBackOff(orderedRefetch()), backoff.WithMaxTries(orderedNoResponders+1), backoff.WithMaxElapsedTime(0))
	if cause := context.Cause(ctx); cause != nil && err == cause {
		err = ctx.Err() // a wait cut short: the context's error, as every other stop here
	}
	return read, end, err
}

// deleteOrdered deletes the server-side consumer an ordered consumer uses
// now (each fetch resets it: the client deletes the ones before).
func (p *Pool) deleteOrdered(ctx context.Context, cons jetstream.Consumer) {
	ci := cons.CachedInfo()
	if ci == nil || ci.Name == "" {
		return
	}
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := p.usage.DeleteConsumer(dctx, ci.Name); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		p.log.Debug("deleting a rebuild's ordered consumer", "consumer", ci.Name, "err", err)
	}
}

// fetch reads one batch of at most n messages. Fetch by count, not by
// bytes: FetchBytes sizes its channels for a million messages per call
// (tens of MB each), which dominated the heap and the GC time of a drain.
// Parts are at most the max payload, so 32 bound a fetch's memory. got
// counts the messages read (at or before the covered position); end says
// the covered position (or the stream's end) was reached.
func (s *unitScan) fetch(ctx context.Context, cons jetstream.Consumer, n uint64) (got int, end bool, err error) {
	key := s.u.Key
	batch, err := cons.Fetch(int(n), jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		return 0, false, Transient(fmt.Errorf("rebuild %s: %w", key, err))
	}
	for msg := range batch.Messages() {
		md, err := msg.Metadata()
		if err != nil {
			return got, false, Transient(fmt.Errorf("rebuild %s: %w", key, err))
		}
		seq := md.Sequence.Stream
		if seq > s.j.covered {
			end = true
			break
		}
		got++
		if md.NumPending == 0 {
			end = true
		}
		if err := s.handle(ctx, seq, msg.Subject(), md.Timestamp, msg.Headers(), msg.Data()); err != nil {
			return got, false, err
		}
		if end {
			break
		}
	}
	if err := batch.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) {
		return got, false, Transient(fmt.Errorf("rebuild %s: %w", key, err))
	}
	return got, end, nil
}

// finishSnapshots passes to part, per (source, period) and hour, the parts
// of the newest snapshot generation whose closing marker is stored and
// whose parts are all here.
func (j *job) finishSnapshots(ctx context.Context, u Unit, snaps []snapPart, markers map[markerKey]int, dead map[uint64]string, part func(uint64, nats.Header, []byte, messages.PartMeta) error) error {
	type kh struct {
		key  string
		hour time.Time
	}
	partsSeen := map[markerKey]int{}
	for _, s := range snaps {
		partsSeen[markerKey{s.key, s.gen, s.hour}]++
	}
	best := map[kh]int64{}
	for mk, want := range markers {
		if partsSeen[mk] != want {
			continue
		}
		k := kh{mk.key, mk.hour}
		if mk.gen > best[k] {
			best[k] = mk.gen
		}
	}
	for _, s := range snaps {
		if best[kh{s.key, s.hour}] != s.gen {
			continue
		}
		raw, err := j.p.usage.GetMsg(ctx, s.seq)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return Transient(fmt.Errorf("rebuild %s: snapshot part %d: %w", u.Key, s.seq, err))
		}
		j.p.metrics.add(ctx, j.p.metrics.streamRead, int64(len(raw.Data)))
		meta, err := messages.ParseMeta(raw.Header)
		if errors.Is(err, messages.ErrNewerSchema) {
			return &newerSchemaError{unit: u.Key, seq: s.seq, err: err}
		}
		if err != nil {
			dead[s.seq] = err.Error()
			continue
		}
		if err := part(s.seq, raw.Header, raw.Data, meta); err != nil {
			return err
		}
	}
	return nil
}

// decodeInto decodes a stored part into dst's space, reusing it: the
// records of the previous part decoded there are overwritten, and the new
// ones point into data (see messages.DecodeRecordsReusing).
func decodeInto(dst []messages.UsageRecord, h nats.Header, data []byte, meta messages.PartMeta) ([]messages.UsageRecord, error) {
	recs, err := messages.DecodeRecordsReusing(dst, data, meta.Schema)
	if err != nil {
		return dst, err
	}
	if len(recs) != meta.Records {
		return dst, fmt.Errorf("payload has %d records, header %s says %d", len(recs), messages.HdrRecords, meta.Records)
	}
	for i := range recs {
		if h := recs[i].ChargePeriodStart.Truncate(time.Hour); !h.Equal(meta.Hour) {
			return dst, fmt.Errorf("record %d: ChargePeriodStart %s is not in the part's hour %s", i, recs[i].ChargePeriodStart.Format(time.RFC3339), meta.Hour.Format(time.RFC3339))
		}
	}
	return recs, nil
}

// newerSchemaDelay is how long a part of a newer schema waits before it is
// offered again (to this worker, or to an upgraded one), and a unit that
// holds one before it is tried again.
const newerSchemaDelay = 30 * time.Second

// newerSchemaError stops the rebuild of a unit that holds a part this
// worker is too old to read.
type newerSchemaError struct {
	unit string
	seq  uint64
	err  error
}

func (e *newerSchemaError) Error() string {
	return fmt.Sprintf("rebuild %s: part %d: %v (upgrade usage-worker)", e.unit, e.seq, e.err)
}

func (e *newerSchemaError) Unwrap() error { return e.err }
