package ops

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/usagefleet/usagefleet/messages"
	"github.com/usagefleet/usagefleet/workers"
)

// StatusOptions says what needs a person.
type StatusOptions struct {
	Since      time.Duration // dead letters newer than this need a person (default 24h)
	MaxUnitAge time.Duration // data waiting longer than this needs a person (default 1h)
	Now        time.Time     // default time.Now()
}

// DestStatus is one destination's state.
type DestStatus struct {
	Name       string `json:"name"`
	Type       string `json:"type"`
	Semantics  string `json:"semantics"`
	Pending    uint64 `json:"pending"`     // stored, not yet delivered to a worker
	AckPending int    `json:"ack_pending"` // delivered to a worker, waiting for its unit's upload
	// The oldest part not yet acknowledged (its unit is the oldest dirty
	// one): the first message after the consumer's ack floor on its
	// subjects.
	OldestSubject string         `json:"oldest_subject,omitempty"`
	OldestUnit    string         `json:"oldest_unit,omitempty"`
	OldestStored  time.Time      `json:"oldest_stored,omitzero"`
	OldestAge     time.Duration  `json:"oldest_age_ns,omitempty"`
	Paused        bool           `json:"paused"`
	PauseReason   string         `json:"pause_reason,omitempty"`
	CooldownUntil time.Time      `json:"cooldown_until,omitzero"`
	LastUpload    time.Time      `json:"last_upload,omitzero"` // newest ack event of the destination
	Workers       []string       `json:"workers"`              // workers reporting in uf_status
	DeadSince     int            `json:"dead_letters_since"`
	DeadByReason  map[string]int `json:"dead_by_reason,omitempty"`
	Attention     []string       `json:"attention,omitempty"`
}

// CollectorStatus is a collector's checkpoint.
type CollectorStatus struct {
	Name         string    `json:"name"`
	Type         string    `json:"type"`
	Account      string    `json:"account"`
	LastRun      time.Time `json:"last_run,omitzero"`
	LastPeriod   *spanJSON `json:"last_period,omitempty"`
	Generation   int64     `json:"generation"`
	Running      *spanJSON `json:"running_window,omitempty"`
	Updated      time.Time `json:"updated,omitzero"`
	RejectedRows int       `json:"rejected_rows_since"`
}

type spanJSON struct {
	Start time.Time `json:"start"`
	End   time.Time `json:"end"`
}

// the fields of producer/collect.Checkpoint status shows (the worker
// binary does not link the collectors).
type checkpointJSON struct {
	Collector  string    `json:"collector"`
	Type       string    `json:"type"`
	Account    string    `json:"account"`
	Generation int64     `json:"generation"`
	LastPeriod *spanJSON `json:"last_period"`
	LastRun    time.Time `json:"last_run"`
	Run        *struct {
		Window spanJSON `json:"window"`
	} `json:"run"`
	Updated time.Time `json:"updated"`
}

// Status is the fleet's state.
type Status struct {
	Time         time.Time         `json:"time"`
	Destinations []DestStatus      `json:"destinations"`
	Collectors   []CollectorStatus `json:"collectors"`
	Attention    []string          `json:"attention"`
}

// NeedsAttention reports whether a person should look.
func (s *Status) NeedsAttention() bool { return len(s.Attention) > 0 }

