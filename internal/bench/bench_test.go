package bench

import (
	"bytes"
	"context"
	"os"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestMain lets the test binary be the bench's worker child too.
func TestMain(m *testing.M) {
	MaybeChild()
	os.Exit(m.Run())
}

// The bench tests run a few thousand records end to end: they check that
// the tooling works and counts exactly, never how fast anything is.

func TestBenchAllModeIsExact(t *testing.T) {
	for _, tc := range []struct{ dest, sandbox string }{{"cloudzero", "counting"}, {"webhook", "counting"}, {"webhook", "strict"}} {
		t.Run(tc.dest+"/"+tc.sandbox, func(t *testing.T) {
			var out bytes.Buffer
			r, err := Run(context.Background(), Options{Records: 2500, BatchSize: 500, Hours: 3, Dest: tc.dest, Strict: tc.sandbox == "strict", Out: &out})
			if err != nil {
				t.Fatalf("%v\n%s", err, out.String())
			}
			checkRun(t, r, 2500, 5)
			if tc.dest == "webhook" && tc.sandbox == "counting" && !strings.Contains(r.Detail, " USD") {
				t.Errorf("the counting receiver's totals are not per currency: %s", r.Detail)
			}
			for _, want := range []string{"published 2500 records", "raw fetch-and-ack of 5 messages", "drained 2500 records", "worker: ", "exact: true"} {
				if !strings.Contains(out.String(), want) {
					t.Errorf("the report lacks %q:\n%s", want, out.String())
				}
			}
		})
	}
}

// checkRun holds one run's result to what every all-mode run must have.
func checkRun(t *testing.T, r *Result, records, messages int) {
	t.Helper()
	if r.Records != records || r.Messages != messages {
		t.Errorf("%d records in %d messages, want %d in %d", r.Records, r.Messages, records, messages)
	}
	if r.Exact == nil || !*r.Exact {
		t.Errorf("drain not exact: %s", r.Detail)
	}
	if r.RawExact == nil || !*r.RawExact {
		t.Error("raw fetch-and-ack not exact")
	}
	for name, v := range map[string]float64{
		"publish rate": r.PublishRate, "raw rate": r.RawRate, "drain rate": r.DrainRate, "drain % of raw": r.DrainOfRaw,
		"worker CPU per million": r.CPUPerMillion, "worker peak RSS": r.WorkerPeakRSSMB, "raw peak RSS": r.RawPeakRSSMB,
		"raw MB/s": r.RawMBps, "drain MB/s": r.DrainMBps,
	} {
		if !(v > 0) {
			t.Errorf("%s: %v, want a figure", name, v)
		}
	}
}

// TestBenchSpawnedServerDelayAndRuns: nats-server in its own process (built
// from go.mod), the worker behind a 1 ms delay proxy, two runs and their
// medians; then a drain-only and a raw-only bench against the same kind
// of server reached by --nats.
func TestBenchSpawnedServerDelayAndRuns(t *testing.T) {
	if testing.Short() {
		t.Skip("builds nats-server")
	}
	var out bytes.Buffer
	r, err := Run(context.Background(), Options{Records: 3000, BatchSize: 1000, Hours: 3, SpawnNATS: true, Delay: time.Millisecond, Runs: 2, Out: &out})
	if err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	if len(r.Runs) != 2 || r.Run != 0 || r.Server != "spawned" {
		t.Fatalf("%d runs (run %d) on %q; want the medians of 2 on a spawned server", len(r.Runs), r.Run, r.Server)
	}
	for _, run := range r.Runs {
		checkRun(t, run, 3000, 3)
		if run.ServerCPUPerMillion <= 0 {
			t.Errorf("run %d: no nats-server CPU figure", run.Run)
		}
	}
	checkRun(t, r, 3000, 3)
	// The link goes through the proxy: a round trip holds both delays.
	if r.LinkRTTMS < 2 {
		t.Errorf("a round trip over the worker's link took %.2f ms, want at least 2 (1 ms each way)", r.LinkRTTMS)
	}
	for _, want := range []string{"nats-server in its own process", "worker link: through a delay proxy", "run 1: ", "run 2: ", "median of 2 runs: "} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("the report lacks %q:\n%s", want, out.String())
		}
	}
}

