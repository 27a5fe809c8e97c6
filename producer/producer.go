// Package producer is the client library a service embeds to publish usage
// batches to the fleet and to learn what became of them.
//
// Publish validates a batch, splits it into parts (one per UTC hour of
// ChargePeriodStart, each under the server's max payload), encodes them
// with msgpack and publishes them asynchronously with a bounded in-flight
// window. Each part carries Nats-Msg-Id "<source>/<feed>/<batch id>/<part>",
// so publishing the same batch again (after a crash, a timeout, a retried
// job) is de-duplicated by JetStream, and two sources' batch ids never
// collide. Publish returns only once JetStream has stored every part.
//
// A batch id reused with different content is an error (ErrBatchConflict),
// never a silent "already stored": before its parts, Publish claims the id
// in the usagefleet_batches KV bucket with a digest of the batch's content
// (one create per batch; the key starts with the source, so NATS
// permissions confine a publisher to its own claims). A repeat finds its
// own digest and goes on; other content finds another and stops. This costs
// one KV round trip per batch and needs no read access to the USAGE stream
// (reading the stored duplicate back would let any producer read every
// team's parts).
//
// Wait follows the ack stream until every part has been delivered,
// rejected or dead-lettered at the destinations you name, and FollowAcks
// streams acks as they come.
package producer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/usagefleet/usagefleet/messages"
)

// Options tune a Producer. Zero values take the defaults.
type Options struct {
	// MaxInFlight bounds parts published but not yet stored (default 256).
	MaxInFlight int
	// MaxPayload caps a part's payload in bytes (default: the server's max
	// payload less room for headers).
	MaxPayload int
	// RetryMaxElapsed bounds how long a part's publish is retried through
	// transient failures (default 2 minutes).
	RetryMaxElapsed time.Duration
	// Logger receives retry warnings (default slog.Default()).
	Logger *slog.Logger
	// SigningKey, when set, signs every part as the batch's source (see
	// messages.SignPart): the user nkey (seed) of the one source this
	// producer publishes for. Workers that bind sources refuse unsigned
	// parts and parts signed by another source's key.
	SigningKey nkeys.KeyPair
}

// Producer publishes batches. It is safe for concurrent use.
type Producer struct {
	nc   *nats.Conn
	js   jetstream.JetStream
	opts Options
	log  *slog.Logger

	kvMu    sync.Mutex
	batches jetstream.KeyValue
}

// ErrBatchConflict: the batch id was already published by this source on
// this feed with other content. Nothing of the new batch was published;
// choose a new batch id.
var ErrBatchConflict = errors.New("batch id already used with different content")

// ErrStreamMissing: the server has no USAGE stream (or batch bucket): the
// fleet was never set up on it, or this is the wrong server or account.
var ErrStreamMissing = errors.New("stream missing")

// headerRoom is what we keep free in a message for its headers.
const headerRoom = 2048

// New returns a producer on nc. The streams must exist (the workers create
// them; broker.EnsureStreams does too).
func New(nc *nats.Conn, opts Options) (*Producer, error) {
	if opts.MaxInFlight <= 0 {
		opts.MaxInFlight = 256
	}
	if opts.RetryMaxElapsed <= 0 {
		opts.RetryMaxElapsed = 2 * time.Minute
	}
	if opts.MaxPayload <= 0 {
		opts.MaxPayload = int(nc.MaxPayload()) - headerRoom
	}
	if opts.MaxPayload < 4096 {
		return nil, fmt.Errorf("producer: max payload %d is too small", opts.MaxPayload)
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(opts.MaxInFlight*2))
	if err != nil {
		return nil, err
	}
	return &Producer{nc: nc, js: js, opts: opts, log: opts.Logger}, nil
}

// PartInfo says where a part was stored.
type PartInfo struct {
	Part      int
	Subject   string
	Hour      time.Time
	Records   int
	Bytes     int
	Seq       uint64
	Duplicate bool // JetStream already had it (a repeated publish)
}