// Status reads the fleet's state.
func (env *Env) Status(ctx context.Context, o StatusOptions) (*Status, error) {
	if o.Since <= 0 {
		o.Since = 24 * time.Hour
	}
	if o.MaxUnitAge <= 0 {
		o.MaxUnitAge = time.Hour
	}
	if o.Now.IsZero() {
		o.Now = time.Now()
	}
	st := &Status{Time: o.Now.UTC(), Attention: []string{}}
	usage, err := env.JS.Stream(ctx, messages.StreamUsage)
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", messages.StreamUsage, err)
	}
	states, err := env.readStates(ctx)
	if err != nil {
		return nil, err
	}
	since := o.Now.Add(-o.Since)
	dead, err := ListDead(ctx, env.JS, DeadFilter{Since: since, Limit: 100000})
	if err != nil {
		return nil, err
	}
	for _, d := range env.Dests {
		ds, err := env.destStatus(ctx, usage, d, o)
		if err != nil {
			return nil, err
		}
		for _, s := range states[d.Name] {
			ds.Workers = append(ds.Workers, s.Worker)
			if s.Paused {
				ds.Paused, ds.PauseReason = true, s.PauseReason
			}
			if s.CooldownUntil.After(ds.CooldownUntil) {
				ds.CooldownUntil = s.CooldownUntil
			}
			if s.LastUpload.After(ds.LastUpload) {
				ds.LastUpload = s.LastUpload
			}
		}
		for _, e := range dead {
			if e.Letter.Destination == d.Name {
				ds.DeadSince++
				ds.DeadByReason[reasonKey(e.Letter.Reason)]++
			}
		}
		if ds.Paused {
			ds.Attention = append(ds.Attention, "paused: "+ds.PauseReason)
		}
		if ds.DeadSince > 0 {
			ds.Attention = append(ds.Attention, fmt.Sprintf("%d dead letter(s) since %s", ds.DeadSince, since.UTC().Format(time.RFC3339)))
		}
		if ds.OldestAge > o.MaxUnitAge {
			ds.Attention = append(ds.Attention, fmt.Sprintf("unit %s waits for %s (over %s)", ds.OldestUnit, ds.OldestAge.Round(time.Second), o.MaxUnitAge))
		}
		for _, a := range ds.Attention {
			st.Attention = append(st.Attention, d.Name+": "+a)
		}
		st.Destinations = append(st.Destinations, *ds)
	}
	if st.Collectors, err = env.collectors(ctx, dead); err != nil {
		return nil, err
	}
	for _, c := range st.Collectors {
		if c.RejectedRows > 0 {
			st.Attention = append(st.Attention, fmt.Sprintf("collector %s: %d rejected row(s) since %s", c.Name, c.RejectedRows, since.UTC().Format(time.RFC3339)))
		}
	}
	return st, nil
}

func (env *Env) destStatus(ctx context.Context, usage jetstream.Stream, d *Dest, o StatusOptions) (*DestStatus, error) {
	ds := &DestStatus{Name: d.Name, Type: d.Type, Semantics: "append", DeadByReason: map[string]int{}, Workers: []string{}}
	if d.Replace() {
		ds.Semantics = "replace"
	}
	cons, err := usage.Consumer(ctx, workers.ConsumerName(d.Name))
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		ds.Attention = append(ds.Attention, "no consumer "+workers.ConsumerName(d.Name)+": no worker of this destination ever started")
		return ds, nil
	}
	if err != nil {
		return nil, fmt.Errorf("consumer %s: %w", workers.ConsumerName(d.Name), err)
	}
	ci, err := cons.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("consumer %s: %w", workers.ConsumerName(d.Name), err)
	}
	ds.Pending, ds.AckPending = ci.NumPending, ci.NumAckPending
	if ci.NumPending == 0 && ci.NumAckPending == 0 {
		return ds, nil
	}
	// The oldest part not acknowledged: the first stored after the ack
	// floor on any of the consumer's subjects.
	from := ci.AckFloor.Stream + 1
	for _, f := range d.Feeds {
		raw, err := usage.GetMsg(ctx, from, jetstream.WithGetMsgSubject(messages.FeedFilter(f)))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("stream %s: oldest unacknowledged of %s: %w", messages.StreamUsage, d.Name, err)
		}
		if ds.OldestStored.IsZero() || raw.Time.Before(ds.OldestStored) {
			ds.OldestStored, ds.OldestSubject = raw.Time.UTC(), raw.Subject
		}
	}
	if !ds.OldestStored.IsZero() {
		ds.OldestAge = o.Now.Sub(ds.OldestStored)
		if _, h, err := messages.ParseUsageSubject(ds.OldestSubject); err == nil {
			ds.OldestUnit = h.Format("2006-01-02T15Z")
			if us := d.Dest.Units(h); d.Replace() && len(us) > 0 {
				ds.OldestUnit = us[0].Key
			}
		}
	}
	return ds, nil
}

