// Package gateway is usage-gateway: a stateless HTTP service through which
// any service, in any language, publishes usage to the fleet. Any number
// of replicas run behind a load balancer; they share nothing but JetStream.
//
// # API (openapi.yaml, served at /openapi.yaml)
//
//   - POST /v1/usage: one batch of FOCUS records per request, as a JSON
//     array (application/json), NDJSON (application/x-ndjson) or CSV
//     (text/csv, read by producer/input), gzip accepted. Every record is
//     validated once, as the producer validates (UsageRecord.Validate as
//     it is decoded; producer.PublishWith then checks only the batch's own
//     fields, Batch.ValidateFields); one problem and nothing is published:
//     400 with every problem ("records[3].BilledCost"). An event's record
//     without ChargePeriodStart takes the event's time before it is
//     validated (a time outside 2000..2100 is the event's problem, at
//     its time's pointer).
//   - POST /v1/events: CloudEvents 1.0 in structured, batched and binary
//     HTTP modes; each event's data is one usage record.
//   - GET /v1/batches/{id}[?wait=30s]: per destination, parts delivered,
//     rejected (with reasons), dead, and the exact cost delivered, from the
//     ACKS stream (producer.Wait).
//
// Errors are RFC 9457 problem details (application/problem+json) with an
// "errors" member listing every problem with a pointer.
//
// # Stored means stored
//
// A 2xx is written only after producer.Publish returned, that is after
// JetStream's PubAck for every part (with the stream's replicas: a
// clustered stream acks once a quorum has it). Failing that the answer is
// 503 (JetStream unavailable, a timeout) or 429 (a stream or the account at
// its limits), both with Retry-After. A retry stores nothing twice:
//
//   - /v1/usage: Idempotency-Key makes the batch id, "k-" + the first 16
//     bytes of SHA-256(source NUL key) in hex. producer.Split numbers the
//     parts deterministically (hour order, record order within an hour), so
//     a retried batch has the same Nats-Msg-Ids "<batch>/<part>", and
//     JetStream's duplicate window (48h on USAGE) drops what it already
//     has, whichever replica receives the retry, and however many of the
//     parts the first attempt stored before it died. The answer is
//     recomputed, not remembered: the ids are deterministic and a duplicate
//     PubAck carries the first store's sequence, so the repeat answers
//     byte for byte as the first did (plus Idempotent-Replayed: true). The
//     batch record keeps the SHA-256 of the first decompressed body: the
//     same key with another body is 422 and publishes nothing (from the
//     moment the first request's record is stored; a retry racing the
//     first request is not compared).
//   - /v1/events: an event is (source, id). Before an event is stored the
//     gateway looks for its claim (gateway.events.<SHA-256(source NUL id)>,
//     last message per subject, in the gateway's own stream GATEWAY); after
//     its part is stored it writes the claim naming the batch (the
//     subject keeps its last message: a claim written twice, by two
//     replicas storing the same event at once, names the later batch). A repeat answers "duplicate" with that batch id.
//     Within one replica, the same event in flight twice is stored once
//     (the second waits for the first). The window left: an event retried
//     after its part was stored but before its claim was (the gateway
//     killed in between, or JetStream lost exactly then; a 2xx is given
//     once the part is stored even if the claim fails, and logged), or the
//     same event sent to two replicas at the same instant, is stored twice.
//     Never lost: the claim is written only after the store.
//
// # Grouping
//
// Single events of one (source, feed) are grouped by group commit: an
// event that finds no group of its (source, feed) being stored goes at
// once; the events that arrive while one is being stored are the next
// group, which goes when that store finishes, after linger.delay (default
// 3 ms) or at linger.max_records. A group is one batch, published as one
// part per hour (a part is what the workers deliver and ack); each request
// is answered when its part is stored. A CloudEvents batch is a batch of its
// own. Each group's trace continues the first request's traceparent and
// links the others'.
//
// # References
//
//   - RFC 9457, Problem Details for HTTP APIs.
//   - CloudEvents 1.0.2: spec.md, formats/json-format.md,
//     bindings/http-protocol-binding.md (github.com/cloudevents/spec).
//   - draft-ietf-httpapi-idempotency-key-header (the Idempotency-Key name).
package gateway
