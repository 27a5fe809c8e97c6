// Writes arrow-rs-focus-1.2.parquet: FOCUS 1.2 rows shaped as AWS Data
// Exports writes them (DECIMAL cost, DOUBLE quantities, millisecond UTC
// timestamps, Tags a MAP), but written by another Parquet implementation
// than the one usagefleet reads with: arrow-rs (the Rust Arrow/Parquet
// crates, through parquet-wasm), as Spark, DataFusion and pyarrow-style
// writers lay files out. ZSTD pages, dictionary-encoded strings, data page
// v2, row groups of 300 rows (so batches cross row groups), nulls in every
// optional column, a null map and an empty one, quotes, commas and
// non-ASCII text.
//
//   cd producer/input/testdata/arrow && npm install && node gen.js
//
// The values are a function of the row number; parquet_arrow_test.go
// computes the same ones and compares every record read.
const fs = require('fs');
const arrow = require('apache-arrow');
const pw = require('parquet-wasm');

const N = 1000;
const hour = 3600 * 1000;
const t0 = Date.UTC(2024, 8, 1); // 2024-09-01
const rows = [...Array(N).keys()];

const utf8 = (f, nullable = false) => arrow.vectorFromArray(rows.map(f), new arrow.Utf8());
const ts = (f) => arrow.vectorFromArray(rows.map(f), new arrow.TimestampMillisecond('UTC'));
const f64 = (f) => arrow.vectorFromArray(rows.map(f), new arrow.Float64());

// BilledCost: DECIMAL(18,10) as AWS writes it; unscaled = i*1234567 + 1
// (so 0.0000000001 for row 0), negative for every 97th row (a credit).
const dec = new arrow.Decimal(10, 18, 128);
const words = new Uint32Array(N * 4);
for (const i of rows) {
  let v = BigInt(i) * 1234567n + 1n;
  if (i % 97 === 96) v = -v;
  const u = BigInt.asUintN(128, v);
  for (let w = 0; w < 4; w++) words[i * 4 + w] = Number((u >> BigInt(32 * w)) & 0xffffffffn);
}
const billed = arrow.makeVector(arrow.makeData({ type: dec, length: N, data: words }));

const mapType = new arrow.Map_(new arrow.Field('entries', new arrow.Struct([
  new arrow.Field('key', new arrow.Utf8(), false),
  new arrow.Field('value', new arrow.Utf8(), true),
]), false), false);
const tags = arrow.vectorFromArray(rows.map((i) => {
  if (i % 11 === 0) return null; // no Tags
  if (i % 13 === 0) return new Map(); // an empty map
  const m = new Map([['user:team', 'team-' + (i % 4)]]);
  if (i % 2 === 0) m.set('user:env', i % 3 === 0 ? 'prod' : 'dev');
  if (i % 5 === 0) m.set('user:cost center', 'Zürich, "ops"');
  return m;
}), mapType);

const table = new arrow.Table({
  BillingAccountId: utf8((i) => '11112222333' + (i % 3)),
  BillingCurrency: utf8(() => 'USD'),
  BillingPeriodStart: ts(() => t0),
  BillingPeriodEnd: ts(() => Date.UTC(2024, 9, 1)),
  ChargePeriodStart: ts((i) => t0 + (i % 720) * hour),
  ChargePeriodEnd: ts((i) => t0 + (i % 720 + 1) * hour),
  ChargeCategory: utf8((i) => (i % 50 === 49 ? 'Purchase' : 'Usage')),
  ChargeClass: utf8((i) => (i % 50 === 49 ? 'Correction' : null)),
  BilledCost: billed,
  EffectiveCost: f64((i) => (i % 10 === 9 ? null : i / 8)),
  ConsumedQuantity: f64((i) => (i % 7 === 6 ? null : i * 0.1)),
  ConsumedUnit: utf8((i) => (i % 7 === 6 ? null : 'Hours')),
  InvoiceId: utf8(() => 'EUINGB24-123'),
  PricingCurrency: utf8(() => 'USD'),
  ProviderName: utf8(() => 'AWS'),
  ResourceId: utf8((i) => (i % 3 === 2 ? null : 'i-' + i.toString(16).padStart(8, '0'))),
  ServiceName: utf8((i) => (i % 7 === 0 ? 'Amazon "S3", Standard – été' : 'Amazon Elastic Compute Cloud')),
  Tags: tags,
  x_ServiceCode: utf8((i) => 'AmazonEC2'),
  x_UsageAmount: f64((i) => i * 0.1),
});

const props = new pw.WriterPropertiesBuilder()
  .setCompression(pw.Compression.ZSTD)
  .setWriterVersion(pw.WriterVersion.V2)
  .setMaxRowGroupSize(300)
  .setCreatedBy('parquet-wasm (arrow-rs), usagefleet testdata/arrow/gen.js')
  .build();
const out = pw.writeParquet(pw.Table.fromIPCStream(arrow.tableToIPC(table, 'stream')), props);
fs.writeFileSync('../focus/arrow-rs-focus-1.2.parquet', out);
console.log('wrote ../focus/arrow-rs-focus-1.2.parquet', out.length, 'bytes,', N, 'rows');
