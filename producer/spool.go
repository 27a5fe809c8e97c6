package producer

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"slices"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel"

	"github.com/usagefleet/usagefleet/messages"
	"github.com/usagefleet/usagefleet/producer/input"
)

// A Spool turns a stream of records of any length into encoded parts on a
// temporary file, with memory bounded by its options, never by the input;
// PublishSpool then publishes those parts with a bounded window.
//
// Why a spool: a file with one bad row must publish nothing, so no part
// can leave before the last row is checked. Reading the input twice (check,
// then publish) would parse it twice, the dominant cost, and cannot read
// standard input twice; the spool parses once and keeps the encoded parts
// (smaller than the CSV they come from) on disk until the input is known
// good. Its parts are numbered in the order they are cut, which depends
// only on the records' order and the options: the same input gives the
// same parts, so a repeated or resumed publish has the same message ids and
// the same claim digest, and JetStream stores it once.
//
// Parts: a part holds records of one UTC hour of ChargePeriodStart, as
// every part must (the subject names the hour, and the workers rebuild a
// replace unit, an hour or a day, from its subjects). Records are grouped
// by hour as they come: an hour's records are cut into a part when they
// reach PartBytes encoded; when the records held for every open hour pass
// OpenBytes the hour that has waited longest for a record is cut early (in
// a file in time order, an hour that is over). A file in time order (how
// exports are written) gives full parts; a sparse file gives one part per
// hour it has rows in, never one per row.
type Spool struct {
	opts  SpoolOptions
	file  *os.File
	w     *bufio.Writer
	open  map[time.Time]*openHour
	lru   openHour // the open hours, most recently added to first (a ring)
	free  [][]messages.UsageRecord
	freeR []hourRows
	ext   []string // the extension names of the encoded rows (AddEncoded)
	held  int      // estimated encoded bytes held in open hours
	parts []PartInfo
	recs  int
	bytes int64
	cost  messages.Sum
	costs map[string]*messages.Sum // BilledCost per BillingCurrency
	sum   hash.Hash
	enc   messages.PartEncoder
	hdr   [spoolHeaderLen]byte
	done  bool
	err   error
}

// SpoolOptions bound a Spool's memory. Zero values take the defaults.
type SpoolOptions struct {
	// PartBytes caps a part's payload (default DefaultPartBytes). It must
	// not exceed the server's max payload less header room, and it must be
	// the same for every publish of one batch (it decides the parts).
	PartBytes int
	// OpenBytes bounds the records held while their hour's part fills
	// (estimated encoded bytes; default 4 MiB). A record held costs about
	// three times its encoded size in memory.
	OpenBytes int
	// Dir holds the spool file (default os.TempDir()).
	Dir string
}

// DefaultPartBytes is NATS's default max payload (1 MiB) less the room kept
// for headers: a part any default server stores.
const DefaultPartBytes = 1<<20 - headerRoom

type openHour struct {
	hour       time.Time
	recs       []messages.UsageRecord
	rows       hourRows // or the hour's rows encoded ahead (AddEncoded)
	avg        int      // estimated encoded bytes per record (from the hour's first)
	prev, next *openHour
}

// hourRows are an hour's rows encoded ahead of their part: row i's values
// are vals[ends[i-1]:ends[i]].
type hourRows struct {
	vals []byte
	uses []messages.RowUse
	ends []int
}

func (h *hourRows) values(i int) []byte {
	start := 0
	if i > 0 {
		start = h.ends[i-1]
	}
	return h.vals[start:h.ends[i]]
}

func (oh *openHour) count() int { return len(oh.recs) + len(oh.rows.uses) }

// spool record: payload length, records, hour (unix), schema, part number.
const spoolHeaderLen = 4 + 4 + 8 + 1 + 4

// NewSpool starts an empty spool.
func NewSpool(opts SpoolOptions) (*Spool, error) {
	if opts.PartBytes <= 0 {
		opts.PartBytes = DefaultPartBytes
	}
	if opts.PartBytes < 4096 {
		return nil, fmt.Errorf("producer: part size %d is too small", opts.PartBytes)
	}
	if opts.OpenBytes <= 0 {
		opts.OpenBytes = 4 << 20
	}
	f, err := os.CreateTemp(opts.Dir, "usage-spool-*")
	if err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	// Nothing but this process needs the name: it goes at once, and the
	// space with the last descriptor, however the process ends.
	os.Remove(f.Name())
	s := &Spool{opts: opts, file: f, w: bufio.NewWriterSize(f, 256<<10), open: map[time.Time]*openHour{}, costs: map[string]*messages.Sum{}, sum: sha256.New()}
	s.lru.next, s.lru.prev = &s.lru, &s.lru
	return s, nil
}

