package input

import (
	"fmt"
	"strings"
	"testing"
)

// csvTranscript reads src as CSV with chunks cut past target bytes (and
// the one-pass reader taking over after maxChunk bytes without a record
// end) and says what came out: rows with their lines and values, errors,
// warnings, version and the error.
func csvTranscript(t testing.TB, src string, target, maxChunk int) string {
	t.Helper()
	return transcript(target, maxChunk, func(b *strings.Builder) (Result, error) {
		return ReadWith("t.csv", strings.NewReader(src), Options{Format: CSV}, func(r Row) error {
			fmt.Fprintf(b, "row %d %s\n", r.Line, r.Record.AppendJSON(nil))
			return nil
		})
	})
}

// transcript reads with chunks cut past target bytes and maxChunk, read
// writing the rows to b, and adds what the reading said: its errors,
// warnings, version and error.
func transcript(target, maxChunk int, read func(b *strings.Builder) (Result, error)) string {
	defer func(a, b int) { csvChunkTarget, csvChunkMax = a, b }(csvChunkTarget, csvChunkMax)
	csvChunkTarget, csvChunkMax = target, maxChunk
	var b strings.Builder
	res, err := read(&b)
	for _, e := range res.Errors {
		fmt.Fprintf(&b, "error %v\n", e)
	}
	for _, e := range res.Warnings {
		fmt.Fprintf(&b, "warning %v\n", e)
	}
	fmt.Fprintf(&b, "version %q err %v\n", res.Version, err)
	return b.String()
}

const splitHeader = "ChargePeriodStart,BillingAccountId,ResourceId,BilledCost,BillingCurrency,Tags,x_Note\n"

// splitInputs are CSV files whose records and errors the chunked reader
// must get exactly as the one-pass reader does.
func splitInputs() map[string]string {
	var good, quoted, bad, bare, unclosed, many strings.Builder
	for i := range 60 {
		fmt.Fprintf(&good, "2024-05-01T%02d:00:00Z,acct,r%d,%d.25,USD,,plain\n", i%24, i, i)
		// Quoted newlines (LF and CRLF), doubled quotes and commas in
		// quotes, so that cuts fall near and inside quoted fields.
		fmt.Fprintf(&quoted, "2024-05-01T%02d:00:00Z,acct,\"r%d\nsecond \"\"line\"\"\r\nthird, too\",%d.5,USD,\"{\"\"k\"\":\"\"v%d\"\"}\",\"a\n\n\nb\"\r\n", i%24, i, i, i)
		if i%7 == 3 {
			fmt.Fprintf(&bad, "2024-05-01T%02d:00:00Z,acct,\"r\n%d\",12.x,USD,,\"n\no\"\n", i%24, i)
		} else if i%11 == 5 {
			fmt.Fprintf(&bad, "2024-05-01T%02d:00:00Z,acct,r%d,1,USD,,n,extra\n\n", i%24, i)
		} else {
			fmt.Fprintf(&bad, "2024-05-01T%02d:00:00Z,acct,\"r%d\nx\",%d,USD,,\"n\"\n", i%24, i, i)
		}
		if i == 20 {
			// A bare quote: the quotes' parity is wrong from here on.
			bare.WriteString("2024-05-01T00:00:00Z,acct,r\"x,1,USD,,n\n")
		}
		fmt.Fprintf(&bare, "2024-05-01T%02d:00:00Z,acct,\"r%d\ny\",1,USD,,n\n", i%24, i)
		fmt.Fprintf(&unclosed, "2024-05-01T%02d:00:00Z,acct,r%d,1,USD,,\"n\"\n", i%24, i)
		if i == 40 {
			unclosed.WriteString("2024-05-01T00:00:00Z,acct,\"never closed,1,USD,,n\n")
		}
	}
	for i := range MaxErrors + 30 {
		fmt.Fprintf(&many, "2024-05-01T00:00:00Z,acct,\"r\n%d\",bad,USD,,n\n", i)
	}
	return map[string]string{
		"good":     splitHeader + good.String(),
		"quoted":   "\ufeff" + strings.ReplaceAll(splitHeader, "\n", "\r\n") + quoted.String(),
		"bad":      splitHeader + bad.String(),
		"bare":     splitHeader + bare.String(),
		"unclosed": splitHeader + unclosed.String(),
		"many":     splitHeader + many.String(),
		"noheader": "\n\n\n" + splitHeader + good.String(),
		"header":   "ChargePeriodStart,\"Billed\"Cost\n" + good.String(),
		"empty":    "",
		"unknown":  "ChargePeriodStart,BilledCost,BillingCurrency,Cost Center\n2024-05-01T00:00:00Z,1,USD,cc\n2024-05-01T00:00:00Z,1,USD,\"c\nc\"",
	}
}

