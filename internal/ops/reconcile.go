package ops

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/shopspring/decimal"

	"github.com/usagefleet/usagefleet/messages"
)

// Totals are exact counts and sums of one side of a unit.
type Totals struct {
	Records  int                        `json:"records"`
	Rejected int                        `json:"rejected,omitempty"` // acks: refused, dead-lettered
	Cost     decimal.Decimal            `json:"cost"`               // BilledCost, all currencies
	ByCur    map[string]decimal.Decimal `json:"cost_by_currency,omitempty"`
	Quantity decimal.Decimal            `json:"quantity"` // ConsumedQuantity
}

func (t *Totals) add(r *messages.UsageRecord) {
	t.Records++
	c := r.BilledCost.Big()
	t.Cost = t.Cost.Add(c)
	if t.ByCur == nil {
		t.ByCur = map[string]decimal.Decimal{}
	}
	t.ByCur[r.BillingCurrency] = t.ByCur[r.BillingCurrency].Add(c)
	t.Quantity = t.Quantity.Add(r.ConsumedQuantity.Big())
}

// UnitReport is one unit's reconciliation.
type UnitReport struct {
	Unit      string    `json:"unit"`
	Start     time.Time `json:"start"`
	Published Totals    `json:"published"`
	Acked     Totals    `json:"acked"`          // delivered (Records, Cost) and Rejected, from ACKS
	Unacked   int       `json:"unacked_parts"`  // parts without an ack event yet
	Held      *Totals   `json:"held,omitempty"` // at the destination, where it can be read back
	Status    string    `json:"status"`         // ok, pending, mismatch
	Problem   string    `json:"problem,omitempty"`
}

// Reconciliation is a destination's reconciliation over [From, To).
type Reconciliation struct {
	Destination string       `json:"destination"`
	From        time.Time    `json:"from"`
	To          time.Time    `json:"to"`
	ReadBack    string       `json:"read_back"` // how the destination was read, or why not
	Units       []UnitReport `json:"units"`
	Mismatches  int          `json:"mismatches"`
	Pending     int          `json:"pending"`
}

type partKey struct {
	source, batch string
	part          int
}

type pubPart struct {
	unit    string
	records int
}

// nudge is a replay nudge (ActionRebuild) stored for a unit.
type nudge struct {
	unit   string
	seq    uint64
	stored time.Time
}

// Reconcile compares, per unit of dest over [from, to), what was published
// in USAGE (honouring snapshot generations as a rebuild does), what ACKS
// says was delivered or refused, and what the destination holds where it
// can be read back (CloudZero: GET billing_drops/{month}).
func (env *Env) Reconcile(ctx context.Context, dest string, from, to time.Time) (*Reconciliation, error) {
	d := env.Dest(dest)
	if d == nil {
		return nil, fmt.Errorf("destination %q is not in the config", dest)
	}
	from, to = from.UTC().Truncate(time.Hour), to.UTC()
	rec := &Reconciliation{Destination: dest, From: from, To: to}
	units := map[string]*UnitReport{}
	unitOf := func(h time.Time) *UnitReport {
		key, start := h.Format("2006-01-02T15Z"), h
		if d.Replace() {
			if us := d.Dest.Units(h); len(us) > 0 {
				key, start = us[0].Key, us[0].Start
			}
		}
		u := units[key]
		if u == nil {
			u = &UnitReport{Unit: key, Start: start}
			units[key] = u
		}
		return u
	}
	parts, nudges, err := env.published(ctx, d, from, to, unitOf)
	if err != nil {
		return nil, err
	}
	replayed, err := env.acked(ctx, dest, parts, nudges, units)
	if err != nil {
		return nil, err
	}
	if err := env.afterReplay(ctx, d, replayed, units, unitOf); err != nil {
		return nil, err
	}
	held, how, err := env.readBack(ctx, d, from, to)
	if err != nil {
		return nil, err
	}
	rec.ReadBack = how
	if held != nil {
		for h, t := range held {
			u := unitOf(h)
			if u.Held == nil {
				u.Held = &Totals{}
			}
			u.Held.Records += t.Records
			u.Held.Cost = u.Held.Cost.Add(t.Cost)
		}
	}
	for _, u := range units {
		if held != nil && u.Held == nil {
			u.Held = &Totals{}
		}
		judge(u)
		switch u.Status {
		case "mismatch":
			rec.Mismatches++
		case "pending":
			rec.Pending++
		}
		rec.Units = append(rec.Units, *u)
	}
	sort.Slice(rec.Units, func(a, b int) bool { return rec.Units[a].Start.Before(rec.Units[b].Start) })
	return rec, nil
}

