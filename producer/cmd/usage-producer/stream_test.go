package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/usagefleet/usagefleet/internal/usagegen"
	"github.com/usagefleet/usagefleet/messages"
)

// stored is what the USAGE stream holds of one source: each part's store
// count by batch, the rows, and the exact cost per currency.
type stored struct {
	parts map[string]int // "<batch>/<part>" -> times stored
	rows  int
	cost  map[string]string
}

func storedOf(t *testing.T, n *testNATS, source string) stored {
	t.Helper()
	ctx := context.Background()
	cons, err := n.js.OrderedConsumer(ctx, messages.StreamUsage, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	s := stored{parts: map[string]int{}, cost: map[string]string{}}
	sums := map[string]*messages.Sum{}
	var recs []messages.UsageRecord
	for {
		batch, err := cons.FetchNoWait(500)
		if err != nil {
			t.Fatal(err)
		}
		got := 0
		for m := range batch.Messages() {
			got++
			meta, err := messages.ParseMeta(m.Headers())
			if err != nil {
				t.Fatal(err)
			}
			if meta.Source != source {
				continue
			}
			s.parts[meta.BatchID+"/"+strconv.Itoa(meta.Part)]++
			recs, err = messages.DecodeRecordsAs(recs[:0], m.Data(), meta.Schema)
			if err != nil {
				t.Fatal(err)
			}
			s.rows += len(recs)
			for i := range recs {
				if recs[i].BilledCost.IsSet() {
					c := recs[i].BillingCurrency
					if sums[c] == nil {
						sums[c] = &messages.Sum{}
					}
					sums[c].Add(recs[i].BilledCost)
				}
			}
		}
		if got == 0 {
			break
		}
	}
	for c, sum := range sums {
		s.cost[c] = sum.Decimal().String()
	}
	return s
}

func focusFile(t *testing.T, dir, name string, rows int, seed uint64) (string, usagegen.FocusTotals) {
	t.Helper()
	var b bytes.Buffer
	tot, err := usagegen.WriteFocusCSV(&b, rows, usagegen.Options{Seed: seed})
	if err != nil {
		t.Fatal(err)
	}
	data := b.Bytes()
	if strings.HasSuffix(name, ".gz") {
		var z bytes.Buffer
		zw := gzip.NewWriter(&z)
		zw.Write(data)
		zw.Close()
		data = z.Bytes()
	}
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return path, tot
}

func costStrings(tot usagegen.FocusTotals) map[string]string {
	out := map[string]string{}
	for c, s := range tot.Cost {
		out[c] = s.Decimal().String()
	}
	return out
}

func (s stored) check(t *testing.T, wantParts, wantRows int, wantCost map[string]string) {
	t.Helper()
	for p, n := range s.parts {
		if n != 1 {
			t.Errorf("part %s stored %d times", p, n)
		}
	}
	if len(s.parts) != wantParts || s.rows != wantRows || fmt.Sprint(s.cost) != fmt.Sprint(wantCost) {
		t.Errorf("stored %d parts, %d rows, cost %v; want %d parts, %d rows, cost %v", len(s.parts), s.rows, s.cost, wantParts, wantRows, wantCost)
	}
}

var (
	binOnce sync.Once
	binPath string
	binErr  error
)

// producerBinary builds usage-producer once for the tests that run it as
// a process (to kill it, to give it a standard input).
func producerBinary(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		dir, err := os.MkdirTemp("", "usage-producer-bin-")
		if err != nil {
			binErr = err
			return
		}
		binPath = filepath.Join(dir, "usage-producer")
		out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			binErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

var partsRe = regexp.MustCompile(`(\d+) parts?, cost`)

// A publish killed (SIGKILL) half way and run again completes the batch
// without doubling: the rerun spools the same parts (the same digest, the
// same message ids), JetStream keeps the parts it has, and the stream ends
// up with every part once and exactly the file's rows and cost.
func TestPublishKilledAndRerun(t *testing.T) {
	n := startNATS(t)
	bin := producerBinary(t)
	dir := t.TempDir()
	path, tot := focusFile(t, dir, "month.csv", 6000, 21)
	args := []string{"publish", "--feed", "f", "--source", "killed", "--nats", n.url, "--part-bytes", "4096", "--window", "1", "--spool-dir", dir, path}

	cmd := exec.Command(bin, args...)
	var errb bytes.Buffer
	cmd.Stderr = &errb
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	deadline := time.Now().Add(time.Minute)
	for n.usageMsgs(t) < 20 {
		select {
		case err := <-exited:
			t.Fatalf("the publish ended (%v) before it could be killed; stderr:\n%s", err, errb.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no part stored within a minute; stderr:\n%s", errb.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-exited
	half := storedOf(t, n, "killed")
	if len(half.parts) == 0 || half.rows >= tot.Rows {
		t.Fatalf("killed with %d parts and %d of %d rows stored: not half way", len(half.parts), half.rows, tot.Rows)
	}

	out, err := exec.Command(bin, args...).Output()
	if err != nil {
		t.Fatalf("rerun: %v\n%s", err, out)
	}
	m := partsRe.FindStringSubmatch(string(out))
	if m == nil || !strings.Contains(string(out), "parts already stored") {
		t.Fatalf("rerun output does not say some parts were already stored:\n%s", out)
	}
	parts, _ := strconv.Atoi(m[1])
	storedOf(t, n, "killed").check(t, parts, tot.Rows, costStrings(tot))
}

// Standard input ("-", here gzip) and several files (CSV, gzip CSV,
// Parquet) in one run: one batch each, every row stored once.
func TestPublishStdinAndSeveralFiles(t *testing.T) {
	n := startNATS(t)
	bin := producerBinary(t)
	dir := t.TempDir()
	stdinPath, a := focusFile(t, dir, "stdin.csv.gz", 1500, 31)
	csvPath, b := focusFile(t, dir, "b.csv", 1200, 32)
	gzPath, c := focusFile(t, dir, "c.csv.gz", 900, 33)
	pq := filepath.Join("..", "..", "input", "testdata", "focus", "aws-focus-1.2.parquet")

	cmd := exec.Command(bin, "publish", "--feed", "f", "--source", "many", "--nats", n.url, "-", csvPath, gzPath, pq)
	in, err := os.Open(stdinPath)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	cmd.Stdin = in
	var errb bytes.Buffer
	cmd.Stderr = &errb
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%v\nstdout: %s\nstderr: %s", err, out, errb.String())
	}
	for _, want := range []string{"<stdin>: 1500 records", "b.csv: 1200 records", "c.csv.gz: 900 records", "aws-focus-1.2.parquet: 3 records", "total: 3603 records"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("stdout lacks %q:\n%s", want, out)
		}
	}
	// Not a terminal: one summary line per file read.
	if got := strings.Count(errb.String(), ": read "); got != 4 {
		t.Errorf("%d read summaries on stderr, want 4:\n%s", got, errb.String())
	}
	m := regexp.MustCompile(`total: 3603 records, (\d+) parts`).FindStringSubmatch(string(out))
	if m == nil {
		t.Fatalf("no total line:\n%s", out)
	}
	parts, _ := strconv.Atoi(m[1])
	want := map[string]*messages.Sum{}
	for _, tot := range []usagegen.FocusTotals{a, b, c} {
		for cur, s := range tot.Cost {
			if want[cur] == nil {
				want[cur] = &messages.Sum{}
			}
			want[cur].AddSum(*s)
		}
	}
	want["USD"].Add(messages.MustDecimal("112.8456789012")) // the Parquet fixture
	wantCost := map[string]string{}
	for cur, s := range want {
		wantCost[cur] = s.Decimal().String()
	}
	storedOf(t, n, "many").check(t, parts, 3603, wantCost)
}