// readStates reads BucketStatus by destination (absent bucket: none).
func (env *Env) readStates(ctx context.Context) (map[string][]DestState, error) {
	out := map[string][]DestState{}
	kv, err := statusBucket(ctx, env.JS, false)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return out, nil
	}
	if err != nil {
		return nil, fmt.Errorf("bucket %s: %w", BucketStatus, err)
	}
	keys, err := kv.ListKeys(ctx)
	if err != nil {
		return nil, fmt.Errorf("bucket %s: %w", BucketStatus, err)
	}
	for k := range keys.Keys() {
		e, err := kv.Get(ctx, k)
		if err != nil {
			continue // expired meanwhile
		}
		var s DestState
		if json.Unmarshal(e.Value(), &s) == nil {
			out[s.Destination] = append(out[s.Destination], s)
		}
	}
	// Newest upload from the ACKS stream: what the workers settled last.
	for _, d := range env.Dests {
		if t, err := lastAck(ctx, env.JS, d.Name); err == nil && !t.IsZero() {
			out[d.Name] = append(out[d.Name], DestState{Destination: d.Name, LastUpload: t})
		}
	}
	for n, ss := range out {
		var ws []DestState
		var last time.Time
		for _, s := range ss {
			if s.LastUpload.After(last) {
				last = s.LastUpload
			}
			if s.Worker != "" {
				ws = append(ws, s)
			}
		}
		if len(ws) == 0 {
			ws = []DestState{{Destination: n}}
		}
		ws[0].LastUpload = last
		out[n] = ws
	}
	return out, nil
}

// lastAck is the time of the newest ack event of dest (the last part a
// worker settled after an upload: delivered, or rejected by the API).
func lastAck(ctx context.Context, js jetstream.JetStream, dest string) (time.Time, error) {
	st, err := js.Stream(ctx, messages.StreamAcks)
	if err != nil {
		return time.Time{}, err
	}
	subj := "acks.*." + dest
	info, err := st.Info(ctx, jetstream.WithSubjectFilter(subj))
	if err != nil || len(info.State.Subjects) == 0 {
		return time.Time{}, err
	}
	var last time.Time
	for s := range info.State.Subjects {
		raw, err := st.GetLastMsgForSubject(ctx, s)
		if err != nil {
			continue
		}
		var a messages.Ack
		if json.Unmarshal(raw.Data, &a) == nil && a.Time.After(last) {
			last = a.Time
		}
	}
	return last, nil
}

func (env *Env) collectors(ctx context.Context, dead []DeadEntry) ([]CollectorStatus, error) {
	out := []CollectorStatus{}
	kv, err := env.JS.KeyValue(ctx, messages.BucketCheckpoints)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return out, nil
	}
	if err != nil {
		return nil, fmt.Errorf("bucket %s: %w", messages.BucketCheckpoints, err)
	}
	keys, err := kv.ListKeys(ctx)
	if err != nil {
		return nil, fmt.Errorf("bucket %s: %w", messages.BucketCheckpoints, err)
	}
	for k := range keys.Keys() {
		e, err := kv.Get(ctx, k)
		if err != nil {
			continue
		}
		var ck checkpointJSON
		if json.Unmarshal(e.Value(), &ck) != nil {
			continue
		}
		c := CollectorStatus{Name: orDefault(ck.Collector, k), Type: ck.Type, Account: ck.Account, LastRun: ck.LastRun, LastPeriod: ck.LastPeriod, Generation: ck.Generation, Updated: ck.Updated}
		if ck.Run != nil {
			w := ck.Run.Window
			c.Running = &w
		}
		for _, d := range dead {
			if d.Letter.Destination == "_collect" && d.Letter.Source == c.Name {
				c.RejectedRows++
			}
		}
		out = append(out, c)
	}
	sort.Slice(out, func(a, b int) bool { return out[a].Name < out[b].Name })
	return out, nil
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// reasonKey groups reasons: the text before the first digit-heavy detail
// is kept whole up to 100 characters.
func reasonKey(r string) string {
	if len(r) > 100 {
		return r[:100] + "…"
	}
	return r
}

