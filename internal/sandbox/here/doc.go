// Package here emulates the HERE platform's OAuth 2.0 token endpoint (with
// OAuth 1.0 HMAC-SHA256 signed client credentials) and the Cost Management
// Usage API v2 asynchronous usage reports, closely enough to test a usage
// collector against them. Usage data is deterministic and Server.Expected
// gives the exact totals a correct collector must end up with.
//
// # Endpoints
//
// One handler serves both hosts (the real ones are account.api.here.com and
// usage.bam.api.here.com; a client makes both configurable):
//
//	POST /oauth2/token                                       OAuth 1.0 signed, grant_type=client_credentials
//	POST /v2/usage/realms/{realmId}/reports?startDate=&endDate=&...   -> 201 {"id","status"} + Location
//	GET  /v2/usage/realms/{realmId}/reports?limit=&offset=&sort=      status list
//	GET  /v2/usage/realms/{realmId}/reports/{reportId}               status
//	GET  /v2/usage/realms/{realmId}/reports/{reportId}/output        application/x-gzip CSV
//
// Sandbox administration (never faulted, no auth):
//
//	GET  /_sandbox/stats              Stats as JSON
//	POST /_sandbox/reset              forget tokens, nonces, reports, counters (fault rules stay)
//	POST /_sandbox/expire-tokens      every issued token answers 401 from now on
//	POST /_sandbox/fail-reports?count=N | ?id=REPORT-n
//	GET  /_sandbox/expected?realm=&subAccounts=a,b&startDate=&endDate=&detailLevel=&groupBy=...&rows=1
//	GET|PUT|POST|DELETE /_sandbox/faults   the fault.Injector rules
//
// # Token endpoint
//
// The request must carry `Authorization: OAuth ...` (RFC 5849): quoted,
// percent-encoded parameters, no repeats; oauth_consumer_key =
// Config.AccessKeyID; oauth_signature_method = HMAC-SHA256; oauth_version,
// if present, 1.0; oauth_timestamp within Config.TimestampSkew (10 min) of
// Now; oauth_nonce not seen before (nonces are remembered for twice the
// skew, which covers every timestamp still accepted). The signature is
// base64(HMAC-SHA256(key, base string)) with key = percent-encoded secret +
// "&" and base string = METHOD & encoded URI & encoded, sorted parameters:
// every Authorization parameter but realm and oauth_signature, the query
// parameters and, for a form body, the body parameters. The URI is
// Config.TokenURL when set (the URL the client called, e.g.
// https://account.api.here.com/oauth2/token), else the request's scheme,
// Host and path as the server received them (lower-cased scheme and host,
// default port dropped, no query). A failure answers 401
// {"error":"Unauthorized","error_description":...} plus HERE account's
// errorId/httpStatus/errorCode/message, with the documented codes 401200
// (no header), 401202 (malformed), 401204 (timestamp), 401205 (method),
// 401206 (version), 401207 (nonce), 401300 (key or signature). The verifier
// is unexported on purpose: a collector signs with its own code.
//
// A form body answers {"access_token","token_type":"bearer","expires_in"};
// a JSON body ({"grantType":"client_credentials"}) answers
// {"accessToken","tokenType":"bearer","expiresIn"} (DOC, token spec). An
// optional expires_in/expiresIn shorter than TokenTTL is honoured, a longer
// one ignored (DOC); scope is echoed. Another grant type answers 400
// unsupported_grant_type (errorCode 400290). JWT client assertions answer
// 400 (not supported by the sandbox).
//
// # Reports
//
// The API needs `Authorization: Bearer <token>`: missing answers 401
// {"error":"Unauthorized","error_description":"No credentials found."};
// unknown or expired, 401 "Access Token no longer valid.". Errors use the
// documented ErrorResponse {title,status,code,cause,action,errorId,
// correlationId,details[]}. Codes: E706001 realm (length 5..30, known in
// Config.Realms) and sub-accounts not belonging to the realm; E706002 list
// limit over 100; E706003 missing/unparsable dates, endDate not after
// startDate, endDate after Now ([INFER]; Config.AllowFutureEnd lifts it), a range over 95 days (Config.MaxRange), detailLevel=hour;
// E706004 groupBy.
//
// Every /v2 answer echoes X-Correlation-ID (generated when absent, or 400
// with Config.RequireCorrelationID) and X-Request-ID.
//
// # Data
//
// Usage is generated per (Config.Seed, account, app, feature, UTC hour),
// a pure function. An account is the realm itself, or each sub-account of
// the body's subAccounts. Each account has three apps (one without a
// project, one without a billing tag); each app uses ~70% of seven
// features: transaction features (integers; "Vector Tiles" bills one
// transaction per 15 usage units), Core-hours (4 fraction digits), GB and
// GB-months (6 fraction digits), and one non-billable feature
// (billableValue always 0, usageValue not). Some days are quiet (all zero).
// Hourly billable = usage / divisor (integer division), so billableValue
// and usageValue differ on some features.
//
// The quantity a collector must publish is billableValue (QuantityField);
// Expected sums it and usageValue. A report holds one row per (bucket,
// account, featureId, billingSubscriptionId, and the groupBy fields), for
// every bucket of the range in which the group is active, zero rows
// included: Expected counts them as records.
//
// # Decisions where the documentation is silent ([INFER])
//
//   - Range semantics: an hour H counts when startDate <= H < endDate (end
//     exclusive), so both "...T23:59:59" and next-midnight ends work, and
//     adjacent ranges [a,b) [b,c) neither overlap nor leave a gap. The
//     spec says only "End date for search"; Config.InclusiveEnd reads it
//     as inclusive (startDate <= H <= endDate), under which a
//     next-midnight end counts the next day's first hour: a collector that
//     ends at hh:59:59 gets the same data under both readings. The
//     sandbox does not model data latency: any hour has data.
//   - startDate/endDate must be exactly yyyy-MM-dd'T'HH:mm:ss (no zone, no
//     fraction); they are UTC.
//   - detailLevel: summarized (default) has no usageDateTime; day writes
//     YYYY-MM-DD (Config.UsageDateTimeLayout); month writes the first day
//     of the month. A bucket cut by the range holds only the hours inside.
//     Unknown values answer 400 E706000.
//   - groupBy: absent means Config.DefaultGroupBy = appId, billingTag (the
//     tutorial's default); given, it is the listed fields on top of featureId
//     and subscription. appId adds appId, appName and appHrn columns;
//     billingTag adds billingTag; project adds projectHrn. featureId and
//     subscription/subscriptionId/billingSubscriptionId are accepted and
//     change nothing; anything else is E706004.
//   - usageFields restricts the usage columns (default: realmId, featureId,
//     billingSubscriptionId, billingChargeNumber, category, name,
//     valueDriver, usageValue, billableValue; resource only on request).
//   - Filters featureId, appId, projectHrn, billingTag (exact), category
//     (case-insensitive), billingSubscriptionId (list) and chargeType
//     (billable/nonBillable by feature) apply to the data; channelId is
//     validated and ignored. ExpectedQuery takes the same filters.
//   - CSV header: the documented label style "Org ID (realmId)"; labels not
//     in the documented header: "Usage (usageValue)", "Charge number
//     (billingChargeNumber)", "Resource (resource)". A collector should take
//     the field name in parentheses. Config.PlainHeaders writes bare field
//     names. Column order is shuffled per report (deterministically). App
//     names contain commas, so a real CSV parser is needed. Fields never
//     contain newlines: CSV line = row index + 2.
//   - The same request always gives the same bytes (gzip without name or
//     time); report ids are REPORT-1001, REPORT-1002, ... per server.
//   - Body: optional; when present it must be application/json
//     {"subAccounts":[...]} with a non-empty array of the realm's
//     sub-accounts (duplicates collapse; order does not matter) and no
//     other key (400 E706000 / 415).
//   - Status: "pending" for Config.PendingFor (the 201 then says pending),
//     "inProgress" until Config.GenerationDelay since creation, then
//     "completed" with resultHref (Config.BaseURL or the request's host) or
//     "failed" (Config.FailReports, FailNextReports, FailReport). "archived"
//     is never produced. The output of a report that is not completed
//     answers 404 ErrorResponse E706404; so does a report of another realm.
//   - MaxRecords (default 1,000,000): a report with more rows is cut at the
//     cap (rows are ordered by bucket, so the cut keeps the earliest
//     buckets) and its status carries "truncated": true. The real API's
//     behaviour past the cap is not documented; a collector must split the
//     range and collect again. Expected describes the report for exactly
//     its request: Totals.Truncated says the request is over the cap, and
//     the totals are then the full data.
//   - Config.MalformedRows breaks that many rows per file, spread evenly,
//     cycling through billableValue "n/a", empty realmId, empty featureId,
//     usageDateTime "someday" (only breakages whose column the file has).
//     Expected excludes them and lists them (Totals.Malformed with CSV
//     lines) unless the request is truncated; Server.Malformed(reportID)
//     gives them for a created report. When a test combines MalformedRows
//     with splitting, it sums Expected over the sub-ranges the collector
//     used (Stats lists every report's Query).
//   - The status "parameters" echo the request, with emailId
//     "sandbox@example.invalid" and username "sandbox"; "created" is RFC 3339.
//   - List: sort desc (default) or asc by creation; nextOffset only when
//     another page exists; lastOffset is the offset of the last page.
//   - Injected faults answer ErrorResponse with code "E706<status>", except
//     on the token endpoint and for 401/403, which use the auth error shape.
package here
