package bench

// input.go is `usagefleet bench --input FILE`: a usage file published the
// way `usage-producer publish` publishes it (producer.SpoolFile, then
// Producer.PublishSpool: the same code), with rows/s, MB/s, CPU seconds per
// million rows, peak RSS, and an exact check of what the stream then holds;
// and `--generate-focus N --out FILE`, which writes a realistic 44-column
// FOCUS CSV to publish.

import (
	"bufio"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/usagefleet/usagefleet/internal/broker"
	"github.com/usagefleet/usagefleet/internal/config"
	"github.com/usagefleet/usagefleet/internal/usagegen"
	"github.com/usagefleet/usagefleet/messages"
	"github.com/usagefleet/usagefleet/producer"
	"github.com/usagefleet/usagefleet/producer/input"
)

// InputOptions of an input run.
type InputOptions struct {
	GenerateFocus int    // write a FOCUS CSV of this many rows to OutFile first
	OutFile       string // where GenerateFocus writes
	Input         string // the file to publish
	Gzip          bool   // publish Input gzipped (converted first, not timed)
	Parquet       bool   // publish Input as Parquet (converted first, not timed)
	NATSURL       string // empty: an embedded server in a temporary directory, or spawned
	SpawnNATS     bool   // run nats-server in a process of its own (as production does)
	NATSServer    string // the nats-server binary for SpawnNATS
	Window        int    // parts in flight (default 16, as usage-producer)
	JSON          bool
	Out           io.Writer
	CPUProfile    string // pprof CPU profile of the publish
	MemProfile    string // pprof alloc profile at the end of the publish
}

// InputResult is one input run's figures.
type InputResult struct {
	File          string  `json:"file"`
	Format        string  `json:"format"`
	FileBytes     int64   `json:"file_bytes"`
	Rows          int     `json:"rows"`
	Parts         int     `json:"parts"`
	Seconds       float64 `json:"seconds"`
	ReadSeconds   float64 `json:"read_seconds"` // reading, checking and spooling
	RowsPerSecond float64 `json:"rows_per_second"`
	MBPerSecond   float64 `json:"file_mb_per_second"`
	CPUPerMillion float64 `json:"cpu_seconds_per_million_rows"`
	PeakRSSMB     float64 `json:"peak_rss_mb"`
	Server        string  `json:"server"` // embedded (in this process: its CPU and RSS count), spawned or external
	// ServerCPUPerMillion is a spawned nats-server's CPU during the publish.
	ServerCPUPerMillion float64 `json:"server_cpu_seconds_per_million_rows,omitempty"`
	Exact               bool    `json:"exact"`
	Detail              string  `json:"detail,omitempty"`
}

