// Package here collects usage from the HERE platform's Cost Management
// Usage API v2 asynchronous reports for the collect package. It registers
// the collector type "here".
//
// # Settings
//
//	settings:
//	  credentials: {file: /run/secrets/here/credentials.properties}   # or {env: VAR} holding its text
//	  # or: access_key_id: <id>   access_key_secret: {env: HERE_ACCESS_KEY_SECRET}
//	  token_url: https://account.api.here.com/oauth2/token   # default: here.token.endpoint.url, else this
//	  base_url: https://usage.bam.api.here.com/v2            # default
//	  scope: <project HRN>                                   # optional
//	  realm: org123456789                                    # the org id (required)
//	  sub_accounts: [org112135, org124566]                   # partner sub-accounts; none: the realm itself
//	  include_own_org: false                                 # with sub_accounts: also the realm's own usage
//	  detail_level: day                                      # default; month, summarized
//	  group_by: [appId, billingTag, project]                 # default: the API's grouping
//	  charge_type: all                                       # default (the API's); billable, nonBillable
//	  max_records: 1000000                                   # the report record cap (default)
//	  max_days: 95                                           # longest report range (default, the documented maximum)
//
// credentials is the credentials.properties file the HERE platform
// issues: here.access.key.id, here.access.key.secret and
// here.token.endpoint.url are read; other keys are ignored.
//
// # Requests
//
//   - Token: POST token_url with form grant_type=client_credentials (and
//     scope), signed with OAuth 1.0 (RFC 5849): oauth_consumer_key = the
//     access key id, HMAC-SHA256, a fresh random nonce and the current
//     timestamp on every try, oauth_version 1.0. The base string is METHOD
//     & the encoded URI (lower-case scheme and host, no default port, no
//     query) & the encoded, sorted parameters (protocol, query and form),
//     with RFC 3986 percent-encoding; the key is the encoded secret and
//     "&". The answer's access_token/expires_in (or accessToken/expiresIn)
//     is reused until less than min(15 minutes, a quarter of its
//     lifetime) is left, and fetched again (once) on a 401.
//   - Report: POST {base}/usage/realms/{realm}/reports?startDate=&endDate=
//     (yyyy-MM-ddTHH:mm:ss, UTC)&detailLevel=[&groupBy=a,b][&chargeType=]
//     with {"subAccounts": [...]} when sub-accounts are set, and an X-Correlation-ID (a random UUID, also in
//     the error when the request fails). The id is taken from the body;
//     Location is not trusted.
//   - Poll: GET .../reports/{id} until "completed" (pending and inProgress
//     wait); "failed" is an error naming the id; "archived" or 404 means
//     gone (a checkpointed report is requested again).
//   - Download: GET .../reports/{id}/output, a gzipped CSV (gzip detected
//     by its magic bytes).
//
// endDate. The spec says only "End date for search" [NOT FOUND: whether
// it is inclusive]. Usage is hourly, so the collector sends the last
// second of its range (a day [00:00, 24:00) is asked up to 23:59:59):
// that covers the same hours whether the API reads the end as inclusive
// or exclusive, and never the hour starting at the range's end. The end is
// never after now either: a range the collector rounded up to the next
// hour is asked up to the current hour, rounded down (so up to hh-1:59:59),
// or up to the current second when the range starts in the current hour.
//
// subAccounts. The request body is optional (the spec's requestBody
// required: false), and when sent it must hold subAccounts (the body
// schema's required field, which the seed shows as "required"): "If the
// subaccounts aren't passed, then it only generates the partner
// organization usage report. If subaccounts pass to the request body,
// then the usage report consists of data for the subaccounts" [DOC: spec
// createUsageReport; seed 004]. So no body is sent without sub_accounts,
// and a report with sub-accounts does not hold the partner org's own
// usage: include_own_org asks for a second report without a body, for the
// realm itself, over the same range; the two report ids travel as one,
// joined by "+", and are polled and downloaded together. Rows carry their
// org in realmId (SubAccountId), so the partner's own usage and each
// sub-account's stay apart.
//
// Ranges: a report covers at most max_days (95) days, so a longer window
// is cut into several reports at day boundaries. A report whose status
// says "truncated" (the sandbox's flag; the real API's behaviour past 1M
// records is not documented) or that holds exactly max_records rows is
// dropped and its range split in two (at a day, else an hour boundary)
// and collected again. day and month rows carry their date, so one report
// spans many periods; summarized rows do not, so summarized takes one
// report per period; month rows need schedule.period month.
//
// # Mapping: report row to messages.UsageRecord
//
// Columns are found by the field name in the header label's parentheses
// ("Usage Amount (billableValue)"), or the bare name. realmId, featureId
// and billableValue are required in the header, and usageDateTime unless
// detail_level is summarized.
//
//	| UsageRecord          | report field                 | notes |
//	|----------------------|------------------------------|-------|
//	| ChargePeriodStart    | usageDateTime                | day: 00:00 UTC of the date; month: the 1st; cut to the report range (a report split inside a day starts at its first hour); summarized: the report start |
//	| ChargePeriodEnd      | the end of that day or month | cut to the report range; summarized: the report end |
//	| BillingAccountId     | (settings.realm)             | the partner org the collector reads |
//	| SubAccountId         | realmId                      | required: the org (sub-account) the usage is of |
//	| ProviderName         | "HERE"                       | |
//	| PublisherName        | "HERE"                       | |
//	| ServiceName          | category                     | "Location Services", "Pipelines", ... |
//	| ChargeCategory       | "Usage"                      | |
//	| ChargeDescription    | name                         | the item, "Geocoder Autosuggest" |
//	| SkuId                | featureId                    | required (the feature HRN) |
//	| SkuMeter             | name                         | |
//	| ResourceId           | appId                        | with the appId grouping |
//	| ResourceName         | appName                      | |
//	| ConsumedQuantity     | billableValue                | exact decimal; not a number rejects the row |
//	| ConsumedUnit         | valueDriver, else "units"    | Transactions, GB, GB-months, Core-hours |
//	| x_UsageValue         | usageValue                   | decimal: the raw units before billing rules |
//	| x_BillingSubscriptionId | billingSubscriptionId     | |
//	| x_BillingChargeNumber | billingChargeNumber         | |
//	| x_AppHrn             | appHrn                       | |
//	| x_ProjectHrn         | projectHrn                   | with the project grouping |
//	| x_BillingTag         | billingTag                   | with the billingTag grouping |
//	| x_Resource           | resource                     | |
//
// Empty strings are left out. A row is rejected, with its line (the header
// is line 1) and the column, when realmId or featureId is empty, when
// usageDateTime is not a date (YYYY-MM-DD, yyyy-MM-ddTHH:mm:ss, RFC 3339)
// or outside the report, when billableValue or usageValue is not a
// number, when its field count differs from the header's, or when the
// record fails messages.UsageRecord.Validate; the collector keeps every
// rejected row, raw, in the DEAD stream (see package collect, "Rejected
// rows"). The reports carry no cost: records hold quantities only.
package here
