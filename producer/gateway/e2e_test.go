package gateway

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/usagefleet/usagefleet/internal/broker"
	"github.com/usagefleet/usagefleet/internal/config"
	"github.com/usagefleet/usagefleet/messages"
)

func gz(b []byte) []byte {
	var buf bytes.Buffer
	w := gzip.NewWriter(&buf)
	w.Write(b)
	w.Close()
	return buf.Bytes()
}

func TestUsageStoresEveryRecordWithExactCost(t *testing.T) {
	e := start(t, nil)
	nd := ndjson(40, "0.0000001")
	var arr []json.RawMessage
	for _, l := range bytes.Split(bytes.TrimSpace(nd), []byte("\n")) {
		arr = append(arr, l)
	}
	array, _ := json.Marshal(arr)
	csv := []byte("ChargePeriodStart,BillingAccountId,BilledCost,BillingCurrency,x_Project\n2026-03-01T11:00:00Z,acct-2,1.10,EUR,p1\n2026-03-01T12:30:00Z,acct-2,2.20,EUR,p2\n")
	cases := []struct {
		name, ct string
		body     []byte
		gzip     bool
		records  int
		cost     string
	}{
		{"ndjson", "application/x-ndjson", nd, false, 40, "0.000004"},
		{"json array", "application/json", array, false, 40, "0.000004"},
		{"csv", "text/csv", csv, false, 2, "3.3"},
		{"gzip ndjson", "application/x-ndjson", gz(nd), true, 40, "0.000004"},
	}
	total := 0
	for _, c := range cases {
		h := auth("Content-Type", c.ct)
		if c.gzip {
			h["Content-Encoding"] = "gzip"
		}
		r := e.do("POST", "/v1/usage", c.body, h)
		if r.code != 200 {
			t.Fatalf("%s: %d %s", c.name, r.code, r.body)
		}
		var a usageAnswer
		r.json(t, &a)
		if a.Records != c.records || !a.Cost.Equal(messages.MustDecimal(c.cost)) || a.Source != testSource || a.Feed != testFeed || len(a.Parts) == 0 {
			t.Errorf("%s: answer %+v, want %d records costing %s", c.name, a, c.records, c.cost)
		}
		total += c.records
	}
	parts := e.stored()
	if n := recordCount(parts); n != total {
		t.Fatalf("stream holds %d records, want %d", n, total)
	}
	if c := totalCost(parts); !decEq(c, "3.300012") {
		t.Errorf("stream cost %s, want 3.300012", c)
	}
	// The CSV's extension column and hours survived.
	var found bool
	for _, p := range parts {
		for _, r := range p.Records {
			if r.Ext["Project"].Str == "p2" && r.BilledCost.String() == "2.20" && p.Meta.Hour.Hour() == 12 {
				found = true
			}
		}
	}
	if !found {
		t.Error("the CSV record of 12:30 with x_Project p2 is not in the 12:00 part")
	}
}

func TestIdempotencyKeyStoresOnceAndAnswersTheSame(t *testing.T) {
	e := start(t, nil)
	h := auth("Content-Type", "application/x-ndjson", "Idempotency-Key", "order-42")
	first := e.do("POST", "/v1/usage", ndjson(10, "1.5"), h)
	second := e.do("POST", "/v1/usage", ndjson(10, "1.5"), h)
	if first.code != 200 || second.code != 200 {
		t.Fatalf("%d %s / %d %s", first.code, first.body, second.code, second.body)
	}
	if !bytes.Equal(first.body, second.body) {
		t.Errorf("the repeat answered differently:\n%s\n%s", first.body, second.body)
	}
	if first.h.Get("Idempotent-Replayed") != "" || second.h.Get("Idempotent-Replayed") != "true" {
		t.Errorf("Idempotent-Replayed: first %q, second %q", first.h.Get("Idempotent-Replayed"), second.h.Get("Idempotent-Replayed"))
	}
	// Another source's same key is another batch.
	other := e.do("POST", "/v1/usage", ndjson(10, "1.5"), map[string]string{"X-API-Key": otherKey, "Content-Type": "application/x-ndjson", "Idempotency-Key": "order-42", "Usage-Feed": testFeed})
	if other.code != 200 {
		t.Fatalf("other source: %d %s", other.code, other.body)
	}
	parts := e.stored()
	if n, c := recordCount(parts), totalCost(parts); n != 20 || !decEq(c, "30") {
		t.Fatalf("stream holds %d records costing %s, want 20 costing 30", n, c)
	}
}