// Add takes one valid record (checked by the caller: input.ReadWith checks
// every row it delivers). The spool keeps its own copy.
func (s *Spool) Add(r *messages.UsageRecord) error {
	if s.err != nil {
		return s.err
	}
	if s.done {
		return errors.New("spool: Add after Close")
	}
	h := r.ChargePeriodStart.UTC().Truncate(time.Hour)
	oh := s.open[h]
	if oh != nil && len(oh.rows.uses) > 0 {
		return errors.New("spool: records and encoded rows in one hour")
	}
	if oh == nil {
		s.enc.Reset()
		s.enc.Use(r)
		oh = &openHour{hour: h, avg: len(s.enc.AppendRecord(make([]byte, 0, 1024), r))*9/8 + 1}
		if n := len(s.free); n > 0 {
			oh.recs, s.free = s.free[n-1], s.free[:n-1]
		}
		s.open[h] = oh
	} else {
		s.unlink(oh)
	}
	s.toFront(oh)
	oh.recs = append(oh.recs, *r)
	s.held += oh.avg
	s.recs++
	if r.BilledCost.IsSet() {
		s.addCost(r.BillingCurrency, r.BilledCost)
	}
	s.cutDue(h, oh, len(oh.recs))
	return s.err
}

// addCost counts d, billed in currency cur, into the spool's totals.
func (s *Spool) addCost(cur string, d messages.Decimal) {
	s.cost.Add(d)
	cs := s.costs[cur]
	if cs == nil {
		cs = &messages.Sum{}
		s.costs[cur] = cs
	}
	cs.Add(d)
}

// unlink takes oh out of the open hours' recency list.
func (s *Spool) unlink(oh *openHour) { oh.prev.next, oh.next.prev = oh.next, oh.prev }

// toFront puts oh first in the recency list: the hour added to last.
func (s *Spool) toFront(oh *openHour) {
	oh.next, oh.prev = s.lru.next, &s.lru
	s.lru.next.prev = oh
	s.lru.next = oh
}

// cutDue cuts hour h (oh, holding n records) once it fills a part, then
// the least recently added to hours while more than OpenBytes are open.
func (s *Spool) cutDue(h time.Time, oh *openHour, n int) {
	if n*oh.avg >= s.opts.PartBytes {
		s.cut(h)
	}
	for s.err == nil && s.held > s.opts.OpenBytes {
		s.cut(s.lru.prev.hour) // the least recently added to
	}
}

// AddEncoded takes good rows encoded ahead of their parts (checked by the
// caller: input.ReadEncoded checks every row it delivers). It groups and
// cuts them exactly as Add does the records they were, so the parts are
// the same bytes. The spool copies what it keeps: e may be reused.
func (s *Spool) AddEncoded(e *input.EncodedRows) error {
	if s.err != nil {
		return s.err
	}
	if s.done {
		return errors.New("spool: Add after Close")
	}
	if s.ext == nil {
		s.ext = e.Ext
		if s.ext == nil {
			s.ext = []string{}
		}
	} else if !slices.Equal(s.ext, e.Ext) {
		return errors.New("spool: encoded rows against other extension names")
	}
	for i := range e.Rows {
		row := &e.Rows[i]
		vals := e.Values(i)
		h := time.Unix(row.Hour, 0).UTC()
		oh := s.open[h]
		if oh != nil && len(oh.recs) > 0 {
			return errors.New("spool: records and encoded rows in one hour")
		}
		if oh == nil {
			// As Add: the size of the record encoded alone.
			oh = &openHour{hour: h, avg: row.Use.EncodedLen(vals)*9/8 + 1}
			if n := len(s.freeR); n > 0 {
				oh.rows, s.freeR = s.freeR[n-1], s.freeR[:n-1]
			}
			s.open[h] = oh
		} else {
			s.unlink(oh)
		}
		s.toFront(oh)
		oh.rows.vals = append(oh.rows.vals, vals...)
		oh.rows.uses = append(oh.rows.uses, row.Use)
		oh.rows.ends = append(oh.rows.ends, len(oh.rows.vals))
		s.held += oh.avg
		s.recs++
		s.cutDue(h, oh, len(oh.rows.uses))
		if s.err != nil {
			return s.err
		}
	}
	for i := range e.Costs {
		s.addCost(e.Costs[i].Currency, e.Costs[i].Sum.Decimal())
	}
	return nil
}

