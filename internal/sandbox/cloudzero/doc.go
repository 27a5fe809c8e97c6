// Package cloudzero is a strict sandbox emulator of CloudZero's AnyCost
// Stream billing_drops API, built to what /work/shared/apis/README.md (section
// 1) says is known. The destination workers, their tests and the demo run
// against it; production points the same config at https://api.cloudzero.com.
//
// # What is emulated
//
//	POST /v2/connections/billing/anycost/{connection_id}/billing_drops
//	GET  /v2/connections/billing/anycost/{connection_id}/billing_drops
//	GET  /v2/connections/billing/anycost/{connection_id}/billing_drops/{month}   (month YYYY-MM)
//	POST /v2/connections/billing/anycost/validate_billing_drop
//
// It enforces:
//
//   - Authentication: Authorization carries the bare API key. "Bearer <key>",
//     a wrong key or no header get 403 {"message": ...}; an unknown connection
//     gets 404. Answers never repeat the key. validate_billing_drop accepts
//     the key of any connection.
//   - Body: Content-Type application/json; any Content-Encoding but identity
//     is 415; a body over Config.MaxBodyBytes (5,000,000 by default) is 413
//     {"message":"Request Entity Too Large"}, measured on the bytes read.
//     The body is an object with data (required), month and operation only.
//   - Rows: every value a JSON string; time/usage_start and cost/cost
//     required; datetimes match the schema's ISO pattern; cost columns and
//     usage/amount match ^-?\d+(\.\d+)?$; only the schema's typed columns,
//     lineitem/cloud_provider and resource/tag:<key> are allowed; tag keys use
//     letters, digits and _ . : / = + - @; a row with a tag needs resource/id;
//     lineitem/type is one of the eleven CBF types. All rows share one UTC
//     month, the body's month if given. A 400 is {"error":{"message","type"}}
//     with the message naming the row and column, e.g.
//     data[12]["cost/cost"]: "1e3" is not a decimal string. Validation is
//     all or nothing: a 400 changes nothing. The real message's format is
//     not documented [INFER]: Config.NoRowIndex answers "invalid row: ..."
//     without the index, and Config.RefuseResourceIDs plants rows refused
//     so (by resource/id), for tests of a client isolating a refused row.
//   - Operations, per connection, rows bucketed by the UTC hour of
//     time/usage_start (truncated, as CloudZero treats a row as happening in
//     the hour it starts): replace_drop (the default) replaces the month,
//     replace_hourly replaces the hours present in data, sum appends. A
//     month over Config.MaxRowsPerMonth rows or Config.MaxBytesPerMonth bytes
//     after the operation is a 400 and nothing changes. Success is 200
//     {"connection":{"drop_id","month":"YYYY-MM-01T00:00:00Z","row_count"}},
//     row_count counting the rows of this body.
//   - Idempotency: for a cloudzero-idempotency-key already answered, the same
//     body gets the stored answer again, success or error, without applying
//     it again; a different body gets 400 and counts a key-reuse violation.
//   - One request at a time per stream: a POST arriving while another for the
//     same connection is in flight gets 429 (Retry-After: 1), changes nothing
//     and counts a concurrency violation. Config.ProcessingDelay holds each
//     POST in flight so overlaps show up.
//
// # Choices the documentation does not settle [INFER]
//
//   - Negative amounts ("-12") are accepted: the CBF docs say Discount and
//     Credit rows are negative although the schema pattern has no sign.
//     Config.RejectNegative enforces the pattern to the letter.
//   - `month` may be "YYYY-MM" (docs page) or the schema's ISO datetime; a
//     datetime with an offset is converted to UTC before taking its month.
//     Without `month` the rows' common month is used; empty data then needs
//     a month. replace_drop with empty data and a month empties the month.
//   - A blank value in an optional typed column is the column absent (the
//     CBF docs give blanks a meaning in the cost fallbacks); blank cost/cost
//     or time/usage_start is an error.
//   - Which answers are stored for idempotent replay: those given after the
//     body was read and checked (200, 400, and the status of an
//     apply-then-status fault). 403, 404, 413, 415, 429 and faults answered
//     before the request is applied are not stored: nothing was processed,
//     and a retry must be able to succeed once the cause is gone. After an
//     apply-then-reset fault the success answer is stored, since the drop
//     was applied.
//   - The month size cap counts the JSON bytes of the stored rows; limits use
//     decimal megabytes (5 MB = 5,000,000 bytes).
//   - A client that gives up does not stop the server: a POST held by
//     ProcessingDelay is still applied after its client timed out.
//   - 400 error types (invalid_request, invalid_row, limit_exceeded,
//     idempotency_key_reuse) are the sandbox's own; the real values are not
//     documented. validate_billing_drop answers the create shape without a
//     drop id; Server.Validations lists the row counts of the bodies it
//     passed (nothing else is kept).
//   - GET .../billing_drops lists one entry per month holding data, with
//     the id of the last drop that changed the month and its current row
//     count; GET .../{month} returns the month's rows in arrival order.
//
// # Counting mode
//
// With Config.Counting the emulator is cheap enough to benchmark the fleet
// against: it still enforces authentication, the body size, the one-month
// rule, concurrency, idempotency and the month caps, still requires every
// value to be a string and time/usage_start and cost/cost to be valid, and
// still applies replace_drop / replace_hourly / sum per hour, but it does not
// check the other columns and keeps only per-hour row counts, cost sums and
// byte sums instead of the rows (GET .../{month} answers 501, Rows returns
// nothing). In both modes the body is checked once with json.Valid and then
// walked in place, so no row is decoded into a map unless it is kept; a
// 20,000-row 4.5 MB body costs about half as much in Counting mode
// (BenchmarkPost).
//
// # Sandbox endpoints (no authentication: a sandbox only)
//
//	GET  /_sandbox/hours?connection=ID  [{"hour","rows","cost" (decimal string),"bytes"}], by hour
//	GET  /_sandbox/stats                requests, violations, largest body, faults injected
//	POST /_sandbox/reset                forget data, answers, logs and counters (keys and faults stay)
//	PUT  /_sandbox/keys/{connection}    body = the new key; empty revokes; a new id adds a connection
//	     /_sandbox/faults               the fault injector's AdminHandler (POST billing_drops only)
//
// Faults are picked for every POST billing_drops before authentication;
// Status, Timeout and Reset answer without applying, ApplyThenStatus and
// ApplyThenReset apply first. Fault answers are {"message": ...}.
package cloudzero