func ce(id, source, body string) string {
	return fmt.Sprintf(`{"specversion":"1.0","id":%q,"source":%q,"type":"com.example.usage","time":"2026-03-01T10:15:00Z","data":%s}`, id, source, body)
}

const usageData = `{"BillingAccountId":"acct-9","ConsumedQuantity":"2","ConsumedUnit":"Requests","BilledCost":"0.25","BillingCurrency":"USD"}`

func TestEventsInEveryModeDeduplicatedBySourceAndID(t *testing.T) {
	e := start(t, nil)
	structured := auth("Content-Type", "application/cloudevents+json")
	r := e.do("POST", "/v1/events", []byte(ce("e1", "/svc/a", usageData)), structured)
	var er EventResult
	r.json(t, &er)
	if r.code != 200 || er.Status != "stored" || er.BatchID == "" {
		t.Fatalf("structured: %d %s", r.code, r.body)
	}
	r = e.do("POST", "/v1/events", []byte(ce("e1", "/svc/a", usageData)), structured)
	var dup EventResult
	r.json(t, &dup)
	if r.code != 200 || dup.Status != "duplicate" || dup.BatchID != er.BatchID {
		t.Fatalf("repeat: %d %s (first stored in %s)", r.code, r.body, er.BatchID)
	}
	// The same id from another CloudEvents source is another event.
	binary := auth("Content-Type", "application/json", "Ce-Specversion", "1.0", "Ce-Id", "e1", "Ce-Source", "/svc/b", "Ce-Type", "com.example.usage", "Ce-Time", "2026-03-01T10:20:00Z")
	r = e.do("POST", "/v1/events", []byte(usageData), binary)
	r.json(t, &er)
	if r.code != 200 || er.Status != "stored" {
		t.Fatalf("binary: %d %s", r.code, r.body)
	}
	batch := "[" + ce("b1", "/svc/a", usageData) + "," + ce("e1", "/svc/a", usageData) + "," + ce("b1", "/svc/a", usageData) + "," +
		ce("b2", "/svc/a", `{"BilledCost":"x"}`) + "," + ce("b3", "/svc/a", usageData) + "]"
	r = e.do("POST", "/v1/events", []byte(batch), auth("Content-Type", "application/cloudevents-batch+json"))
	var br struct{ Results []EventResult }
	r.json(t, &br)
	want := []string{"stored", "duplicate", "duplicate", "invalid", "stored"}
	if r.code != 200 || len(br.Results) != len(want) {
		t.Fatalf("batch: %d %s", r.code, r.body)
	}
	for i, w := range want {
		if br.Results[i].Status != w {
			t.Errorf("batch result %d: %+v, want %s", i, br.Results[i], w)
		}
	}
	if p := br.Results[3].Problems; len(p) == 0 || p[0].Pointer != "events[3].data.BilledCost" {
		t.Errorf("the invalid event's problems: %+v", p)
	}
	parts := e.stored()
	if n, c := recordCount(parts), totalCost(parts); n != 4 || !decEq(c, "1") {
		t.Fatalf("stream holds %d records costing %s, want 4 costing 1", n, c)
	}
	for _, p := range parts {
		for _, rec := range p.Records {
			if rec.ChargePeriodStart.IsZero() || rec.ChargePeriodStart.Minute() < 15 {
				t.Errorf("ChargePeriodStart %v: want the event time", rec.ChargePeriodStart)
			}
		}
	}
}

func TestConcurrentSingleEventsShareParts(t *testing.T) {
	e := start(t, func(c *Config) { c.Linger.Delay = 0 })
	e.gw.linger = 20 * time.Millisecond // wide enough that 50 concurrent requests meet
	const n = 50
	done := make(chan reply, n)
	for i := 0; i < n; i++ {
		go func() {
			done <- e.do("POST", "/v1/events", []byte(ce(fmt.Sprint("c", i), "/svc/c", usageData)), auth("Content-Type", "application/cloudevents+json"))
		}()
	}
	for i := 0; i < n; i++ {
		if r := <-done; r.code != 200 {
			t.Fatalf("%d %s", r.code, r.body)
		}
	}
	parts := e.stored()
	if recordCount(parts) != n {
		t.Fatalf("%d records stored, want %d", recordCount(parts), n)
	}
	if len(parts) >= n {
		t.Errorf("%d parts for %d events: the linger did not group them", len(parts), n)
	}
}

