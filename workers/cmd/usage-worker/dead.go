package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nkeys"

	"github.com/usagefleet/usagefleet/internal/ops"
	"github.com/usagefleet/usagefleet/messages"
)

const deadUsage = `usage: usage-worker dead list|show|replay [flags]

  dead list   --config F [filters] [--json]        the dead letters, oldest first
  dead show   --config F SEQ... [--json]           dead letters with their records and reasons
  dead replay --config F (SEQ... | filters) [--dry-run] [--json] [--signing-key-file SEED]
              send them again now that the cause is fixed: a replace
              destination rebuilds the unit from the stream, an append
              destination gets the refused records once more, a collector's
              rejected row is collected again (the command is printed);
              where the config binds sources (sources:), replays are signed
              with an operator's replay key listed under sources.uf-replay
              (or $USAGEFLEET_REPLAY_SIGNING_KEY_FILE)

filters: --dest D --source S --batch B --reason TEXT --since T --until T --limit N
Run "usage-worker dead list -h" for the flags.
`

func cmdDead(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, deadUsage)
		return exitUsage
	}
	switch args[0] {
	case "-h", "--help", "help":
		fmt.Fprint(stdout, deadUsage)
		return exitOK
	case "list", "show", "replay":
	default:
		fmt.Fprintf(stderr, "usage-worker dead: unknown command %q\n\n%s", args[0], deadUsage)
		return exitUsage
	}
	sub := args[0]
	fs := newFlags("dead "+sub, "--config FILE [flags] [SEQ...]", stderr)
	path := fs.String("config", "", "worker configuration file (YAML)")
	asJSON := fs.Bool("json", false, "print JSON")
	var f ops.DeadFilter
	var sinceS, untilS string
	fs.StringVar(&f.Destination, "dest", "", "destination (\"_collect\": collectors' rejected rows)")
	fs.StringVar(&f.Source, "source", "", "source (the collector, for _collect)")
	fs.StringVar(&f.Batch, "batch", "", "batch id")
	fs.StringVar(&f.Reason, "reason", "", "text the reason contains (case-insensitive)")
	fs.StringVar(&sinceS, "since", "", "dead-lettered at or after (RFC 3339, YYYY-MM-DD, or a duration ago: 24h, 7d)")
	fs.StringVar(&untilS, "until", "", "dead-lettered before")
	fs.IntVar(&f.Limit, "limit", 1000, "at most this many (the newest)")
	dryRun := fs.Bool("dry-run", false, "replay: say what would happen, publish nothing")
	keyFile := fs.String("signing-key-file", os.Getenv(envReplayKeyFile), "replay: nkey seed `file` (SU...) of an operator's replay key, whose public key is listed under sources.uf-replay: needed where sources are bound (default $"+envReplayKeyFile+")")
	pos, code, ok := parseFlags(fs, args[1:], stdout)
	if !ok {
		return code
	}
	now := time.Now().UTC()
	var err error
	if f.Since, err = parseTime(sinceS, now); err != nil {
		return usageError(stderr, "dead "+sub, "--since %v", err)
	}
	if f.Until, err = parseTime(untilS, now); err != nil {
		return usageError(stderr, "dead "+sub, "--until %v", err)
	}
	seqs, bad, ok := parseSeqs(pos)
	if !ok {
		return usageError(stderr, "dead "+sub, "%q is not a dead-letter sequence (the SEQ column of dead list)", bad)
	}
	filtered := f.Destination != "" || f.Source != "" || f.Batch != "" || f.Reason != "" || sinceS != "" || untilS != ""
	switch {
	case sub == "list" && len(seqs) > 0:
		return usageError(stderr, "dead list", "takes filters, not sequences (use dead show SEQ)")
	case sub == "show" && len(seqs) == 0:
		return usageError(stderr, "dead show", "name the dead letters: dead show SEQ...")
	case sub == "replay" && len(seqs) == 0 && !filtered:
		return usageError(stderr, "dead replay", "name the dead letters (SEQ...) or select them with filters: replaying everything at once is not a default")
	}
	var key nkeys.KeyPair
	if sub == "replay" {
		if key, err = loadReplayKey(*keyFile); err != nil {
			fmt.Fprintln(stderr, "usage-worker dead replay:", err)
			return exitAttention
		}
	}
	env, code := openEnv(ctx, "dead", *path, stderr)
	if env == nil {
		return code
	}
	defer env.Close()
	if sub == "replay" {
		// Said before anything is read or published (a dry run too): a
		// replay the workers would refuse is no replay.
		env.SigningKey = key
		if err := env.ReplaySigning(); err != nil {
			fmt.Fprintln(stderr, "usage-worker dead replay:", err)
			return exitAttention
		}
	}
	entries, err := fetchDead(ctx, env, seqs, f)
	if err != nil {
		fmt.Fprintln(stderr, "usage-worker dead:", err)
		return exitAttention
	}
	switch sub {
	case "list":
		if *asJSON {
			return writeJSON(stdout, entries)
		}
		writeDeadTable(stdout, entries)
		return exitOK
	case "show":
		if *asJSON {
			return writeJSON(stdout, entries)
		}
		for i := range entries {
			writeDeadDetail(stdout, &entries[i])
		}
		return exitOK
	}
	return replayAll(ctx, env, entries, *dryRun, *asJSON, stdout, stderr)
}

