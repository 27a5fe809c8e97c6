package ops

import (
	"context"
	"strings"
	"testing"

	"github.com/usagefleet/usagefleet/messages"
	"github.com/usagefleet/usagefleet/producer/collect"
)

// A collector's rejected row is parsed again by collecting its period
// again (a new generation replaces the old one at every destination);
// usage-worker links no collector, so its replay refuses with the command
// to run and publishes nothing (the Env has no NATS: any use would
// panic); `usage-worker dead replay` prints it and exits 2 (ExitPartial)
// on a refused plan.
func TestReplayOfACollectorRowNamesTheCollectToRun(t *testing.T) {
	e := &DeadEntry{Seq: 41, Letter: messages.DeadLetter{
		Destination: collect.DeadDestination,
		Source:      "acronis-eu",
		Feed:        "saas",
		Reason:      "row 7: BilledCost: not a decimal",
		Header:      map[string][]string{collect.DeadHdrRange: {"2026-03-01T00:00:00Z/2026-03-02T00:00:00Z"}},
	}}
	for _, dry := range []bool{true, false} {
		p, err := (&Env{}).Replay(context.Background(), e, dry)
		if err != nil {
			t.Fatal(err)
		}
		if p.Action != ActionRecollect || p.Done || p.Refused == "" || p.DeadSeq != 41 {
			t.Fatalf("dry run %v: plan %+v: want a refused recollect plan", dry, p)
		}
		for _, want := range []string{"usage-producer collect", "--once", "acronis-eu", "2026-03-01T00:00:00Z/2026-03-02T00:00:00Z"} {
			if !strings.Contains(p.Command, want) {
				t.Errorf("command %q does not name %q", p.Command, want)
			}
		}
	}
}
