//go:build soak

package soak

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/shopspring/decimal"

	"github.com/usagefleet/usagefleet/messages"
	"github.com/usagefleet/usagefleet/producer"
	"github.com/usagefleet/usagefleet/workers/cloudzero"
)

// tally is a unit's record count and exact cost.
type tally struct {
	N    int
	Cost decimal.Decimal
}

func (t tally) String() string { return fmt.Sprintf("%d records, cost %s", t.N, t.Cost.String()) }

func (t *tally) add(cost string) {
	d, err := decimal.NewFromString(cost)
	if err != nil {
		d = decimal.Zero
	}
	t.N++
	t.Cost = t.Cost.Add(d)
}

// units are what a destination holds (or must hold), unit by unit.
type units map[string]tally

func (u units) add(k, cost string) {
	t := u[k]
	t.add(cost)
	u[k] = t
}

// state is every destination's content in the terms the check compares.
type state struct {
	cz, cc, hookUnits units
	hookIDs           map[string]string // soak_id → cost (the webhook dedups by idempotency key)
}

// czKey, ccKey and hookKey name a record's unit at each destination,
// with its currency: each unit holds one (see the time ranges).
func czUnitKey(r *messages.UsageRecord) string {
	return r.ChargePeriodStart.UTC().Truncate(time.Hour).Format(time.RFC3339) + " " + r.BillingCurrency
}

func ccUnitKey(r *messages.UsageRecord) string {
	return r.ChargePeriodStart.UTC().Format("2006-01-02") + " " + r.BillingCurrency
}

func currencyOf(t time.Time) string {
	if !t.Before(eurStart) && t.Before(eurStart.Add(time.Duration(eurHours)*time.Hour)) {
		return "EUR"
	}
	return "USD"
}

// expect accumulates what was stored by the well-behaved producers.
type expect struct {
	mu                      sync.Mutex
	st                      state
	snap                    []messages.UsageRecord // team-a's newest snapshot generation
	snapGen                 int64
	records, batches, parts int
	generations             int
	bySource                map[string]int
}

func newExpect() *expect {
	return &expect{st: state{cz: units{}, cc: units{}, hookUnits: units{}, hookIDs: map[string]string{}}, bySource: map[string]int{}}
}

// add counts batch b, stored as res. Appends go to every destination; a
// snapshot's records are appended at the webhook (append destinations
// have no replace) and, at the replace destinations, only the newest
// generation counts (final).
func (e *expect) add(b *messages.Batch, res *producer.Result) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.batches++
	e.parts += len(res.Parts)
	e.records += len(b.Records)
	e.bySource[b.Source] += len(b.Records)
	for i := range b.Records {
		r := &b.Records[i]
		cost := r.BilledCost.String()
		if b.Snapshot == nil {
			e.st.cz.add(czUnitKey(r), cost)
			e.st.cc.add(ccUnitKey(r), cost)
		}
		e.st.hookUnits.add(czUnitKey(r), cost)
		e.st.hookIDs[r.Tags["soak_id"]] = cost
	}
	if b.Snapshot != nil {
		e.generations++
		if b.Snapshot.Generation > e.snapGen {
			e.snapGen, e.snap = b.Snapshot.Generation, b.Records
		}
	}
}

// final is what every destination must hold once the fleet is quiet.
func (e *expect) final() state {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := state{cz: units{}, cc: units{}, hookUnits: units{}, hookIDs: map[string]string{}}
	for k, v := range e.st.cz {
		out.cz[k] = v
	}
	for k, v := range e.st.cc {
		out.cc[k] = v
	}
	for k, v := range e.st.hookUnits {
		out.hookUnits[k] = v
	}
	for k, v := range e.st.hookIDs {
		out.hookIDs[k] = v
	}
	for i := range e.snap {
		r := &e.snap[i]
		out.cz.add(czUnitKey(r), r.BilledCost.String())
		out.cc.add(ccUnitKey(r), r.BilledCost.String())
	}
	return out
}

// held reads what the three emulators hold now.
func held(sb *sandboxes) state {
	st := state{cz: units{}, cc: units{}, hookUnits: units{}, hookIDs: map[string]string{}}
	for h := range sb.cz.Hours(czConn) {
		k := h.UTC().Format(time.RFC3339) + " " + currencyOf(h)
		for _, r := range sb.cz.Rows(czConn, h) {
			if r["lineitem/id"] == cloudzero.PlaceholderLineItemID {
				continue
			}
			st.cz.add(k, r["cost/cost"])
		}
	}
	for date, dt := range sb.cc.Dates() {
		d, _ := time.Parse("2006-01-02", date)
		st.cc[date+" "+currencyOf(d)] = tally{N: dt.Records, Cost: dt.Cost}
	}
	dup := map[string]int{}
	for _, raw := range sb.hook.UniqueRecords() {
		var r struct {
			ChargePeriodStart time.Time
			BilledCost        string
			BillingCurrency   string
			Tags              map[string]any
		}
		if err := json.Unmarshal(raw, &r); err != nil {
			st.hookIDs[fmt.Sprintf("(undecodable: %v)", err)] = ""
			continue
		}
		id, _ := r.Tags["soak_id"].(string)
		if _, seen := st.hookIDs[id]; seen {
			dup[id]++
			st.hookIDs[fmt.Sprintf("%s (again, %d)", id, dup[id])] = r.BilledCost
		} else {
			st.hookIDs[id] = r.BilledCost
		}
		st.hookUnits.add(r.ChargePeriodStart.UTC().Truncate(time.Hour).Format(time.RFC3339)+" "+r.BillingCurrency, r.BilledCost)
	}
	return st
}

