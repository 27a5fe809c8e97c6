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
//	    settings:
//	      connection_id: 1234abcd-1234-abcd-1234-abcd1234efgh   # required
//	      api_key: {env: CLOUDZERO_API_KEY}                      # or {file: /run/secrets/cz}; required
//	      base_url: https://api.cloudzero.com                    # default
//	      mode: replace_hourly                                   # default; or replace_drop, sum
//	      max_body_bytes: 5000000                                # default; 1024..5000000
//	      http_timeout: 30s                                      # default
//	      month_warn_fraction: 0.8                               # default; of 1M rows / 70 MB a month
//
// Unknown keys, a literal api_key, a missing secret and out-of-range values
// stop the process with the key's path. http_timeout bounds each HTTP
// attempt from asking for a connection to the end of the answer; the time
// spent waiting out the destination's cooldown does not count.
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
//	| lineitem/type                  | ChargeCategory                            | Usage, Purchase, Tax, Credit, Adjustment as they are; empty → Usage; a negative Usage stays Usage |
//	| lineitem/description           | ChargeDescription                         | |
//	| resource/id                    | ResourceId                                | required when the record has tags |
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
//	| resource/tag:<key>             | Tags[key]                                 | keys sorted; a key outside letters, digits and _ . : / = + - @ rejects the record alone |
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
// currency), PricingQuantity/PricingUnit, the names (account, sub-account,
// resource, region), ResourceType, AvailabilityZone, ProviderName,
// PublisherName, SkuPriceId and the x_ extension columns.
//
// A record that cannot be mapped is rejected alone through Job.Reject with
// a reason naming the column (a *RowError): a missing BilledCost, a bad tag
// key, tags without ResourceId, a ChargeCategory CBF has no type for.
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
//   - 408, 429, 5xx, no answer, http_timeout: returned as ClassTransient
//     (with Retry-After); the pool retries the whole job, rebuilding it, from
//     its first request with new keys. A sequence of replace then sum parts
//     is therefore never resumed halfway.
//   - 413: the request's rows are split in two and each half sent, whole
//     hours kept together while the request holds more than one; within one
//     hour the first half goes with the replace operation and the rest with
//     sum. A single row refused as too large is rejected alone; if that
//     leaves an hour with nothing sent, the hour gets its placeholder.
//   - 400 (any other refusing 4xx): every unit in the request is rejected
//     with the API's message through Job.RejectUnit, then replaced by its
//     placeholder, so CloudZero holds nothing of a unit whose records were
//     dead-lettered; the other units go on. In sum mode the request's
//     records are rejected instead.
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