func TestJetStreamDownNoSuccessThenRetryStoresOnce(t *testing.T) {
	e := start(t, func(c *Config) { c.Limits.RequestTimeout = config.Duration(3 * time.Second) })
	port := e.srv.Server.Addr().(interface{ String() string }).String()
	e.srv.Close()
	h := auth("Content-Type", "application/x-ndjson", "Idempotency-Key", "retry-me")
	r := e.do("POST", "/v1/usage", ndjson(5, "2"), h)
	if r.code != 503 && r.code != 429 {
		t.Fatalf("with JetStream down: %d %s", r.code, r.body)
	}
	p := r.problem(t)
	if r.h.Get("Retry-After") == "" || p.Type != typeUnavailable && p.Type != typeTimeout {
		t.Errorf("problem %+v, Retry-After %q", p, r.h.Get("Retry-After"))
	}
	var portN int
	fmt.Sscanf(port[strings.LastIndex(port, ":")+1:], "%d", &portN)
	emb, err := broker.StartEmbedded(e.srv.Dir, portN)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(emb.Close)
	e.srv.Embedded = emb
	waitConnected(t, e.nc)
	for i := 0; i < 2; i++ {
		r = e.do("POST", "/v1/usage", ndjson(5, "2"), h)
		if r.code != 200 {
			t.Fatalf("retry %d: %d %s", i, r.code, r.body)
		}
	}
	parts := e.stored()
	if n, c := recordCount(parts), totalCost(parts); n != 5 || !decEq(c, "10") {
		t.Fatalf("stream holds %d records costing %s, want 5 costing 10", n, c)
	}
}

func waitConnected(t *testing.T, nc *nats.Conn) {
	t.Helper()
	ch := make(chan struct{}, 1)
	nc.SetReconnectHandler(func(*nats.Conn) { ch <- struct{}{} })
	if nc.IsConnected() {
		return
	}
	select {
	case <-ch:
	case <-time.After(20 * time.Second):
		t.Fatal("no reconnect")
	}
}

func TestBatchStatusFromAcks(t *testing.T) {
	e := start(t, nil)
	js, _ := jetstream.New(e.nc)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	// A destination consuming the feed, as a worker pool declares it.
	if _, err := js.CreateOrUpdateConsumer(ctx, messages.StreamUsage, jetstream.ConsumerConfig{Durable: "uf_sandbox", FilterSubject: messages.FeedFilter(testFeed), AckPolicy: jetstream.AckExplicitPolicy}); err != nil {
		t.Fatal(err)
	}
	r := e.do("POST", "/v1/usage", ndjson(3, "0.1"), auth("Content-Type", "application/x-ndjson"))
	var a usageAnswer
	r.json(t, &a)
	st := e.do("GET", a.StatusURL, nil, auth())
	var s BatchStatus
	st.json(t, &s)
	if st.code != 200 || s.Settled || len(s.Destinations) != 1 || s.Destinations[0].Settled {
		t.Fatalf("before any ack: %d %s", st.code, st.body)
	}
	// Ack the part as the destination's worker does, then long-poll.
	got := make(chan reply, 1)
	go func() { got <- e.do("GET", a.StatusURL+"?wait=20s", nil, auth()) }()
	// The long poll holds while nothing is settled (a bounded negative
	// check: 700 ms, above the 500 ms a status without ?wait reads).
	select {
	case r := <-got:
		t.Fatalf("?wait=20s answered before any ack: %d %s", r.code, r.body)
	case <-time.After(700 * time.Millisecond):
	}
	for _, p := range a.Parts {
		ack := messages.Ack{BatchID: a.BatchID, Part: p.Part, Feed: testFeed, Source: testSource, Destination: "sandbox", Status: messages.AckDelivered, Records: p.Records, Cost: messages.MustDecimal("0.3"), Costs: map[string]messages.Decimal{"USD": messages.MustDecimal("0.3")}, Warnings: 1, Rejected: 1, Reasons: map[string]int{"no SkuId": 1}, Time: time.Now()}
		b, _ := messages.EncodeAck(ack)
		if _, err := js.Publish(ctx, messages.AckSubject(testSource, "sandbox"), b); err != nil {
			t.Fatal(err)
		}
	}
	st = <-got
	st.json(t, &s)
	loadDoc(t).checkBody(t, "/v1/batches/{id}", "get", 200, "application/json", st.body)
	d := s.Destinations[0]
	if st.code != 200 || !s.Settled || !d.Settled || d.Delivered != len(a.Parts) || d.Records != 3 || len(d.Cost) != 1 || !d.Cost["USD"].Equal(messages.MustDecimal("0.3")) || d.Warnings != len(a.Parts) {
		t.Fatalf("after the acks: %d %s", st.code, st.body)
	}
	// Another source's key may not read it.
	if r := e.do("GET", a.StatusURL, nil, map[string]string{"X-API-Key": otherKey}); r.code != 403 {
		t.Errorf("other key: %d %s", r.code, r.body)
	}
}

