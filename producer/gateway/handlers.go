package gateway

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"errors"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/usagefleet/usagefleet/messages"
)

//go:embed openapi.yaml
var openapiDoc []byte

// OpenAPI is the API's OpenAPI 3.1 document.
func OpenAPI() []byte { return openapiDoc }

// Handler serves the API, /openapi.yaml, /healthz, /readyz and (if metrics
// is not nil) /metrics.
func (g *Gateway) Handler(metrics http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("POST /v1/usage", g.route("usage", g.usage, 0))
	mux.Handle("POST /v1/events", g.route("events", g.events, -1)) // events bounds its own waits
	mux.Handle("GET /v1/batches/{id}", g.route("batch", g.batch, g.maxWait()+5*time.Second))
	mux.HandleFunc("GET /openapi.yaml", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/yaml")
		w.Write(openapiDoc)
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if err := g.Ready(r.Context()); err != nil {
			p := problem(http.StatusServiceUnavailable, typeUnavailable, "Not ready", err.Error())
			p.retryAfter = time.Second
			writeProblem(w, p)
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Write([]byte("ready\n"))
	})
	if metrics != nil {
		mux.Handle("GET /metrics", metrics)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// A path the API knows with the wrong method is 405, anything else
		// 404: both as problem details.
		if _, pattern := mux.Handler(r); pattern == "" {
			for _, m := range []string{"GET", "POST"} {
				r2 := r.Clone(r.Context())
				r2.Method = m
				if _, p := mux.Handler(r2); p != "" {
					w.Header().Set("Allow", m)
					writeProblem(w, problem(http.StatusMethodNotAllowed, typeMethod, "Method not allowed", r.Method+" "+r.URL.Path+": use "+m))
					return
				}
			}
			writeProblem(w, problem(http.StatusNotFound, typeNotFound, "Not found", "no such path: "+r.URL.Path))
			return
		}
		mux.ServeHTTP(w, r)
	})
}

var serverSpan = trace.WithSpanKind(trace.SpanKindServer)

type handlerFunc func(ctx context.Context, w http.ResponseWriter, r *http.Request, k *apiKey) *Problem

var propagator = propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})

// route wraps a handler: trace context from the caller's traceparent, the
// request timeout (0: limits.request_timeout; negative: none, the handler
// bounds its waits), authentication, metrics, and problem answers.
func (g *Gateway) route(name string, h handlerFunc, timeout time.Duration) http.Handler {
	if timeout == 0 {
		timeout = g.timeout
	}
	// The duration's attribute set is built once per route, not per request.
	durAttrs := metric.WithAttributes(attribute.String("route", name))
	countRequest := g.m.requests.counter(name)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		ctx := otel.GetTextMapPropagator().Extract(r.Context(), propagation.HeaderCarrier(r.Header))
		if !trace.SpanContextFromContext(ctx).IsValid() && (r.Header["Traceparent"] != nil || r.Header["Baggage"] != nil) {
			// The global propagator may be the no-op one (a library
			// user's process): read the caller's context ourselves. A
			// request with neither header has none to read.
			ctx = propagator.Extract(ctx, propagation.HeaderCarrier(r.Header))
		}
		// The span is named by the pattern, which holds the method: "POST
		// /v1/events", as the HTTP conventions name a server span.
		// Without spans ctx keeps the caller's span context, which the
		// parts' headers continue.
		var span trace.Span
		if g.cfg.SkipSpans {
			span = trace.SpanFromContext(ctx)
		} else {
			ctx, span = tracer().Start(ctx, r.Pattern, serverSpan)
			defer span.End()
		}
		sw := &statusWriter{ResponseWriter: w}
		var p *Problem
		switch {
		case g.draining.Load():
			p = problem(http.StatusServiceUnavailable, typeUnavailable, "Shutting down", "this replica is draining: retry (another replica answers)")
			p.retryAfter = time.Second
		default:
			k := g.keys.lookup(credential(r))
			if k == nil {
				sw.Header().Set("WWW-Authenticate", `Bearer realm="usage-gateway"`)
				p = problem(http.StatusUnauthorized, typeUnauth, "Unauthenticated", "send an API key: Authorization: Bearer <key> (or X-API-Key)")
				break
			}
			select {
			case g.slots <- struct{}{}:
				if timeout > 0 {
					tctx, cancel := context.WithTimeout(ctx, timeout)
					p = h(tctx, sw, r, k)
					cancel()
				} else {
					p = h(ctx, sw, r, k)
				}
				<-g.slots
			default:
				p = problem(http.StatusTooManyRequests, typeLimits, "Too many requests in flight", "limits.max_in_flight requests are being stored: retry shortly")
				p.retryAfter = time.Second
			}
		}
		if p != nil {
			span.SetAttributes(attribute.String("usagefleet.problem", p.reason))
			g.m.rejections.Add(ctx, 1, metric.WithAttributes(attribute.String("reason", p.reason)))
			writeProblem(sw, p)
		}
		countRequest(sw.code())
		g.m.duration.Record(ctx, time.Since(start).Seconds(), durAttrs)
	})
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (s *statusWriter) WriteHeader(c int) {
	if s.status == 0 {
		s.status = c
	}
	s.ResponseWriter.WriteHeader(c)
}