func judge(u *UnitReport) {
	u.Status = "ok"
	switch {
	case u.Unacked > 0:
		u.Status, u.Problem = "pending", fmt.Sprintf("%d part(s) not acknowledged yet", u.Unacked)
	case u.Acked.Records+u.Acked.Rejected != u.Published.Records:
		u.Status, u.Problem = "mismatch", fmt.Sprintf("published %d records, acks account for %d delivered + %d rejected", u.Published.Records, u.Acked.Records, u.Acked.Rejected)
	}
	if u.Held != nil && u.Status != "pending" {
		if u.Held.Records != u.Acked.Records || !u.Held.Cost.Equal(u.Acked.Cost) {
			u.Status = "mismatch"
			u.Problem = fmt.Sprintf("acknowledged %d records cost %s, the destination holds %d records cost %s", u.Acked.Records, u.Acked.Cost, u.Held.Records, u.Held.Cost)
		}
	}
}

type snapPart struct {
	seq  uint64
	gen  int64
	hour time.Time
	key  string
}

type markerKey struct {
	key  string
	gen  int64
	hour time.Time
}

// published scans the destination's feeds and adds, per unit, the records
// a rebuild would deliver. It returns the parts that count, by identity.
func (env *Env) published(ctx context.Context, d *Dest, from, to time.Time, unitOf func(time.Time) *UnitReport) (map[partKey]pubPart, map[string]nudge, error) {
	st, err := env.JS.Stream(ctx, messages.StreamUsage)
	if err != nil {
		return nil, nil, fmt.Errorf("stream %s: %w", messages.StreamUsage, err)
	}
	parts := map[partKey]pubPart{}
	nudges := map[string]nudge{}
	var snaps []snapPart
	markers := map[markerKey]int{}
	count := func(seq uint64, h map[string][]string, data []byte, meta messages.PartMeta) {
		u := unitOf(meta.Hour)
		pk := partKey{meta.Source, meta.BatchID, meta.Part}
		part, err := messages.DecodePart(h, data)
		if err != nil {
			// Undecodable: every destination dead-letters it; its ack says so.
			u.Published.Records += meta.Records
			parts[pk] = pubPart{unit: u.Unit, records: meta.Records}
			return
		}
		for i := range part.Records {
			u.Published.add(&part.Records[i])
		}
		parts[pk] = pubPart{unit: u.Unit, records: len(part.Records)}
	}
	for _, subj := range monthSubjects(d.Feeds, from, to) {
		err = scanStream(ctx, st, []string{subj}, time.Time{}, func(m jetstream.Msg, md *jetstream.MsgMetadata) error {
			_, hour, err := messages.ParseUsageSubject(m.Subject())
			if err != nil || hour.Before(from) || !hour.Before(to) {
				return nil
			}
			if !messages.ForDestination(m.Headers(), d.Name) {
				return nil // another destination's (a dead letter replayed to it)
			}
			meta, err := messages.ParseMeta(m.Headers())
			if err != nil {
				u := unitOf(hour)
				u.Published.Records += meta.Records
				parts[partKey{meta.Source, meta.BatchID, meta.Part}] = pubPart{unit: u.Unit, records: meta.Records}
				return nil
			}
			switch meta.Kind {
			case messages.KindSnapshot:
				snaps = append(snaps, snapPart{seq: md.Sequence.Stream, gen: meta.Generation, hour: meta.Hour, key: meta.SnapshotKey()})
			case messages.KindSnapshotEnd:
				if meta.Source == ReplaySource {
					nudges[meta.BatchID] = nudge{unit: unitOf(meta.Hour).Unit, seq: md.Sequence.Stream, stored: md.Timestamp}
				}
				markers[markerKey{meta.SnapshotKey(), meta.Generation, meta.Hour}] = meta.Parts
			default:
				count(md.Sequence.Stream, m.Headers(), m.Data(), meta)
			}
			return nil
		})
		if err != nil {
			return nil, nil, fmt.Errorf("reading %s: %w", subj, err)
		}
	}
	best := newestComplete(snaps, markers)
	for _, s := range snaps {
		if best[keyHour{s.key, s.hour}] != s.gen {
			continue
		}
		raw, err := st.GetMsg(ctx, s.seq)
		if err != nil {
			return nil, nil, fmt.Errorf("stream %s message %d: %w", messages.StreamUsage, s.seq, err)
		}
		meta, _ := messages.ParseMeta(raw.Header)
		count(s.seq, raw.Header, raw.Data, meta)
	}
	return parts, nudges, nil
}

