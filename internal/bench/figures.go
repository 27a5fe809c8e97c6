package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/pprof"
	"sort"
	"strconv"
	"strings"
	"syscall"
)

// profilePath is FILE with one run, FILE.runN with several.
func profilePath(path string, run, runs int) string {
	if path == "" || runs <= 1 {
		return path
	}
	return path + ".run" + strconv.Itoa(run)
}

// printRun says one run's figures (not with --json).
func printRun(o Options, r *Result) {
	p := fmt.Sprintf("run %d: ", r.Run)
	if o.Runs == 1 {
		p = ""
	}
	if r.PublishRate > 0 {
		o.say("%spublished %d records in %d messages in %.2fs: %.0f records/s; %.2f CPU-s per million (the bench process: producer, and the server when embedded)", p, r.Records, r.Messages, r.PublishSeconds, r.PublishRate, r.PublishCPUPerMil)
	}
	if r.RawRate > 0 {
		o.say("%sraw fetch-and-ack of %d messages: %.0f records/s, %.1f MB/s of messages in %.2fs; consumer %.2f CPU-s per million, peak RSS %.0f MB; exact: %v", p, r.Messages, r.RawRate, r.RawMBps, r.RawSeconds, r.RawCPUPerMillion, r.RawPeakRSSMB, *r.RawExact)
	}
	if r.DrainRate > 0 {
		ofRaw := ""
		if r.DrainOfRaw > 0 {
			ofRaw = fmt.Sprintf(" (%.0f%% of raw)", r.DrainOfRaw)
		}
		into := fmt.Sprintf("the %s %s sandbox", r.Sandbox, r.Destination)
		if r.Destination == "webhook" && r.Sandbox == "counting" {
			into = "the counting webhook receiver"
		}
		o.say("%sdrained %d records into %s in %.2fs: %.0f records/s%s, %.1f MB/s of bodies in %d requests", p, r.Records, into, r.DrainSeconds, r.DrainRate, ofRaw, r.DrainMBps, r.Requests)
		server := ""
		if r.ServerCPUPerMillion > 0 {
			server = fmt.Sprintf(", nats-server %.2f", r.ServerCPUPerMillion)
		}
		o.say("%s  worker: %.2f CPU-s per million records, peak RSS %.0f MB; others: bench process %.2f%s CPU-s per million", p, r.CPUPerMillion, r.WorkerPeakRSSMB, r.BenchCPUPerMillion, server)
		o.say("%s  jobs: %d (%d failed tries); every message held after %.2fs, first upload after %.2fs", p, r.Jobs, r.JobFailures, r.CaughtUp, r.FirstUpload)
		o.say("%s  exact: %v (%s)", p, *r.Exact, r.Detail)
	}
}

// median is the runs' medians, field by field; exact only if every run was.
func median(runs []*Result) *Result {
	m := *runs[0]
	m.Run, m.Runs = 0, runs
	f := func(get func(r *Result) *float64) {
		var v []float64
		for _, r := range runs {
			v = append(v, *get(r))
		}
		*get(&m) = medianOf(v)
	}
	for _, get := range []func(r *Result) *float64{
		func(r *Result) *float64 { return &r.PublishSeconds },
		func(r *Result) *float64 { return &r.PublishRate },
		func(r *Result) *float64 { return &r.PublishCPUPerMil },
		func(r *Result) *float64 { return &r.RawSeconds },
		func(r *Result) *float64 { return &r.RawRate },
		func(r *Result) *float64 { return &r.RawMBps },
		func(r *Result) *float64 { return &r.RawCPUPerMillion },
		func(r *Result) *float64 { return &r.RawPeakRSSMB },
		func(r *Result) *float64 { return &r.DrainSeconds },
		func(r *Result) *float64 { return &r.DrainRate },
		func(r *Result) *float64 { return &r.DrainOfRaw },
		func(r *Result) *float64 { return &r.DrainMBps },
		func(r *Result) *float64 { return &r.CaughtUp },
		func(r *Result) *float64 { return &r.FirstUpload },
		func(r *Result) *float64 { return &r.CPUPerMillion },
		func(r *Result) *float64 { return &r.WorkerPeakRSSMB },
		func(r *Result) *float64 { return &r.BenchCPUPerMillion },
		func(r *Result) *float64 { return &r.ServerCPUPerMillion },
		func(r *Result) *float64 { return &r.BenchPeakRSSMB },
	} {
		f(get)
	}
	all := func(get func(r *Result) *bool) *bool {
		if get(runs[0]) == nil {
			return nil
		}
		ok := true
		for _, r := range runs {
			ok = ok && *get(r)
		}
		return &ok
	}
	m.Exact = all(func(r *Result) *bool { return r.Exact })
	m.RawExact = all(func(r *Result) *bool { return r.RawExact })
	for _, r := range runs {
		if r.Exact != nil && !*r.Exact {
			m.Detail = fmt.Sprintf("run %d: %s", r.Run, r.Detail)
		}
	}
	return &m
}

func medianOf(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// printMedian says the medians of the runs (not with --json).
func printMedian(o Options, m *Result) {
	var parts []string
	if m.PublishRate > 0 {
		parts = append(parts, fmt.Sprintf("publish %.0f records/s", m.PublishRate))
	}
	if m.RawRate > 0 {
		parts = append(parts, fmt.Sprintf("raw %.0f records/s", m.RawRate))
	}
	if m.DrainRate > 0 {
		d := fmt.Sprintf("drain %.0f records/s", m.DrainRate)
		if m.DrainOfRaw > 0 {
			d += fmt.Sprintf(" (%.0f%% of raw)", m.DrainOfRaw)
		}
		parts = append(parts, d, fmt.Sprintf("%.1f MB/s of bodies", m.DrainMBps), fmt.Sprintf("worker %.2f CPU-s per million", m.CPUPerMillion), fmt.Sprintf("worker peak RSS %.0f MB", m.WorkerPeakRSSMB))
	}
	exact := ""
	if m.Exact != nil {
		exact = fmt.Sprintf("; exact in every run: %v", *m.Exact)
	}
	o.say("median of %d runs: %s%s", len(m.Runs), strings.Join(parts, ", "), exact)
}

// Print writes the result (one JSON line with --json).
func Print(w io.Writer, r *Result, asJSON bool) {
	if asJSON {
		b, _ := json.Marshal(r)
		fmt.Fprintln(w, string(b))
	}
}

func startCPUProfile(path string) (stop func(), err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}

func cpuSeconds() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return float64(ru.Utime.Sec+ru.Stime.Sec) + float64(ru.Utime.Usec+ru.Stime.Usec)/1e6
}

// peakRSSMB is VmHWM from /proc/self/status (Linux), else the Go heap peak.
func peakRSSMB() float64 {
	b, err := os.ReadFile("/proc/self/status")
	if err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(line, "VmHWM:") {
				f := strings.Fields(line)
				if len(f) >= 2 {
					kb, _ := strconv.ParseFloat(f[1], 64)
					return kb / 1024
				}
			}
		}
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return float64(ms.Sys) / (1 << 20)
}
