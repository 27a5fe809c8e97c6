// Package messages is the contract between producers and workers: the
// usage record (FOCUS columns, exact decimals), batches and the parts they
// are split into, the part headers (PartMeta), the payload encodings, ack
// events, and the stream, subject and header names every part of the
// fleet agrees on.
//
// Where things live:
//
//   - record.go, decimal.go, validate.go: UsageRecord, Decimal, validation;
//   - batch.go, ack.go, subjects.go, carrier.go: batches, parts, acks, names,
//     trace context in headers;
//   - columnar.go (schema 2, written) and fastdecode.go (schemas 1 and 2,
//     read): the payloads, msgpack written and read by hand (encode.go has
//     the primitives); codec.go ties the headers and payloads together;
//   - json.go, timefmt.go: the JSON and date-time writers the row encoders
//     share.
//
// Schema 1 is read but no longer written: its writer and the msgpack
// library codec the hand-written one is held to live in schema1_test.go,
// so no binary links the msgpack library.
package messages