// RunInput generates and/or publishes a file.
func RunInput(ctx context.Context, o InputOptions) (*InputResult, error) {
	if o.Out == nil {
		o.Out = io.Discard
	}
	if o.Window <= 0 {
		o.Window = 16
	}
	if o.Gzip && o.Parquet {
		return nil, errors.New("--gzip and --parquet: choose one")
	}
	if o.GenerateFocus > 0 {
		if o.OutFile == "" {
			return nil, errors.New("--generate-focus needs --out FILE")
		}
		start := time.Now()
		tot, err := generateFocus(o.OutFile, o.GenerateFocus)
		if err != nil {
			return nil, err
		}
		fmt.Fprintf(o.Out, "wrote %s: %d rows, %d bytes (%d a row) in %s\n", o.OutFile, tot.Rows, tot.Bytes, tot.Bytes/int64(max(tot.Rows, 1)), time.Since(start).Truncate(time.Millisecond))
	}
	if o.Input == "" {
		if o.GenerateFocus > 0 {
			return nil, nil
		}
		return nil, errors.New("--input FILE (or --generate-focus N --out FILE) is needed")
	}
	path := o.Input
	if o.Gzip || o.Parquet {
		dir, err := os.MkdirTemp("", "usagefleet-bench-input-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(dir)
		start := time.Now()
		if o.Gzip {
			path = filepath.Join(dir, filepath.Base(o.Input)+".gz")
			err = gzipFile(o.Input, path)
		} else {
			path = filepath.Join(dir, strings.TrimSuffix(filepath.Base(o.Input), ".csv")+".parquet")
			err = csvToParquet(o.Input, path)
		}
		if err != nil {
			return nil, err
		}
		fmt.Fprintf(o.Out, "converted %s to %s in %s (not timed)\n", o.Input, path, time.Since(start).Truncate(time.Millisecond))
	}
	return publishInput(ctx, o, path)
}

func generateFocus(path string, n int) (usagegen.FocusTotals, error) {
	f, err := os.Create(path)
	if err != nil {
		return usagegen.FocusTotals{}, err
	}
	tot, err := usagegen.WriteFocusCSV(f, n, usagegen.Options{Seed: 1})
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return tot, err
}

func publishInput(ctx context.Context, o InputOptions, path string) (*InputResult, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	res := &InputResult{File: path, FileBytes: fi.Size(), Server: "embedded"}
	url := o.NATSURL
	var serverCPU func() float64
	switch {
	case o.SpawnNATS && url != "":
		return nil, errors.New("--spawn-nats and --nats: give one (--nats joins a server that runs; --spawn-nats starts one)")
	case o.SpawnNATS:
		s, err := spawnNATS(ctx, o.NATSServer)
		if err != nil {
			return nil, err
		}
		defer s.Close()
		url, res.Server, serverCPU = s.URL, "spawned", s.cpuSeconds
	case url == "":
		dir, err := os.MkdirTemp("", "usagefleet-bench-")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(dir)
		emb, err := broker.StartEmbedded(dir, 0)
		if err != nil {
			return nil, err
		}
		defer emb.Close()
		url = emb.URL
	default:
		res.Server = "external"
	}
	nc, err := nats.Connect(url, nats.Name("usage-bench-input"), nats.MaxReconnects(-1))
	if err != nil {
		return nil, err
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	if err := broker.EnsureStreams(ctx, js, broker.StreamOptions{LeaseTTL: config.Duration(30 * time.Second)}); err != nil {
		return nil, err
	}
	p, err := producer.New(nc, producer.Options{})
	if err != nil {
		return nil, err
	}
	if o.CPUProfile != "" {
		stop, err := startCPUProfile(o.CPUProfile)
		if err != nil {
			return nil, err
		}
		defer stop()
	}
	// What usage-producer publish does, step for step.
	cpu0, start := cpuSeconds(), time.Now()
	var scpu0 float64
	if serverCPU != nil {
		scpu0 = serverCPU()
	}
	fh, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	fr, err := producer.SpoolFile(ctx, path, fh, producer.FileOptions{
		Input: input.Options{Format: input.FormatOf(path)},
		Spool: producer.SpoolOptions{OpenBytes: o.Window * producer.DefaultPartBytes / 4},
	})
	if err != nil {
		return nil, err
	}
	defer fr.Spool.Discard()
	if len(fr.Errors) > 0 {
		return nil, fmt.Errorf("%s: %d problems, the first: %v", path, len(fr.Errors), fr.Errors[0])
	}
	res.ReadSeconds = time.Since(start).Seconds()
	// A run of its own: the same file published again to the same server
	// would only find duplicates.
	fh16 := sha256.Sum256(append([]byte("bench\x00"), fr.Hash[:]...))
	id := "bench-" + hex.EncodeToString(fh16[:])[:16] + "-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	pub, err := p.PublishSpool(ctx, fr.Spool, producer.SpoolPublish{BatchID: id, Feed: "bench", Source: "bench", Window: o.Window})
	if err != nil {
		return nil, err
	}
	res.Seconds = time.Since(start).Seconds()
	cpu := cpuSeconds() - cpu0
	var scpu float64
	if serverCPU != nil {
		scpu = serverCPU() - scpu0
	}
	if o.MemProfile != "" {
		if err := writeAllocProfile(o.MemProfile); err != nil {
			return nil, err
		}
	}
	res.Format = fr.Format.String()
	if o.Gzip {
		res.Format += "+gzip"
	}
	res.Rows, res.Parts = pub.Records, len(pub.Parts)
	res.RowsPerSecond = float64(res.Rows) / res.Seconds
	res.MBPerSecond = float64(res.FileBytes) / 1e6 / res.Seconds
	res.CPUPerMillion = cpu / float64(max(res.Rows, 1)) * 1e6
	res.ServerCPUPerMillion = scpu / float64(max(res.Rows, 1)) * 1e6
	res.PeakRSSMB = peakRSSMB()
	// Exact: the stream holds every part once, with every row and the cost
	// per currency that was read.
	res.Exact, res.Detail, err = checkStored(ctx, js, pub, fr.Spool.Costs())
	if err != nil {
		return nil, err
	}
	return res, nil
}

func writeAllocProfile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return pprof.Lookup("allocs").WriteTo(f, 0)
}

// checkStored reads back the batch's parts from the USAGE stream.
func checkStored(ctx context.Context, js jetstream.JetStream, pub *producer.Result, want map[string]messages.Decimal) (bool, string, error) {
	cctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	cons, err := js.OrderedConsumer(cctx, messages.StreamUsage, jetstream.OrderedConsumerConfig{FilterSubjects: []string{"usage." + pub.Feed + ".>"}})
	if err != nil {
		return false, "", err
	}
	st, err := js.Stream(cctx, messages.StreamUsage)
	if err != nil {
		return false, "", err
	}
	info, err := st.Info(cctx)
	if err != nil {
		return false, "", err
	}
	// The read ends at the last part this publish stored (the stream may
	// hold more after it: other feeds, later runs).
	last := info.State.LastSeq
	if m := maxPartSeq(pub); m > 0 {
		last = m
	}
	seen := map[int]int{}
	rows := 0
	got := map[string]*messages.Sum{}
	var recs []messages.UsageRecord
	for done := false; !done; {
		// Bounded by bytes, not by count: 1,000 parts of a FOCUS export
		// are over a GB, more than a client holds pending (64 MB), and the
		// server drops what a slow consumer cannot take; the ordered
		// consumer then starts again from the gap.
		batch, err := cons.FetchBytes(32<<20, jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			return false, "", err
		}
		n := 0
		for m := range batch.Messages() {
			n++
			md, _ := m.Metadata()
			if md != nil && md.Sequence.Stream >= last {
				done = true
			}
			meta, err := messages.ParseMeta(m.Headers())
			if err != nil || meta.BatchID != pub.BatchID {
				continue
			}
			seen[meta.Part]++
			recs, err = messages.DecodeRecordsReusing(recs[:0], m.Data(), meta.Schema)
			if err != nil {
				return false, fmt.Sprintf("part %d: %v", meta.Part, err), nil
			}
			rows += len(recs)
			for i := range recs {
				if recs[i].BilledCost.IsSet() {
					s := got[recs[i].BillingCurrency]
					if s == nil {
						s = &messages.Sum{}
						got[recs[i].BillingCurrency] = s
					}
					s.Add(recs[i].BilledCost)
				}
			}
		}
		if batch.Error() != nil {
			return false, "", batch.Error()
		}
		if n == 0 && len(seen) == len(pub.Parts) {
			done = true // the rest of the feed is not this batch's
		}
		if cctx.Err() != nil {
			return false, "", fmt.Errorf("reading the batch back: %w", cctx.Err())
		}
	}
	var problems []string
	if len(seen) != len(pub.Parts) {
		problems = append(problems, fmt.Sprintf("%d parts stored, %d published", len(seen), len(pub.Parts)))
	}
	for part, n := range seen {
		if n != 1 {
			problems = append(problems, fmt.Sprintf("part %d stored %d times", part, n))
		}
	}
	if rows != pub.Records {
		problems = append(problems, fmt.Sprintf("%d rows stored, %d read", rows, pub.Records))
	}
	curs := make([]string, 0, len(want))
	for cur := range want {
		curs = append(curs, cur)
	}
	sort.Strings(curs)
	for _, cur := range curs {
		g := "0"
		if got[cur] != nil {
			g = got[cur].Decimal().String()
		}
		if w := want[cur].String(); g != w {
			problems = append(problems, fmt.Sprintf("%s: %s stored, %s read", cur, g, w))
		}
	}
	if len(got) != len(want) {
		problems = append(problems, fmt.Sprintf("%d currencies stored, %d read", len(got), len(want)))
	}
	return len(problems) == 0, strings.Join(problems, "; "), nil
}

// PrintInput writes the result (one JSON line with asJSON).
func PrintInput(w io.Writer, r *InputResult, asJSON bool) {
	if r == nil {
		return
	}
	if asJSON {
		b, _ := json.Marshal(r)
		fmt.Fprintln(w, string(b))
		return
	}
	fmt.Fprintf(w, "published %s (%s, %.1f MB): %d rows in %d parts in %.2fs (read+check+spool %.2fs)\n", r.File, r.Format, float64(r.FileBytes)/1e6, r.Rows, r.Parts, r.Seconds, r.ReadSeconds)
	fmt.Fprintf(w, "  %.0f rows/s, %.1f MB/s of file, %.2f CPU-s per million rows, peak RSS %.0f MB (server %s), GOMAXPROCS %d\n", r.RowsPerSecond, r.MBPerSecond, r.CPUPerMillion, r.PeakRSSMB, r.Server, runtime.GOMAXPROCS(0))
	if r.ServerCPUPerMillion > 0 {
		fmt.Fprintf(w, "  nats-server (its own process): %.2f CPU-s per million rows\n", r.ServerCPUPerMillion)
	}
	if r.Exact {
		fmt.Fprintln(w, "  exact: every part stored once, every row and the cost per currency")
	} else {
		fmt.Fprintln(w, "  NOT EXACT:", r.Detail)
	}
}

func gzipFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	zw, _ := gzip.NewWriterLevel(out, gzip.DefaultCompression)
	if _, err := io.Copy(zw, in); err != nil {
		out.Close()
		return err
	}
	if err := zw.Close(); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// csvToParquet converts the CSV at src to Parquet at dst
// (usagegen.CSVToParquet).
func csvToParquet(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(dst)
	if err != nil {
		return err
	}
	if err := usagegen.CSVToParquet(out, bufio.NewReaderSize(in, 1<<20)); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// maxPartSeq is the highest stream sequence of pub's parts (0 if none
// says).
func maxPartSeq(pub *producer.Result) uint64 {
	var m uint64
	for _, p := range pub.Parts {
		m = max(m, p.Seq)
	}
	return m
}
