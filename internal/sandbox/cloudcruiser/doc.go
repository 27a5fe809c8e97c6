// Package cloudcruiser is a strict local emulator of the Cloud Cruiser
// (HPE Consumption Analytics) upload usage API, for tests and the demo. It
// checks requests as strictly as the documentation allows, keeps what it
// stored so a test can compare, and injects faults through
// internal/sandbox/fault. Serve Handler on loopback (httptest).
//
// # What is emulated
//
//	PUT /api/upload/v1/schema/usage/daily/<YYYY-MM-DD>[/][?zoneOffset=<offset>]
//	Authorization: Bearer <token>
//	Content-Type: multipart/form-data; the file is the part named "data" (any filename)
//
// Answers, all JSON:
//
//	200 {"success": true, "message": "Completed upload of N record(s)", "status": 200}
//	401 {"success": false, "status": 401, "message": "Usage upload authentication failed: The specified token did not match the expected value"}
//	400 {"success": false, "status": 400, "message": "<what is wrong, with the record index and field>"}
//	404, 405, 413, 415 and injected faults use the same error shape.
//
// Order of checks: path (404) and method (405); the injected fault's
// "before" part; the token (401); the date and query (400); the content
// type (415); the body (400, or 413 past Config.MaxBodyBytes), read as it
// streams in; Config.ProcessingDelay; fail-with-200; store; the fault's
// "after" part; 200. An upload is all-or-nothing: any invalid record
// rejects the whole file and the store is not touched. An apply-then fault
// picked for a request that turns out invalid answers the 400 (nothing was
// applied).
//
// # Documented rules enforced
//
//   - The date is strictly YYYY-MM-DD (a real calendar date); a trailing
//     slash after it is tolerated.
//   - Authorization must be exactly "Bearer " followed by the token. Every
//     failure answers the documented 401 body; the token is never echoed
//     or logged. An empty configured token rejects everything.
//   - Required fields, exact names, case-sensitive: Usage Start, Usage End,
//     Account ID, Account Name, Provider, Provider Type, Product, Meter ID,
//     Meter Name, Quantity, Units. Provider Type is "Public" or "Private".
//   - Usage Start and Usage End: yyyy-MM-dd HH:mm, yyyy-MM-dd HH:mm:ss,
//     yyyy-MM-ddTHH:mm:ss or yyyy-MM-ddTHH:mm:ssZ, where Z is "Z" or an
//     offset ±hh (the documented example, "+03") or ±hh:mm ([INFER]), at
//     most 18 h; an offset with seconds is documented for zoneOffset
//     only and refused in a time. No other form (no
//     fractional seconds, no offset after the space form, no T form
//     without seconds). A time without an offset is in the request's
//     zoneOffset.
//   - zoneOffset (UTC when absent): a sign and then h, hh, hh:mm or
//     hh:mm:ss, at most 18 hours, as java.time.ZoneOffset reads them
//     ("-7", "+5", "-07:00", "+05:30", "-07:01:30"). The sign is required.
//     A '+' must be sent as %2B: unencoded it decodes to a space, and the
//     answer says so.
//   - Optional fields, with their documented types: STRING fields must be
//     JSON strings; Rate and Cost are decimals; CPU Utilization, Network In
//     MB and Network Out MB are FLOAT; Storage Read/Write Bytes, Read/Write
//     Throughput and VM Max Num Disk are INT (integer syntax, 64-bit).
//   - Any other key is an extra typed field: a string or a number. The
//     seed says extraTypedFields carry a type each (FLOAT, INT or STRING)
//     but not how it is declared [INFER]: Config.ExtraFieldTypes declares
//     them by name, and a declared field's value must then be of its type
//     (a JSON string; a number; an integer, as for the documented FLOAT
//     and INT fields); Config.DeclaredExtraFieldsOnly refuses undeclared
//     ones.
//
// # Choices where the documentation is silent ([INFER]) and how to change them
//
//   - File shape: a JSON array of flat objects keyed by field name
//     ("fields as headers in the first row" of a JSON file). Config.Layout
//     = LayoutHeaderRow switches to an array of arrays whose first row
//     holds the field names (an empty optional cell is null there).
//     Nested objects or arrays as values, null (in the objects layout:
//     omit the key instead), booleans, duplicate keys and a key that
//     differs from a documented field only in letter case ("cost",
//     "Meter Id") are rejected: such a key would otherwise be stored as an
//     extra field and its value silently lost to the documented field.
//   - Numbers: Quantity, Rate, Cost and the FLOAT/INT fields accept a JSON
//     number or a string holding a number in JSON number grammar ("12.5",
//     "-1e-3"; not "+1", ".5", "1,5" or " 1"). Decimals are parsed exactly
//     with shopspring/decimal, never through float64, and must have at
//     most 64 integer and 64 fractional digits (and at most 160
//     characters of text). Config.Decimals =
//     DecimalNumber or DecimalString accepts only one of the two forms.
//   - Required string fields must not be empty or blank.
//   - Accounting date: every record's Usage Start must fall on the URL's
//     date in the request's zoneOffset, from local midnight (included) to
//     the next local midnight (excluded); Usage End may fall later but not
//     before Usage Start. Config.AllowOffDateStart lifts the date check.
//   - The store is keyed by the URL's date string alone: an upload for a
//     date replaces whatever an earlier upload stored for that date, with
//     whatever zoneOffset either used (DateTotal.ZoneOffset tells the last
//     one). An empty array is a valid upload of 0 records and empties the
//     date.
//   - Error messages name records by their 0-based index in the array
//     ("record index 3"); several missing required fields are all named.
//   - Parts of the multipart body other than "data" are read and ignored;
//     a second "data" part is a 400. A body that is not multipart/form-data
//     is 415. The multipart body must follow RFC 2046: the seed's Java
//     listing, as printed, writes the closing boundary without the CRLF
//     before it and is rejected (part headers ending in bare LF, as it also
//     writes, are accepted).
//   - Only the query parameter zoneOffset is accepted; any other key is a
//     400. The seed's "?=zoneOffset=-7" (an empty key) is therefore
//     rejected with a hint to send "?zoneOffset=-7".
//   - No body limit is documented: Config.MaxBodyBytes is 0 (unlimited)
//     unless a test sets one.
//   - Success:false with HTTP 200: Config.FailWith200 (or SetFailWith200,
//     or PUT /_sandbox/fail-with-200) makes every valid upload answer
//     HTTP 200 {"success": false, "status": 500, "message": "Upload failed:
//     internal error"} and store nothing, so clients are tested on reading
//     "success" rather than the status code alone. Config.ErrorsWith200
//     answers every refusal (400, 401, 413, ...) with HTTP 200 and the
//     error body, its "status" keeping the real code: the seed documents
//     the body's status, not the HTTP status that carries it.
//
// # What is kept
//
// Per date: the record count, exact sums of Quantity and Cost (a record
// without Cost adds nothing to it), the number of successful uploads, the
// zoneOffset, and a compact Record per record (Usage Start as a UTC
// instant, Account ID, Meter ID, Quantity and Cost as canonical decimal
// strings). A date of more than Config.KeepRecordsUpTo records (default
// 100,000) keeps only its first Config.KeepFirstRecords (default 1,000)
// Records; the totals stay exact. The file is parsed token by token as it
// streams in, so memory holds at most KeepRecordsUpTo compact records, not
// the body.
//
// Concurrency: an upload that begins (passes authentication and the URL
// checks) while another upload of the same date is still being processed
// counts as a concurrency violation. Both are applied, in the order they
// finish; it is only measured. Config.ProcessingDelay widens the window.
//
// Inspection: Dates, Records, Uploads, ConcurrencyViolations, Reset,
// SetToken, SetFailWith200 and Faults, all safe for concurrent use; and,
// over HTTP for other processes (never faulted, no auth: loopback only):
//
//	GET     /_sandbox/dates             Dates() (decimals as JSON strings)
//	GET     /_sandbox/records?date=D    Records(D)
//	GET     /_sandbox/uploads           Uploads()
//	GET     /_sandbox/stats             Stats
//	POST    /_sandbox/reset             Reset()
//	PUT     /_sandbox/token             SetToken(body, trimmed); never echoed
//	GET|PUT /_sandbox/fail-with-200     SetFailWith200(body "true"/"false")
//	*       /_sandbox/faults            fault.Injector.AdminHandler (GET, PUT/POST rules, DELETE)
package cloudcruiser
