package chunk

import (
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/usagefleet/usagefleet/workers"
)

// pack runs sizes through a Packer as the webhook does (envelope "[]", a
// comma between items) and returns the bodies, as item ranges, and the
// items rejected as too large alone, in the order the Packer said so.
func pack(limit int, sizes []int, groups map[int]bool) (bodies []Range, rejected []int) {
	p := New(limit, 2, 1)
	emit := func(r Range, tooLarge bool) {
		switch {
		case tooLarge:
			rejected = append(rejected, r.From)
		case r.Len() > 0:
			bodies = append(bodies, r)
		}
	}
	for i, s := range sizes {
		if groups[i] {
			p.Group()
		}
		for full := p.Add(s); full; full = p.Full() {
			emit(p.Flush())
		}
	}
	emit(p.Flush())
	return bodies, rejected
}

func bodySize(sizes []int, r Range) int {
	n := 2
	for _, s := range sizes[r.From:r.To] {
		n += s
	}
	return n + r.Len() - 1
}

func TestPacker(t *testing.T) {
	for _, tc := range []struct {
		name     string
		limit    int
		sizes    []int
		groups   map[int]bool // a group starts at these items
		bodies   [][2]int
		rejected []int
	}{
		{name: "all fit", limit: 100, sizes: []int{10, 10, 10}, bodies: [][2]int{{0, 3}}},
		{name: "exactly the limit", limit: 2 + 10 + 1 + 10, sizes: []int{10, 10, 10}, bodies: [][2]int{{0, 2}, {2, 3}}},
		{name: "one byte over", limit: 2 + 10 + 1 + 10 - 1, sizes: []int{10, 10, 10}, bodies: [][2]int{{0, 1}, {1, 2}, {2, 3}}},
		{name: "lone oversized record rejected", limit: 30, sizes: []int{10, 40, 10}, bodies: [][2]int{{0, 1}, {2, 3}}, rejected: []int{1}},
		{name: "first oversized", limit: 30, sizes: []int{29, 5}, bodies: [][2]int{{1, 2}}, rejected: []int{0}},
		{name: "every one oversized", limit: 30, sizes: []int{29, 31, 100}, rejected: []int{0, 1, 2}},
		{name: "oversized last", limit: 30, sizes: []int{5, 5, 50}, bodies: [][2]int{{0, 2}}, rejected: []int{2}},
		{name: "nothing", limit: 30},
		{name: "whole groups go first", limit: 2 + 4*10 + 3, sizes: []int{10, 10, 10, 10, 10, 10},
			groups: map[int]bool{2: true}, bodies: [][2]int{{0, 2}, {2, 6}}},
		{name: "group over the limit is split", limit: 2 + 2*10 + 1, sizes: []int{10, 10, 10, 10, 10},
			groups: map[int]bool{1: true}, bodies: [][2]int{{0, 1}, {1, 3}, {3, 5}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bodies, rejected := pack(tc.limit, tc.sizes, tc.groups)
			var got [][2]int
			for _, b := range bodies {
				got = append(got, [2]int{b.From, b.To})
				if b.Bytes != bodySize(tc.sizes, b) {
					t.Errorf("body %v: Bytes %d, want %d", b, b.Bytes, bodySize(tc.sizes, b))
				}
				if b.Bytes > tc.limit {
					t.Errorf("body %v is %d bytes, over the limit %d", b, b.Bytes, tc.limit)
				}
			}
			if !slices.Equal(got, tc.bodies) {
				t.Errorf("bodies %v, want %v", got, tc.bodies)
			}
			if !slices.Equal(rejected, tc.rejected) {
				t.Errorf("rejected %v, want %v", rejected, tc.rejected)
			}
		})
	}
}

// TestPackerEveryItemOnce packs many sizes against many limits: every
// body is under the limit, items come out in order, each exactly once
// (sent or rejected), and only items too large alone are rejected.
func TestPackerEveryItemOnce(t *testing.T) {
	sizes := make([]int, 500)
	for i := range sizes {
		sizes[i] = 1 + (i*7919)%97
	}
	for _, limit := range []int{3, 20, 50, 99, 100, 256, 1000, 1 << 20} {
		t.Run(fmt.Sprint(limit), func(t *testing.T) {
			groups := map[int]bool{}
			for i := 0; i < len(sizes); i += 13 {
				groups[i] = true
			}
			bodies, rejected := pack(limit, sizes, groups)
			next, ri, bi := 0, 0, 0
			for next < len(sizes) {
				switch {
				case ri < len(rejected) && rejected[ri] == next:
					if sizes[next]+2 <= limit {
						t.Fatalf("item %d (%d bytes) rejected, but fits alone in %d", next, sizes[next], limit)
					}
					ri++
					next++
				case bi < len(bodies) && bodies[bi].From == next:
					if b := bodySize(sizes, bodies[bi]); b > limit {
						t.Fatalf("body %v is %d bytes, over %d", bodies[bi], b, limit)
					}
					next = bodies[bi].To
					bi++
				default:
					t.Fatalf("item %d is in no body and was not rejected", next)
				}
			}
			if ri != len(rejected) || bi != len(bodies) {
				t.Fatalf("items handed back twice or out of order: rejected %v bodies %v", rejected, bodies)
			}
		})
	}
}

