// Package acronis collects usage from the Acronis Cyber Protect Cloud
// account-management reports API (v2) for the collect package. It
// registers the collector type "acronis".
//
// # Settings
//
//	settings:
//	  base_url: https://eu2-cloud.acronis.com   # the data center URL, without /api/2 (required)
//	  client_id: <API client id>                # required
//	  client_secret: {env: ACRONIS_CLIENT_SECRET}   # or {file: path}; required
//	  tenant_id: <tenant uuid>                  # the tenant the reports are for (required)
//	  level: all_customers                      # default; itself, direct_partners, all_partners, accounts
//	  kind: usage_summary                       # default; or usage_daily (needs a "date" column: see Kinds)
//	  hide_zero_usage: false                    # default
//	  show_skus: true                           # default; false: records carry no SkuId (see below)
//	  quantity_column: usage.delta.total        # default; any of the nine usage.* columns
//	  max_report_days: 31                       # default; days one usage_daily report spans
//
// # Requests
//
//   - Token: POST {base}/api/2/idp/token, form grant_type=client_credentials,
//     HTTP Basic client_id:client_secret. The token (expires_on, Unix
//     seconds; 2 hours) is reused until less than 15 minutes are left, and
//     fetched again (once) when a call answers 401.
//   - Report: POST {base}/api/2/reports with {"parameters": {tenant_id,
//     level, kind, formats: ["csv_v2_0"], period: {start, end} (dates, end
//     inclusive), hide_zero_usage, show_skus}, "schedule": {"type": "once"},
//     "result_action": "save"}. recipients is left out: it is only needed
//     for result_action send (the official examples omit it too).
//   - Poll: GET {base}/api/2/reports/{id}/stored until the csv_v2_0 item is
//     "saved" (backoff from poll.interval to poll.max_interval); "failed"
//     is an error naming the report id; a 404 means the report is gone (a
//     checkpointed one is then requested again).
//   - Download: GET {base}/api/2/reports/{id}/stored/{stored id}, gzip
//     detected by its magic bytes (1f 8b), whatever the headers say.
//   - Delete: once every period of a report is published and the
//     checkpoint no longer names it (collect.ReportCleaner), GET
//     {base}/api/2/reports/{id} for its version, then DELETE
//     {base}/api/2/reports/{id}?version=<version> (seed 003, step 6: the id
//     and version are kept "in case you need to delete it"), so a schedule
//     leaves no report objects behind. Not at download: a run that fails
//     before publishing takes its report over. A failed delete is logged
//     as a warning; the collection stands.
//   - "Usage history is not ready" (400 from 1 to 6 am, 500 after) is not
//     a failure: collect.ErrNotReady (see collect). Any other 4xx fails
//     the run with the API's error.message.
//
// # Kinds
//
// usage_summary is the default because its rows need only the documented
// csv_v2_0 columns. usage_daily has a row per tenant, offering item and day,
// so one report covers many day periods (up to max_report_days) and each
// record lands on its own day: destinations with hourly or daily units
// book usage when it happened. usage_summary has one row per tenant and
// item for the whole report period (absolute usage at its end, delta over
// it), with no date, so it takes one report per period (use it with
// schedule.period: month for monthly billing). A period that is still
// running is asked up to today (the API refuses periods in the future).
//
// The quantity is usage.delta.total (quantity_column) for both kinds: the
// growth of the metric over the day (daily) or the period (summary), whose
// daily values add up to the summary's. Set quantity_column to
// usage.absolute.total to bill the level reached instead (storage at the
// end of the period, say); the other totals travel as extension columns
// either way.
//
// # Mapping: csv_v2_0 row to messages.UsageRecord
//
// Columns are found by header name (the order varies). The only
// documented csv_v2_0 column set is the one Acronis's own parser requires
// [CODE: Acronis\UsageReport\Csv\CsvFormatParser, "Copyright © 2002-2020
// Acronis"]: application.id, infra.backend_type, infra.id, infra.owner_id,
// name, tenant.id, tenant.kind and the nine usage.{absolute,delta,
// effective}.{production,trial,total} columns (edition defaults to
// "standard" when absent). A file without any of them fails, naming the
// missing columns. Every other column below (tenant.name,
// tenant.parent_id, measurement_unit, sku, sku.name, date) is read when
// present and is [INFER]: the Acronis docs say csv_v2_0 and json_v2_0
// "represent the same information", but name no csv column for it.
// usage_daily needs a date on every row: a file without a "date" column
// fails with a message naming it and pointing to usage_summary, rather
// than guessing a date.
//
//	| UsageRecord          | csv_v2_0 column                        | notes |
//	|----------------------|----------------------------------------|-------|
//	| ChargePeriodStart    | date (usage_daily); the report start (usage_summary) | 00:00 UTC |
//	| ChargePeriodEnd      | date + 1 day; the report end           | |
//	| BillingAccountId     | (settings.tenant_id)                   | the tenant the report is for |
//	| SubAccountId         | tenant.id                              | required, not empty |
//	| SubAccountName       | tenant.name                            | |
//	| ProviderName         | "Acronis"                              | |
//	| PublisherName        | "Acronis"                              | |
//	| ServiceName          | application.id                         | required, not empty (the file carries no application name) |
//	| ChargeCategory       | "Usage"                                | |
//	| ChargeDescription    | sku.name, else name                    | |
//	| SkuId                | sku                                    | with show_skus; empty with show_skus: false |
//	| SkuMeter             | name (the offering item)               | required, not empty |
//	| ResourceId           | infra.id                               | empty when the item has no infrastructure |
//	| ResourceType         | infra.backend_type                     | |
//	| ConsumedQuantity     | usage.delta.total (quantity_column)    | exact decimal; not a number rejects the row; compute points converted (below) |
//	| ConsumedUnit         | measurement_unit, else "units"         | FOCUS wants a unit with a quantity; "compute points" for compute_points |
//	| x_Edition            | edition                                | "standard" when the column is missing, as Acronis's parser does |
//	| x_ApplicationId      | application.id                         | |
//	| x_TenantKind         | tenant.kind                            | |
//	| x_ParentTenantId     | tenant.parent_id                       | |
//	| x_InfraOwnerId       | infra.owner_id                         | |
//	| x_AbsoluteTotal      | usage.absolute.total                   | decimal |
//	| x_DeltaTotal         | usage.delta.total                      | decimal |
//	| x_EffectiveTotal     | usage.effective.total                  | decimal |
//	| x_Trial              | the trial column of the quantity's group (usage.delta.trial) | decimal |
//
// Partners' rows. With level all_customers or accounts a report lists
// every customer under the tenant, and also the partners (sub-partners)
// between them, whose rows may aggregate their customers' usage (the
// seed's warning; no source says which rows do [INFER]). Publishing both
// would count that usage twice, so with those levels a row whose
// tenant.kind is partner, folder or root (other than the report's own
// tenant) is skipped, and the count is logged; the customers' rows carry
// the usage. With direct_partners a sub-partner's row is the only one
// carrying its customers' usage and is kept; with all_partners the file
// holds partner rows only, which may nest (a partner above a
// sub-partner): prefer all_customers for billing.
//
// Disaster Recovery compute points (offering item compute_points) come in
// seconds: "To calculate Disaster Recovery compute points for the report
// types other than csv or html, divide the value by 3600 and round it to 2
// decimal places" [DOC: seed 002/003, "Creating a billing report"].
// csv_v2_0 is such a type, so every usage value of a compute_points row
// (the quantity and the x_ totals) is divided by 3600 and rounded to 2
// places, half away from zero ([INFER]: the docs do not say which way a
// half goes), per row, exactly.
//
// Empty string values are left out. A row is rejected, with its line (the
// header is line 1) and the column, when tenant.id, name or
// application.id is empty, when the date is not YYYY-MM-DD or outside the
// report, when a usage column it reads is not a number, when its field
// count differs from the header's, or when the record fails
// messages.UsageRecord.Validate; the collector keeps every rejected row,
// raw, in the DEAD stream (see package collect, "Rejected rows"). Costs
// are not in the reports: records carry quantities only (a destination
// that needs a cost, CloudZero, rejects them; one that takes quantities,
// Cloud Cruiser, delivers them).
//
// # show_skus: false
//
// Without the SKU columns (show_skus: false) the file has no "sku"
// column, so every record's SkuId is empty (and ChargeDescription falls
// back to the offering item's name). The collector still publishes them.
// Cloud Cruiser maps its required Meter ID from SkuId (else SkuPriceId,
// which Acronis records never carry); without either it derives one
// (SkuMeter, else <ChargeCategory>:<ServiceName>) and counts the record as
// a warning in its ack, so every such record arrives, but under a derived
// meter. To choose the meter, set defaults.meter_id:
//
//	destinations:
//	  - name: cloudcruiser
//	    type: cloudcruiser
//	    settings:
//	      defaults:
//	        meter_id: acronis-usage   # used when a record has neither SkuId nor SkuPriceId
//
// One default meter id puts every offering item under the same meter
// (their SkuMeter still names the item as the Meter Name, which
// defaults.meter_name does not override). Keep show_skus true (the
// default) to bill per SKU.
package acronis
