// Package cloudzero delivers usage to CloudZero's AnyCost Stream
// (POST /v2/connections/billing/anycost/{connection_id}/billing_drops) as
// Common Bill Format rows. It registers the destination type "cloudzero".
//
// # Configuration
//
//	destinations:
//	  - name: cloudzero
//	    type: cloudzero
//	    feeds: [...]                      # common destination config, read by the pool
//	    http_timeout: 30s                 # default; the pool's deadline on one request
//	    settings:
//	      connection_id: 1234abcd-1234-abcd-1234-abcd1234efgh   # required
//	      api_key: {env: CLOUDZERO_API_KEY}                      # or {file: /run/secrets/cz}; required
//	      base_url: https://api.cloudzero.com                    # default
//	      mode: replace_hourly                                   # default; or replace_drop, sum
//	      max_body_bytes: 5000000                                # default; 1024..5000000
//	      stall_timeout: 30s                                     # default (formerly http_timeout here)
//	      month_warn_fraction: 0.8                               # default; of 1M rows / 70 MB a month
//	      validate_only: false                                   # default; true: a dry run (see below)
//
// Unknown keys, a literal api_key, a missing secret and out-of-range values
// stop the process with the key's path. The destination-level http_timeout
// is the deadline of one request (the pool's). stall_timeout bounds how
// long an attempt may make no progress: a body is sent whole, so it bounds
// each attempt from asking for a connection to the end of the answer; the
// time spent waiting out the destination's cooldown does not count. The
// key's former name in settings, http_timeout, is still read as
// stall_timeout, with a deprecation warning at start.
//
// # Mapping: UsageRecord (FOCUS) to a CBF row
//
// Every value is a JSON string; decimals are messages.Decimal in plain
// notation ("-12.50", never an exponent); an empty field leaves its column
// out, which CBF reads as absent. Columns are written in this order:
//
//	| CBF column                     | from the record                           | notes |
//	|--------------------------------|-------------------------------------------|-------|
//	| time/usage_start               | ChargePeriodStart                         | truncated to its UTC hour, "2024-08-16T13:00:00Z"; required |
//	| time/usage_end                 | ChargePeriodEnd                           | UTC RFC 3339, as given; CloudZero books the row in the start hour anyway |
//	| lineitem/type                  | ChargeCategory, ChargeClass, commitment   | see "Line item types" below |
//	| lineitem/cloud_provider        | ProviderName                              | [DOC: CBF optional dimension] |
//	| lineitem/description           | ChargeDescription                         | |
//	| resource/id                    | ResourceId                                | tags are sent only with it (see "Labels") |
//	| resource/service               | ServiceName                               | |
//	| resource/account               | SubAccountId, else BillingAccountId       | |
//	| resource/region                | RegionId                                  | left out when empty: CloudZero's default is "no-region" |
//	| resource/usage_family          | ServiceCategory                           | |
//	| action/operation               | SkuMeter                                  | |
//	| action/usage_type              | SkuId                                     | |
//	| usage/amount                   | ConsumedQuantity                          | |
//	| usage/units                    | ConsumedUnit                              | only with usage/amount (CBF: units mean nothing without an amount) |
//	| cost/cost                      | BilledCost                                | required: a record without it is rejected alone |
//	| cost/amortized_cost            | EffectiveCost                             | see below |
//	| cost/discounted_amortized_cost | EffectiveCost                             | see below |
//	| cost/on_demand_cost            | ListCost                                  | |
//	| bill/invoice_id                | InvoiceId                                 | |
//	| resource/tag:<key>             | Tags[key]                                 | keys sorted; repaired by RepairTagKey (see "Labels") |
//	| lineitem/id                    | (none)                                    | only the placeholder row sets it: PlaceholderLineItemID |
//
// Costs. FOCUS BilledCost is what the invoice charges, already net of the
// discounts the invoice applies: it is CBF's cost/cost. FOCUS EffectiveCost
// is both amortized (upfront and commitment fees spread over the usage they
// cover) and discounted, which is CBF's cost/discounted_amortized_cost, the
// column CloudZero's "Real Cost" reads. It also goes to cost/amortized_cost:
// FOCUS has no "amortized but not discounted" column, and amortization is
// the larger effect (with cost/amortized_cost left out, CBF would fall back
// to cost/cost and show an upfront purchase in full in the amortized view;
// EffectiveCost is 0 on a commitment purchase, as CBF asks of
// CommittedUsePurchase rows). cost/discounted_cost is left out: CBF then
// reads it as cost/cost, which is right for an invoice-discounted cost.
// ContractedCost has no CBF column and is not sent; neither are
// BillingCurrency (CBF has no currency column: a connection takes one
// currency; settings currency refuses a record billed in another), PricingQuantity/PricingUnit, the names (account, sub-account,
// resource, region), ResourceType, AvailabilityZone, PublisherName,
// SkuPriceId and the x_ extension columns. A CommittedUsePurchase row
// without EffectiveCost gets cost/amortized_cost and
// cost/discounted_amortized_cost "0": CBF says a commitment purchase's
// amortized cost is 0, and the blank fallback would otherwise read
// cost/cost and count the purchase twice in the amortized view.
//
// Negative costs are sent as they are ("-12"): the CBF page says Discount
// and Credit rows are negative, although the API schema's amount pattern
// has no sign [DOC: anycost-common-bill-format-cbf; SDK schema]. The
// sandbox accepts them, as the CBF page does.
//
// # Line item types
//
// FOCUS ChargeCategory (and ChargeClass, and the commitment-discount
// columns) to CBF lineitem/type [DOC: CBF page, lineitem/type; FOCUS 1.0+
// ChargeCategory, ChargeClass, CommitmentDiscountId]. Only the nine values
// of the API schema's enum are sent; CommittedUseVacancy and
// CommittedUseRecurringFee (CBF page only) are not, since a value the API
// refuses would cost the record (and a request to find it).
//
//	| FOCUS                                               | CBF lineitem/type    | why |
//	|-----------------------------------------------------|----------------------|-----|
//	| ChargeClass "Correction" (any category)             | Adjustment           | a correction of an earlier period is not this hour's usage ("Real Cost" counts only Usage) |
//	| Usage, or no ChargeCategory                         | Usage                | CBF reads an absent type as Usage; a negative Usage stays Usage (FOCUS puts it there on purpose) |
//	| Purchase with CommitmentDiscountId or ...Category   | CommittedUsePurchase | CBF's type for a commitment purchase |
//	| Purchase, otherwise                                 | Purchase             | |
//	| Credit with a ResourceId                            | Discount             | [INFER] CBF: a Discount matches the resource of the usage it reduces |
//	| Credit without a ResourceId                         | Credit               | CBF: a Credit is tied to no usage |
//	| Tax                                                 | Tax                  | |
//	| Adjustment                                          | Adjustment           | |
//
// ChargeClass, CommitmentDiscountId and CommitmentDiscountCategory are read
// from the record's FOCUS Detail columns, where the FOCUS readers put them;
// the extension columns of those names (x_ChargeClass, ...), which
// producers used before Detail existed, count when a column is empty.
//
// # Labels: repaired, never a reason to lose a cost
//
// A record is refused only when what it bills cannot be carried (no
// BilledCost, no ChargePeriodStart, a year CBF cannot write): a *RowError
// naming the column, through Job.Reject. Labels CloudZero cannot take are
// repaired or dropped alone, and the row is sent (AppendRowRepaired):
//
//   - A tag key outside CBF's characters (letters, digits, _ . : / = + - @,
//     no whitespace [DOC: CBF, resource/tag:<key>]) is rewritten by
//     RepairTagKey: whitespace trimmed at both ends, every other character
//     outside the set replaced by "_" ("Cost department" →
//     "Cost_department", " org" → "org"). A key empty once trimmed is
//     dropped; a rewritten key that equals a key the record already has is
//     dropped (the original, valid key keeps its value; between two
//     rewritten keys, the first in byte order wins).
//   - Tags on a record without ResourceId are dropped, the cost kept. CBF
//     requires resource/id whenever a resource/tag column is present, and
//     keeps one value per tag and resource/id, applied to all history.
//     Deriving an id instead was rejected: one shared id would have the
//     tags of unrelated records overwrite each other retroactively, and an
//     id per record (or per tag set) would invent resources that exist
//     nowhere else, one per distinct line item, in the customer's resource
//     views.
//
// Each repair is counted: the counter usagefleet.cloudzero.repairs
// (attributes destination, kind = tag_key_rewritten | tag_dropped),
// Destination.Repairs, and Destination.EncodeRowWarnings, which gives a
// record's ack warning count (1 for a repaired record, else 0).
//
// A drain writes most rows straight from the schema-2 part
// (Destination.EncodePartRow, a workers.PartRowEncoder): the record is
// decoded without its Tags and Ext maps, and its tags (sorted on the
// stack) and x_ columns are read from the part. That path writes only a
// row that needs no repair and no refusal, byte for byte the row above;
// every other record is decoded whole and goes through
// EncodeRowWarnings. (usagefleet bench --spawn-nats --records 2000000
// --mode drain, paired with the code before it, medians of three at load
// ~1-2: worker 2.76 -> 2.06 CPU-s per million records, 341,412 -> 405,132
// records/s, peak RSS 129 -> 105 MB.)
//
// # Units and requests
//
// Every mode uses the connection id as the lease key, so the fleet sends
// one request at a time per connection, as the API demands.
//
// replace_hourly (Semantics Replace; a unit is a UTC hour, key
// "h2024-08-16T13"). The job's units are walked month by month, hour by
// hour, streaming each hour's records. Whole hours are packed into one
// replace_hourly request while the body, envelope included, stays within
// max_body_bytes (computed exactly). An hour too large for one body on its
// own is sent as replace_hourly for its first part and sum for the rest,
// with the hours before it flushed first; memory stays one body, not one
// hour. An hour with no deliverable record (none stored, a snapshot emptied
// it, or all rejected) cannot be replaced by an empty request, so it is
// replaced by one placeholder row: cost/cost "0", lineitem/type Usage,
// lineitem/id PlaceholderLineItemID, lineitem/description
// PlaceholderDescription.
//
// replace_drop (Replace; a unit is a UTC month, key "m2024-08"). One
// replace_drop request per month when it fits, else replace_drop for the
// first part and sum for the rest. An empty month is replaced by the
// placeholder row in its first hour.
//
// sum (Semantics Append). Each stored part is sent with sum, scope "part".
// The pool keeps an Append part's idempotency keys across tries and the
// bodies are deterministic, so a retry CloudZero still remembers is
// answered from its idempotency store rather than added twice; beyond that
// memory delivery is at least once.
//
// The replace operation follows each unit's span, not the mode: an hour is
// replaced with replace_hourly, a month with replace_drop (a month first,
// then the hours in it). Units left dirty under the other mode after a
// configuration change are so still replaced correctly.
//
// Units are reported Done (Job.Done) as soon as every request of their
// sequence succeeded and any row refused on its own was rejected, so a
// failure later in the job makes the pool redo only the rest.
//
// Every request body is {"month":"YYYY-MM-01T00:00:00Z","operation":...,
// "data":[rows]}, sent with Authorization: <key> (no Bearer),
// Content-Type: application/json and cloudzero-idempotency-key from
// Job.IdempotencyKey(scope, chunk, body), scope the month ("m2024-08").
//
// # Failures
//
//   - 401, 403, and 404 (the connection is unknown): the *workers.Error is
//     returned with ClassAuth; the pool pauses the destination and keeps
//     its data.
//   - 408, 429, 5xx, no answer, http_timeout, stall_timeout: returned as ClassTransient
//     (with Retry-After); the pool retries the whole job, rebuilding it, from
//     its first request with new keys. A sequence of replace then sum parts
//     is therefore never resumed halfway.
//   - 413: the request's rows are split in two and each half sent, whole
//     hours kept together while the request holds more than one; within one
//     hour the first half goes with the replace operation and the rest with
//     sum. A single row refused as too large is rejected alone; if that
//     leaves an hour with nothing sent, the hour gets its placeholder.
//   - 400 and 422: the refusal is narrowed down to the row it is about,
//     so one bad row no longer costs the (up to 5 MB of) hours packed with
//     it. A 400 applies nothing, so the rest is simply sent again, with the
//     same operation. The message of CloudZero's {"error":{"message",
//     "type"}} body is read for a row index, ^data\[(\d+)\] (the real
//     message format is not documented [INFER]; our sandbox writes
//     data[i]["col"]: problem). An index naming a record of the body: that
//     record alone is rejected (Job.Reject, with the API's message), left
//     out of every later body, and the rest sent again, which may name the
//     next bad row. No index: the request is split, at the hour boundary
//     nearest the middle while it holds several hours, then by rows, and
//     each half sent, keeping the rule that an hour's first successful
//     request replaces it and later ones use sum; a single row still
//     refused is rejected alone and the rest of its hour delivered. An
//     hour all of whose records were refused gets its placeholder. The
//     idempotency key follows the records a body carries, so a body
//     without the refused row has a key of its own.
//   - Past 32 rows refused alone in one job (maxIsolated), when the
//     refused row is a placeholder, when the 400's error type refuses the
//     request whole (invalid_request, limit_exceeded: the month's row or
//     byte limit, which bisecting would deliver in part and then refuse
//     row by row; our sandbox's names, the real types are not documented
//     [INFER]), and for any other refusing 4xx (405,
//     415...: not about a row, so bisecting would only multiply
//     requests): every unit in the request is rejected with the API's
//     message through Job.RejectUnit, then replaced by its placeholder, so
//     CloudZero holds nothing of a unit whose records were dead-lettered;
//     the other units go on. In sum mode the request's records are
//     rejected instead.
//   - 409: CloudZero documents none for billing drops; the likely meaning
//     is a conflict with a concurrent request for the connection [INFER],
//     no fault of the body, so it is ClassTransient (with Retry-After) and
//     the job is retried with backoff, never a refusal.
//
// # Dry run: validate_only
//
// CloudZero documents POST /v2/connections/billing/anycost/validate_billing_drop
// (API key scope connections:create_billing_anycost_validate_billing_drop;
// the same body and 5 MB note as billing_drops) [DOC: apis README,
// section 1; the SDK's path list]. With validate_only: true every request
// of the destination goes there instead of billing_drops: the same
// bodies, the same chunking and failure handling, and CloudZero stores
// nothing. A row the API refuses is dead-lettered with its reason, as it
// would be for real, so a dry run shows what a real send would refuse;
// acks say delivered, meaning validated. Run it as a destination of its
// own (its own name, so its own durable consumer) beside or before the
// real one: its target is its name, not the connection, so the two may
// share a connection, and the month counters stay untouched.
//
// The setting is validate_only rather than dry_run because it says what
// happens: the data does go to CloudZero, to be checked. The other
// documented test mechanism, the cloudzero-test-key header (the call runs
// in a test namespace whose mutations last one hour), does store rows for
// an hour and is not used. The response to validate_billing_drop is not
// documented [NOT FOUND]; any 2xx counts as valid, and a 4xx is handled
// as for billing_drops.
//
// # The empty-hour placeholder
//
// CloudZero documents no operation that empties an hour: replace_hourly
// replaces "the existing data that has overlapping hours", and with no row
// for an hour there is nothing to overlap, so an empty request changes
// nothing; replace_drop replaces the whole month [DOC: Sending AnyCost
// Stream Data, operations]. An hour whose records were all withdrawn (a
// snapshot emptied it, or every record was refused) is therefore replaced
// by one row, which the customer can see in CloudZero's Explorer:
//
//	{"time/usage_start":"2024-08-16T13:00:00Z","lineitem/type":"Usage",
//	 "lineitem/id":"usagefleet:empty-hour",
//	 "lineitem/description":"usagefleet: empty hour","cost/cost":"0"}
//
// A $0 Usage line item in that hour, with no service, account, region or
// resource (CloudZero shows its defaults for those, e.g. region
// "no-region"). It adds nothing to any cost; filter it out by its
// lineitem/id or description. In replace_drop mode an empty month gets
// the same row in its first hour.
//
// # Month limits
//
// A stream holds at most 1,000,000 rows and 70 MB per month. The destination
// keeps what each month holds as far as this process uploaded it
// (MonthUsage), records it as the gauges usagefleet.cloudzero.month.rows and
// usagefleet.cloudzero.month.bytes (meter "usagefleet/workers/cloudzero";
// attributes destination, connection, month), and logs a warning through
// Job.Log when a month reaches month_warn_fraction of either limit.
package cloudzero
