// Package workers is the runtime every destination uses: a durable pull
// consumer per destination, units and their flush policy, the unit lease,
// rebuilding units from the stream (honouring snapshot generations),
// uploads with backoff behind one cooldown per destination, acking after
// upload, ack events, the dead-letter stream, InProgress heartbeats and a
// graceful drain.
//
// A destination implements Destination: it says whether it appends or
// replaces, which units a stored hour dirties, and how to deliver a Job. The
// pool owns acking: a destination never sees a NATS message, so it cannot
// forget to ack one, nor ack one early.
//
// # Where things live
//
// The contract, for a destination's author:
//
//   - destination.go: Destination, Job, Unit, RowEncoder, RowWarner, Targeter,
//     RecordRef, EncodeEach.
//   - errors.go: Error and its classes, the sentinels ErrTransient,
//     ErrUnauthorized, ErrTooLarge and ErrRejected (errors.Is), Classify,
//     Transient, and RetryAfter, the one Retry-After parser of the fleet.
//   - options.go: Options, FlushPolicy, RetryPolicy and their defaults.
//   - registry.go: Register, Lookup, Types (destination types by name).
//   - metrics.go, trace.go: OpenTelemetry instruments and spans.
//
// The runtime, in the order a message goes through it:
//
//   - pool.go: Pool, NewPool, Run (the consumer, the workers, the drain),
//     Stats, and how a failed try feeds the destination's gate (failed).
//   - consume.go: fetch, mark (a replace part dirties its units; it stays
//     pending until settled), InProgress heartbeats, handing back what is
//     not delivered at shutdown; the acker and the pending state.
//   - flush.go: the flush policy as a pure state machine (unitFlush: Add,
//     Due, UntilNext, Restart).
//   - replace.go: the replace runtime: schedule, dueJobs (due units grouped
//     by lease key), runReplace and replaceRun (deliver, settle, retry).
//   - append.go: the append runtime: a job per part, tried until it goes,
//     under the destination's lease when it names one.
//   - appendrows.go: an append part for a PartRowEncoder, decoded and
//     encoded in its slot without a map per record; its records decoded
//     whole again only for a dead letter or for Records.
//   - lease.go: unitLease (acquire, keep, bound, release) over leaseStore,
//     the JetStream KV lease bucket in production; leaseTransport ends every
//     request sent under a lease before the lease can expire.
//   - job.go: the Job the pool hands a destination (Reject, Done,
//     IdempotencyKey, Do: requests behind the gate, resent when no
//     response came).
//   - rebuild.go: the rebuild of a unit from the stream at the covered
//     position (scan: direct gets or an ordered consumer), snapshot
//     generations (finishSnapshots), decoding.
//   - readahead.go: the bounded read-ahead behind EncodedRecords (parts
//     read, decoded and encoded while the destination uploads).
//   - settle.go: "a part is acked only after an upload that saw it":
//     settleUnit (pure), finishReplace, ack events, acks.
//   - sources.go: admit, who may send a part and what it may claim: the
//     source binding (Options.SourceKeys), plausible snapshot generations,
//     how long a newer-schema part may hold its unit; called by mark, the
//     rebuild's scan and the append path.
//   - deadletter.go: dead letters (rejected records, rejected units,
//     undecodable parts) and their reasons.
//   - cooldown.go: the gate, one per destination: cooldown after 429/5xx,
//     pause after refused credentials.
//   - retry.go: every wait between tries runs on cenkalti/backoff/v5
//     (jitterBackOff is the RetryPolicy as a backoff.BackOff).
package workers
