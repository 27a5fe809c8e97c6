package cloudcruiser

import (
	"testing"
	"time"

	"github.com/usagefleet/usagefleet/internal/config"
	"github.com/usagefleet/usagefleet/workers"
)

const testToken = "cc-test-7f3e91c04b2a5d68"

func testDest(t testing.TB, s Settings) *Destination {
	t.Helper()
	if !s.Token.IsSet() {
		s.Token = config.NewSecret(testToken)
	}
	d, err := New("cc", s)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestUnitsWholeHourOffsets(t *testing.T) {
	for zone, cases := range map[string]map[string]string{
		"": {"2024-08-16T00:00:00Z": "d2024-08-16", "2024-08-16T23:00:00Z": "d2024-08-16"},
		"-07:00": {
			"2024-08-16T06:00:00Z": "d2024-08-15", // 23:00 local
			"2024-08-16T07:00:00Z": "d2024-08-16", // midnight local
			"2024-08-17T06:00:00Z": "d2024-08-16",
		},
		"+09": {"2024-08-15T15:00:00Z": "d2024-08-16", "2024-08-15T14:00:00Z": "d2024-08-15"},
	} {
		d := testDest(t, Settings{ZoneOffset: zone})
		for hour, key := range cases {
			h, _ := time.Parse(time.RFC3339, hour)
			us := d.Units(h)
			if len(us) != 1 || us[0].Key != key {
				t.Errorf("zone %q hour %s: units %+v, want only %s", zone, hour, us, key)
			}
			if u := us[0]; u.End.Sub(u.Start) != 24*time.Hour || !u.Contains(h) || !u.Contains(h.Add(time.Hour-time.Nanosecond)) || d.LeaseKey(u) != u.Key {
				t.Errorf("zone %q hour %s: unit %+v does not hold the hour", zone, hour, u)
			}
		}
	}
}

// With an offset that is not whole hours, the hour holding local midnight
// belongs to two dates; every instant of the hour is in exactly one of the
// units returned, the one its local date names.
func TestUnitsSplitHours(t *testing.T) {
	for _, c := range []struct {
		zone string
		secs int
	}{{"+05:30", 19800}, {"-07:01:30", -25290}, {"-09:30", -34200}, {"+12:45", 45900}, {"-07:00", -25200}, {"", 0}} {
		d := testDest(t, Settings{ZoneOffset: c.zone})
		loc := time.FixedZone("", c.secs)
		split := 0
		start := time.Date(2024, 2, 27, 0, 0, 0, 0, time.UTC)
		for h := start; h.Before(start.Add(72 * time.Hour)); h = h.Add(time.Hour) {
			us := d.Units(h)
			if len(us) == 2 {
				split++
				if !us[0].Start.Before(us[1].Start) {
					t.Fatalf("%s %s: units out of order %+v", c.zone, h, us)
				}
			}
			for _, off := range []time.Duration{0, time.Second, 29*time.Minute + 59*time.Second, 30 * time.Minute, 58*time.Minute + 29*time.Second, 58*time.Minute + 30*time.Second, time.Hour - time.Nanosecond} {
				at := h.Add(off)
				want := "d" + at.In(loc).Format("2006-01-02")
				n := 0
				for _, u := range us {
					if u.Contains(at) {
						n++
						if u.Key != want {
							t.Fatalf("%s: %s is in %s, want %s", c.zone, at, u.Key, want)
						}
						if got := u.Start.In(loc); got.Hour() != 0 || got.Minute() != 0 || got.Second() != 0 {
							t.Fatalf("%s: unit %s starts at %s local, not midnight", c.zone, u.Key, got)
						}
					}
				}
				if n != 1 {
					t.Fatalf("%s: %s is in %d of the units %+v", c.zone, at, n, us)
				}
			}
		}
		wantSplit := 3
		if c.secs%3600 == 0 {
			wantSplit = 0
		}
		if split != wantSplit {
			t.Errorf("%s: %d split hours in 3 days, want %d", c.zone, split, wantSplit)
		}
	}
	// Leap day and a year end.
	d := testDest(t, Settings{ZoneOffset: "+05:30"})
	us := d.Units(time.Date(2024, 2, 29, 18, 0, 0, 0, time.UTC))
	if len(us) != 2 || us[0].Key != "d2024-02-29" || us[1].Key != "d2024-03-01" {
		t.Fatalf("leap day: %+v", us)
	}
	us = d.Units(time.Date(2024, 12, 31, 18, 0, 0, 0, time.UTC))
	if len(us) != 2 || us[1].Key != "d2025-01-01" || !us[1].Start.Equal(time.Date(2024, 12, 31, 18, 30, 0, 0, time.UTC)) {
		t.Fatalf("year end: %+v", us)
	}
}

var _ workers.Destination = (*Destination)(nil)