func (s *statusWriter) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = 200
	}
	return s.ResponseWriter.Write(b)
}

func (s *statusWriter) code() int {
	if s.status == 0 {
		return 200
	}
	return s.status
}

var bufPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

func putBuf(b *bytes.Buffer) {
	if b.Cap() <= 8<<20 {
		b.Reset()
		bufPool.Put(b)
	}
}

// readBody reads the body within limits.max_body_bytes as sent and
// limits.max_decompressed_bytes after gzip. The buffer goes back with
// putBuf (decoders copy what they keep).
func (g *Gateway) readBody(ctx context.Context, w http.ResponseWriter, r *http.Request) (*bytes.Buffer, *Problem) {
	lim := g.cfg.Limits
	body := http.MaxBytesReader(w, r.Body, lim.MaxBodyBytes)
	cr := &countReader{r: body}
	var rd io.Reader = cr
	switch enc := strings.ToLower(strings.TrimSpace(r.Header.Get("Content-Encoding"))); enc {
	case "", "identity":
	case "gzip", "x-gzip":
		zr, err := gzip.NewReader(cr)
		if err != nil {
			if p := tooLarge(err, lim); p != nil {
				return nil, p
			}
			return nil, problem(http.StatusBadRequest, typeBadRequest, "Bad gzip body", err.Error())
		}
		defer zr.Close()
		rd = zr
	default:
		return nil, problem(http.StatusUnsupportedMediaType, typeMedia, "Unsupported Content-Encoding", quote(enc)+": send gzip or no encoding")
	}
	buf := bufPool.Get().(*bytes.Buffer)
	if r.ContentLength > 0 && r.ContentLength <= lim.MaxBodyBytes {
		buf.Grow(int(r.ContentLength) + 512)
	}
	_, err := buf.ReadFrom(io.LimitReader(rd, lim.MaxDecompressedBytes+1))
	g.m.bytes.Add(cr.n)
	if err != nil {
		putBuf(buf)
		if p := tooLarge(err, lim); p != nil {
			return nil, p
		}
		return nil, problem(http.StatusBadRequest, typeBadRequest, "Unreadable body", err.Error())
	}
	if int64(buf.Len()) > lim.MaxDecompressedBytes {
		putBuf(buf)
		return nil, problem(http.StatusRequestEntityTooLarge, typeTooLarge, "Body too large once decompressed", "the decompressed body is over limits.max_decompressed_bytes ("+strconv.FormatInt(lim.MaxDecompressedBytes, 10)+")")
	}
	return buf, nil
}

func tooLarge(err error, lim Limits) *Problem {
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return problem(http.StatusRequestEntityTooLarge, typeTooLarge, "Body too large", "the body is over limits.max_body_bytes ("+strconv.FormatInt(lim.MaxBodyBytes, 10)+")")
	}
	return nil
}

