package collect_test

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	sbacronis "github.com/usagefleet/usagefleet/internal/sandbox/acronis"
	sbhere "github.com/usagefleet/usagefleet/internal/sandbox/here"
	"github.com/usagefleet/usagefleet/messages"
	"github.com/usagefleet/usagefleet/producer/collect"
)

// storedDead is one message of the DEAD stream.
type storedDead struct {
	msgID string
	dl    messages.DeadLetter
}

// deadLetters reads every dead letter stored on subj.
func (e *env) deadLetters(subj string) []storedDead {
	e.t.Helper()
	ctx, cancel := bg()
	defer cancel()
	st, err := e.js.Stream(ctx, messages.StreamDead)
	if err != nil {
		e.t.Fatal(err)
	}
	info, err := st.Info(ctx, jetstream.WithSubjectFilter(subj))
	if err != nil {
		e.t.Fatal(err)
	}
	want := int(info.State.Subjects[subj])
	var out []storedDead
	if want == 0 {
		return out
	}
	cons, err := st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{FilterSubjects: []string{subj}})
	if err != nil {
		e.t.Fatal(err)
	}
	for len(out) < want {
		m, err := cons.Next(jetstream.FetchMaxWait(5 * time.Second))
		if err != nil {
			e.t.Fatalf("reading %s: %v (after %d of %d)", subj, err, len(out), want)
		}
		var dl messages.DeadLetter
		if err := json.Unmarshal(m.Data(), &dl); err != nil {
			e.t.Fatalf("dead letter %q: %v", m.Data(), err)
		}
		out = append(out, storedDead{msgID: m.Headers().Get(messages.HdrMsgID), dl: dl})
	}
	return out
}

// shortDedupWindow makes DEAD forget Nats-Msg-Ids after 200ms, so a
// second run relies on the collector's own check, as a re-run an hour
// later does in production (the window is 10 minutes there).
func (e *env) shortDedupWindow() {
	e.t.Helper()
	ctx, cancel := bg()
	defer cancel()
	st, err := e.js.Stream(ctx, messages.StreamDead)
	if err != nil {
		e.t.Fatal(err)
	}
	cfg := st.CachedInfo().Config
	cfg.Duplicates = 200 * time.Millisecond
	if _, err := e.js.UpdateStream(ctx, cfg); err != nil {
		e.t.Fatal(err)
	}
}

// broken is a row an emulator broke on purpose: its line, why, and the
// column and value it broke it with.
type broken struct {
	line          int
	reason        string
	column, value string
}

var brokenValues = map[string]string{"usage.delta.total": "n/a", "billableValue": "n/a", "usageDateTime": "someday"}

func brokenRow(line int, reason string) broken {
	col, _, _ := strings.Cut(reason, " ")
	return broken{line: line, reason: reason, column: col, value: brokenValues[col]}
}

