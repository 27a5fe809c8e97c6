package bench

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// The input bench generates a FOCUS file, publishes it as CSV, gzip and
// Parquet through usage-producer's code into an embedded server, and
// finds every part stored once with every row and the exact cost.
func TestRunInput(t *testing.T) {
	path := filepath.Join(t.TempDir(), "focus.csv")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if r, err := RunInput(ctx, InputOptions{GenerateFocus: 3000, OutFile: path}); err != nil || r != nil {
		t.Fatalf("generate: %v, %v", r, err)
	}
	for _, c := range []struct {
		name          string
		gzip, parquet bool
		format        string
		spawn         bool
	}{{"csv", false, false, "csv", false}, {"gzip", true, false, "csv+gzip", false}, {"parquet", false, true, "parquet", false}, {"csv into a spawned nats-server", false, false, "csv", true}} {
		t.Run(c.name, func(t *testing.T) {
			r, err := RunInput(ctx, InputOptions{Input: path, Gzip: c.gzip, Parquet: c.parquet, Window: 2, SpawnNATS: c.spawn})
			if err != nil {
				t.Fatal(err)
			}
			if !r.Exact || r.Rows != 3000 || r.Format != c.format || r.Parts < 720 {
				t.Fatalf("%+v", r)
			}
			if want := map[bool]string{false: "embedded", true: "spawned"}[c.spawn]; r.Server != want || (c.spawn && (r.ServerCPUPerMillion <= 0 || r.ServerCPUPerMillion > 1000)) {
				t.Fatalf("server %q (CPU %.2f s per million rows), want %s", r.Server, r.ServerCPUPerMillion, want)
			}
		})
	}
	if _, err := RunInput(ctx, InputOptions{Input: path, SpawnNATS: true, NATSURL: "nats://127.0.0.1:4222"}); err == nil || !strings.Contains(err.Error(), "give one") {
		t.Fatalf("--spawn-nats with --nats: %v", err)
	}
}