type countReader struct {
	r io.Reader
	n int64
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

func mediaType(r *http.Request) string {
	ct := r.Header.Get("Content-Type")
	switch ct {
	case "application/cloudevents+json", "application/cloudevents-batch+json", "application/x-ndjson", "application/json", "text/csv":
		// What ParseMediaType would say, without its parameter map: the
		// usual request names its type exactly so.
		return ct
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return ""
	}
	return mt
}

// sourceFeed is the request's source and feed: query parameters, else
// the Usage-Source and Usage-Feed headers, else the key's only one.
func sourceFeed(r *http.Request, k *apiKey) (string, string, *Problem) {
	var src, feed string
	if r.URL.RawQuery != "" { // no map for a request without a query
		q := r.URL.Query()
		src, feed = q.Get("source"), q.Get("feed")
	}
	if src == "" {
		src = r.Header.Get("Usage-Source")
	}
	if feed == "" {
		feed = r.Header.Get("Usage-Feed")
	}
	return k.resolve(src, feed)
}

// usage: POST /v1/usage, one batch per request.
func (g *Gateway) usage(ctx context.Context, w http.ResponseWriter, r *http.Request, k *apiKey) *Problem {
	source, feed, p := sourceFeed(r, k)
	if p != nil {
		return p
	}
	var decode func([]byte, int, *problems) ([]messages.UsageRecord, error)
	switch mediaType(r) {
	case "application/json":
		decode = decodeJSONArray
	case "application/x-ndjson", "application/ndjson", "application/jsonl", "application/json-seq+ndjson":
		decode = decodeNDJSON
	case "text/csv":
		decode = decodeCSV
	default:
		return problem(http.StatusUnsupportedMediaType, typeMedia, "Unsupported Content-Type", "send application/json (an array of records), application/x-ndjson or text/csv")
	}
	key := r.Header.Get("Idempotency-Key")
	if len(key) > 255 || strings.ContainsFunc(key, func(c rune) bool { return c < 0x20 || c == 0x7f }) {
		return invalid("Bad Idempotency-Key", ProblemError{Pointer: "header.idempotency-key", Detail: "at most 255 printable characters"})
	}
	buf, p := g.readBody(ctx, w, r)
	if p != nil {
		return p
	}
	var errs problems
	recs, err := decode(buf.Bytes(), g.cfg.Limits.MaxRecords, &errs)
	var fingerprint string
	if key != "" {
		sum := sha256.Sum256(buf.Bytes())
		fingerprint = hex.EncodeToString(sum[:])
	}
	putBuf(buf)
	if errors.Is(err, errTooMany) {
		return tooManyRecords(g.cfg.Limits.MaxRecords)
	}
	if len(errs.list) > 0 {
		return invalid("Invalid records: nothing was published", errs.result()...)
	}
	b := &messages.Batch{ID: "g-" + nuidNext(), Source: source, Feed: feed, Records: recs}
	if key != "" {
		b.ID = keyBatchID(source, key)
		// A key names one body (draft-ietf-httpapi-idempotency-key-header:
		// reuse with another payload is 422). Known once the first request
		// stored its batch record.
		prev, err := g.loadBatch(ctx, b.ID)
		if err != nil {
			return publishProblem(err)
		}
		if prev != nil && prev.BodySHA256 != "" && prev.BodySHA256 != fingerprint {
			return problem(http.StatusUnprocessableEntity, typeKeyReuse, "Idempotency-Key reused with another body", "batch "+b.ID+" was stored from another body under this key: nothing was published; use a new key for new records")
		}
	}
	trace.SpanFromContext(ctx).SetAttributes(attribute.String("usagefleet.batch", b.ID), attribute.Int("usagefleet.records", len(recs)))
	br, err := g.publish(ctx, b, nil, fingerprint, key == "")
	putRecords(recs) // encoded into the parts, or not stored: not needed again
	recs, b.Records = nil, nil
	if err != nil {
		var ve messages.ValidationError
		if errors.As(err, &ve) {
			out := make([]ProblemError, len(ve))
			for i, fe := range ve {
				out[i] = ProblemError{Pointer: pointerOf(fe), Detail: fe.Problem}
			}
			return invalid("Invalid batch: nothing was published", out...)
		}
		return publishProblem(err)
	}
	g.m.records.Add(ctx, int64(br.Records))
	if br.replayed {
		w.Header().Set("Idempotent-Replayed", "true")
	}
	writeJSON(w, http.StatusOK, usageAnswer{
		BatchID: br.BatchID, Source: br.Source, Feed: br.Feed, Records: br.Records, Cost: br.Cost,
		CostByCurrency: br.CostByCurrency, Parts: br.Parts, StatusURL: "/v1/batches/" + br.BatchID,
		Warnings: errs.warns,
	})
	return nil
}

// usageAnswer is the answer to a stored batch. Everything in it follows
// from the batch id and the records: the parts are numbered
// deterministically (producer.Split) and a repeated publish gets
// JetStream's PubAck with the first publish's sequence, so a retry with the
// same Idempotency-Key answers byte for byte as the first request did.
type usageAnswer struct {
	BatchID        string                      `json:"batch_id"`
	Source         string                      `json:"source"`
	Feed           string                      `json:"feed"`
	Records        int                         `json:"records"`
	Cost           messages.Decimal            `json:"cost"`
	CostByCurrency map[string]messages.Decimal `json:"cost_by_currency"`
	Parts          []PartOut                   `json:"parts"`
	StatusURL      string                      `json:"status_url"`
	// Warnings: what was kept but repaired (a member neither FOCUS nor x_
	// is kept as an x_ extension, as usage-producer publish keeps it).
	Warnings []ProblemError `json:"warnings,omitempty"`
}

func pointerOf(fe messages.FieldError) string {
	switch {
	case fe.Index < 0 && fe.Field == "Source":
		return "source"
	case fe.Index < 0 && fe.Field == "Feed":
		return "feed"
	case fe.Index < 0:
		return fe.Field
	}
	return "records[" + strconv.Itoa(fe.Index) + "]." + fe.Field
}