// checkDead checks that DEAD holds exactly one dead letter per broken row
// of the report, carrying its line, reason and raw row. file, when known,
// is the report's file: the payload must be its line, byte for byte.
func checkDead(t *testing.T, got []storedDead, collector, report string, want []broken, file []byte) {
	t.Helper()
	if len(got) != len(want) {
		for _, g := range got {
			t.Logf("stored: %s %s", g.msgID, g.dl.Reason)
		}
		t.Fatalf("DEAD holds %d dead letters of %s; want %d (one per broken row)", len(got), collector, len(want))
	}
	var lines []string
	if file != nil {
		lines = strings.Split(string(file), "\n")
	}
	ids := map[string]bool{}
	for i, w := range want {
		g := got[i]
		dl := g.dl
		if ids[g.msgID] || !strings.HasPrefix(g.msgID, "collect/"+collector+"/") {
			t.Errorf("dead letter %d: Nats-Msg-Id %q (repeated or not the collector's)", i, g.msgID)
		}
		ids[g.msgID] = true
		prefix := fmt.Sprintf("report %s line %d: %s: ", report, w.line, w.column)
		if dl.Destination != collect.DeadDestination || dl.Source != collector || dl.Feed != feed || !strings.HasPrefix(dl.Reason, prefix) {
			t.Errorf("dead letter %d: destination %q source %q feed %q reason %q; want %q, %q, %q, reason starting %q",
				i, dl.Destination, dl.Source, dl.Feed, dl.Reason, collect.DeadDestination, collector, feed, prefix)
		}
		h := dl.Header
		if first(h[collect.DeadHdrLine]) != strconv.Itoa(w.line) || first(h[collect.DeadHdrReport]) != report || first(h[collect.DeadHdrColumn]) != w.column {
			t.Errorf("dead letter %d: header %v; want line %d, report %s, column %s", i, h, w.line, report, w.column)
		}
		if lines != nil && string(dl.Payload) != lines[w.line-1] {
			t.Errorf("dead letter %d: payload %q; want line %d of the file, %q", i, dl.Payload, w.line, lines[w.line-1])
		}
		// The raw row read by the raw header holds the broken value.
		r := csv.NewReader(strings.NewReader(first(h[collect.DeadHdrCSVHeader]) + "\n" + string(dl.Payload) + "\n"))
		recs, err := r.ReadAll()
		if err != nil || len(recs) != 2 {
			t.Errorf("dead letter %d: header and payload are not two CSV lines: %v", i, err)
			continue
		}
		found := false
		for c, label := range recs[0] {
			if collect.FieldName(label) == w.column {
				found = true
				if recs[1][c] != w.value {
					t.Errorf("dead letter %d: %s is %q in the payload; the emulator broke it to %q", i, w.column, recs[1][c], w.value)
				}
			}
		}
		if !found {
			t.Errorf("dead letter %d: the header %q has no column %s", i, recs[0], w.column)
		}
	}
}

func first(v []string) string {
	if len(v) == 0 {
		return ""
	}
	return v[0]
}

// A malformed row is kept in DEAD with its line, reason and raw row,
// exactly once however often its report range is collected (within the
// Nats-Msg-Id window and after it), and the good rows still arrive with
// exact totals.
func TestRejectedRowsAreKeptInDEADOnce(t *testing.T) {
	t.Run("acronis", func(t *testing.T) {
		e := newEnv(t)
		e.shortDedupWindow()
		e.startPool()
		sb, p := e.acronis(sbacronis.Config{Seed: 2, MalformedRows: 3}, nil)
		c := e.collector(p, "acr", collect.Options{})
		q := acronisQuery(sb)
		want, x := expectedAcronis(sb, q)
		file, malformed, err := sb.File(q)
		if err != nil || len(malformed) != 3 || len(x.Malformed) != 3 {
			t.Fatalf("emulator: %d malformed rows, %v", len(malformed), err)
		}
		var bad []broken
		for _, m := range x.Malformed {
			bad = append(bad, brokenRow(m.Line, m.Reason))
		}
		subj := messages.DeadSubject(collect.DeadDestination, "acr")
		for i := 1; i <= 2; i++ {
			res := run(t, c)
			if res.DeadSubject != subj || len(res.Rejected) != 3 || res.Records != want.Records {
				t.Fatalf("run %d: subject %s, %d rejected, %d records; want %s, 3, %d", i, res.DeadSubject, len(res.Rejected), res.Records, subj, want.Records)
			}
			if stored := map[int]int{1: 3, 2: 0}[i]; res.DeadLetters != stored || res.DeadKnown != 3-stored {
				t.Fatalf("run %d: %d dead letters stored, %d already there; want %d, %d", i, res.DeadLetters, res.DeadKnown, stored, 3-stored)
			}
			// The first run's report is the one the dead letters name.
			checkDead(t, e.deadLetters(subj), "acr", sb.Stats().ReportIDs()[0], bad, file)
			e.waitDelivered(res)
			e.waitTotals(want)
			time.Sleep(500 * time.Millisecond) // past DEAD's Nats-Msg-Id window
		}
		if n := sb.Stats().ReportsCreated(); n != 2 {
			t.Fatalf("%d reports; want one per run", n)
		}
	})
	t.Run("here", func(t *testing.T) {
		e := newEnv(t)
		e.startPool()
		sb, p := e.here(sbhere.Config{Seed: 2, MalformedRows: 4}, nil)
		c := e.collector(p, "here", collect.Options{})
		x := sb.ExpectedQuery(hereQuery(winStart, winEnd))
		want := expectedHERE(sb, hereQuery(winStart, winEnd))
		var bad []broken
		for _, m := range x.Malformed {
			bad = append(bad, brokenRow(m.Line, m.Reason))
		}
		if len(bad) != 4 {
			t.Fatalf("emulator: %d malformed rows", len(bad))
		}
		subj := messages.DeadSubject(collect.DeadDestination, "here")
		var report string
		for i := 1; i <= 2; i++ {
			res := run(t, c)
			if i == 1 {
				report = res.Reports[0].ID
			}
			if stored := map[int]int{1: 4, 2: 0}[i]; res.DeadLetters != stored || res.DeadKnown != 4-stored || res.Records != want.Records {
				t.Fatalf("run %d: %d dead letters stored, %d already there, %d records; want %d, %d, %d", i, res.DeadLetters, res.DeadKnown, res.Records, stored, 4-stored, want.Records)
			}
			checkDead(t, e.deadLetters(subj), "here", report, bad, nil)
			e.waitDelivered(res)
			e.waitTotals(want)
		}
	})
}