// monthSubjects is one filter per feed and month (subjects are
// usage.<feed>.<yyyy>.<mm>.<dd>.<hh>): only the months of the range are read.
func monthSubjects(feeds []string, from, to time.Time) []string {
	var subjects []string
	for _, f := range feeds {
		for m := time.Date(from.Year(), from.Month(), 1, 0, 0, 0, 0, time.UTC); m.Before(to); m = m.AddDate(0, 1, 0) {
			subjects = append(subjects, fmt.Sprintf("usage.%s.%04d.%02d.*.*", f, m.Year(), int(m.Month())))
		}
	}
	return subjects
}

// keyHour is a snapshot's (source, period) key and one of its hours.
type keyHour struct {
	key  string
	hour time.Time
}

// newestComplete is, per (source, period) and hour, the newest snapshot
// generation whose marker is stored with all its parts.
func newestComplete(snaps []snapPart, markers map[markerKey]int) map[keyHour]int64 {
	seen := map[markerKey]int{}
	for _, s := range snaps {
		seen[markerKey{s.key, s.gen, s.hour}]++
	}
	best := map[keyHour]int64{}
	for mk, want := range markers {
		if seen[mk] == want && mk.gen > best[keyHour{mk.key, mk.hour}] {
			best[keyHour{mk.key, mk.hour}] = mk.gen
		}
	}
	return best
}