func decEq(a, b string) bool { return messages.MustDecimal(a).Equal(messages.MustDecimal(b)) }

func mustDec(s string) messages.Decimal { return messages.MustDecimal(s) }

func TestClaimLookupIsOneBatchedGet(t *testing.T) {
	e := start(t, nil)
	r := e.do("POST", "/v1/events", []byte(ce("known", "/s", usageData)), auth("Content-Type", "application/cloudevents+json"))
	var er EventResult
	r.json(t, &er)
	if r.code != 200 {
		t.Fatal(r.code, string(r.body))
	}
	known := &event{id: "known", source: "/s"}
	known.setKey()
	unknown := &event{id: "never", source: "/s"}
	unknown.setKey()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	got, err := e.gw.claimedMulti(ctx, []*event{unknown, known, known, unknown, known})
	if err != nil {
		t.Fatal(err)
	}
	if got[0] != "" || got[1] != er.BatchID || got[2] != er.BatchID || got[3] != "" || got[4] != er.BatchID {
		t.Errorf("claims %q; want none, %s twice, none, %[2]s", got, er.BatchID)
	}
	none, err := e.gw.claimedMulti(ctx, []*event{unknown})
	if err != nil || none[0] != "" {
		t.Errorf("an unknown event alone: %q %v", none, err)
	}
}

func TestDecompressedSizeIsBounded(t *testing.T) {
	e := start(t, func(c *Config) { c.Limits.MaxBodyBytes = 64 << 10; c.Limits.MaxDecompressedBytes = 256 << 10 })
	bomb := gz(bytes.Repeat([]byte(" "), 4<<20)) // 4 MiB of blanks: a few KiB gzipped
	if len(bomb) > 64<<10 {
		t.Fatalf("the bomb is %d bytes compressed", len(bomb))
	}
	r := e.do("POST", "/v1/usage", bomb, auth("Content-Type", "application/x-ndjson", "Content-Encoding", "gzip"))
	if r.code != 413 || !strings.Contains(r.problem(t).Detail, "max_decompressed_bytes") {
		t.Fatalf("%d %s", r.code, r.body)
	}
	r = e.do("POST", "/v1/usage", []byte("not gzip"), auth("Content-Type", "application/x-ndjson", "Content-Encoding", "gzip"))
	if r.code != 400 {
		t.Fatalf("a body that is not gzip: %d %s", r.code, r.body)
	}
	r = e.do("POST", "/v1/usage", ndjson(1, "1"), auth("Content-Type", "application/x-ndjson", "Content-Encoding", "br"))
	if r.code != 415 {
		t.Fatalf("brotli: %d %s", r.code, r.body)
	}
	if n := recordCount(e.stored()); n != 0 {
		t.Fatalf("%d records stored", n)
	}
}

