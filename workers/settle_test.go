package workers

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/usagefleet/usagefleet/messages"
)

// settleUnit is the rule "a part is acked only after an upload that saw
// it": which parts an upload of unit "a" settles, given the position its
// rebuild covered, the units each part still waits for, and what the
// rebuild and the destination did with them.
func TestSettleUnit(t *testing.T) {
	type part struct {
		seq     uint64
		units   []string // still to upload before the upload
		records int
	}
	type want struct {
		acked   []uint64       // in stream order
		dirty   []uint64       // still in the unit after it
		records map[uint64]int // delivered, per part
		reject  map[uint64]int
		seen    map[uint64]bool
	}
	st := func(n int) *seqStat {
		s := &seqStat{records: n}
		for range n {
			s.cost.Add("USD", messages.DecimalFromInt(2))
		}
		return s
	}
	for _, tc := range []struct {
		name    string
		parts   []part
		covered uint64
		out     unitOutcome
		gone    bool // the parts were settled already (not pending)
		want    want
	}{
		{
			name:    "every part stored before the rebuild began is acked",
			parts:   []part{{1, []string{"a"}, 3}, {2, []string{"a"}, 4}},
			covered: 2,
			out:     unitOutcome{stats: map[uint64]*seqStat{1: st(3), 2: st(4)}, included: map[uint64]bool{1: true, 2: true}},
			want:    want{acked: []uint64{1, 2}, records: map[uint64]int{1: 3, 2: 4}, seen: map[uint64]bool{1: true, 2: true}},
		},
		{
			name:    "a part stored after the rebuild began waits for the next upload",
			parts:   []part{{5, []string{"a"}, 3}, {9, []string{"a"}, 4}},
			covered: 8,
			out:     unitOutcome{stats: map[uint64]*seqStat{5: st(3)}, included: map[uint64]bool{5: true}},
			want:    want{acked: []uint64{5}, dirty: []uint64{9}, records: map[uint64]int{5: 3, 9: 0}, seen: map[uint64]bool{5: true}},
		},
		{
			name:    "the covered position itself was seen",
			parts:   []part{{7, []string{"a"}, 1}},
			covered: 7,
			out:     unitOutcome{stats: map[uint64]*seqStat{7: st(1)}, included: map[uint64]bool{7: true}},
			want:    want{acked: []uint64{7}, records: map[uint64]int{7: 1}, seen: map[uint64]bool{7: true}},
		},
		{
			name:    "a part in two units waits for the other",
			parts:   []part{{3, []string{"a", "b"}, 6}},
			covered: 3,
			out:     unitOutcome{stats: map[uint64]*seqStat{3: st(2)}, included: map[uint64]bool{3: true}},
			want:    want{records: map[uint64]int{3: 2}, seen: map[uint64]bool{3: true}},
		},
		{
			name:    "a superseded snapshot part is acked unseen",
			parts:   []part{{4, []string{"a"}, 5}},
			covered: 4,
			out:     unitOutcome{},
			want:    want{acked: []uint64{4}, records: map[uint64]int{4: 0}},
		},
		{
			name:    "an undecodable part is acked as seen, with the reason",
			parts:   []part{{6, []string{"a"}, 5}},
			covered: 6,
			out:     unitOutcome{dead: map[uint64]string{6: "bad zstd"}},
			want:    want{acked: []uint64{6}, seen: map[uint64]bool{6: true}},
		},
		{
			name:    "records rejected one by one are not counted delivered",
			parts:   []part{{2, []string{"a"}, 5}},
			covered: 2,
			out: unitOutcome{stats: map[uint64]*seqStat{2: st(5)}, included: map[uint64]bool{2: true},
				rejects: map[uint64]*rejStat{2: {n: 2, cost: st(2).cost, reasons: reasons("bad tag", 2)}}},
			want: want{acked: []uint64{2}, records: map[uint64]int{2: 3}, reject: map[uint64]int{2: 2}, seen: map[uint64]bool{2: true}},
		},
		{
			name:    "a unit rejected whole rejects its records of the part",
			parts:   []part{{2, []string{"a"}, 5}},
			covered: 2,
			out:     unitOutcome{stats: map[uint64]*seqStat{2: st(5)}, included: map[uint64]bool{2: true}, rejected: true, reason: "400 bad unit"},
			want:    want{acked: []uint64{2}, records: map[uint64]int{2: 0}, reject: map[uint64]int{2: 5}, seen: map[uint64]bool{2: true}},
		},
		{
			name:    "a part already settled elsewhere only leaves the unit",
			parts:   []part{{1, []string{"a"}, 1}},
			covered: 9,
			out:     unitOutcome{},
			gone:    true,
			want:    want{},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			us := &unitState{unit: Unit{Key: "a"}, seqs: map[uint64]bool{}, attempt: 3}
			pending := map[uint64]*pendingMsg{}
			for _, p := range tc.parts {
				us.seqs[p.seq] = true
				if !tc.gone {
					pending[p.seq] = &pendingMsg{seq: p.seq, units: slices.Clone(p.units), meta: messages.PartMeta{Records: p.records}}
				}
			}
			now := time.Date(2024, 8, 16, 13, 0, 0, 0, time.UTC)
			done := settleUnit(us, pending, tc.covered, tc.out, now)
			var acked []uint64
			for _, pm := range done {
				acked = append(acked, pm.seq)
				if _, still := pending[pm.seq]; still {
					t.Errorf("part %d acked but still pending", pm.seq)
				}
			}
			if !slices.Equal(acked, tc.want.acked) {
				t.Errorf("acked %v, want %v", acked, tc.want.acked)
			}
			for _, p := range tc.parts {
				if pm := pending[p.seq]; pm != nil && p.seq <= tc.covered && slices.Contains(pm.units, "a") {
					t.Errorf("part %d still waits for unit a after its upload: %v", p.seq, pm.units)
				}
			}
			var dirty []uint64
			for seq := range us.seqs {
				dirty = append(dirty, seq)
			}
			slices.Sort(dirty)
			if !slices.Equal(dirty, tc.want.dirty) {
				t.Errorf("left in the unit %v, want %v", dirty, tc.want.dirty)
			}
			if len(dirty) > 0 && (us.flush.records == 0 || !us.flush.first.Equal(now)) {
				t.Errorf("a unit left dirty did not restart its flush delays: %+v", us.flush)
			}
			if us.attempt != 0 {
				t.Errorf("attempt %d after an upload, want 0", us.attempt)
			}
			for _, p := range tc.parts {
				pm := pending[p.seq]
				for _, d := range done {
					if d.seq == p.seq {
						pm = d
					}
				}
				if pm == nil {
					continue
				}
				if pm.records != tc.want.records[p.seq] || pm.reject != tc.want.reject[p.seq] || pm.seen != tc.want.seen[p.seq] {
					t.Errorf("part %d: records %d reject %d seen %v, want %d %d %v", p.seq, pm.records, pm.reject, pm.seen,
						tc.want.records[p.seq], tc.want.reject[p.seq], tc.want.seen[p.seq])
				}
				if n := sumCounts(pm.reasons.Map()); n != pm.reject {
					t.Errorf("part %d: reasons %v count %d records, rejected %d", p.seq, pm.reasons.Map(), n, pm.reject)
				}
				if tc.out.dead[p.seq] != "" && !slices.Contains(pm.reasons.First(), "undecodable: "+tc.out.dead[p.seq]) {
					t.Errorf("part %d: reasons %q lack the undecodable reason", p.seq, pm.reasons.First())
				}
			}
		})
	}
}

