package producer_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/usagefleet/usagefleet/internal/broker/natstest"
	"github.com/usagefleet/usagefleet/internal/usagegen"
	"github.com/usagefleet/usagefleet/producer"
)

// A CSV or Parquet file's rows reach the spool encoded ahead of their parts
// (input.ReadEncoded, Spool.AddEncoded) instead of as records (ReadWith,
// Spool.Add). The parts must be the same: over the FOCUS fixtures, a
// generated export, and files made to take the rarer paths (null cells,
// typed and per-key tags, extension columns, bad rows, a bare quote that
// sends the reader to its one-pass path, hours out of order with a tight
// open bound), both paths give the same problems, records, costs and claim
// digest (which covers every part's bytes), and the parts published by
// each decode to the same records.
func TestEncodedRowsPublishWhatRecordsDid(t *testing.T) {
	type input struct {
		name string
		data []byte
		opt  producer.SpoolOptions
	}
	var ins []input
	fixtures, err := filepath.Glob("input/testdata/focus/*")
	if err != nil || len(fixtures) == 0 {
		t.Fatalf("fixtures: %v (%d)", err, len(fixtures))
	}
	for _, f := range fixtures {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		ins = append(ins, input{name: filepath.Base(f), data: b})
	}
	var gen bytes.Buffer
	if _, err := usagegen.WriteFocusCSV(&gen, 6000, usagegen.Options{Seed: 7}); err != nil {
		t.Fatal(err)
	}
	var pq bytes.Buffer // the same rows as exporters write Parquet
	if err := usagegen.CSVToParquet(&pq, bytes.NewReader(gen.Bytes())); err != nil {
		t.Fatal(err)
	}
	ins = append(ins,
		input{name: "generated.csv", data: gen.Bytes()},
		input{name: "generated.parquet", data: pq.Bytes()},
		input{name: "generated-small-parts.parquet", data: pq.Bytes(), opt: producer.SpoolOptions{PartBytes: 8192, OpenBytes: 16384}},
		input{name: "generated-small-parts.csv", data: gen.Bytes(), opt: producer.SpoolOptions{PartBytes: 8192, OpenBytes: 16384}},
		input{name: "generated-bare-quote.csv", data: withBareQuote(gen.Bytes(), 4000)},
		input{name: "mixed.csv", data: mixedCSV(3000), opt: producer.SpoolOptions{PartBytes: 16384, OpenBytes: 40000}},
	)

	ns := natstest.Start(t)
	nc := ns.Connect(t)
	p, err := producer.New(nc, producer.Options{})
	if err != nil {
		t.Fatal(err)
	}
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	t.Cleanup(func() { producer.SetSpoolRecords(false) })
	for i, in := range ins {
		t.Run(in.name, func(t *testing.T) {
			spool := func(records bool) *producer.FileResult {
				producer.SetSpoolRecords(records)
				defer producer.SetSpoolRecords(false)
				o := in.opt
				o.Dir = t.TempDir()
				fr, err := producer.SpoolFile(ctx, in.name, bytes.NewReader(in.data), producer.FileOptions{Spool: o})
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { fr.Spool.Discard() })
				return fr
			}
			old, cur := spool(true), spool(false)
			if !reflect.DeepEqual(old.Errors, cur.Errors) || !reflect.DeepEqual(old.Warnings, cur.Warnings) {
				t.Fatalf("problems differ:\nrecords: %v %v\nencoded: %v %v", old.Errors, old.Warnings, cur.Errors, cur.Warnings)
			}
			if old.Spool.Records() == 0 {
				t.Fatalf("no good rows: %v", old.Errors)
			}
			if bad := in.name == "mixed.csv" || strings.Contains(in.name, "bare-quote"); bad != (len(old.Errors) > 0) {
				t.Fatalf("problems %v: the file was made with a bad row: %v", old.Errors, bad)
			}
			if old.Spool.Records() != cur.Spool.Records() || old.Spool.Parts() != cur.Spool.Parts() || old.Spool.Bytes() != cur.Spool.Bytes() {
				t.Fatalf("records %d/%d, parts %d/%d, bytes %d/%d", old.Spool.Records(), cur.Spool.Records(), old.Spool.Parts(), cur.Spool.Parts(), old.Spool.Bytes(), cur.Spool.Bytes())
			}
			if old.Spool.Digest() != cur.Spool.Digest() {
				t.Errorf("claim digests differ: the parts' bytes are not the same")
			}
			if !reflect.DeepEqual(fmt.Sprint(old.Spool.Costs()), fmt.Sprint(cur.Spool.Costs())) || !old.Spool.Cost().Equal(cur.Spool.Cost()) {
				t.Errorf("costs %v (%s), encoded %v (%s)", old.Spool.Costs(), old.Spool.Cost(), cur.Spool.Costs(), cur.Spool.Cost())
			}
			feed := fmt.Sprintf("id%d", i)
			var got [2][]any
			for k, fr := range []*producer.FileResult{old, cur} {
				id := fmt.Sprintf("%s-%d", feed, k)
				if _, err := p.PublishSpool(ctx, fr.Spool, producer.SpoolPublish{BatchID: id, Feed: feed, Source: "s"}); err != nil {
					t.Fatal(err)
				}
				recs, parts := storedRecords(t, js, id)
				if len(parts) != fr.Spool.Parts() || len(recs) != fr.Spool.Records() {
					t.Fatalf("%s: %d parts, %d records stored", id, len(parts), len(recs))
				}
				for _, r := range recs {
					got[k] = append(got[k], r)
				}
			}
			for j := range got[0] {
				if !reflect.DeepEqual(got[0][j], got[1][j]) {
					t.Fatalf("record %d differs:\nrecords: %+v\nencoded: %+v", j, got[0][j], got[1][j])
				}
			}
		})
	}
}