// Result describes a published batch.
type Result struct {
	BatchID   string
	Source    string
	Feed      string
	Parts     []PartInfo
	Markers   int // snapshot closing markers stored
	Records   int
	Cost      messages.Decimal // exact sum of BilledCost
	Published time.Time
}

// Duplicate reports whether every part was already stored before.
func (r *Result) Duplicate() bool {
	for _, p := range r.Parts {
		if !p.Duplicate {
			return false
		}
	}
	return len(r.Parts) > 0
}

type outMsg struct {
	msg     *nats.Msg
	info    *PartInfo
	settled bool // the client is done with msg: acked, or failed for good
}

// Publish validates b, splits it into parts and publishes them, returning
// once JetStream has stored every part. A messages.ValidationError lists
// every bad record; nothing is published then.
func (p *Producer) Publish(ctx context.Context, b *messages.Batch) (*Result, error) {
	return p.PublishWith(ctx, b, PublishOptions{})
}

// PublishOptions tell Publish what its caller already knows. The zero
// value is Publish.
type PublishOptions struct {
	// RecordsValidated: every record passed messages.UsageRecord.Validate
	// and was not changed since (the caller validated each as it decoded
	// it, and answers a bad one itself). Publish checks the batch's own
	// fields (messages.Batch.ValidateFields), not each record again.
	RecordsValidated bool
	// FreshID: the batch id was made for this batch alone (a random id,
	// such as a nuid, never reused for other content). Its claim in the
	// batches bucket, which only detects an id reused with other content,
	// is skipped: one JetStream round trip less per batch. A retry of the
	// parts within this call still uses the same message ids. Never set it
	// for an id a caller chose or derived (an idempotency key): those are
	// what the claim protects.
	FreshID bool
}

// PublishWith is Publish with what the caller already knows (see
// PublishOptions).
func (p *Producer) PublishWith(ctx context.Context, b *messages.Batch, o PublishOptions) (*Result, error) {
	ctx, span := tracer().Start(ctx, "publish "+b.Feed, trace.WithSpanKind(trace.SpanKindProducer), trace.WithAttributes(
		attribute.String("messaging.system", "nats"),
		attribute.String("messaging.operation.type", "publish"),
		attribute.String("messaging.destination.name", "usage."+b.Feed),
		attribute.String("usagefleet.batch", b.ID),
		attribute.Int("messaging.batch.message_count", len(b.Records)),
	))
	defer span.End()
	start := time.Now()
	defer func() { publishDuration().Record(ctx, time.Since(start).Seconds()) }()
	validate := b.Validate
	if o.RecordsValidated {
		validate = b.ValidateFields
	}
	if err := validate(); err != nil {
		span.RecordError(err)
		return nil, err
	}
	if b.Snapshot != nil {
		if err := messages.CheckGeneration(b.Snapshot.Generation, time.Now()); err != nil {
			err = messages.ValidationError{{Index: -1, Field: "Snapshot.Generation", Problem: err.Error()}}
			span.RecordError(err)
			return nil, err
		}
	}
	res := &Result{BatchID: b.ID, Source: b.Source, Feed: b.Feed, Records: len(b.Records), Published: time.Now()}
	parts, err := split(b, p.opts.MaxPayload, getPayload)
	if err != nil {
		return nil, err
	}
	// Once every part is stored (or Publish gives up) the client holds no
	// reference to the payloads: they serve the next batch.
	var out []outMsg
	defer func() {
		for i := range out {
			// A part whose future was still open when Publish gave up may
			// yet be re-sent by the client (no-responders retries): its
			// buffer is left to the GC.
			if out[i].settled {
				putPayload(parts[i].buf)
			}
		}
	}()
	var cost messages.Sum
	for i := range b.Records {
		cost.Add(b.Records[i].BilledCost)
	}
	res.Cost = cost.Decimal()
	if !o.FreshID {
		if err := p.claim(ctx, b, parts); err != nil {
			span.RecordError(err)
			return nil, err
		}
	}
	res.Parts = make([]PartInfo, len(parts))
	out = make([]outMsg, len(parts))
	for i, sp := range parts {
		res.Parts[i] = PartInfo{Part: sp.Meta.Part, Subject: messages.UsageSubject(b.Feed, sp.Meta.Hour), Hour: sp.Meta.Hour, Records: sp.Meta.Records, Bytes: len(sp.Payload)}
		h := sp.Meta.Header()
		if err := p.sign(res.Parts[i].Subject, h, sp.Payload); err != nil {
			return nil, err
		}
		otel.GetTextMapPropagator().Inject(ctx, messages.HeaderCarrier(h))
		out[i] = outMsg{msg: &nats.Msg{Subject: res.Parts[i].Subject, Header: h, Data: sp.Payload}, info: &res.Parts[i]}
	}
	if err := p.publishAll(ctx, out); err != nil {
		span.RecordError(err)
		return nil, err
	}
	if s := b.Snapshot; s != nil {
		// Closing markers, one per hour of the period, after every part is
		// stored: a generation counts in an hour only once they are.
		perHour := map[time.Time]int{}
		for _, sp := range parts {
			perHour[sp.Meta.Hour]++
		}
		var markers []outMsg
		for h := s.Period.Start; h.Before(s.Period.End); h = h.Add(time.Hour) {
			m := messages.PartMeta{BatchID: b.ID, Feed: b.Feed, Source: b.Source, Kind: messages.KindSnapshotEnd, Hour: h, Period: s.Period, Generation: s.Generation, Parts: perHour[h]}
			mh := m.Header()
			if err := p.sign(messages.UsageSubject(b.Feed, h), mh, nil); err != nil {
				return nil, err
			}
			markers = append(markers, outMsg{msg: &nats.Msg{Subject: messages.UsageSubject(b.Feed, h), Header: mh}, info: &PartInfo{}})
		}
		if err := p.publishAll(ctx, markers); err != nil {
			return nil, fmt.Errorf("snapshot markers: %w", err)
		}
		res.Markers = len(markers)
	}
	return res, nil
}

