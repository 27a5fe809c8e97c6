package input

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/usagefleet/usagefleet/messages"
)

// encodedTranscript is csvTranscript for ReadEncoded: each encoded row is
// made a part of its own and decoded back (encoded rows carry no line; the
// errors carry theirs).
func encodedTranscript(t testing.TB, src string, target, maxChunk int) string {
	t.Helper()
	return transcript(target, maxChunk, func(b *strings.Builder) (Result, error) {
		row := func(r *messages.UsageRecord) { fmt.Fprintf(b, "row %s\n", r.AppendJSON(nil)) }
		return ReadEncoded("t.csv", strings.NewReader(src), Options{Format: CSV}, func(r Row) error {
			row(&r.Record)
			return nil
		}, func(e *EncodedRows) error {
			for i, er := range e.Rows {
				var enc messages.PartEncoder
				enc.UseRow(er.Use, e.Ext)
				part := enc.AppendRow(enc.AppendHeader(nil, 1), er.Use, e.Values(i), e.Ext)
				recs, err := messages.DecodeRecordsAs(nil, part, enc.Schema())
				if err != nil {
					t.Fatal(err)
				}
				row(&recs[0])
			}
			e.Release()
			return nil
		})
	})
}

// withoutLines drops the line numbers of the rows of a csvTranscript.
func withoutLines(s string) string {
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		if strings.HasPrefix(l, "row ") {
			_, rest, _ := strings.Cut(l[4:], " ")
			lines[i] = "row " + rest
		}
	}
	return strings.Join(lines, "\n")
}

// fastInputs are CSV files for the plain-record reader (fastRecords): each
// line mixes fields that it reads and fields it must leave to encoding/csv
// (carriage returns, blank lines, bare quotes, a character after a closing
// quote, quoted newlines, wrong field counts, no final newline).
func fastInputs() map[string]string {
	rng := rand.New(rand.NewPCG(9, 10))
	cells := []string{
		"plain", "", `"quoted"`, `""`, `"with, comma"`, `"dq ""x"" end"`, `""""`, `"""b"`, `"a"""`,
		"\"new\nline\"", "\"cr\r\nlf\"", "cr\r", "\xff\xfe", `"{""k"":1,""t"":true}"`, "NULL",
	}
	bad := []string{`bare"quote`, `"after"x`, ` "space"`, `"a""`}
	var b strings.Builder
	b.WriteString("ChargePeriodStart,BilledCost,BillingCurrency,ResourceId,Tags,x_Note,x_N:int\n")
	for i := range 3000 {
		fmt.Fprintf(&b, "2024-05-01T%02d:00:00Z,%d.5,USD", i%24, i)
		n := 4
		switch rng.IntN(40) {
		case 0:
			n = 3 // too few fields
		case 1:
			n = 5 // too many
		}
		for j := range n {
			c := cells[rng.IntN(len(cells))]
			if rng.IntN(3) > 0 {
				c = []string{"r", `"{""team"":""a""}"`, "note", "7"}[j%4]
			}
			b.WriteString("," + c)
		}
		switch rng.IntN(60) {
		case 0:
			b.WriteString("\r\n")
		case 1:
			b.WriteString("\n\n")
		default:
			b.WriteString("\n")
		}
	}
	s := b.String()
	out := map[string]string{
		"mixed":            s,
		"no final newline": strings.TrimSuffix(s, "\n"),
		"trailing comma":   strings.ReplaceAll(s, "note\n", "note,\n"),
	}
	for i, q := range bad {
		lines := strings.SplitAfter(s, "\n")
		lines[2000] = "2024-05-01T00:00:00Z,1,USD,r," + q + ",n,1\n"
		out[fmt.Sprintf("bad quote %d", i)] = strings.Join(lines, "")
	}
	return out
}

// The chunked reader with encoded rows (plain records read by fastRecords,
// the rest by encoding/csv) gives the rows, errors and warnings of the
// one-pass reader.
func TestEncodedCSVReadsAsOnePass(t *testing.T) {
	inputs := splitInputs()
	for k, v := range fastInputs() {
		inputs[k] = v
	}
	for name, src := range inputs {
		want := withoutLines(csvTranscript(t, src, 1<<30, 1))
		for _, size := range [][2]int{{1 << 30, 1 << 30}, {1, 1 << 30}, {50, 1 << 30}, {300, 1 << 30}, {4096, 1 << 30}, {40, 200}} {
			if got := encodedTranscript(t, src, size[0], size[1]); got != want {
				t.Errorf("%s: encoded rows in chunks of %d (at most %d) read differently:\n%.3000s\nthe one-pass reader:\n%.3000s", name, size[0], size[1], got, want)
			}
		}
	}
}

// FuzzEncodedCSV: whatever the bytes, the chunked reader with encoded rows
// (fastRecords, then encoding/csv for what is not plain) reads what the
// one-pass reader reads.
func FuzzEncodedCSV(f *testing.F) {
	for _, src := range fastInputs() {
		f.Add(src[:min(len(src), 3000)])
	}
	f.Add("ChargePeriodStart,BilledCost,BillingCurrency,x_A\n2024-05-01T00:00:00Z,1,USD,\"a\"\"\"\n2024-05-01T00:00:00Z,1,USD,\"\"\"\",\n")
	f.Fuzz(func(t *testing.T, src string) {
		want := withoutLines(csvTranscript(t, src, 1<<30, 1))
		if got := encodedTranscript(t, src, 40, 1<<30); got != want {
			t.Fatalf("encoded rows in chunks read differently:\n%s\nthe one-pass reader:\n%s", got, want)
		}
	})
}