// cut encodes the records held for hour h into parts and writes them.
func (s *Spool) cut(h time.Time) {
	oh := s.open[h]
	if oh == nil {
		return
	}
	delete(s.open, h)
	s.unlink(oh)
	s.held -= oh.count() * oh.avg
	var parts []SplitPart
	var err error
	if len(oh.rows.uses) > 0 {
		parts, err = splitRows(h, &oh.rows, s.ext, s.opts.PartBytes, getPayload)
	} else {
		b := &messages.Batch{ID: "spool", Feed: "spool", Source: "spool", Records: oh.recs}
		parts, err = split(b, s.opts.PartBytes, getPayload)
	}
	if err != nil {
		s.err = err
		return
	}
	for i := range parts {
		sp := &parts[i]
		if s.err == nil {
			s.write(sp)
		}
		putPayload(sp.buf)
	}
	// The hour's slice serves the next hour: growing a fresh one per hour
	// cleared and copied a row's 700-byte struct several times over.
	if len(oh.rows.uses) > 0 {
		if len(s.freeR) < 4 {
			s.freeR = append(s.freeR, hourRows{oh.rows.vals[:0], oh.rows.uses[:0], oh.rows.ends[:0]})
		}
		return
	}
	clear(oh.recs)
	if len(s.free) < 4 {
		s.free = append(s.free, oh.recs[:0])
	}
}

// splitRows is split for one hour of rows encoded ahead: the same parts,
// byte for byte, as split makes of the records they were (in a batch of
// that hour alone, as cut gives it).
func splitRows(h time.Time, rows *hourRows, ext []string, maxPayload int, alloc func(n int) []byte) ([]SplitPart, error) {
	var enc messages.PartEncoder
	for _, u := range rows.uses {
		enc.UseRow(u, ext)
	}
	return cutHour(&enc, nil, len(rows.uses), maxPayload, alloc,
		func(buf []byte, k int) []byte { return enc.AppendRow(buf, rows.uses[k], rows.values(k), ext) },
		func(k int) int { return k },
		func(part, count int) messages.PartMeta {
			return messages.PartMeta{Schema: enc.Schema(), BatchID: "spool", Part: part, Feed: "spool", Source: "spool", Kind: messages.KindAppend, Hour: h, Records: count}
		})
}

func (s *Spool) write(sp *SplitPart) {
	n := len(s.parts) + 1
	m := sp.Meta
	m.Part = n
	m.Kind = messages.KindAppend
	// The claim digest, part by part as digest() has it.
	fmt.Fprintf(s.sum, "%d|%s|%d|%s|%s|%d|%d|%d|", m.Part, m.Kind, m.Hour.Unix(), m.Period.String(), strconv.FormatInt(m.Generation, 10), m.Records, m.Schema, len(sp.Payload))
	s.sum.Write(sp.Payload)
	binary.BigEndian.PutUint32(s.hdr[0:], uint32(len(sp.Payload)))
	binary.BigEndian.PutUint32(s.hdr[4:], uint32(m.Records))
	binary.BigEndian.PutUint64(s.hdr[8:], uint64(m.Hour.Unix()))
	s.hdr[16] = byte(m.Schema)
	binary.BigEndian.PutUint32(s.hdr[17:], uint32(n))
	if _, err := s.w.Write(s.hdr[:]); err != nil {
		s.err = fmt.Errorf("spool: %w", err)
		return
	}
	if _, err := s.w.Write(sp.Payload); err != nil {
		s.err = fmt.Errorf("spool: %w", err)
		return
	}
	s.bytes += int64(len(sp.Payload))
	s.parts = append(s.parts, PartInfo{Part: n, Hour: m.Hour, Records: m.Records, Bytes: len(sp.Payload)})
}