func (p *Producer) sign(subject string, h nats.Header, payload []byte) error {
	if p.opts.SigningKey == nil {
		return nil
	}
	return messages.SignPart(subject, h, payload, p.opts.SigningKey)
}

// publishAll publishes asynchronously with at most MaxInFlight outstanding,
// retrying each failed part with backoff under the same message id.
func (p *Producer) publishAll(ctx context.Context, out []outMsg) error {
	sem := make(chan struct{}, p.opts.MaxInFlight)
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
	)
	fail := func(err error) {
		mu.Lock()
		if firstErr == nil {
			firstErr = err
		}
		mu.Unlock()
	}
	failed := func() bool {
		mu.Lock()
		defer mu.Unlock()
		return firstErr != nil
	}
	for i := range out {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			fail(ctx.Err())
		}
		if failed() {
			break
		}
		o := &out[i]
		fut, err := p.js.PublishMsgAsync(o.msg)
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			var ack *jetstream.PubAck
			if err == nil {
				select {
				case ack = <-fut.Ok():
				case err = <-fut.Err():
				case <-ctx.Done():
					fail(ctx.Err())
					return // the future is still open
				}
			}
			o.settled = true // what follows publishes synchronously
			if err != nil {
				if ctx.Err() != nil {
					fail(ctx.Err())
					return
				}
				ack, err = p.publishRetry(ctx, o.msg, err)
				if err != nil {
					fail(err)
					return
				}
			}
			o.info.Seq = ack.Sequence
			o.info.Duplicate = ack.Duplicate
		}()
	}
	wg.Wait()
	return firstErr
}