// Chunks of every size give the rows, lines and errors of the one-pass
// reader: cuts never fall inside a quoted field (they contain newlines
// here), each chunk's lines continue the last's, and a file whose quotes
// are malformed is read on in one pass from the chunk where that shows.
func TestCSVChunksReadAsOnePass(t *testing.T) {
	for name, src := range splitInputs() {
		// The one-pass reader: the first chunk is "raw" at once.
		want := csvTranscript(t, src, 1<<30, 1)
		if name != "empty" && !strings.Contains(want, "row ") && !strings.Contains(want, "error ") {
			t.Fatalf("%s: the input gives nothing to compare:\n%s", name, want)
		}
		for _, size := range [][2]int{{1 << 30, 1 << 30}, {1, 1 << 30}, {7, 1 << 30}, {50, 1 << 30}, {300, 1 << 30}, {1, 64}, {40, 200}, {1000, 4000}} {
			if got := csvTranscript(t, src, size[0], size[1]); got != want {
				t.Errorf("%s: chunks of %d (at most %d) read differently:\n%s\nthe one-pass reader:\n%s", name, size[0], size[1], got, want)
			}
		}
	}
}

// A file whose quotes are well formed is read in chunks to its end; one
// with a bare quote or a quoted field never closed goes on in one pass
// from about where that is, not from the start.
func TestCSVChunksOnePassOnlyWhenQuotesAreBad(t *testing.T) {
	defer func() { csvOnePassHook = nil }()
	for name, wantFrom := range map[string]int{"good": 0, "quoted": 0, "bad": 0, "many": 0, "bare": 42, "unclosed": 43} {
		from := 0
		csvOnePassHook = func(line int) { from = line }
		csvTranscript(t, splitInputs()[name], 50, 1<<30)
		if wantFrom == 0 && from != 0 {
			t.Errorf("%s: read in one pass from line %d", name, from)
		}
		if wantFrom != 0 && (from == 0 || from > wantFrom+3 || from < wantFrom-8) {
			t.Errorf("%s: read in one pass from line %d, want about %d", name, from, wantFrom)
		}
	}
}

// The one-pass transcripts hold what the comparison relies on: errors at
// the lines where their records start, past quoted newlines.
func TestCSVChunkLines(t *testing.T) {
	src := splitInputs()["bad"]
	got := csvTranscript(t, src, 1, 1<<30)
	for _, want := range []string{
		"error t.csv:8: BilledCost: \"12.x\": not a decimal number", // i=3: rows 0-2 take two lines each
		"error t.csv:13: row has 8 fields, the header has 7",        // i=5 (i%11==5), a blank line after it
		"row 2 ",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("missing %q in:\n%s", want, got)
		}
	}
	many := csvTranscript(t, splitInputs()["many"], 1, 1<<30)
	if !strings.Contains(many, "error t.csv: and 30 more errors\n") || !strings.Contains(many, fmt.Sprintf("error t.csv:%d: BilledCost", 2+2*(MaxErrors-1))) {
		t.Errorf("the error cap across chunks:\n%.2000s", many[len(many)-2000:])
	}
}