// withBareQuote puts a bare quote in row n's first cell: the chunk it is in
// fails to parse, and the reader reads on in one pass from there.
func withBareQuote(csv []byte, n int) []byte {
	lines := bytes.SplitAfter(csv, []byte("\n"))
	lines[n] = append([]byte(`us"east,`), lines[n][bytes.IndexByte(lines[n], ',')+1:]...)
	return bytes.Join(lines, nil)
}

// mixedCSV is a file whose rows use different columns: null cells, typed
// tags and per-key tag columns, extension columns of each type and an
// unknown column, a Detail column, hours out of order, and a bad row.
func mixedCSV(n int) []byte {
	var b strings.Builder
	b.WriteString("ChargePeriodStart,ChargePeriodEnd,BilledCost,BillingCurrency,ChargeCategory,ServiceName,ResourceId,Tags,Tags.owner,x_Zone,x_Count:int,x_Rate:decimal,Cost Center,ChargeFrequency,ConsumedQuantity,ConsumedUnit\n")
	for i := range n {
		h := (i * 7919) % 40
		start := time.Date(2024, 9, 1, h, 0, 0, 0, time.UTC)
		cell := func(k int, v string) string {
			if (i*31+k*17)%(4+k%3) == 0 {
				return []string{"", "NULL", "null"}[(i+k)%3]
			}
			return v
		}
		tags := cell(1, fmt.Sprintf(`"{""team"":""t%d"",""n"":%d,""on"":true,""z"":null}"`, i%5, i))
		if i%4 == 0 {
			tags = cell(1, fmt.Sprintf(`"{""team"":""t%d""}"`, i%5))
		}
		cur := []string{"USD", "EUR"}[i%2]
		cost := fmt.Sprintf("%d.%03d", i%97, i%1000)
		if i == n/2 {
			cost = "12.x" // a bad row
		}
		fmt.Fprintf(&b, "%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,Hours\n",
			start.Format(time.RFC3339), cell(2, start.Add(time.Hour).Format(time.RFC3339)), cell(3, cost), cur,
			"Usage", cell(4, "Compute"), cell(5, fmt.Sprintf("r-%d", i)), tags, cell(6, fmt.Sprintf("o%d", i%3)),
			cell(7, "z"+strings.Repeat("y", i%40)), cell(8, fmt.Sprint(i-1500)), cell(9, fmt.Sprintf("0.%06d", i)),
			cell(10, fmt.Sprintf("cc-%d", i%11)), cell(11, "Usage-Based"), cell(12, fmt.Sprintf("%de-3", i)))
	}
	return []byte(b.String())
}