func (p *Producer) publishRetry(ctx context.Context, msg *nats.Msg, first error) (*jetstream.PubAck, error) {
	bo := backoff.NewExponentialBackOff()
	bo.InitialInterval = 100 * time.Millisecond
	bo.MaxInterval = 5 * time.Second
	lastErr := first
	var ack *jetstream.PubAck
	op := func() error {
		if !retryable(lastErr) {
			return backoff.Permanent(lastErr)
		}
		if errors.Is(lastErr, jetstream.ErrNoStreamResponse) || errors.Is(lastErr, nats.ErrNoResponders) {
			// Nobody stores the subject: a stream in failover, or none at
			// all. Ask once, so a missing stream is said at once.
			if err := p.checkStream(ctx); errors.Is(err, ErrStreamMissing) {
				lastErr = err
				return backoff.Permanent(err)
			}
		}
		p.log.Warn("publish failed, retrying", "subject", msg.Subject, "msg_id", msg.Header.Get(messages.HdrMsgID), "err", lastErr)
		actx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		a, err := p.js.PublishMsg(actx, msg)
		if err != nil {
			lastErr = err
			return err
		}
		ack = a
		return nil
	}
	if _, err := backoff.Retry(ctx, func() (struct{}, error) { return struct{}{}, op() }, backoff.WithBackOff(bo), backoff.WithMaxElapsedTime(p.opts.RetryMaxElapsed)); err != nil {
		return nil, fmt.Errorf("publishing %s (%s): %w", msg.Header.Get(messages.HdrMsgID), msg.Subject, err)
	}
	return ack, nil
}

// errMsgIDInProcess is JetStream's "duplicate message id is in process"
// (409, err_code 10158, JSStreamDuplicateMessageConflict): an earlier try
// of the same id was proposed to the stream's replicas and is not settled
// yet (a node loss, a leader change). It may still be stored, so the part
// is neither failed nor sent as new: the same id is tried again until the
// server answers stored or duplicate.
const errMsgIDInProcess jetstream.ErrorCode = 10158

// retryable: the failures that a later try can fix.
func retryable(err error) bool {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		// Server-side refusals (too large, wrong stream) do not heal; an
		// unavailable cluster and an id still in process do.
		return apiErr.Code == 503 || apiErr.Code == 408 || apiErr.ErrorCode == errMsgIDInProcess
	}
	return !errors.Is(err, nats.ErrConnectionClosed) && !errors.Is(err, nats.ErrMaxPayload) && !errors.Is(err, context.Canceled) && !errors.Is(err, ErrStreamMissing)
}

// SplitPart is one encoded part of a batch.
type SplitPart struct {
	Meta    messages.PartMeta
	Payload []byte
	buf     []byte // the whole buffer Payload is cut from
}

// payloads keeps part buffers between Publish calls: a steady publisher
// allocated (and the GC swept) its whole output.
var payloads sync.Pool // *[]byte

func getPayload(size int) []byte {
	if b, _ := payloads.Get().(*[]byte); b != nil && cap(*b) >= size {
		return (*b)[:size]
	}
	return make([]byte, size, size+size/8)
}

func putPayload(b []byte) {
	if cap(b) > 0 {
		payloads.Put(&b)
	}
}

// Split cuts a valid batch into parts: one or more per UTC hour of
// ChargePeriodStart (in hour order, records in batch order within an hour),
// each payload at most maxPayload bytes. Part numbers are deterministic, so
// publishing the same batch again yields the same message ids.
func Split(b *messages.Batch, maxPayload int) ([]SplitPart, error) {
	return split(b, maxPayload, func(n int) []byte { return make([]byte, n) })
}

