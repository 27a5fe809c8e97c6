// Package cloudcruiser delivers usage to the Cloud Cruiser (HPE Consumption
// Analytics) Upload Usage API: one JSON file per accounting date,
// PUT {base_url}/api/upload/v1/schema/usage/daily/<YYYY-MM-DD>. A later
// upload for a date overwrites it [DOC], so the destination replaces dates.
// It registers the destination type "cloudcruiser".
//
// # Configuration
//
//	destinations:
//	  - name: cloudcruiser
//	    type: cloudcruiser
//	    feeds: [...]                    # common destination config, read by the pool
//	    http_timeout: 30m               # the pool's cap on one request, file included: size it for the largest date
//	    settings:
//	      token: {env: CC_TOKEN}        # or {file: /run/secrets/cc}; required. The collection's token
//	      base_url: https://na1.cloudcruiser.com   # default
//	      zone_offset: "-07:00"         # default UTC; -7, -07:00, +05:30, -07:01:30
//	      defaults:                     # for required fields a record lacks; none by default
//	        provider_type: Public       # default Public; or Private
//	        provider: Example Cloud
//	        product: ...
//	        account_id: ...
//	        account_name: ...
//	        meter_id: ...
//	        meter_name: ...
//	        units: ...
//	      tag_prefix: "tag:"            # default; tags go as extra fields "tag:<key>"
//	      omit_tags: false              # default; true sends no tags
//	      extra_fields:                 # default: every x_ column and every tag, typed by kind
//	        - {from: x_Project}                          # name x_Project, type by the column's kind
//	        - {from: tag:team, name: Team, type: STRING} # FLOAT, INT or STRING
//	      omit_costs: false             # default; true leaves out Effective Cost and List Cost
//	      stall_timeout: 30s            # default: the longest an upload may make no progress (formerly http_timeout here)
//	      content_length: false         # default chunked; true measures the file first (two rebuilds)
//
// Unknown keys, a literal token, a missing secret, an unreadable zone
// offset, a blank default and a provider_type other than Public or Private
// stop the process with the key's path. The token is sent in the
// Authorization header only ("Bearer <token>"); it appears in no log line,
// error or String.
//
// # Accounting dates (units)
//
// A unit is an accounting date in zone_offset, key "d2024-08-16", from local
// midnight to the next, expressed in UTC: with -07:00 the date 2024-08-16
// is [2024-08-16T07:00Z, 2024-08-17T07:00Z). A record belongs to the date
// its ChargePeriodStart falls on in the zone offset. Units(hour) returns the
// one date a UTC hour falls on, or two when the offset is not a whole number
// of hours (+05:30: the hour 18:00Z is 23:30 to 00:30 local). The lease key
// is the date: one uploader per date across the fleet, different dates in
// parallel (the API documents no concurrency limit). With a non-zero offset
// each request carries ?zoneOffset=<±hh:mm[:ss]> ('+' sent as %2B); with
// UTC, the documented default, none.
//
// # Mapping: UsageRecord (FOCUS) to a Cloud Cruiser row
//
// A row is a flat JSON object keyed by the documented field names, in the
// documented order; the file is a JSON array of rows ([INFER]: "fields as
// headers in the first row" of a JSON file). "A, else B" takes the first
// that is not blank.
//
//	| Cloud Cruiser field | from the record                                    | when absent |
//	|---------------------|----------------------------------------------------|-------------|
//	| Usage Start         | ChargePeriodStart, in the zone offset              | (always set) |
//	| Usage End           | ChargePeriodEnd, in the zone offset                | Usage Start |
//	| Account ID          | SubAccountId, else BillingAccountId                | defaults.account_id, else "Unassigned" (R) |
//	| Account Name        | the name of that account (SubAccountName or BillingAccountName) | defaults.account_name, else the Account ID |
//	| Provider            | ProviderName                                       | defaults.provider, else PublisherName, InvoiceIssuerName, "Unassigned" (R) |
//	| Provider Type       | (FOCUS has none)                                   | defaults.provider_type, default "Public" |
//	| Product             | ServiceName                                        | defaults.product, else ServiceCategory, ChargeCategory, "Unassigned" (R) |
//	| Meter ID            | SkuId, else SkuPriceId                             | defaults.meter_id, else SkuMeter, "<ChargeCategory>:<ServiceName>", "<ChargeCategory>", "Unassigned" (R) |
//	| Meter Name          | SkuMeter                                           | defaults.meter_name, else the Meter ID |
//	| Quantity            | ConsumedQuantity, else PricingQuantity             | 0 when BilledCost is set (R), else rejected |
//	| Units               | the unit of that quantity (ConsumedUnit or PricingUnit) | defaults.units, else "N/A" (R) |
//	| Account Owner ID    | BillingAccountId, when Account ID is a different SubAccountId | left out |
//	| Account Owner       | BillingAccountName, likewise                       | left out |
//	| Provider Region     | RegionId, else RegionName                          | left out |
//	| Provider Zone       | AvailabilityZone                                   | left out |
//	| Service Category    | ServiceCategory                                    | left out |
//	| Resource ID         | ResourceId                                         | left out |
//	| Resource Name       | ResourceName                                       | left out |
//	| Resource Type       | ResourceType                                       | left out |
//	| Cost                | BilledCost                                         | left out |
//	| Effective Cost      | EffectiveCost, a FLOAT extra field [INFER name]    | left out; omit_costs; beyond the bounds left out (R) |
//	| List Cost           | ListCost, a FLOAT extra field [INFER name]         | left out; omit_costs; beyond the bounds left out (R) |
//	| x_<Name>            | Ext[Name]: int as a JSON integer, decimal as a JSON number, string as a string | left out; a decimal beyond the bounds is left out (R) |
//	| <tag_prefix><key>   | Tags[key], a string; keys sorted                   | left out; a tag named as a documented field is left out (R) |
//
// With extra_fields set, the last two rows are replaced by exactly the
// listed fields, each converted to its type (FLOAT a JSON number, INT a
// JSON integer, STRING a JSON string: the seed's extraTypedFields, "the
// value type for each field: FLOAT, INT or STRING"; how a collection
// declares them is not documented, and the value's JSON type is how the
// documented FLOAT and INT fields are written [INFER]). A value that is
// absent or cannot be its type (a fraction for INT, text for FLOAT) leaves
// that field out of the row; the record is still sent.
//
// Times follow the seed's forms: the documented yyyy-MM-ddTHH:mm:ssZ with
// "Z" for UTC and an offset like the seed's "+03" ("2024-08-16T13:00:00-07";
// "+05:30" for an offset with minutes [INFER]). An offset with seconds
// has no documented form in a time value, so the times are then written
// without one and read in the request's zoneOffset, where seconds are
// documented. Times are truncated to the second: the format has no
// fraction, and truncation keeps a time on its date since midnight is a
// whole second. Usage End is inclusive, as in the seed's example (a daily
// row "2017-03-01 00:00" to "2017-03-01 23:59"): FOCUS's exclusive
// ChargePeriodEnd on a whole minute is sent one minute earlier (next
// midnight becomes 23:59:00 of the date), unless that would fall before
// Usage Start (a record shorter than a minute), when it is sent as it is. Quantity, Cost and decimal
// extension columns are JSON numbers written from the exact decimal text
// (messages.Decimal is plain notation, which is JSON number syntax), never
// through float64. Required strings must not be blank (the API refuses a
// blank one), so blank values count as absent.
//
// Extension columns keep their x_ prefix ("x_Project"): extraTypedFields
// [DOC] are exactly such typed columns, and the prefix keeps them from ever
// colliding with a documented field. Tags are sent as string extra fields
// named tag_prefix + key ("tag:team"), since Cloud Cruiser has no map
// type and rows are flat; omit_tags leaves them out. A tag whose field
// name would equal a documented field (possible only with a chosen
// prefix) is left out (a repair, below).
//
// Not sent: ChargeCategory (except in a derived Meter ID or Product), ChargeDescription, PublisherName, InvoiceId,
// ContractedCost, BillingCurrency (no documented field; a collection has
// one currency), and Rate (FOCUS carries no unit
// price here, and dividing would not be exact). The Account Owner, region,
// zone, category and resource fields are documented optional fields.
//
// # Repairs: only what a record bills refuses it
//
// The seed lists eleven required fields (Usage Start and End, Account ID
// and Name, Provider, Provider Type, Product, Meter ID, Meter Name,
// Quantity, Units) and one optional Cost (FLOAT) [DOC: the seed, "Required
// field", "Optional field"]; the API refuses a file with one blank (the
// whole date). FOCUS leaves several of them null on real rows: SkuId,
// SkuPriceId and SkuMeter on taxes, purchases, credits and support fees,
// ConsumedQuantity and PricingQuantity on every cost-only row [DOC: FOCUS
// 1.0-1.3, "Nullable" of each column]. Such a record still bills a cost,
// and a cost must not be lost over a label (DESIGN, issue 14 item 4). So
// each required field a record lacks, with no `defaults:` value for it,
// is filled by the rule marked (R) in the table above:
//
//	| field      | rule, first not blank                                     | why |
//	|------------|-----------------------------------------------------------|-----|
//	| Account ID | "Unassigned" (Account Name then follows it)               | FOCUS requires BillingAccountId; a record without it has no other account column |
//	| Provider   | PublisherName, InvoiceIssuerName, "Unassigned"            | the party selling or invoicing the charge is the nearest FOCUS has to its provider |
//	| Product    | ServiceCategory, ChargeCategory, "Unassigned"             | a tax or credit without a service is grouped by its kind |
//	| Meter ID   | SkuMeter, "<ChargeCategory>:<ServiceName>", "<ChargeCategory>", "Unassigned" | a stable id per kind of charge and service ("Tax:Amazon EC2", "Credit"), so such rows group together and never collide with a SKU id (SKU ids have no such form [INFER]) |
//	| Meter Name | (unchanged) SkuMeter, defaults.meter_name, else the Meter ID | |
//	| Quantity   | 0, only when BilledCost is set; Units "N/A" (or defaults.units) | the row's cost travels in Cost; 0 adds nothing to any usage total |
//	| Units      | "N/A", for a quantity without a unit                      | the quantity is carried; its unit is unknown |
//
// Metadata the API cannot take is left out alone, the record delivered:
// an x_ decimal, Effective Cost or List Cost beyond the decimal bounds, and
// a tag whose field name (tag_prefix + key) would be a documented field.
//
// Every repaired record is counted: Destination.EncodeRowWarnings (the
// pool's workers.RowWarner) gives it 1 warning, summed into its part's ack
// (messages.Ack.Warnings, shown by `--wait`), and the counter
// usagefleet.cloudcruiser.repairs adds 1 per kind of repair in it,
// attributes destination and kind (account_id, provider, product,
// meter_id, quantity, units, x_dropped, tag_dropped, cost_dropped). A
// record encoded again (a retried job, the content_length measure) is
// counted again in the metric; an ack counts it once.
//
// A record is rejected alone, through Job.Reject with a *RowError naming
// the fields, only when what it bills cannot be carried: it has neither a
// quantity nor a BilledCost ("nothing to bill"), its Quantity or Cost has
// more than 64 integer or 64 fractional digits (it would not arrive
// exactly; 1.5E-100 is such a cost), or its end is before its start
// (validation refuses that at publish time). The rest of its date is
// delivered. Records are mapped before any byte of them is written, so a
// rejected record never reaches the file. Rows are encoded by the pool
// ahead of the upload (Job.EncodedRecords, with EncodeRowWarnings).
//
// # Uploads
//
// Each date of a job is one PUT with multipart/form-data, the file in the
// part named "data" (filename usage-<date>.json, Content-Type
// application/json), Authorization: Bearer <token>. The body is streamed:
// a goroutine writes the multipart file into an io.Pipe while Job.Records
// rebuilds the date from the stream, record by record, so a date of any
// size is never held in memory (memory is one rebuild batch and a 64 KiB
// buffer). A streamed body cannot be re-sent, so every failure ends the
// job and the pool retries it with a new rebuild. The body goes with
// chunked transfer encoding unless content_length is set, which rebuilds
// the date once more to measure it first ([INFER]: the seed's Java sample
// sends a Content-Length; no document says chunked bodies are refused).
//
// A date with no records to send (none stored, all rejected, or emptied by
// a newer snapshot generation) is still uploaded, as an empty array: it
// overwrites what an earlier upload left for the date. The sandbox accepts
// an empty array ([INFER]).
//
// No idempotency header is sent: the API documents none, and an upload
// replaces its date, so a repeat changes nothing. The date is reported Done
// as soon as its upload succeeded, so a failure on another date of the
// same job does not redo it.
//
// stall_timeout is a stall timeout, not a cap: an upload is abandoned
// when the connection accepts no piece of the file for that long, or when
// no answer comes that long after the last byte. The per-request deadline
// (the destination-level http_timeout, default 30s) caps the whole
// exchange, file included: raise it to cover sending the largest date
// (about 500 bytes a record). stall_timeout's former name in settings,
// http_timeout, is still read as stall_timeout, with a deprecation
// warning at start.
//
// # Answers
//
// The API answers JSON {"success", "message", "status"} [DOC].
//
//   - 2xx with "success": true: the date is delivered.
//   - 2xx with "success": false: the body's "status" decides, as an HTTP
//     status would below. A 4xx there is the API answering about the file
//     (the seed documents the status inside the body, and a 401 carried so
//     [DOC]): 400, 413, 422 refuse the date with the message, 401 and 403
//     pause the destination, 408, 409, 423, 429 are retried, another 4xx
//     pauses. A 5xx or no status there, or a body that is not that JSON, is
//     a failure with nothing known to be stored: transient, retried.
//   - 401, 403: the *workers.Error of class ClassAuth: the pool pauses the
//     destination loudly and keeps its data waiting.
//   - 400, 413, 422: the date is refused with the API's message. An empty
//     file is uploaded for the date, so Cloud Cruiser holds none of the
//     records about to be dead-lettered, then Job.RejectUnit rejects them
//     all with the message; the job goes on with its other dates. If the
//     emptying upload fails transiently, the date is not rejected: the job
//     fails and the date is tried again whole. A date too large for one
//     upload (413) cannot be split: an upload replaces its date.
//   - 408, 409, 423, 429, 5xx, no answer, a stall: ClassTransient with
//     Retry-After; the pool backs off behind the destination's cooldown and
//     retries the whole job.
//   - Any other 4xx (404, 405, 411, 415, ...) would meet every date (a wrong
//     base_url, a proxy in the way): ClassAuth too, so the destination
//     pauses with its data kept rather than dead-letter everything; 411
//     says to set content_length.
//
// The API's message goes into errors and dead letters with the token
// blanked, should the API ever echo it.
package cloudcruiser