// WriteStatus prints s as tables.
func WriteStatus(w io.Writer, s *Status) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "DESTINATION\tTYPE\tPENDING\tACK-PENDING\tOLDEST UNIT\tAGE\tPAUSED\tCOOLDOWN\tLAST UPLOAD\tDEAD\tWORKERS")
	for _, d := range s.Destinations {
		age, paused, cool, last := "-", "no", "-", "-"
		if !d.OldestStored.IsZero() {
			age = d.OldestAge.Round(time.Second).String()
		}
		if d.Paused {
			paused = "PAUSED"
		}
		if d.CooldownUntil.After(s.Time) {
			cool = d.CooldownUntil.Sub(s.Time).Round(time.Second).String()
		}
		if !d.LastUpload.IsZero() {
			last = d.LastUpload.UTC().Format(time.RFC3339) + " (" + s.Time.Sub(d.LastUpload).Round(time.Second).String() + " ago)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%s\t%s\t%s\t%s\t%s\t%d\t%d\n", d.Name, d.Type+"/"+d.Semantics, d.Pending, d.AckPending, orDefault(d.OldestUnit, "-"), age, paused, cool, last, d.DeadSince, len(d.Workers))
	}
	tw.Flush()
	for _, d := range s.Destinations {
		reasons := make([]string, 0, len(d.DeadByReason))
		for r := range d.DeadByReason {
			reasons = append(reasons, r)
		}
		sort.Slice(reasons, func(a, b int) bool { return d.DeadByReason[reasons[a]] > d.DeadByReason[reasons[b]] })
		for _, r := range reasons {
			fmt.Fprintf(w, "  %s dead letters: %d × %s\n", d.Name, d.DeadByReason[r], r)
		}
		if d.Paused {
			fmt.Fprintf(w, "  %s paused: %s\n", d.Name, d.PauseReason)
		}
	}
	if len(s.Collectors) > 0 {
		fmt.Fprintln(w)
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "COLLECTOR\tTYPE\tACCOUNT\tLAST RUN\tLAST PERIOD\tGENERATION\tRUNNING\tREJECTED ROWS")
		for _, c := range s.Collectors {
			last, period, running := "-", "-", "no"
			if !c.LastRun.IsZero() {
				last = c.LastRun.UTC().Format(time.RFC3339)
			}
			if c.LastPeriod != nil {
				period = c.LastPeriod.Start.UTC().Format(time.RFC3339) + "/" + c.LastPeriod.End.UTC().Format(time.RFC3339)
			}
			if c.Running != nil {
				running = "window " + c.Running.Start.UTC().Format(time.RFC3339) + "/" + c.Running.End.UTC().Format(time.RFC3339)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\t%d\n", c.Name, c.Type, c.Account, last, period, c.Generation, running, c.RejectedRows)
		}
		tw.Flush()
	}
	fmt.Fprintln(w)
	if len(s.Attention) == 0 {
		fmt.Fprintln(w, "nothing needs attention")
		return
	}
	fmt.Fprintln(w, "NEEDS ATTENTION:")
	for _, a := range s.Attention {
		fmt.Fprintln(w, "  "+strings.TrimSpace(a))
	}
}