// TestBenchOnAServerOfTheUser: --mode publish, then raw and drain of that
// backlog, as a user does against their own server (a spawned one here).
func TestBenchOnAServerOfTheUser(t *testing.T) {
	if testing.Short() {
		t.Skip("builds nats-server")
	}
	s, err := spawnNATS(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	o := Options{Records: 2000, BatchSize: 1000, Hours: 2, NATSURL: s.URL, Out: &bytes.Buffer{}}
	for _, mode := range []string{"raw", "publish", "raw", "drain"} {
		o.Mode = mode
		r, err := Run(context.Background(), o)
		if mode == "raw" && r == nil {
			// Before the publish there is no backlog, and the bench says so.
			if err == nil || !strings.Contains(err.Error(), "no backlog") {
				t.Fatalf("raw before any publish: %v, want a no-backlog error", err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("--mode %s: %v", mode, err)
		}
		switch mode {
		case "publish":
			if r.PublishRate <= 0 || r.RawRate != 0 || r.DrainRate != 0 {
				t.Errorf("publish: %+v", r)
			}
		case "raw":
			if r.RawRate <= 0 || r.RawExact == nil || !*r.RawExact || r.PublishRate != 0 || r.DrainRate != 0 {
				t.Errorf("raw: %+v", r)
			}
		case "drain":
			if r.DrainRate <= 0 || r.Exact == nil || !*r.Exact || r.PublishRate != 0 || r.RawRate != 0 {
				t.Errorf("drain: %+v", r)
			}
		}
	}
}

func TestBenchRefusesBadOptions(t *testing.T) {
	for _, tc := range []struct {
		o    Options
		want string
	}{
		{Options{Dest: "stripe"}, `--dest "stripe": want cloudzero or webhook`},
		{Options{Mode: "soak"}, `--mode "soak": want all, publish, raw or drain`},
		{Options{SpawnNATS: true, NATSURL: "nats://127.0.0.1:4222"}, "--spawn-nats and --nats: give one"},
		{Options{NATSServer: "/bin/nats-server"}, "--nats-server is the binary --spawn-nats runs"},
		{Options{Delay: -time.Millisecond}, "--delay -1ms"},
	} {
		_, err := Run(context.Background(), tc.o)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want %q", tc.o, err, tc.want)
		}
	}
}

// TestAChildDoesNotBench: a process started as a worker child that reaches
// Run (its main forgot MaybeChild) refuses instead of starting children of
// its own.
func TestAChildDoesNotBench(t *testing.T) {
	t.Setenv(childEnv, "1")
	if _, err := Run(context.Background(), Options{Records: 10}); err == nil || !strings.Contains(err.Error(), "call bench.MaybeChild first") {
		t.Fatalf("Run in a child: %v", err)
	}
}

func TestRedactURL(t *testing.T) {
	for in, want := range map[string]string{
		"nats://127.0.0.1:4222":                           "nats://127.0.0.1:4222",
		"nats://bench:s3cret@127.0.0.1:4222":              "nats://127.0.0.1:4222",
		"nats://tok3n@a:4222, nats://u:p@b:4222":          "nats://a:4222,nats://b:4222",
		"tls://user:pa%20ss@nats.example.internal:4443/x": "tls://nats.example.internal:4443/x",
	} {
		if got := redactURL(in); got != want || strings.Contains(got, "s3cret") {
			t.Errorf("redactURL(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestSpawnedServerDoesNotInheritTheWorkersMemoryLimit(t *testing.T) {
	got := serverEnv([]string{"PATH=/bin", "GOMEMLIMIT=100MiB", "GOGC=50", "GOMAXPROCS=2", "HOME=/root"})
	want := []string{"PATH=/bin", "GOMAXPROCS=2", "HOME=/root"}
	if !slices.Equal(got, want) {
		t.Fatalf("serverEnv = %q, want %q", got, want)
	}
}