// envReplayKeyFile names the replay signing key's seed file when
// --signing-key-file is not given.
const envReplayKeyFile = "USAGEFLEET_REPLAY_SIGNING_KEY_FILE"

// loadReplayKey reads an nkey seed file (an operator's replay key), as
// usage-producer reads a source's. The error names the flag and the file,
// never the file's content.
func loadReplayKey(path string) (nkeys.KeyPair, error) {
	if path == "" {
		return nil, nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--signing-key-file: %w", err)
	}
	kp, err := nkeys.FromSeed(bytes.TrimSpace(b))
	if err != nil {
		return nil, fmt.Errorf("--signing-key-file %s: not an nkey seed (make one with nk -gen user -pubout: line 1)", path)
	}
	if pub, _ := kp.PublicKey(); !nkeys.IsValidPublicUserKey(pub) {
		return nil, fmt.Errorf("--signing-key-file %s: a user nkey seed (SU...) is needed", path)
	}
	return kp, nil
}

// parseSeqs reads the dead-letter sequences named on the command line; ok
// is false at the first that is not one (bad).
func parseSeqs(pos []string) (seqs []uint64, bad string, ok bool) {
	for _, p := range pos {
		n, err := strconv.ParseUint(p, 10, 64)
		if err != nil || n == 0 {
			return nil, p, false
		}
		seqs = append(seqs, n)
	}
	return seqs, "", true
}

// fetchDead reads the dead letters named by seqs, or, when none is named,
// those f selects.
func fetchDead(ctx context.Context, env *ops.Env, seqs []uint64, f ops.DeadFilter) ([]ops.DeadEntry, error) {
	if len(seqs) == 0 {
		return ops.ListDead(ctx, env.JS, f)
	}
	var entries []ops.DeadEntry
	for _, s := range seqs {
		e, err := ops.GetDead(ctx, env.JS, s)
		if err != nil {
			return nil, err
		}
		entries = append(entries, *e)
	}
	return entries, nil
}