// TestUnknownMemberStoredWithWarning: the gateway keeps a member neither
// FOCUS nor x_ as usage-producer publish keeps it (an x_ extension), says
// so in the answer's warnings, and the money arrives.
func TestUnknownMemberStoredWithWarning(t *testing.T) {
	e := start(t, nil)
	body := `{"ChargePeriodStart":"2026-03-01T10:00:00Z","BilledCost":"1.25","BillingCurrency":"USD","Cost Center":"42"}` + "\n"
	r := e.do("POST", "/v1/usage", []byte(body), auth("Content-Type", "application/x-ndjson"))
	if r.code != 200 {
		t.Fatalf("%d %s", r.code, r.body)
	}
	var a usageAnswer
	r.json(t, &a)
	if len(a.Warnings) != 1 || a.Warnings[0].Pointer != "records[0].Cost Center" || !strings.Contains(a.Warnings[0].Detail, "x_Cost_Center") {
		t.Fatalf("warnings %+v: want the kept column named", a.Warnings)
	}
	r = e.do("POST", "/v1/events", []byte(ce("w", "/s", `{"BilledCost":"0.75","BillingCurrency":"USD","Cost Center":"42"}`)), auth("Content-Type", "application/cloudevents+json"))
	var er EventResult
	r.json(t, &er)
	if r.code != 200 || er.Status != "stored" || len(er.Warnings) != 1 {
		t.Fatalf("event: %d %s", r.code, r.body)
	}
	parts := e.stored()
	if c := totalCost(parts); c != "2" && c != "2.00" {
		t.Fatalf("stored cost %s, want 2", c)
	}
	for _, p := range parts {
		for _, rec := range p.Records {
			if rec.Ext["Cost_Center"] != messages.ExtStr("42") {
				t.Errorf("extensions %v: want Cost_Center 42", rec.Ext)
			}
		}
	}
}

// An event without ChargePeriodStart takes its time, and the record is
// validated with it: an event whose time is outside the years a record may
// have is refused alone, at its time's pointer, not stored, and the good
// events beside it (in a CloudEvents batch) are stored. (Before, the time
// was filled in after validation and the whole batch failed in
// producer.Publish.)
func TestEventTimeValidatedAsTheRecordsStart(t *testing.T) {
	e := start(t, nil)
	old := strings.Replace(ce("t1", "/svc/t", usageData), "2026-03-01T10:15:00Z", "1999-03-01T10:15:00Z", 1)
	r := e.do("POST", "/v1/events", []byte(old), auth("Content-Type", "application/cloudevents+json"))
	if r.code != 400 {
		t.Fatalf("structured event of 1999: %d %s, want 400", r.code, r.body)
	}
	if p := r.problem(t); len(p.Errors) != 1 || p.Errors[0].Pointer != "event.time" || !strings.Contains(p.Errors[0].Detail, "year 1999") {
		t.Fatalf("problems %+v, want one at event.time naming the year", p.Errors)
	}
	r = e.do("POST", "/v1/events", []byte(usageData), auth("Content-Type", "application/json", "Ce-Specversion", "1.0", "Ce-Id", "t2", "Ce-Source", "/svc/t", "Ce-Type", "com.example.usage", "Ce-Time", "2101-01-01T00:00:00Z"))
	if r.code != 400 {
		t.Fatalf("binary event of 2101: %d %s, want 400", r.code, r.body)
	}
	if p := r.problem(t); len(p.Errors) != 1 || p.Errors[0].Pointer != "header.ce-time" {
		t.Fatalf("problems %+v, want one at header.ce-time", p.Errors)
	}
	// ChargePeriodEnd before the start the event's time gave.
	early := ce("t3", "/svc/t", `{"ChargePeriodEnd":"2026-03-01T10:00:00Z","BilledCost":"1","BillingCurrency":"USD"}`)
	batch := "[" + ce("t4", "/svc/t", usageData) + "," + old + "," + early + "]"
	r = e.do("POST", "/v1/events", []byte(batch), auth("Content-Type", "application/cloudevents-batch+json"))
	var br struct{ Results []EventResult }
	r.json(t, &br)
	want := []string{"stored", "invalid", "invalid"}
	if r.code != 200 || len(br.Results) != len(want) {
		t.Fatalf("batch: %d %s", r.code, r.body)
	}
	for i, w := range want {
		if br.Results[i].Status != w {
			t.Errorf("batch result %d: %+v, want %s", i, br.Results[i], w)
		}
	}
	if p := br.Results[1].Problems; len(p) != 1 || p[0].Pointer != "events[1].time" {
		t.Errorf("the 1999 event's problems: %+v", p)
	}
	if p := br.Results[2].Problems; len(p) != 1 || p[0].Pointer != "events[2].data.ChargePeriodEnd" {
		t.Errorf("the early end's problems: %+v", p)
	}
	if n := recordCount(e.stored()); n != 1 {
		t.Fatalf("%d records stored, want 1", n)
	}
}
