package messages

import (
	"math/rand/v2"
	"testing"
	"time"
)

// AppendDateTime writes what the general formatter writes, in any location,
// and refuses years it cannot write in four digits.
func TestAppendDateTimeMatchesFormat(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	locs := []*time.Location{time.UTC, time.FixedZone("a", -7*3600-90), time.FixedZone("b", 14*3600)}
	for range 3000 {
		tt := time.Unix(rng.Int64N(253402300799+62135596800)-62135596800, rng.Int64N(1e9)).In(locs[rng.IntN(len(locs))])
		got, ok := AppendDateTime([]byte("x"), tt)
		if y := tt.Year(); y < 0 || y > 9999 {
			if ok || string(got) != "x" {
				t.Fatalf("%v: year %d written", tt, y)
			}
			continue
		}
		if want := "x" + tt.Format("2006-01-02T15:04:05"); !ok || string(got) != want {
			t.Fatalf("%v: got %s, want %s", tt, got, want)
		}
	}
	if _, ok := AppendDateTime(nil, time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)); ok {
		t.Fatal("year 10000 written")
	}
}
