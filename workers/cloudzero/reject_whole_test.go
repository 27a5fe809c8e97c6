package cloudzero

import (
	"fmt"
	"maps"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	sandbox "github.com/usagefleet/usagefleet/internal/sandbox/cloudzero"
	"github.com/usagefleet/usagefleet/internal/usagegen"
	"github.com/usagefleet/usagefleet/messages"
	"github.com/usagefleet/usagefleet/workers"
	"github.com/usagefleet/usagefleet/workers/conformance"
)

// smallBody is the conformance sandbox with a destination whose
// max_body_bytes (20,000) a record with a dozen long tags is over alone.
type smallBody struct{ *confSandbox }

func (c smallBody) Destination(t *testing.T, name string) workers.Destination {
	d, err := New(name, Settings{BaseURL: c.url, ConnectionID: testConn, APIKey: newSecret(), MaxBodyBytes: 20_000})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// A record whose row alone is over max_body_bytes is dead-lettered whole
// by the real pool (max_body_bytes 20,000): the read-ahead writes rows from the part without a
// record's maps (PartRowEncoder), and the record it rejects must still
// carry its tags and x_ columns into the dead letter, or a replay of it
// would bill without its labels.
func TestTooLargeRecordIsDeadLetteredWithItsTags(t *testing.T) {
	s := sandbox.New(sandbox.Config{Connections: map[string]string{testConn: testKey}})
	ts := httptest.NewServer(s.Handler())
	t.Cleanup(ts.Close)
	e := conformance.NewEnv(t, conformance.Harness{Start: func(t *testing.T) conformance.Sandbox {
		return smallBody{&confSandbox{s: s, url: ts.URL}}
	}})
	recs := usagegen.Generate(50, usagegen.Options{Seed: 5, Start: sourcesStart, Hours: 1})
	big := &recs[17]
	big.Tags = map[string]string{}
	for i := range 12 { // at most 16: the row is written from the part
		big.Tags[fmt.Sprintf("team-%03d", i)] = strings.Repeat("v", messages.MaxStringLen)
	}
	big.Ext = map[string]messages.ExtValue{"cost_centre": {Kind: messages.ExtString, Str: "cc-42"}}
	want := big.Clone()
	p := signer(t, e, nil)
	publish(t, p, &messages.Batch{ID: "big-1", Feed: e.Feed, Source: "team-a", Records: recs})

	e.StartPool("a", conformance.FastOptions())
	rest := append(append([]messages.UsageRecord{}, recs[:17]...), recs[18:]...)
	waitHolds(t, e, rest, 20*time.Second)
	dls := deadLetters(t, e, []string{"big-1"}, 20*time.Second)
	var got []messages.RejectedRecord
	for _, dl := range dls["big-1"] {
		got = append(got, dl.Records...)
	}
	if len(got) != 1 {
		t.Fatalf("%d rejected records in the dead letters, want 1: %+v", len(got), dls["big-1"])
	}
	r := got[0]
	if !strings.Contains(r.Reason, "max_body_bytes") {
		t.Fatalf("reason %q, want the row over max_body_bytes", r.Reason)
	}
	if r.Record.ResourceId != want.ResourceId || !r.Record.ChargePeriodStart.Equal(want.ChargePeriodStart) || !r.Record.BilledCost.Equal(want.BilledCost) {
		t.Fatalf("dead-lettered record %+v, want %+v", r.Record, want)
	}
	if !maps.Equal(r.Record.Tags, want.Tags) {
		t.Fatalf("dead-lettered record has %d tags, want its %d", len(r.Record.Tags), len(want.Tags))
	}
	if !maps.Equal(r.Record.Ext, want.Ext) {
		t.Fatalf("dead-lettered record's x_ columns = %v, want %v", r.Record.Ext, want.Ext)
	}
}