// Close cuts every open hour (in hour order) and makes the spool ready to
// publish. Add may not follow.
func (s *Spool) Close() error {
	if s.done {
		return s.err
	}
	s.done = true
	hours := make([]time.Time, 0, len(s.open))
	for h := range s.open {
		hours = append(hours, h)
	}
	sort.Slice(hours, func(i, j int) bool { return hours[i].Before(hours[j]) })
	for _, h := range hours {
		s.cut(h)
	}
	if s.err == nil {
		if err := s.w.Flush(); err != nil {
			s.err = fmt.Errorf("spool: %w", err)
		}
	}
	return s.err
}

// Discard removes the spool file.
func (s *Spool) Discard() error { return s.file.Close() }

// Records is the number of records added.
func (s *Spool) Records() int { return s.recs }

// Parts is the number of parts cut so far.
func (s *Spool) Parts() int { return len(s.parts) }

// Bytes is the payload bytes of the parts cut so far.
func (s *Spool) Bytes() int64 { return s.bytes }

// Cost is the exact sum of BilledCost of the records added.
func (s *Spool) Cost() messages.Decimal { return s.cost.Decimal() }

// Costs is the exact sum of BilledCost per BillingCurrency ("" when a
// record has none).
func (s *Spool) Costs() map[string]messages.Decimal {
	out := make(map[string]messages.Decimal, len(s.costs))
	for cur, sum := range s.costs {
		out[cur] = sum.Decimal()
	}
	return out
}

// Digest is the claim digest of the parts (after Close): the same as
// Publish computes for the same parts.
func (s *Spool) Digest() string { return fmt.Sprintf("%x", s.sum.Sum(nil)) }

// spoolInFlight, when set (by a test), is told the parts in flight each
// time one more is sent.
var spoolInFlight func(n int)

// SpoolPublish says what PublishSpool publishes and how.
type SpoolPublish struct {
	BatchID, Feed, Source string
	// Window bounds the parts read from the spool and not yet stored
	// (default 16): with the part size, it bounds publishing's memory.
	Window int
	// Progress, when set, is called after each part is stored with the
	// records and parts stored so far (from one goroutine at a time).
	Progress func(records, parts int)
}