func reasons(r string, n int) messages.ReasonCounts {
	var c messages.ReasonCounts
	c.Add(r, n)
	return c
}

func sumCounts(m map[string]int) int {
	n := 0
	for _, c := range m {
		n += c
	}
	return n
}

// The cost of what a part delivered is its records' cost less the cost of
// the records rejected one by one, per currency: exact decimals.
func TestSettleUnitCost(t *testing.T) {
	var all, rej messages.CurrencySums
	for _, c := range []struct{ cur, cost string }{{"USD", "0.10"}, {"USD", "0.20"}, {"EUR", "0.30"}, {"EUR", "0.05"}} {
		d, err := messages.ParseDecimal(c.cost)
		if err != nil {
			t.Fatal(err)
		}
		all.Add(c.cur, d)
		if c.cost == "0.20" || c.cost == "0.05" {
			rej.Add(c.cur, d)
		}
	}
	var rs messages.ReasonCounts
	rs.Add("x", 1)
	rs.Add("y", 1)
	us := &unitState{unit: Unit{Key: "a"}, seqs: map[uint64]bool{1: true}}
	pending := map[uint64]*pendingMsg{1: {seq: 1, units: []string{"a"}}}
	done := settleUnit(us, pending, 1, unitOutcome{
		stats:   map[uint64]*seqStat{1: {records: 4, cost: all, warnings: 1}},
		rejects: map[uint64]*rejStat{1: {n: 2, cost: rej, reasons: rs}},
	}, time.Now())
	if len(done) != 1 {
		t.Fatalf("%d parts settled", len(done))
	}
	got := done[0].cost.Decimals()
	if len(got) != 2 || !got["USD"].Equal(messages.MustDecimal("0.10")) || !got["EUR"].Equal(messages.MustDecimal("0.30")) {
		t.Fatalf("delivered cost %v, want 0.10 USD and 0.30 EUR", got)
	}
	if m := done[0].reasons.Map(); len(m) != 2 || m["x"] != 1 || m["y"] != 1 || done[0].reject != 2 || done[0].warns != 1 {
		t.Fatalf("reasons %v, rejected %d, warnings %d; want x and y once each, 2, 1", m, done[0].reject, done[0].warns)
	}
}

// putCovered stores the covered position of every settled unit, and of no
// other, however many there are (more than it puts at once).
func TestPutCoveredStoresEverySettledUnit(t *testing.T) {
	r := newRig(t)
	p := r.pool(t, &hourDest{name: "cz"}, Options{})
	ctx := context.Background()
	j := &job{covered: 4242}
	settle := map[string]bool{}
	for i := range 3*coveredPuts + 5 {
		u := hourUnit(testHour.Add(time.Duration(i) * time.Hour))
		j.units = append(j.units, u)
		if i%7 != 3 {
			settle[u.Key] = true
		}
	}
	p.putCovered(ctx, j, settle)
	for _, u := range j.units {
		e, err := p.units.Get(ctx, "cz."+u.Key)
		switch {
		case settle[u.Key] && err != nil:
			t.Errorf("%s: %v", u.Key, err)
		case settle[u.Key] && string(e.Value()) != "4242":
			t.Errorf("%s: covered %q, want 4242", u.Key, e.Value())
		case !settle[u.Key] && !errors.Is(err, jetstream.ErrKeyNotFound):
			t.Errorf("%s: not settled, yet stored (err %v)", u.Key, err)
		}
	}
}