// failingJS refuses every publish, as a connection that died does.
type failingJS struct{ jetstream.JetStream }

func (failingJS) PublishMsg(context.Context, *nats.Msg, ...jetstream.PublishOpt) (*jetstream.PubAck, error) {
	return nil, nats.ErrConnectionClosed
}

func (failingJS) PublishMsgAsync(*nats.Msg, ...jetstream.PublishOpt) (jetstream.PubAckFuture, error) {
	return nil, nats.ErrConnectionClosed
}

// silentJS never gets an ack, as a NATS user without permission to
// publish to the dead-letter subject does (the server drops the message
// and tells only the connection's error handler).
type silentJS struct{ jetstream.JetStream }

type silentFuture struct{ m *nats.Msg }

func (f silentFuture) Ok() <-chan *jetstream.PubAck { return nil }
func (f silentFuture) Err() <-chan error            { return nil }
func (f silentFuture) Msg() *nats.Msg               { return f.m }

func (silentJS) PublishMsg(ctx context.Context, _ *nats.Msg, _ ...jetstream.PublishOpt) (*jetstream.PubAck, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}

func (silentJS) PublishMsgAsync(m *nats.Msg, _ ...jetstream.PublishOpt) (jetstream.PubAckFuture, error) {
	return silentFuture{m}, nil
}

