// Package collect pulls usage reports from platforms that only offer
// report APIs (Acronis Cyber Protect Cloud, HERE) on a schedule and
// publishes them into the fleet as snapshots. The acronis and here
// subpackages speak the two APIs; this package plans, polls, checkpoints
// and publishes. The CLI is `usage-producer collect`.
//
// # What a run does
//
// A run collects a window of calendar periods (Schedule): the last
// Periods days (or months) up to the one containing now-Lag, so recent
// periods are collected again on every run while their data still arrives
// late. After a gap (the collector was stopped) the window reaches back to
// the end of the last complete run, by at most CatchUp periods.
//
//  1. The periods are cut into report ranges (Plan): contiguous periods share
//     one report while the API's range limit allows (HERE: 95 days; Acronis
//     usage_daily: max_report_days, 31 by default); summaries (Acronis
//     usage_summary, HERE summarized), whose rows carry no date, take one
//     report per period. A range is clamped to now (rounded up to the
//     API's resolution): the API is never asked about the future, and the
//     period stays whole in the snapshot, as "everything known so far".
//  2. Each report is requested (or taken over from the checkpoint),
//     polled with exponential backoff until ready, downloaded (gzip is
//     sniffed by its magic bytes) and parsed by header name. A row that
//     cannot be mapped is rejected with its line and reason (Result.Rejected,
//     logged, printed by the CLI) and kept in the dead-letter stream (see
//     Rejected rows); the rest is kept.
//  3. A report that hit the record cap (the API says truncated, or it holds
//     exactly max_records rows) is dropped and its range split in two (at
//     the period boundary nearest the middle, else at the hour) and
//     collected again, recursively.
//  4. As soon as every range covering a period is in, the period is
//     published with producer.Publish as ONE snapshot batch: Source = the
//     collector name, Snapshot{Period: the whole UTC day or month,
//     Generation}, ID = BatchID(collector, type, account, period,
//     generation). A period without usage is published too (an empty
//     snapshot): it replaces whatever an older generation said.
//
// The workers rebuild a replace unit from the newest complete generation
// per (source, period) and hour, so collecting a period again replaces it
// at every destination instead of adding to it. This is also why periods
// are calendar-aligned and a collector covers one account (an Acronis
// tenant, a HERE realm with its sub-accounts): two overlapping periods, or
// two accounts under one name, would be two snapshots of the same source,
// counted twice or replacing each other. The period unit of a collector
// cannot change once it has a checkpoint (the run refuses, naming both);
// give it a new name instead.
//
// # Rejected rows
//
// No rejected row is only logged: once a report's download is complete
// (and before any period it covers is published), each of its rejected
// rows is stored in the DEAD stream (messages.StreamDead) as one JSON
// messages.DeadLetter on dead._collect.<collector>
// (messages.DeadSubject(DeadDestination, name)):
//
//	| DeadLetter field | value |
//	|------------------|-------|
//	| Destination      | "_collect" (DeadDestination: the row reached no destination) |
//	| Source, Feed     | the collector's name and feed |
//	| Reason           | "report <id> line <n>: <column>: <why>" (RowError.Error) |
//	| Payload          | the row as the file holds it, without its line end (cut at MaxDeadRowBytes, 64 KiB, saying so) |
//	| Header           | Usage-Collector-Type, Usage-Account, Usage-Report (id), Usage-Range (the planned report range), Usage-Line, Usage-Column, Usage-Csv-Header (the file's header line, raw, to read the row by), Usage-Row-Bytes (when cut) |
//	| Time             | when it was kept |
//
// The message's Nats-Msg-Id is DeadLetterID: the collector, platform,
// account, planned report range and the row's bytes with their
// occurrence in the report, not the report id or the line, so collecting
// the same range again (a new report, perhaps with lines moved) does not
// keep the same row twice. JetStream de-duplicates an id within DEAD's
// duplicate window (10 minutes); for the re-runs after it, a run that has
// rejected rows first reads the ids already on its subject since its
// window began (headers only) and skips those. A bad row is kept again
// only when its report range changes (a window that has moved on plans
// other ranges): then it is a duplicate, never a loss.
//
// The order is what makes a crash harmless: a report leaves the
// checkpoint (as in flight) only after its periods are published, and
// they are published only after its rejected rows are stored. A run that
// dies, or fails to store them (the NATS user lacks permission to publish
// to dead._collect.>, DEAD is missing, or Options.DeadLetters is nil),
// publishes nothing of that report and fails loudly; the next run takes
// the checkpointed report over and keeps the rows under the same ids.
// Result.DeadLetters and Result.DeadKnown count the dead letters a run
// stored and found already there. Deployments must let the collector's
// NATS user publish to dead._collect.> (and create a consumer on DEAD).
//
// # Generations, checkpoints, restarts
//
// A new run takes Generation = max(now in unix nanoseconds, the last
// generation + 1), so generations only grow. The checkpoint (JSON in KV
// bucket messages.BucketCheckpoints, key = collector name, see
// Checkpoint) is written when a run starts, after each report is
// requested, after each period is published and when the run ends. It
// holds the last period and window collected, the generation, and for a
// run in progress: the reports in flight (id, planned range, asked range,
// request time), the periods already published and the ranges known to
// be over the record cap. Writes are compare-and-set on the KV revision:
// a second collector with the same name makes the run fail loudly rather
// than interleave.
//
// A restarted collector resumes a run left unfinished when the window is
// the same and it started less than ReuseReportsFor (24h) ago: it keeps
// the generation, skips periods already published, and polls and
// downloads the checkpointed reports instead of asking again (a report
// that is gone or failed is requested again; one asked when less of a
// running period was known is taken over too: that period's snapshot is
// then as of the time it was asked, and the next run refreshes it). Because a reused report is
// the same file, a period published again gets the same batch id and the
// same parts, which JetStream de-duplicates (within the USAGE stream's
// duplicate window, 48h by default: keep ReuseReportsFor below it). As soon
// as a resumed run must ask for a new report, it switches to a new
// generation, so one generation never holds two different contents of a
// period. A new run (a later window) still reuses a checkpointed report
// whose planned and asked ranges match exactly.
//
// # Failures
//
//   - "Not ready" (Acronis: "Usage history is not ready", 400 before 6 am
//     and 500 after): a scheduled run ends with ErrNotReady and is tried
//     again at the next interval; a single run (--once, Options.NotReadyWait,
//     30m by default) keeps asking with backoff for that long.
//   - Network errors, 408, 429 and 5xx are retried with exponential backoff
//     (Retry-After honoured) for retry_for (5m); a download cut short is
//     downloaded again from the start, its rows dropped first.
//   - 401: a new token is fetched once and the call repeated; tokens are
//     otherwise reused until less than min(15 minutes, a quarter of their
//     lifetime) is left.
//   - Any other 4xx, a report that failed (the error names its id), a
//     report not ready after poll.timeout (it stays checkpointed): the run
//     fails; what it published so far stays published.
//
// No log line or error holds a secret or a token: the token answers are
// read and kept in memory only, request bodies are never echoed, and API
// errors carry the API's own message.
//
// # Configuration
//
//	nats:                         # broker.Options; without url: $NATS_URL, else nats://127.0.0.1:4222
//	  url: nats://nats-1:4222,nats://nats-2:4222
//	  creds_file: /run/secrets/collector.creds
//	collectors:
//	  - name: acronis-eu          # the batches' Source and the checkpoint key (a subject token)
//	    type: acronis
//	    feed: msp                 # the feed the batches go to
//	    schedule:
//	      interval: 1h            # between runs (default 1h, at least 1m)
//	      period: day             # day (default) or month: the snapshot period
//	      periods: 3              # periods per run (default 3 days / 2 months)
//	      lag: 0s                 # the newest period is the one holding now-lag (default 0)
//	      catch_up: 31            # after a gap, reach back at most this many periods (default 31 days / 3 months)
//	    poll: {interval: 2s, max_interval: 30s, timeout: 1h}   # report polling (the defaults)
//	    not_ready_wait: 30m       # --once: keep asking this long while the data is not ready
//	    reuse_reports_for: 24h    # a checkpointed report id is polled again for this long
//	    http_timeout: 60s
//	    retry_for: 5m             # transient API failures are retried this long
//	    settings:                 # the type's own (see producer/collect/acronis)
//	      base_url: https://eu2-cloud.acronis.com
//	      client_id: 7d5e1c9a-0000-4000-8000-000000000001
//	      client_secret: {env: ACRONIS_CLIENT_SECRET}
//	      tenant_id: 0c6a0a7e-0000-4000-8000-000000000002
//	      kind: usage_daily       # or usage_summary
//	  - name: here-partner
//	    type: here
//	    feed: maps
//	    schedule: {interval: 6h, periods: 5}   # HERE data may lag 48h
//	    settings:                 # see producer/collect/here
//	      credentials: {file: /run/secrets/here/credentials.properties}
//	      realm: org123456789
//	      sub_accounts: [org112135, org124566]
//	      detail_level: day
//	      group_by: [appId, billingTag]
//
// Unknown keys are refused with their path and line, secrets come from the
// environment or a file (config.Secret) and a missing one names its key.
package collect