func TestPackerTruncate(t *testing.T) {
	p := New(100, 2, 1)
	for range 4 {
		p.Add(10)
	}
	p.Group()
	p.Add(10)
	p.Add(10)
	p.Truncate(3) // drops items 3..5 and the group mark with them
	if p.Pending() != 3 || p.Grouped() != 3 {
		t.Fatalf("pending %d grouped %d, want 3 3", p.Pending(), p.Grouped())
	}
	p.Add(10) // item 3 again
	r, tooLarge := p.Flush()
	if tooLarge || r.From != 0 || r.To != 4 || r.Bytes != 2+4*10+3 {
		t.Fatalf("Flush = %+v %v, want items [0,4) of 45 bytes", r, tooLarge)
	}
}

// receiver answers 413 to any body of more than max items and records the
// items it accepted, in order.
type receiver struct {
	max      int
	accepted []int
	requests int
}

func (rc *receiver) send(r Range) error {
	rc.requests++
	if r.Len() > rc.max {
		return &workers.Error{Class: workers.ClassTooLarge, Status: 413, Message: "too large"}
	}
	for i := r.From; i < r.To; i++ {
		rc.accepted = append(rc.accepted, i)
	}
	return nil
}

func TestBisect(t *testing.T) {
	for _, tc := range []struct {
		name     string
		r        Range
		max      int // the receiver's limit in items; 0 refuses every item alone
		split    func(Range) int
		accepted []int
		alone    []int
	}{
		{name: "passes whole", r: Range{0, 8, 0}, max: 8, accepted: []int{0, 1, 2, 3, 4, 5, 6, 7}},
		{name: "halves", r: Range{0, 8, 0}, max: 4, accepted: []int{0, 1, 2, 3, 4, 5, 6, 7}},
		{name: "down to single records", r: Range{3, 10, 0}, max: 1, accepted: []int{3, 4, 5, 6, 7, 8, 9}},
		{name: "every record refused alone", r: Range{0, 5, 0}, max: 0, alone: []int{0, 1, 2, 3, 4}},
		{name: "odd length", r: Range{0, 7, 0}, max: 2, accepted: []int{0, 1, 2, 3, 4, 5, 6}},
		{name: "caller's cut", r: Range{0, 6, 0}, max: 5, split: func(r Range) int { return r.To - 1 },
			accepted: []int{0, 1, 2, 3, 4, 5}},
		{name: "empty", r: Range{4, 4, 0}, max: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rc := &receiver{max: tc.max}
			var alone []int
			err := Bisect(tc.r, rc.send, tc.split, func(i int, we *workers.Error) error {
				if we.Status != 413 {
					t.Errorf("alone(%d) got %v", i, we)
				}
				alone = append(alone, i)
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(rc.accepted, tc.accepted) {
				t.Errorf("accepted %v, want %v (in order)", rc.accepted, tc.accepted)
			}
			if !slices.Equal(alone, tc.alone) {
				t.Errorf("refused alone %v, want %v", alone, tc.alone)
			}
		})
	}
}

func TestBisectStopsOnOtherErrors(t *testing.T) {
	boom := errors.New("boom")
	for _, tc := range []struct {
		name  string
		send  func(Range) error
		alone func(int, *workers.Error) error
		calls int
	}{
		{name: "transient on first half", calls: 2, send: func(r Range) error {
			if r.Len() > 1 {
				return &workers.Error{Class: workers.ClassTooLarge, Status: 413}
			}
			return boom
		}},
		{name: "reject is not split", calls: 1, send: func(Range) error {
			return &workers.Error{Class: workers.ClassReject, Status: 400}
		}},
		{name: "alone's error", calls: 1, send: func(Range) error {
			return &workers.Error{Class: workers.ClassTooLarge, Status: 413}
		}, alone: func(int, *workers.Error) error { return boom }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			calls := 0
			send := func(r Range) error { calls++; return tc.send(r) }
			r := Range{0, 2, 0}
			if tc.alone != nil {
				r = Range{0, 1, 0}
			}
			err := Bisect(r, send, nil, tc.alone)
			if err == nil {
				t.Fatal("Bisect returned nil")
			}
			if calls != tc.calls {
				t.Errorf("%d sends, want %d", calls, tc.calls)
			}
		})
	}
}

// A Packer reset after Release (on memory another released Packer gave
// back) packs as a new one does.
func TestPackerReleaseReset(t *testing.T) {
	sizes := []int{10, 10, 10, 40, 10}
	want, wantRej := pack(30, sizes, nil)
	p := New(30, 2, 1)
	for range 100 {
		p.Add(7)
	}
	p.Release()
	p.Reset(30, 2, 1)
	var got []Range
	var rej []int
	for _, s := range sizes {
		for full := p.Add(s); full; full = p.Full() {
			if r, tooLarge := p.Flush(); tooLarge {
				rej = append(rej, r.From)
			} else {
				got = append(got, r)
			}
		}
	}
	got = append(got, p.FlushAll())
	if !slices.Equal(got, want) || !slices.Equal(rej, wantRej) {
		t.Fatalf("after Release and Reset: bodies %v rejected %v, want %v %v", got, rej, want, wantRej)
	}
}