// acked adds, per unit, the newest ack event of every counted part. It
// returns, per unit, when the newest replay nudge a finished rebuild
// covered was stored. (Markers get no ack event: a rebuild's finish is
// read from bucket usagefleet_units, where each successful upload leaves
// the stream position it covered, key <destination>.<unit>.)
func (env *Env) acked(ctx context.Context, dest string, parts map[partKey]pubPart, nudges map[string]nudge, units map[string]*UnitReport) (map[string]time.Time, error) {
	st, err := env.JS.Stream(ctx, messages.StreamAcks)
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", messages.StreamAcks, err)
	}
	last := map[partKey]messages.Ack{}
	err = scanStream(ctx, st, []string{"acks.*." + dest}, time.Time{}, func(m jetstream.Msg, _ *jetstream.MsgMetadata) error {
		a, err := messages.DecodeAck(m.Data())
		if err != nil {
			return nil
		}
		pk := partKey{a.Source, a.BatchID, a.Part}
		if _, ok := parts[pk]; ok {
			last[pk] = a
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", messages.StreamAcks, err)
	}
	replayed := map[string]time.Time{}
	for _, n := range nudges {
		covered, err := env.UnitCovered(ctx, dest, n.unit)
		if err != nil {
			return nil, err
		}
		switch {
		case n.seq > covered:
			units[n.unit].Unacked++ // a replay under way
		case n.stored.After(replayed[n.unit]):
			replayed[n.unit] = n.stored
		}
	}
	for pk, p := range parts {
		u := units[p.unit]
		a, ok := last[pk]
		if !ok {
			if p.records > 0 {
				u.Unacked++
			}
			continue
		}
		u.Acked.Records += a.Records
		u.Acked.Rejected += a.Rejected
		u.Acked.Cost = u.Acked.Cost.Add(a.Cost.Big())
	}
	return replayed, nil
}

// afterReplay settles units rebuilt by a replay: the rebuild uploaded the
// whole unit, so the unit's acks (written by earlier rebuilds) no longer
// say what it holds. What it holds is what was published less what that
// rebuild refused again: the dead letters of the unit stored after the
// nudge.
func (env *Env) afterReplay(ctx context.Context, d *Dest, replayed map[string]time.Time, units map[string]*UnitReport, unitOf func(time.Time) *UnitReport) error {
	if len(replayed) == 0 {
		return nil
	}
	var oldest time.Time
	for _, t := range replayed {
		if oldest.IsZero() || t.Before(oldest) {
			oldest = t
		}
	}
	dead, err := ListDead(ctx, env.JS, DeadFilter{Destination: d.Name, Since: oldest, Limit: 1 << 30})
	if err != nil {
		return err
	}
	type rej struct {
		n    int
		cost decimal.Decimal
	}
	again := map[string]*rej{}
	for _, e := range dead {
		_, h, err := messages.ParseUsageSubject(e.Letter.Subject)
		if err != nil {
			continue
		}
		u := unitOf(h).Unit
		t, ok := replayed[u]
		if !ok || e.Stored.Before(t) {
			continue
		}
		r := again[u]
		if r == nil {
			r = &rej{}
			again[u] = r
		}
		// The refused records, read from USAGE by the dead letter's stream
		// sequence and indexes (a dead letter may carry only an excerpt).
		recs, _, err := env.deadRecords(ctx, &e)
		if err != nil {
			return fmt.Errorf("dead letter %d: %w", e.Seq, err)
		}
		for i := range recs {
			r.n++
			r.cost = r.cost.Add(recs[i].BilledCost.Big())
		}
	}
	for key := range replayed {
		u := units[key]
		if u == nil || u.Unacked > 0 {
			continue
		}
		r := again[key]
		if r == nil {
			r = &rej{}
		}
		u.Acked.Records, u.Acked.Rejected = u.Published.Records-r.n, r.n
		u.Acked.Cost = u.Published.Cost.Sub(r.cost)
	}
	return nil
}

// WriteReconciliation prints r as "table", "csv" or "json".
func WriteReconciliation(w io.Writer, r *Reconciliation, format string) error {
	switch format {
	case "json":
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(r)
	case "csv":
		cw := csv.NewWriter(w)
		_ = cw.Write([]string{"destination", "unit", "status", "published_records", "published_cost", "published_quantity", "published_cost_by_currency", "acked_records", "acked_rejected", "acked_cost", "unacked_parts", "held_records", "held_cost", "problem"})
		for _, u := range r.Units {
			hr, hc := "", ""
			if u.Held != nil {
				hr, hc = strconv.Itoa(u.Held.Records), u.Held.Cost.String()
			}
			_ = cw.Write([]string{r.Destination, u.Unit, u.Status, strconv.Itoa(u.Published.Records), u.Published.Cost.String(), u.Published.Quantity.String(), curString(u.Published.ByCur),
				strconv.Itoa(u.Acked.Records), strconv.Itoa(u.Acked.Rejected), u.Acked.Cost.String(), strconv.Itoa(u.Unacked), hr, hc, u.Problem})
		}
		cw.Flush()
		return cw.Error()
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "UNIT\tSTATUS\tPUBLISHED\tCOST\tQUANTITY\tACKED\tREJECTED\tACKED COST\tHELD\tHELD COST\n")
	for _, u := range r.Units {
		hr, hc := "-", "-"
		if u.Held != nil {
			hr, hc = strconv.Itoa(u.Held.Records), u.Held.Cost.String()
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%d\t%d\t%s\t%s\t%s\n", u.Unit, u.Status, u.Published.Records, curString(u.Published.ByCur), u.Published.Quantity, u.Acked.Records, u.Acked.Rejected, u.Acked.Cost, hr, hc)
	}
	tw.Flush()
	fmt.Fprintf(w, "\n%s %s..%s: %d unit(s), %d mismatch(es), %d pending; destination read back: %s\n", r.Destination, r.From.Format(time.RFC3339), r.To.Format(time.RFC3339), len(r.Units), r.Mismatches, r.Pending, r.ReadBack)
	for _, u := range r.Units {
		if u.Problem != "" {
			fmt.Fprintf(w, "  %s %s: %s\n", u.Unit, u.Status, u.Problem)
		}
	}
	return nil
}

func curString(m map[string]decimal.Decimal) string {
	if len(m) == 0 {
		return "0"
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	s := ""
	for i, k := range keys {
		if i > 0 {
			s += " "
		}
		cur := k
		if cur == "" {
			cur = "(none)"
		}
		s += m[k].String() + " " + cur
	}
	return s
}
