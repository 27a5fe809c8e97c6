package workers

import (
	"strings"
	"testing"
	"time"

	"github.com/usagefleet/usagefleet/internal/config"
)

// stall_timeout and its former name in settings, http_timeout: the old
// name still sets the stall timeout, with a notice naming its key; both
// at once are refused.
func TestStallTimeout(t *testing.T) {
	const key = "destinations[0](cc).settings"
	tests := []struct {
		name       string
		stall, old config.Duration
		want       time.Duration
		notice     string // a substring; "" wants none
		errKey     string // "" wants no error
	}{
		{"neither", 0, 0, 30 * time.Second, "", ""},
		{"stall_timeout", config.Duration(time.Minute), 0, time.Minute, "", ""},
		{"old name", 0, config.Duration(2 * time.Minute), 2 * time.Minute, key + ".http_timeout is deprecated", ""},
		{"both", config.Duration(time.Minute), config.Duration(time.Minute), 0, "", key + ".http_timeout"},
		{"negative", config.Duration(-time.Second), 0, 0, "", key + ".stall_timeout"},
		{"negative old", 0, config.Duration(-time.Second), 0, "", key + ".http_timeout"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d, name, notices, err := StallTimeout(tc.stall, tc.old, 30*time.Second, key)
			if tc.errKey != "" {
				if ce, ok := err.(*config.Error); !ok || ce.Key != tc.errKey {
					t.Fatalf("err %v, want a config error naming %s", err, tc.errKey)
				}
				return
			}
			if err != nil || d != tc.want {
				t.Fatalf("got %s, %v; want %s", d, err, tc.want)
			}
			if len(notices) > 1 {
				t.Fatalf("notices %q", notices)
			}
			notice := strings.Join(notices, "")
			if wantName := map[bool]string{true: "stall_timeout", false: "http_timeout"}[tc.notice == ""]; name != wantName {
				t.Fatalf("key name %q, want %q", name, wantName)
			}
			if (tc.notice == "") != (notice == "") || !strings.Contains(notice, tc.notice) {
				t.Fatalf("notice %q, want one containing %q", notice, tc.notice)
			}
			if notice != "" && !strings.Contains(notice, key+".stall_timeout") {
				t.Fatalf("notice %q does not name the key to use", notice)
			}
		})
	}
}
