// Package acronis emulates the Acronis Cyber Protect Cloud account-management
// reports API (v2) closely enough to test a usage collector against it:
// client-credentials tokens, report creation, stored-report polling and
// csv_v2_0 downloads, with deterministic usage data and the exact totals a
// correct collector must end up with (Server.Expected).
//
// # Endpoints
//
//	POST   /api/2/idp/token                           form grant_type=client_credentials, HTTP Basic client_id:client_secret
//	POST   /api/2/reports                             reportPost body -> 200 report object
//	GET    /api/2/reports/{id}                        report object
//	DELETE /api/2/reports/{id}?version=N              204
//	GET    /api/2/reports/{id}/stored                 {"items":[{id, report_format, size, created_at, status}]}
//	GET    /api/2/reports/{id}/stored/{stored_id}     application/octet-stream file
//
// Sandbox administration (never faulted, no auth):
//
//	GET  /_sandbox/stats               Stats as JSON
//	POST /_sandbox/reset               forget tokens, reports, counters (fault rules stay)
//	POST /_sandbox/expire-tokens       every issued token answers 401 from now on
//	POST /_sandbox/fail-reports?count=N | ?id=<report id>
//	GET  /_sandbox/expected?tenant_id=&level=&kind=&start=&end=&hide_zero_usage=&rows=1
//	GET|PUT|POST|DELETE /_sandbox/faults   the fault.Injector rules
//
// Every API answer goes through the shared fault injector (Faults): a
// Status fault answers the Acronis error shape with the rule's code.
//
// # Data
//
// Usage is a pure function of (Config.Seed, tenant id, offering item, day).
// Every (tenant, item) pair is one of: never used (all nine usage columns
// 0), constant (absolute usage, zero deltas) or growing. A series is
// non-decreasing: absolute(day) = base + (rate*n + jitter(n)) / div, with n
// the days since 2020-01-01 (before that day it stays at base). Items:
// storage, local_storage, dr_storage, notary_storage (GiB, 6 fraction
// digits), workstations, servers, vms, mobiles, m365_mailboxes (counts) and
// compute_points (seconds, raw in the file: the docs' "divide by 3600 and
// round to 2 places" applies to every report type but csv and html, so to
// csv_v2_0; Expected counts the converted value, per row, as a collector
// must publish it).
//
//   - usage_summary: one row per (tenant, item). absolute = value on
//     period.end; delta = absolute(end) - absolute(start-1).
//   - usage_daily: one row per (tenant, item, day) with a "date" column
//     (YYYY-MM-DD). absolute = value that day; delta = absolute(day) -
//     absolute(day-1). The daily deltas of a period therefore add up to the
//     summary delta of the same period.
//   - trial usage exists for some pairs; total = production + trial.
//     effective.production = absolute.production, effective.trial = 0,
//     effective.total = effective.production.
//
// The quantity a collector must publish is usage.delta.total
// (QuantityColumn), for both kinds; Expected sums it. Zero-quantity rows are
// records too (Expected counts them). Expected.PerDay keys usage_summary
// rows under period.start.
//
// The csv_v2_0 header holds the columns the Acronis PHP CsvFormatParser
// requires [CODE] (application.id, edition, infra.backend_type, infra.id,
// infra.owner_id, name, tenant.id, tenant.kind and the nine usage.*
// columns) plus, as [INFER] since no source names them, tenant.name,
// tenant.parent_id, measurement_unit, "sku" and "sku.name" (show_skus) and
// "date" (usage_daily). Config.DocumentedColumnsOnly leaves the inferred
// ones out (then usage_daily rows carry no date at all). The column order is
// shuffled per report (deterministically), so a parser must map by name.
// Tenant names contain commas and quotes, so a parser must be a real CSV
// parser. Fields never contain newlines: CSV line = data row index + 2.
//
// The same Query always gives the same file bytes (gzip without a name or
// modification time). hide_zero_usage drops rows whose nine usage values
// are all zero; show_skus changes columns, never rows.
//
// Config.MalformedRows breaks that many rows of every file, spread evenly
// (row indexes (2k+1)*n/(2m)), cycling through: usage.delta.total = "n/a",
// empty tenant.id, empty name. Expected excludes them and lists them (with
// their CSV line) in Totals.Malformed; Server.Malformed(reportID) gives the
// same for a created report.
//
// # Decisions where the documentation is silent ([INFER])
//
//   - Tenant tree: the root (Config.RootTenantID, kind "partner") with the
//     customers Config.Tenants under it, and Config.SubPartners (kind
//     "partner", parent the root), each with its own customers. A
//     sub-partner's row is the sum of its customers' rows (the seed: a
//     partner's rows may aggregate its customers'). A report for the root
//     with level "itself" covers the root alone; direct_partners covers
//     the direct customers and the sub-partners (aggregate rows);
//     all_partners the sub-partners only; all_customers and accounts the
//     direct customers, the sub-partners and the sub-partners' customers
//     (no user accounts are modelled). Expected then leaves the
//     sub-partner rows out (Totals.Aggregates counts them): a correct
//     collector counts that usage once, from the customers' rows. A report
//     for a sub-partner covers its customers (itself: its aggregate row);
//     for a customer, that customer whatever the level. Any other
//     tenant_id answers 403.
//   - Only usage_summary and usage_daily are generated; usage_current and
//     usage_breakdown answer 400 "... not supported by the sandbox".
//   - Only csv_v2_0 is produced: a body whose formats list anything else
//     (csv, html, json_v1, json_v2_0) answers 400 "format not supported by
//     the sandbox". formats defaults to ["csv_v2_0"] when absent.
//   - recipients: required (non-empty, UUIDs) only for result_action send,
//     as the docs say, though the schema lists it as required; the answer
//     always carries "recipients" (possibly []). "send" answers 200 and
//     stores nothing (GET .../stored gives no items).
//   - Top-level unknown keys answer 400 (additionalProperties: false, DOC).
//     Unknown keys inside parameters, period and schedule are ignored unless
//     Config.StrictNested.
//   - hide_zero_usage/show_skus: JSON booleans or the strings "true"/"false".
//     They are echoed in the answer (as booleans) only when sent.
//   - schedule.enabled defaults to true (seed example); "monthly" is
//     accepted and generated at once, like "once".
//   - generation_date defaults to period.end + 1 day (seed example).
//   - "period not in the future": period.end after today (UTC) answers 400.
//   - "not ready yet": between 01:00 and 06:00 UTC (by Config.Now), a period
//     ending yesterday or later answers 400 with the documented message.
//     Config.NotReadyUntil (or SetNotReadyUntil) makes every creation answer
//     500 with the other documented message while Now is before it.
//   - Stored status: "in_progress" until GenerationDelay has passed since
//     creation (size 0 meanwhile), then "saved", or "failed" for a failed
//     report (Config.FailReports, FailNextReports, FailReport). Downloading
//     an in-progress or failed file answers 404.
//   - The file is gzip-compressed unless Config.GzipDownloads is false, and
//     "size" is the stored (compressed) size. It is served as
//     application/octet-stream without Content-Encoding, so a collector must
//     sniff the gzip magic 1f 8b; Config.ContentEncodingGzip adds
//     Content-Encoding: gzip instead (the other case the README says to handle).
//   - Error bodies: {"error":{"code":<string>,"domain":"PlatformAccountServer",
//     "message":...,"details":{"info":<field or null>},"context":{},"data":[]}}.
//     Injected faults use the HTTP status as the (integer) code.
//   - The token endpoint wants Content-Type application/x-www-form-urlencoded
//     (else 415) and HTTP Basic credentials (else 401); a missing or other
//     grant_type answers 400. Tokens and id_tokens are random opaque strings,
//     never logged. The report ids and stored ids are UUIDs derived from the
//     seed and a counter, so a run is reproducible.
//   - A JSON endpoint answers 415 when Accept excludes application/json; the
//     download, when it excludes application/octet-stream. POST /reports
//     needs Content-Type application/json (else 415).
//   - DELETE needs ?version= matching the report's version (1), else 400/409.
//     A deleted report answers 404 everywhere; Stats still lists it
//     (ReportInfo.Deleted), and Stats.ReportsKept counts the others.
package acronis