// split is Split with the part buffers from alloc (a buffer of length n,
// contents irrelevant: the first n bytes are reserved for the header).
func split(b *messages.Batch, maxPayload int, alloc func(n int) []byte) ([]SplitPart, error) {
	byHour := map[time.Time][]int{}
	for i := range b.Records {
		h := b.Records[i].ChargePeriodStart.UTC().Truncate(time.Hour)
		byHour[h] = append(byHour[h], i)
	}
	hours := make([]time.Time, 0, len(byHour))
	for h := range byHour {
		hours = append(hours, h)
	}
	sort.Slice(hours, func(i, j int) bool { return hours[i].Before(hours[j]) })
	kind := messages.KindAppend
	var period messages.Period
	var gen int64
	if b.Snapshot != nil {
		kind, period, gen = messages.KindSnapshot, b.Snapshot.Period, b.Snapshot.Generation
	}
	// Each part is encoded in place (schema 2): room for the largest
	// header is reserved, and the header is written right-aligned once the
	// count is known, so the payload is never copied. The parts of an hour
	// share its columns.
	var parts []SplitPart
	var enc messages.PartEncoder
	for _, h := range hours {
		idx := byHour[h]
		enc.Reset()
		for _, i := range idx {
			enc.Use(&b.Records[i])
		}
		var err error
		parts, err = cutHour(&enc, parts, len(idx), maxPayload, alloc,
			func(buf []byte, k int) []byte { return enc.AppendRecord(buf, &b.Records[idx[k]]) },
			func(k int) int { return idx[k] },
			func(part, count int) messages.PartMeta {
				return messages.PartMeta{Schema: enc.Schema(), BatchID: b.ID, Part: part, Feed: b.Feed, Source: b.Source, Kind: kind, Hour: h, Period: period, Generation: gen, Records: count}
			})
		if err != nil {
			return nil, err
		}
	}
	return parts, nil
}

// cutHour appends to parts the parts of one hour's n records, which enc
// has seen (Use, UseRow), each record encoded by appendOne (the k-th of
// the hour) and its index in the batch given by index (for errors); meta
// is the meta of part number part (from 1, over all of parts) of count
// records. Each part is encoded in place: room for the largest header is
// reserved, and the header is written right-aligned once the count is
// known, so the payload is never copied. Split and the spool's encoded
// rows (splitRows) cut the same way, so they make the same bytes.
func cutHour(enc *messages.PartEncoder, parts []SplitPart, n, maxPayload int, alloc func(n int) []byte, appendOne func(buf []byte, k int) []byte, index func(k int) int, meta func(part, count int) messages.PartMeta) ([]SplitPart, error) {
	reserve := enc.MaxHeaderLen()
	if reserve+16 > maxPayload {
		return nil, messages.ValidationError{{Index: index(0), Field: "", Problem: fmt.Sprintf("the hour's %d columns alone make a %d-byte header, more than the %d-byte message limit", n, reserve, maxPayload)}}
	}
	// Size the first buffer from one record, so it rarely grows.
	avg := len(appendOne(make([]byte, 0, 1024), 0))*9/8 + 1
	left := n
	newBuf := func() []byte {
		b := alloc(min(maxPayload+reserve, reserve+left*avg+avg/2+64))
		return b[:reserve]
	}
	var hdr []byte
	buf := newBuf()
	count := 0
	flush := func() {
		hdr = enc.AppendHeader(hdr[:0], count)
		copy(buf[reserve-len(hdr):reserve], hdr)
		parts = append(parts, SplitPart{Meta: meta(len(parts)+1, count), Payload: buf[reserve-len(hdr):], buf: buf})
		buf, count = newBuf(), 0
	}
	for k := range n {
		before := len(buf)
		buf = appendOne(buf, k)
		size := len(buf) - before
		left--
		if size+reserve > maxPayload {
			return nil, messages.ValidationError{{Index: index(k), Field: "", Problem: fmt.Sprintf("record encodes to %d bytes, more than the %d-byte message limit", size, maxPayload)}}
		}
		if len(buf)-reserve+enc.HeaderLen(count+1) > maxPayload {
			rec := append([]byte(nil), buf[before:]...)
			buf = buf[:before]
			flush()
			buf = append(buf, rec...)
		}
		count++
	}
	flush()
	return parts, nil
}

const instrumentation = "github.com/usagefleet/usagefleet/producer"

func tracer() trace.Tracer { return otel.Tracer(instrumentation) }

// publishDuration is looked up per call so a meter provider installed after
// New is still used (instruments are cached by the SDK).
func publishDuration() metric.Float64Histogram {
	h, _ := otel.Meter(instrumentation).Float64Histogram("usagefleet.publish.duration", metric.WithDescription("time to publish a batch until JetStream stored every part"), metric.WithUnit("s"))
	return h
}