// PublishSpool publishes a closed spool's parts as batch sp.BatchID of
// sp.Source on sp.Feed, returning once JetStream has stored every part.
// Like Publish it first claims the batch id with the parts' digest (a
// repeat of the same content goes on, other content is ErrBatchConflict),
// and each part's Nats-Msg-Id is "<source>/<feed>/<batch>/<part>": a
// publish run again after a crash or a kill stores only what is missing.
func (p *Producer) PublishSpool(ctx context.Context, s *Spool, sp SpoolPublish) (*Result, error) {
	b, err := p.spoolBatch(s, sp)
	if err != nil {
		return nil, err
	}
	window := sp.Window
	if window <= 0 {
		window = 16
	}
	res := &Result{BatchID: b.ID, Source: b.Source, Feed: b.Feed, Records: s.recs, Cost: s.Cost(), Published: time.Now()}
	res.Parts = make([]PartInfo, len(s.parts))
	copy(res.Parts, s.parts)
	for i := range res.Parts {
		res.Parts[i].Subject = messages.UsageSubject(b.Feed, res.Parts[i].Hour)
	}
	if err := p.claimDigest(ctx, b, s.Digest()); err != nil {
		return nil, err
	}
	if _, err := s.file.Seek(0, io.SeekStart); err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	r := bufio.NewReaderSize(s.file, 256<<10)
	pctx, cancel := context.WithCancel(ctx)
	defer cancel()

	sem := make(chan struct{}, window)
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
		stored   struct{ recs, parts int }
	)
	fail := func(err error) {
		mu.Lock()
		if firstErr == nil {
			firstErr = err
			cancel()
		}
		mu.Unlock()
	}
	var hdr [spoolHeaderLen]byte
	var inFlight atomic.Int64 // parts read from the spool and not yet stored
	for i := range res.Parts {
		select {
		case sem <- struct{}{}:
		case <-pctx.Done():
		}
		if pctx.Err() != nil {
			break
		}
		info := &res.Parts[i]
		m, buf, err := readSpoolPart(r, &hdr, b, info, i)
		if err != nil {
			fail(err)
			break
		}
		h := m.Header()
		if err := p.sign(info.Subject, h, buf); err != nil {
			fail(err)
			break
		}
		otel.GetTextMapPropagator().Inject(ctx, messages.HeaderCarrier(h))
		msg := &nats.Msg{Subject: info.Subject, Header: h, Data: buf}
		if n := inFlight.Add(1); spoolInFlight != nil {
			spoolInFlight(int(n))
		}
		fut, err := p.js.PublishMsgAsync(msg)
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { inFlight.Add(-1); <-sem }()
			var ack *jetstream.PubAck
			if err == nil {
				select {
				case ack = <-fut.Ok():
				case err = <-fut.Err():
				case <-pctx.Done():
					fail(pctx.Err())
					return // the future is still open: buf is left to the GC
				}
			}
			if err != nil {
				if pctx.Err() != nil {
					fail(pctx.Err())
					return
				}
				ack, err = p.publishRetry(pctx, msg, err)
				if err != nil {
					fail(err)
					return
				}
			}
			putPayload(buf)
			info.Seq = ack.Sequence
			info.Duplicate = ack.Duplicate
			mu.Lock()
			stored.recs += info.Records
			stored.parts++
			if sp.Progress != nil {
				sp.Progress(stored.recs, stored.parts)
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	if firstErr != nil {
		if ctx.Err() != nil && errors.Is(firstErr, context.Canceled) {
			return nil, ctx.Err()
		}
		return nil, firstErr
	}
	return res, nil
}

// spoolBatch checks that s closed cleanly, that sp names a valid batch
// and that s's parts fit the server, and returns the batch.
func (p *Producer) spoolBatch(s *Spool, sp SpoolPublish) (*messages.Batch, error) {
	if !s.done || s.err != nil {
		return nil, fmt.Errorf("spool not closed cleanly: %v", s.err)
	}
	b := &messages.Batch{ID: sp.BatchID, Feed: sp.Feed, Source: sp.Source}
	if err := b.Validate(); err != nil && len(s.parts) > 0 {
		// The only problems left are the batch's own (the records are in
		// the spool): "an append batch needs at least one record" is not
		// one when parts exist.
		var ve messages.ValidationError
		if errors.As(err, &ve) {
			var keep messages.ValidationError
			for _, fe := range ve {
				if fe.Field != "Records" {
					keep = append(keep, fe)
				}
			}
			if len(keep) > 0 {
				return nil, keep
			}
		} else {
			return nil, err
		}
	} else if err != nil {
		return nil, err
	}
	if s.opts.PartBytes > p.opts.MaxPayload {
		return nil, fmt.Errorf("parts of up to %d bytes do not fit this server's max payload (%d less header room): spool with a smaller part size", s.opts.PartBytes, p.opts.MaxPayload)
	}
	return b, nil
}

// readSpoolPart reads part i (index entry info) of batch b from the spool
// into hdr and a pooled payload, and checks it against its index entry.
func readSpoolPart(r *bufio.Reader, hdr *[spoolHeaderLen]byte, b *messages.Batch, info *PartInfo, i int) (messages.PartMeta, []byte, error) {
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return messages.PartMeta{}, nil, fmt.Errorf("spool: reading part %d: %w", i+1, err)
	}
	n := int(binary.BigEndian.Uint32(hdr[0:]))
	buf := getPayload(n)
	if _, err := io.ReadFull(r, buf); err != nil {
		return messages.PartMeta{}, nil, fmt.Errorf("spool: reading part %d: %w", i+1, err)
	}
	m := messages.PartMeta{Schema: int(hdr[16]), BatchID: b.ID, Part: int(binary.BigEndian.Uint32(hdr[17:])), Feed: b.Feed, Source: b.Source, Kind: messages.KindAppend, Hour: time.Unix(int64(binary.BigEndian.Uint64(hdr[8:])), 0).UTC(), Records: int(binary.BigEndian.Uint32(hdr[4:]))}
	if m.Part != info.Part || m.Records != info.Records || !m.Hour.Equal(info.Hour) {
		return messages.PartMeta{}, nil, fmt.Errorf("spool: part %d does not match its index: the spool file was changed", i+1)
	}
	return m, buf, nil
}
