package collect

import (
	"testing"
	"time"

	"github.com/usagefleet/usagefleet/messages"
)

func d(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		t, err = time.Parse(time.DateOnly, s)
		if err != nil {
			panic(err)
		}
	}
	return t.UTC()
}

func labels(ps []messages.Period) []string {
	var out []string
	for _, p := range ps {
		out = append(out, p.Start.Format("2006-01-02")+"/"+p.End.Format("01-02"))
	}
	return out
}

func TestWindow(t *testing.T) {
	now := d("2024-08-20T12:30:00Z")
	cases := []struct {
		name    string
		u       Unit
		n       int
		lag     time.Duration
		lastEnd time.Time
		catchUp int
		first   string
		count   int
	}{
		{"days up to today", Day, 3, 0, time.Time{}, 31, "2024-08-18", 3},
		{"lag moves the window back", Day, 3, 36 * time.Hour, time.Time{}, 31, "2024-08-17", 3},
		{"months", Month, 2, 0, time.Time{}, 3, "2024-07-01", 2},
		{"a run that overlaps the last is not widened", Day, 3, 0, d("2024-08-20"), 31, "2024-08-18", 3},
		{"a gap is caught up", Day, 3, 0, d("2024-08-10"), 31, "2024-08-10", 11},
		{"by at most catch_up periods", Day, 3, 0, d("2024-06-01"), 5, "2024-08-16", 5},
		{"month gap", Month, 1, 0, d("2024-05-01"), 3, "2024-06-01", 3},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ps := Window(now, c.u, c.n, c.lag, c.lastEnd, c.catchUp)
			if len(ps) != c.count || !ps[0].Start.Equal(d(c.first)) {
				t.Fatalf("got %v; want %d periods from %s", labels(ps), c.count, c.first)
			}
			for i, p := range ps {
				if p.Start.Truncate(time.Hour) != p.Start || (i > 0 && !ps[i-1].End.Equal(p.Start)) {
					t.Fatalf("periods not contiguous whole hours: %v", labels(ps))
				}
			}
			if last := ps[len(ps)-1]; !last.Contains(now.Add(-c.lag)) {
				t.Fatalf("the last period %v does not hold now-lag", last)
			}
		})
	}
}

func days(from string, n int) []messages.Period {
	var out []messages.Period
	s := d(from)
	for i := 0; i < n; i++ {
		out = append(out, messages.Period{Start: s.AddDate(0, 0, i), End: s.AddDate(0, 0, i+1)})
	}
	return out
}

func TestPlan(t *testing.T) {
	day := 24 * time.Hour
	t.Run("over 95 days splits at a period boundary", func(t *testing.T) {
		rs := Plan(days("2024-01-01", 120), Limits{MaxRange: 95 * day, Align: time.Hour, RowSpan: Day})
		if len(rs) != 2 || rs[0].dur() != 95*day || rs[1].dur() != 25*day || !rs[0].End.Equal(rs[1].Start) {
			t.Fatalf("%v", rs)
		}
	})
	t.Run("summaries take one report per period", func(t *testing.T) {
		if rs := Plan(days("2024-01-01", 3), Limits{Align: day}); len(rs) != 3 {
			t.Fatalf("%v", rs)
		}
	})
	t.Run("gaps are not bridged", func(t *testing.T) {
		ps := append(days("2024-01-01", 2), days("2024-01-05", 2)...)
		rs := Plan(ps, Limits{Align: day, RowSpan: Day})
		if len(rs) != 2 || !rs[0].End.Equal(d("2024-01-03")) || !rs[1].Start.Equal(d("2024-01-05")) {
			t.Fatalf("%v", rs)
		}
	})
	t.Run("a period longer than the limit is cut", func(t *testing.T) {
		month := []messages.Period{{Start: d("2024-01-01"), End: d("2024-02-01")}}
		rs := Plan(month, Limits{MaxRange: 10 * day, Align: day, RowSpan: Day})
		if len(rs) != 4 || !rs[3].End.Equal(d("2024-02-01")) || rs[3].dur() != day {
			t.Fatalf("%v", rs)
		}
	})
}

func TestSplit(t *testing.T) {
	lim := Limits{Align: time.Hour, RowSpan: Day}
	ps := days("2024-01-01", 3)
	a, b, ok := Split(Range{d("2024-01-01"), d("2024-01-04")}, ps, lim)
	if !ok || !a.End.Equal(d("2024-01-02")) && !a.End.Equal(d("2024-01-03")) || !a.End.Equal(b.Start) {
		t.Fatalf("%v %v %v", a, b, ok)
	}
	a, b, ok = Split(Range{d("2024-01-01"), d("2024-01-02")}, ps, lim)
	if !ok || !a.End.Equal(d("2024-01-01T12:00:00Z")) || !b.End.Equal(d("2024-01-02")) {
		t.Fatalf("%v %v %v", a, b, ok)
	}
	if _, _, ok := Split(Range{d("2024-01-01"), d("2024-01-01T01:00:00Z")}, ps, lim); ok {
		t.Fatal("an hour was split")
	}
}

func TestClamp(t *testing.T) {
	r := Range{d("2024-08-20"), d("2024-08-21")}
	if c := Clamp(r, d("2024-08-20T10:30:00Z"), time.Hour); !c.End.Equal(d("2024-08-20T11:00:00Z")) {
		t.Fatalf("%v", c)
	}
	if c := Clamp(r, d("2024-08-20T10:30:00Z"), 24*time.Hour); !c.End.Equal(d("2024-08-21")) {
		t.Fatalf("%v", c)
	}
	if c := Clamp(r, d("2024-08-25T10:30:00Z"), time.Hour); c != r {
		t.Fatalf("%v", c)
	}
}

func TestBatchIDIsDeterministicAndValid(t *testing.T) {
	p := messages.Period{Start: d("2024-08-16"), End: d("2024-08-17")}
	a := BatchID("acronis-eu", "acronis", "tenant", p, 42)
	if a != BatchID("acronis-eu", "acronis", "tenant", p, 42) || a == BatchID("acronis-eu", "acronis", "tenant", p, 43) ||
		a == BatchID("acronis-eu", "acronis", "other", p, 42) {
		t.Fatal("not a function of its inputs")
	}
	b := messages.Batch{ID: BatchID(string(make64()), "acronis", "t", p, 1<<62), Feed: "f", Source: "s", Snapshot: &messages.Snapshot{Period: p, Generation: 1}}
	if err := b.Validate(); err != nil {
		t.Fatalf("%s: %v", b.ID, err)
	}
}

func make64() []byte {
	b := make([]byte, 64)
	for i := range b {
		b[i] = 'x'
	}
	return b
}
