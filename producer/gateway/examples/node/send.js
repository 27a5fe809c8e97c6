// Publishes usage records to usage-gateway as CloudEvents, with the
// official CloudEvents JavaScript SDK (https://github.com/cloudevents/sdk-javascript):
// one event in binary mode, one in structured mode, and a batch
// (application/cloudevents-batch+json: the SDK parses batches but does not
// write them, so the batch is the events' JSON form in an array, as the
// JSON format's section 4 says). Each event's data is one FOCUS usage
// record. Then it reads what the destinations did with the batch.
//
//   GATEWAY_URL=http://127.0.0.1:8080 GATEWAY_KEY=... node send.js
//
// Exits 1 if any request is not answered 200, or an event is not stored
// (or a duplicate, when run twice with the same RUN_ID).
"use strict";
const { CloudEvent, HTTP } = require("cloudevents");

const base = process.env.GATEWAY_URL || "http://127.0.0.1:8080";
const key = process.env.GATEWAY_KEY;
const run = process.env.RUN_ID || String(Date.now());
if (!key) {
  console.error("set GATEWAY_KEY to an API key of the gateway");
  process.exit(64);
}

function usage(i) {
  return new CloudEvent({
    id: `${run}-${i}`,
    source: "/examples/node",
    type: "com.example.usage.recorded",
    time: "2026-03-01T10:00:00Z",
    data: {
      BillingAccountId: "acct-node",
      SkuId: "api-calls",
      ConsumedQuantity: "100",
      ConsumedUnit: "Requests",
      BilledCost: "0.25",
      BillingCurrency: "USD",
      Tags: { service: "checkout" },
    },
  });
}

async function post(message, what) {
  const res = await fetch(`${base}/v1/events`, {
    method: "POST",
    headers: { ...message.headers, authorization: `Bearer ${key}` },
    body: message.body,
  });
  const text = await res.text();
  console.log(`${what}: ${res.status} ${text.trim()}`);
  if (res.status !== 200) {
    throw new Error(`${what}: HTTP ${res.status}`);
  }
  return JSON.parse(text);
}

function check(result) {
  if (result.status !== "stored" && result.status !== "duplicate") {
    throw new Error(`event ${result.id}: ${result.status} ${JSON.stringify(result.problems || [])}`);
  }
}

async function main() {
  check(await post(HTTP.binary(usage(1)), "binary"));
  check(await post(HTTP.structured(usage(2)), "structured"));
  const batch = [usage(3), usage(4), usage(5)].map((e) => e.toJSON());
  const answer = await post(
    { headers: { "content-type": "application/cloudevents-batch+json" }, body: JSON.stringify(batch) },
    "batch",
  );
  answer.results.forEach(check);
  const id = answer.results[0].batch_id;
  const res = await fetch(`${base}/v1/batches/${id}`, { headers: { authorization: `Bearer ${key}` } });
  console.log(`status of ${id}: ${res.status} ${(await res.text()).trim()}`);
  if (res.status !== 200) {
    throw new Error(`batch status: HTTP ${res.status}`);
  }
}

main().catch((err) => {
  console.error(err.message);
  process.exit(1);
});