func replayAll(ctx context.Context, env *ops.Env, entries []ops.DeadEntry, dryRun, asJSON bool, stdout, stderr io.Writer) int {
	var plans []*ops.ReplayPlan
	code := exitOK
	all, errs := env.ReplayAll(ctx, entries, dryRun)
	for i, p := range all {
		if err := errs[i]; err != nil {
			fmt.Fprintln(stderr, "usage-worker dead replay:", err)
			code = exitAttention
		}
		if p == nil {
			continue
		}
		if p.Refused != "" && code == exitOK {
			code = exitPartial
		}
		plans = append(plans, p)
	}
	if asJSON {
		if c := writeJSON(stdout, plans); c != exitOK {
			return c
		}
		return code
	}
	verb := "replayed"
	if dryRun {
		verb = "would replay"
	}
	for _, p := range plans {
		switch {
		case p.Refused != "":
			fmt.Fprintf(stdout, "dead %d (%s): NOT REPLAYED: %s\n", p.DeadSeq, p.Destination, p.Refused)
			if p.Command != "" {
				fmt.Fprintf(stdout, "    run: %s\n", p.Command)
			}
		case p.Subject == "" || (!p.Done && !dryRun):
			fmt.Fprintf(stdout, "dead %d (%s): %s\n", p.DeadSeq, p.Destination, p.Detail)
		default:
			note := ""
			if p.Duplicate {
				note = " (JetStream already had this message id: nothing new was stored)"
			}
			if !p.Replayed.IsZero() {
				note += fmt.Sprintf(" (replayed before at %s)", p.Replayed.Format(time.RFC3339))
			}
			fmt.Fprintf(stdout, "dead %d (%s): %s %s: %s; %s as %s%s\n", p.DeadSeq, p.Destination, verb, p.Action, p.Detail, p.Subject, p.MsgID, note)
		}
	}
	return code
}

func writeJSON(w io.Writer, v any) int {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return exitAttention
	}
	return exitOK
}

func writeDeadTable(w io.Writer, entries []ops.DeadEntry) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SEQ\tTIME\tDESTINATION\tSOURCE\tBATCH/PART\tSTREAM SEQ\tRECORDS\tREASON")
	for _, e := range entries {
		dl := &e.Letter
		reason := dl.Reason
		if e.Err != "" {
			reason = e.Err
		}
		if len(reason) > 120 {
			reason = reason[:120] + "…"
		}
		t := dl.Time
		if t.IsZero() {
			t = e.Stored
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s/%d\t%d\t%d\t%s\n", e.Seq, t.UTC().Format(time.RFC3339), dl.Destination, dl.Source, dl.BatchID, dl.Part, dl.StreamSeq, len(dl.Records), strings.ReplaceAll(reason, "\n", " "))
	}
	tw.Flush()
	fmt.Fprintf(w, "%d dead letter(s)\n", len(entries))
}

func writeDeadDetail(w io.Writer, e *ops.DeadEntry) {
	dl := &e.Letter
	fmt.Fprintf(w, "dead letter %d, stored %s\n", e.Seq, e.Stored.Format(time.RFC3339))
	fmt.Fprintf(w, "  destination %s  source %s  feed %s\n  batch %s part %d  subject %s  stream seq %d\n  reason: %s\n", dl.Destination, dl.Source, dl.Feed, dl.BatchID, dl.Part, dl.Subject, dl.StreamSeq, dl.Reason)
	for k, v := range dl.Header {
		fmt.Fprintf(w, "  header %s: %s\n", k, strings.Join(v, ", "))
	}
	if b, _ := dl.OriginalBytes(); len(b) > 0 {
		size := max(dl.PayloadSize, len(dl.Payload))
		ex := b
		if len(ex) > 512 {
			ex = ex[:512]
		}
		fmt.Fprintf(w, "  payload (%d bytes; whole in %s at stream seq %d until its max age): %q\n", size, messages.StreamUsage, dl.StreamSeq, ex)
	}
	for _, r := range dl.Records {
		if r.Truncated && r.Excerpt != "" {
			fmt.Fprintf(w, "  record %d: %s\n    (too large to keep whole; the part in %s at stream seq %d has it) %s\n", r.Index, r.Reason, messages.StreamUsage, dl.StreamSeq, r.Excerpt)
			continue
		}
		b, _ := json.Marshal(r.Record)
		fmt.Fprintf(w, "  record %d: %s\n    %s\n", r.Index, r.Reason, b)
	}
	fmt.Fprintln(w)
}