// diffAll says, unit by unit, where got differs from want.
func diffAll(want, got state) string {
	var b strings.Builder
	diffUnits(&b, "CloudZero", want.cz, got.cz)
	diffUnits(&b, "Cloud Cruiser", want.cc, got.cc)
	diffUnits(&b, "webhook", want.hookUnits, got.hookUnits)
	var missing, extra, wrong []string
	for id, c := range want.hookIDs {
		g, ok := got.hookIDs[id]
		switch {
		case !ok:
			missing = append(missing, id)
		case !sameDecimal(g, c):
			wrong = append(wrong, fmt.Sprintf("%s: cost %s, want %s", id, g, c))
		}
	}
	for id := range got.hookIDs {
		if _, ok := want.hookIDs[id]; !ok {
			extra = append(extra, id)
		}
	}
	for _, l := range []struct {
		what string
		ids  []string
	}{{"missing", missing}, {"not published or twice", extra}, {"wrong cost", wrong}} {
		if len(l.ids) > 0 {
			sort.Strings(l.ids)
			fmt.Fprintf(&b, "  webhook: %d records %s: %s\n", len(l.ids), l.what, strings.Join(l.ids[:min(5, len(l.ids))], ", "))
		}
	}
	return b.String()
}

func sameDecimal(a, b string) bool {
	x, err1 := decimal.NewFromString(a)
	y, err2 := decimal.NewFromString(b)
	return err1 == nil && err2 == nil && x.Equal(y)
}

func diffUnits(b *strings.Builder, dest string, want, got units) {
	var keys []string
	for k := range want {
		keys = append(keys, k)
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		w, g := want[k], got[k]
		if w.N != g.N || !w.Cost.Equal(g.Cost) {
			fmt.Fprintf(b, "  %s %s: holds %s, want %s\n", dest, k, g, w)
		}
	}
}

// checkViolations: no two requests at once per CloudZero connection or
// Cloud Cruiser date, no idempotency key reused for another body.
func checkViolations(t *testing.T, sb *sandboxes) {
	t.Helper()
	if c, k := sb.cz.Violations(); c != 0 || k != 0 {
		t.Errorf("CloudZero: %d concurrent requests on the connection, %d idempotency keys reused for another body", c, k)
	}
	if n := sb.cc.ConcurrencyViolations(); n != 0 {
		t.Errorf("Cloud Cruiser: %d concurrent uploads of one date", n)
	}
	if s := sb.hook.Stats(); s.KeyReuse != 0 {
		t.Errorf("webhook: %d idempotency keys reused for another body", s.KeyReuse)
	}
}

// deadLetters reads the DEAD stream whole.
func deadLetters(ctx context.Context, js jetstream.JetStream) ([]messages.DeadLetter, error) {
	st, err := js.Stream(ctx, messages.StreamDead)
	if err != nil {
		return nil, err
	}
	info, err := st.Info(ctx)
	if err != nil {
		return nil, err
	}
	var out []messages.DeadLetter
	for seq := info.State.FirstSeq; info.State.Msgs > 0 && seq <= info.State.LastSeq; seq++ {
		raw, err := st.GetMsg(ctx, seq)
		if err != nil {
			continue
		}
		var dl messages.DeadLetter
		if err := json.Unmarshal(raw.Data, &dl); err != nil {
			return nil, fmt.Errorf("DEAD seq %d: %w", seq, err)
		}
		out = append(out, dl)
	}
	return out, nil
}

// checkDead waits (at most 2 minutes) until DEAD holds, at each
// destination it must, a letter with a reason for every poison message and
// every hostile part, and checks that no well-behaved batch was
// dead-lettered. It returns a line for the figures.
func checkDead(t *testing.T, ctx context.Context, js jetstream.JetStream, h *hostileResult, pubs *publishers) string {
	t.Helper()
	if h == nil {
		t.Error("the hostile producer and the poison never ran: the soak was too short")
		return "none (too short)"
	}
	var problems []string
	var dls []messages.DeadLetter
	for deadline := time.Now().Add(2 * time.Minute); ; {
		var err error
		dls, err = deadLetters(ctx, js)
		if err != nil {
			t.Logf("reading DEAD: %v", err)
		}
		problems = problems[:0]
		for _, w := range h.wantDead {
			for _, d := range w.dests {
				found := false
				for _, dl := range dls {
					if dl.Destination == d && w.match(dl) && dl.Reason != "" {
						if w.reason != "" && !strings.HasPrefix(dl.Reason, w.reason) {
							problems = append(problems, fmt.Sprintf("%s at %s: reason %q, want %q...", w.what, d, clipS(dl.Reason, 200), w.reason))
						}
						found = true
						break
					}
				}
				if !found {
					problems = append(problems, fmt.Sprintf("%s: no dead letter at %s", w.what, d))
				}
			}
		}
		if len(problems) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(2 * time.Second)
	}
	for _, p := range problems {
		t.Error(p)
	}
	legit := 0
	for _, dl := range dls {
		if h.legit(dl) {
			legit++
			if legit <= 5 {
				t.Errorf("a well-behaved batch was dead-lettered at %s: batch %s part %d seq %d: %s", dl.Destination, dl.BatchID, dl.Part, dl.StreamSeq, clipS(dl.Reason, 300))
			}
		}
	}
	return fmt.Sprintf("%d letters in DEAD; %d expected (poison and hostile parts, per destination), %d missing or wrong; %d of well-behaved batches",
		len(dls), h.expected(), len(problems), legit)
}

func clipS(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
