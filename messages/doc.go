// Package messages is the contract between producers and workers: the
// usage record (FOCUS columns, exact decimals), batches and the parts they
// are split into, the part headers (PartMeta), the payload encodings, ack
// events, and the stream, subject and header names every part of the
// fleet agrees on.
//
// Where things live:
//
//   - record.go, focus.go, currency.go, decimal.go, validate.go: UsageRecord
//     and its FOCUS Detail columns, Decimal, validation;
//   - batch.go, ack.go, subjects.go, carrier.go: batches, parts, acks, names,
//     trace context in headers;
//   - columnar.go (schemas 2 and 3, written), columnar_decode.go and
//     fastdecode.go (schemas 1 to 3, read): the payloads, msgpack written and
//     read by hand (encode.go has the primitives); codec.go ties the headers
//     and payloads together;
//   - json.go, timefmt.go: the JSON and date-time writers the row encoders
//     share.
//
// Schema 1 is read but no longer written: its writer and the msgpack
// library codec the hand-written one is held to live in schema1_test.go,
// so no binary links the msgpack library.
//
// # The usage record and FOCUS
//
// UsageRecord follows the FinOps Open Cost and Usage Specification (FOCUS)
// 1.0 to 1.3. Its columns, types, allowed values and formats are read from
// the specification itself, the repository
// github.com/FinOps-Open-Cost-and-Usage-Spec/FOCUS_Spec:
//
//   - specification/columns/*.md at tags v1.0, v1.1 and v1.2 (each column's
//     "Column ID", "Data type", "Allows nulls", "Value format", allowed
//     values and "Introduced (version)");
//   - specification/attributes/numeric_format.md (decimals: integer,
//     decimal or E notation, any integer exponent; ParseDecimal bounds it
//     to ±1000 as a bomb guard), datetime_format.md (UTC ISO 8601),
//     key_value_format.md (a JSON object whose values are strings,
//     numbers, booleans or null: Tags, SkuPriceDetails), null_handling.md
//     (null, never empty strings or placeholders) and currency_format.md
//     (ISO 4217 alphabetic codes), at v1.2.
//
// FOCUS 1.3 is not tagged in the stored snapshot of that repository; its
// eight new columns are taken from secondary sources and marked [INFER]
// (see focus.go). The core columns every destination maps are fields of
// UsageRecord; the other FOCUS columns are fields of Detail, which a record
// holds by pointer (see Detail for why). FocusColumns lists them all with
// their types and the version that introduced them; FocusVersion tells a
// file's version from its column names.
//
// Validation (UsageRecord.Validate) refuses what would corrupt a
// destination: invalid UTF-8 (never turned into U+FFFD), a year outside
// MinYear..MaxYear, a currency that is not an ISO 4217 code (currency.go
// holds the list and cites it), a value outside a FOCUS allowed-values
// list where the specification makes it normative (ChargeCategory,
// ChargeClass, ChargeFrequency, CommitmentDiscountCategory and Status,
// CapacityReservationStatus, PricingCategory), and a malformed JSON
// column. ServiceCategory and ServiceSubcategory are not checked against
// their lists: the taxonomy grows with every version and a new name is
// not a billing problem.
package messages
