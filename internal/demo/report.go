package demo

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/usagefleet/usagefleet/internal/sandbox/fault"
	"github.com/usagefleet/usagefleet/internal/sandbox/serve"
	"github.com/usagefleet/usagefleet/messages"
)

// What the demo prints: the reconciliation table, the faults the
// sandboxes injected, and the progress lines; and the random secrets and
// seed each run makes.

// printTable prints a line per measure: records (with acks and
// rejections), quantity where it is reconciled, and cost (left out for a
// source that carries none). Text is left-aligned, numbers right-aligned.
func printTable(w io.Writer, rows []Row) {
	yes := func(b bool) string {
		if b {
			return "yes"
		}
		return "NO"
	}
	lines := [][]string{{"destination", "source", "", "published", "received", "acked", "rejected", "match"}}
	for _, r := range rows {
		lines = append(lines, []string{r.Destination, r.Source, "records", fmt.Sprint(r.PublishedRecords), fmt.Sprint(r.ReceivedRecords),
			fmt.Sprint(r.AckedRecords), fmt.Sprint(r.Rejected), yes(r.recordsMatch())})
		if r.HasQuantity {
			lines = append(lines, []string{"", "", "quantity", r.PublishedQuantity.String(), r.ReceivedQuantity.String(), "", "", yes(r.quantityMatch())})
		}
		if !r.PublishedCost.Equal(messages.DecimalFromInt(0)) || !r.costMatch() {
			lines = append(lines, []string{"", "", "cost", r.PublishedCost.String(), r.ReceivedCost.String(), "", "", yes(r.costMatch())})
		}
	}
	width := make([]int, len(lines[0]))
	for _, l := range lines {
		for i, c := range l {
			width[i] = max(width[i], len(c))
		}
	}
	for _, l := range lines {
		var b strings.Builder
		for i, c := range l {
			if i > 0 {
				b.WriteString("  ")
			}
			pad := strings.Repeat(" ", width[i]-len(c))
			if i >= 3 && i <= 6 { // numbers
				b.WriteString(pad + c)
			} else {
				b.WriteString(c + pad)
			}
		}
		fmt.Fprintln(w, strings.TrimRight(b.String(), " "))
	}
}

// faultSummary renders what one emulator's injector fired ("17 status").
func faultSummary(m map[fault.Kind]int) string {
	var kinds []string
	for k := range m {
		kinds = append(kinds, string(k))
	}
	slices.Sort(kinds)
	var parts []string
	for _, k := range kinds {
		parts = append(parts, fmt.Sprintf("%d %s", m[fault.Kind(k)], k))
	}
	return strings.Join(parts, ", ")
}

// progress redraws one line on a terminal and prints at most a line a
// second elsewhere (CI logs, pipes).
type progress struct {
	w     io.Writer
	tty   bool
	last  time.Time
	drawn bool
}

func newProgress(w io.Writer) *progress {
	tty := false
	if f, ok := w.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			tty = true
		}
	}
	return &progress{w: w, tty: tty}
}

func (p *progress) show(format string, args ...any) {
	if p.tty {
		fmt.Fprintf(p.w, "\r\033[K"+format, args...)
		p.drawn = true
		return
	}
	if time.Since(p.last) >= time.Second {
		p.last = time.Now()
		fmt.Fprintf(p.w, format+"\n", args...)
	}
}

func (p *progress) done() {
	if p.tty && p.drawn {
		fmt.Fprint(p.w, "\r\033[K")
		p.drawn = false
	}
}

func bar(done, total int) string {
	const width = 30
	if total == 0 {
		return ""
	}
	n := done * width / total
	return "[" + strings.Repeat("#", n) + strings.Repeat(".", width-n) + "]"
}

func urls(m map[string]string) string {
	var parts []string
	for _, n := range serve.Names() {
		if u, ok := m[n]; ok {
			parts = append(parts, n+"="+u)
		}
	}
	return strings.Join(parts, " ")
}

func randomSecret() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// randomSeed seeds the generated usage, the report emulators' data and the
// fault injectors: each run differs, and each is exact.
func randomSeed() int64 {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return int64(binary.LittleEndian.Uint64(b[:]) >> 1)
}