// The rejected rows are stored before the report's periods are published
// and the checkpoint lets the report go: a run that cannot keep them
// publishes nothing of the report and leaves it in flight, and the next
// run takes the report over, keeps the rows, then publishes.
func TestRejectedRowsAreKeptBeforeTheSnapshot(t *testing.T) {
	e := newEnv(t)
	e.startPool()
	sb, p := e.acronis(sbacronis.Config{Seed: 5, MalformedRows: 2}, nil)
	want, x := expectedAcronis(sb, acronisQuery(sb))
	subj := messages.DeadSubject(collect.DeadDestination, "acr")
	inFlight := func(what string) {
		t.Helper()
		ctx, cancel := bg()
		defer cancel()
		ent, err := e.kv.Get(ctx, "acr")
		if err != nil {
			t.Fatal(err)
		}
		var ck collect.Checkpoint
		if err := json.Unmarshal(ent.Value(), &ck); err != nil {
			t.Fatal(err)
		}
		if ck.Run == nil || len(ck.Run.Reports) != 1 || len(ck.Run.Published) != 0 || ck.LastWindow != nil {
			t.Fatalf("%s: the checkpoint does not keep the report in flight: %s", what, ent.Value())
		}
	}

	// No dead-letter stream at all.
	o := e.collector(p, "acr", collect.Options{}).Options()
	o.DeadLetters = nil
	c0, err := collect.New(p, e.prod, e.kv, o)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := bg()
	res, err := c0.Run(ctx)
	cancel()
	if err == nil || !strings.Contains(err.Error(), "no dead-letter stream") || len(res.Batches) != 0 || len(res.Rejected) != 2 {
		t.Fatalf("without DeadLetters: %v, %d batches, %d rejected", err, len(res.Batches), len(res.Rejected))
	}
	inFlight("without DeadLetters")

	// The dead letters cannot be published.
	o.DeadLetters = failingJS{e.js}
	c1, err := collect.New(p, e.prod, e.kv, o)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel = bg()
	res, err = c1.Run(ctx)
	cancel()
	if err == nil || !strings.Contains(err.Error(), "keeping the 2 rejected row(s)") || !errors.Is(err, nats.ErrConnectionClosed) || len(res.Batches) != 0 {
		t.Fatalf("publishes failing: %v, %d batches", err, len(res.Batches))
	}
	if n := e.usageMsgs(); n != 0 {
		t.Fatalf("%d messages in USAGE: the snapshot went out before its rejected rows were kept", n)
	}
	if got := e.deadLetters(subj); len(got) != 0 {
		t.Fatalf("%d dead letters stored by failing publishes", len(got))
	}
	inFlight("publishes failing")

	// The dead letters are never acked: the run does not hang, it fails
	// naming the permission the collector's user needs.
	// The short waits are for this run alone: JetStream never answers it.
	// Left in place, they made the next run's real publishes depend on an
	// ack within 100ms (and a stored letter whose ack came late was then
	// counted as already kept).
	restore := collect.SetDeadTimeouts(100*time.Millisecond, 500*time.Millisecond)
	t.Cleanup(restore) // should the run below fail the test
	o.DeadLetters = silentJS{e.js}
	c2, err := collect.New(p, e.prod, e.kv, o)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel = bg()
	res, err = c2.Run(ctx)
	hung := ctx.Err() != nil
	cancel()
	restore()
	if err == nil || hung || !strings.Contains(err.Error(), "must be allowed to publish to "+subj) || len(res.Batches) != 0 {
		t.Fatalf("no acks: %v, %d batches", err, len(res.Batches))
	}
	if n := e.usageMsgs(); n != 0 {
		t.Fatalf("%d messages in USAGE after a run that could not keep its rejected rows", n)
	}
	inFlight("no acks")

	// The next run takes the same report over and keeps its rows once.
	res = run(t, e.collector(p, "acr", collect.Options{}))
	if !res.Resumed || len(res.Reports) != 1 || !res.Reports[0].Reused || res.DeadLetters != 2 || res.Records != want.Records {
		t.Fatalf("resumed %v, reports %+v, %d dead letters stored, %d records; want the report reused, 2, %d", res.Resumed, res.Reports, res.DeadLetters, res.Records, want.Records)
	}
	if n := sb.Stats().ReportsCreated(); n != 1 {
		t.Fatalf("%d reports created; want the first one reused", n)
	}
	file, _, _ := sb.File(acronisQuery(sb))
	var bad []broken
	for _, m := range x.Malformed {
		bad = append(bad, brokenRow(m.Line, m.Reason))
	}
	checkDead(t, e.deadLetters(subj), "acr", res.Reports[0].ID, bad, file)
	e.waitDelivered(res)
	e.waitTotals(want)
}
