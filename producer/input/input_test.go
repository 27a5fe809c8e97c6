package input

import (
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/usagefleet/usagefleet/messages"
)

// read runs Read on src and returns the good rows and the errors as strings.
func read(t *testing.T, name, src string, f Format) ([]Row, []string) {
	t.Helper()
	var rows []Row
	errs, err := Read(name, strings.NewReader(src), f, func(r Row) error {
		rows = append(rows, r)
		return nil
	})
	if err != nil {
		t.Fatalf("Read: unexpected error %v", err)
	}
	return rows, errStrings(errs)
}

func errStrings(errs []Error) []string {
	var out []string
	for _, e := range errs {
		out = append(out, e.Error())
	}
	return out
}

func lines(rows []Row) []int {
	var out []int
	for _, r := range rows {
		out = append(out, r.Line)
	}
	return out
}

const csvHeader = "ChargePeriodStart,BillingAccountId,SkuId,ConsumedQuantity,ConsumedUnit,BilledCost,BillingCurrency\n"

func TestReadErrors(t *testing.T) {
	tests := []struct {
		name      string
		file      string
		format    Format
		src       string
		wantLines []int    // lines of the good rows
		wantErrs  []string // exactly, in order
		strict    bool
	}{
		{
			name:      "csv good",
			file:      "u.csv",
			format:    CSV,
			src:       csvHeader + "2024-05-01T10:00:00Z,acct,sku,1.5,GB,0.10,USD\n2024-05-01T11:00:00Z,acct,sku,2,GB,0.20,USD\n",
			wantLines: []int{2, 3},
		},
		{
			name:      "csv bad decimal",
			file:      "u.csv",
			format:    CSV,
			src:       csvHeader + "2024-05-01T10:00:00Z,acct,sku,1.5,GB,0.10,USD\n2024-05-01T11:00:00Z,acct,sku,2,GB,1,20,USD\n2024-05-01T11:00:00Z,acct,sku,2,GB,12.x,USD\n",
			wantLines: []int{2},
			wantErrs: []string{
				"u.csv:3: row has 8 fields, the header has 7",
				`u.csv:4: BilledCost: "12.x": not a decimal number`,
			},
		},
		{
			name:     "csv missing ChargePeriodStart",
			file:     "u.csv",
			format:   CSV,
			src:      csvHeader + ",acct,sku,1.5,GB,0.10,USD\n",
			wantErrs: []string{"u.csv:2: ChargePeriodStart: required"},
		},
		{
			name:     "csv bad time is reported once, not also as missing",
			file:     "u.csv",
			format:   CSV,
			src:      csvHeader + "yesterday,acct,sku,1.5,GB,0.10,USD\n",
			wantErrs: []string{`u.csv:2: ChargePeriodStart: "yesterday" is not an RFC 3339 time`},
		},
		{
			name:   "csv unknown (strict) and repeated columns: header errors, rows still checked, none delivered",
			strict: true,
			file:   "u.csv",
			format: CSV,
			src:    "ChargePeriodStart,billedcost,SkuId,SkuId,Tags.team,tag:team\n2024-05-01T10:00:00Z,1,a,b,x,y\nnope,1,a,b,x,y\n",
			wantErrs: []string{
				"u.csv:1: billedcost: not a FOCUS column (the FOCUS column BilledCost differs only in case) (--strict refuses it; extension columns start with x_, tag columns with Tags. or tag:)",
				"u.csv:1: SkuId: repeated column",
				`u.csv:1: tag:team: same column as "Tags.team"`,
				`u.csv:3: ChargePeriodStart: "nope" is not an RFC 3339 time`,
			},
		},
		{
			name:     "csv bad extension column names and types",
			file:     "u.csv",
			format:   CSV,
			src:      "ChargePeriodStart,x_9lives,x_N:float,Tags.\n",
			wantErrs: []string{"u.csv:1: x_9lives: extension column names are a letter then letters, digits or _ (at most 64)", `u.csv:1: x_N:float: extension column type "float" is not string, int or decimal`, "u.csv:1: Tags.: tag column without a key"},
		},
		{
			name:   "csv validation problems and multi-line quoted record start line",
			file:   "u.csv",
			format: CSV,
			src:    csvHeader + "2024-05-01T10:00:00Z,\"acct\nwith newline\",sku,1.5,,0.10,\n2024-05-01T10:00:00Z,acct,sku,,,-1,usd\n",
			wantErrs: []string{
				"u.csv:2: BillingCurrency: required when a cost is set",
				"u.csv:2: ConsumedUnit: required when ConsumedQuantity is set",
				`u.csv:4: BillingCurrency: "usd" is not an ISO 4217 currency code`,
			},
		},
		{
			name:      "csv tags: JSON column, per-key columns, conflict",
			file:      "u.csv",
			format:    CSV,
			src:       "ChargePeriodStart,Tags,Tags.team,tag:env\n2024-05-01T10:00:00Z,\"{\"\"team\"\":\"\"a\"\"}\",a,prod\n2024-05-01T10:00:00Z,\"{\"\"team\"\":\"\"a\"\"}\",b,\n2024-05-01T10:00:00Z,[1],,\n",
			wantLines: []int{2},
			wantErrs: []string{
				`u.csv:3: Tags.team: "b" conflicts with "a" in the Tags column`,
				"u.csv:4: Tags: want a JSON object, got [1]",
			},
		},
		{
			name:      "csv bare quote",
			file:      "u.csv",
			format:    CSV,
			src:       "ChargePeriodStart,SkuId\n2024-05-01T10:00:00Z,a\"b\n2024-05-01T10:00:00Z,ok\n",
			wantErrs:  []string{`u.csv:2: bare " in non-quoted-field`},
			wantLines: []int{3},
		},
		{
			name:     "csv empty file",
			file:     "u.csv",
			format:   CSV,
			src:      "",
			wantErrs: []string{"u.csv:1: no header row"},
		},
		{
			name:      "ndjson good with blank lines",
			file:      "u.ndjson",
			format:    NDJSON,
			src:       "{\"ChargePeriodStart\":\"2024-05-01T10:00:00Z\",\"BilledCost\":0.1,\"BillingCurrency\":\"USD\"}\n\n  \n{\"ChargePeriodStart\":\"2024-05-01T10:00:00Z\"}\n",
			wantLines: []int{1, 4},
		},
		{
			name:   "ndjson bad line, bad decimal, unknown key (strict), missing start, not an object",
			strict: true,
			file:   "u.ndjson",
			format: NDJSON,
			src: `{"ChargePeriodStart":"2024-05-01T10:00:00Z"}
{"ChargePeriodStart":"2024-05-01T10:00:00Z",
{"ChargePeriodStart":"2024-05-01T10:00:00Z","BilledCost":"1.2.3","BillingCurrency":"USD"}
{"ChargePeriodStart":"2024-05-01T10:00:00Z","Bogus":1}
{"SkuId":"a"}
[1]
{"ChargePeriodStart":"2024-05-01T10:00:00Z","SkuId":"a","SkuId":"b"}
{"ChargePeriodStart":"2024-05-01T10:00:00Z"} {}
{"ChargePeriodStart":"2024-05-01T12:00:00Z"}
`,
			wantLines: []int{1, 9},
			wantErrs: []string{
				"u.ndjson:2: invalid JSON: unexpected end of input",
				`u.ndjson:3: BilledCost: "1.2.3": not a decimal number`,
				"u.ndjson:4: Bogus: not a FOCUS column (--strict refuses it; extension columns start with x_, tag columns with Tags. or tag:)",
				"u.ndjson:5: ChargePeriodStart: required",
				"u.ndjson:6: want a JSON object, got [1]",
				"u.ndjson:7: SkuId: repeated key",
				"u.ndjson:8: invalid JSON: more than one value on the line",
			},
		},
		{
			name:   "json array element lines",
			file:   "u.json",
			format: JSONArray,
			src: `[
  {"ChargePeriodStart": "2024-05-01T10:00:00Z"},
  {
    "ChargePeriodStart": "2024-05-01T10:00:00Z",
    "BilledCost": "x"
  },

  {"ChargePeriodStart": "not a time"}, 7,
  {"ChargePeriodStart": "2024-05-01T10:00:00Z"}
]
`,
			wantLines: []int{2, 9},
			wantErrs: []string{
				`u.json:3: BilledCost: "x": not a decimal number`,
				`u.json:8: ChargePeriodStart: "not a time" is not an RFC 3339 time`,
				"u.json:8: want a JSON object, got 7",
			},
		},
		{
			name:      "json array syntax error stops at its line",
			file:      "u.json",
			format:    JSONArray,
			src:       "[\n{\"ChargePeriodStart\": \"2024-05-01T10:00:00Z\"},\n{\"ChargePeriodStart\" \"2024\"},\n{}\n]",
			wantLines: []int{2},
			wantErrs:  []string{"u.json:3: invalid JSON: invalid character '\"' after object key"},
		},
		{
			name:      "json array truncated",
			file:      "u.json",
			format:    JSONArray,
			src:       "[\n{\"ChargePeriodStart\": \"2024-05-01T10:00:00Z\"},\n",
			wantLines: []int{2},
			wantErrs:  []string{"u.json:2: invalid JSON: unexpected end of input"},
		},
		{
			name:     "json not an array",
			file:     "u.json",
			format:   JSONArray,
			src:      "\n\n\"hello\"",
			wantErrs: []string{"u.json:3: want a JSON array of records"},
		},
		{
			name:      "json missing comma and stray comma",
			file:      "u.json",
			format:    JSONArray,
			src:       "[\n{\"ChargePeriodStart\": \"2024-05-01T10:00:00Z\"}\n\n{}]",
			wantLines: []int{2},
			wantErrs:  []string{"u.json:4: invalid JSON: expected comma after array element"},
		},
		{
			name:      "json stray comma",
			file:      "u.json",
			format:    JSONArray,
			src:       "[\n{\"ChargePeriodStart\": \"2024-05-01T10:00:00Z\"},\n\n  ]",
			wantLines: []int{2},
			wantErrs:  []string{"u.json:4: invalid JSON: invalid character ']' looking for beginning of value"},
		},
		{
			name:     "json data after the array",
			file:     "u.json",
			format:   JSONArray,
			src:      "[]\n]",
			wantErrs: []string{"u.json:2: invalid JSON: invalid character ']' looking for beginning of value"},
		},
		{
			name:      ".json holding NDJSON is read as NDJSON",
			file:      "u.json",
			format:    JSONArray,
			src:       "{\"ChargePeriodStart\":\"2024-05-01T10:00:00Z\"}\n{\"ChargePeriodStart\":\"2024-05-01T11:00:00Z\"}\n",
			wantLines: []int{1, 2},
		},
		{
			name:      "auto sniffs an array after a BOM and blank lines",
			file:      "u.data",
			format:    Auto,
			src:       "\ufeff\n\n [{\"ChargePeriodStart\":\"2024-05-01T10:00:00Z\"}]",
			wantLines: []int{3},
		},
		{
			name:      "auto sniffs CSV with a BOM",
			file:      "u.data",
			format:    Auto,
			src:       "\ufeffChargePeriodStart\n2024-05-01\n",
			wantLines: []int{2},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var rows []Row
			res, err := ReadWith(tc.file, strings.NewReader(tc.src), Options{Format: tc.format, Strict: tc.strict}, func(r Row) error {
				rows = append(rows, r)
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			errs := errStrings(res.Errors)
			if got := lines(rows); !slices.Equal(got, tc.wantLines) {
				t.Errorf("good rows at lines %v, want %v", got, tc.wantLines)
			}
			if !slices.Equal(errs, tc.wantErrs) {
				t.Errorf("errors:\n  %s\nwant:\n  %s", strings.Join(errs, "\n  "), strings.Join(tc.wantErrs, "\n  "))
			}
		})
	}
}

func TestCSVValues(t *testing.T) {
	src := "ChargePeriodStart,ChargePeriodEnd,BillingAccountId,ServiceName,ConsumedQuantity,ConsumedUnit,BilledCost,EffectiveCost,BillingCurrency,Tags,Tags.team,tag:aws:env,x_Project,x_Units:int,x_Rate:decimal\n" +
		"2024-05-01 10:00:00, 2024-05-01T13:00:00+02:00 , acct ,Compute,1e-3,GB, 0.1000000000000000000001 ,,USD,\"{\"\"cc\"\":\"\"42\"\"}\",core,prod,00123, 7 ,1.50\n" +
		"2024-05-01,,,,,,,,,,,,,,\n"
	rows, errs := read(t, "v.csv", src, CSV)
	if len(errs) > 0 {
		t.Fatalf("errors: %v", errs)
	}
	if len(rows) != 2 {
		t.Fatalf("got %d rows, want 2", len(rows))
	}
	r := rows[0].Record
	checks := []struct {
		what      string
		got, want any
	}{
		{"ChargePeriodStart", r.ChargePeriodStart, time.Date(2024, 5, 1, 10, 0, 0, 0, time.UTC)},
		{"ChargePeriodEnd (UTC)", r.ChargePeriodEnd, time.Date(2024, 5, 1, 11, 0, 0, 0, time.UTC)},
		{"strings verbatim", r.BillingAccountId, " acct "},
		{"ServiceName", r.ServiceName, "Compute"},
		{"exponent normalised", r.ConsumedQuantity.String(), "0.001"},
		{"exact cost", r.BilledCost.String(), "0.1000000000000000000001"},
		{"empty decimal unset", r.EffectiveCost.IsSet(), false},
		{"tags", fmt.Sprint(r.Tags), "map[aws:env:prod cc:42 team:core]"},
		{"x string keeps zeros", r.Ext["Project"], messages.ExtStr("00123")},
		{"x int", r.Ext["Units"], messages.ExtI(7)},
		{"x decimal", r.Ext["Rate"].String(), "1.50"},
		{"x decimal kind", r.Ext["Rate"].Kind, messages.ExtDecimal},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s: got %#v, want %#v", c.what, c.got, c.want)
		}
	}
	empty := rows[1].Record
	if empty.BillingAccountId != "" || empty.Tags != nil || empty.Ext != nil || empty.BilledCost.IsSet() || !empty.ChargePeriodEnd.IsZero() {
		t.Errorf("empty cells must leave fields unset: %+v", empty)
	}
}

func TestJSONNumbersStayExact(t *testing.T) {
	src := `{"ChargePeriodStart":"2024-05-01T10:00:00Z","BilledCost":0.1000000000000000000001,"BillingCurrency":"USD","ConsumedQuantity":12345678901234567890.5,"ConsumedUnit":"B","x_N":3,"x_D":2.50,"x_S":"007"}`
	for _, tc := range []struct {
		format Format
		src    string
	}{{NDJSON, src}, {JSONArray, "[" + src + "]"}} {
		rows, errs := read(t, "n", tc.src, tc.format)
		if len(errs) > 0 || len(rows) != 1 {
			t.Fatalf("%v: rows %d errors %v", tc.format, len(rows), errs)
		}
		r := rows[0].Record
		if r.BilledCost.String() != "0.1000000000000000000001" || r.ConsumedQuantity.String() != "12345678901234567890.5" {
			t.Errorf("%v: numbers not exact: %s %s", tc.format, r.BilledCost, r.ConsumedQuantity)
		}
		if !r.Ext["N"].Equal(messages.ExtI(3)) || r.Ext["D"].String() != "2.50" || !r.Ext["S"].Equal(messages.ExtStr("007")) {
			t.Errorf("%v: ext %v", tc.format, r.Ext)
		}
	}
}

func TestErrorCap(t *testing.T) {
	var b strings.Builder
	b.WriteString("ChargePeriodStart\n")
	const n = MaxErrors + 250
	for range n {
		b.WriteString("bad\n")
	}
	_, errs := read(t, "big.csv", b.String(), CSV)
	if len(errs) != MaxErrors+1 {
		t.Fatalf("got %d errors, want %d", len(errs), MaxErrors+1)
	}
	if got, want := errs[MaxErrors-1], `big.csv:1001: ChargePeriodStart: "bad" is not an RFC 3339 time`; got != want {
		t.Errorf("last listed error %q, want %q", got, want)
	}
	if got, want := errs[MaxErrors], "big.csv: and 250 more errors"; got != want {
		t.Errorf("summary %q, want %q", got, want)
	}
}

func TestFormatOf(t *testing.T) {
	for path, want := range map[string]Format{
		"a.csv": CSV, "A.CSV.GZ": CSV, "dir.json/a.ndjson": NDJSON, "a.jsonl.gz": NDJSON,
		"a.json": JSONArray, "a.json.gz": JSONArray, "a.txt": Auto, "a.gz": Auto, "csv": Auto,
	} {
		if got := FormatOf(path); got != want {
			t.Errorf("FormatOf(%q) = %v, want %v", path, got, want)
		}
	}
	for s, want := range map[string]Format{"": Auto, "CSV": CSV, "jsonl": NDJSON, "ndjson": NDJSON, "json": JSONArray} {
		if got, err := ParseFormat(s); err != nil || got != want {
			t.Errorf("ParseFormat(%q) = %v, %v; want %v", s, got, err, want)
		}
	}
	if _, err := ParseFormat("xml"); err == nil {
		t.Error("ParseFormat(xml): want an error")
	}
}

func gz(t *testing.T, s string) []byte {
	t.Helper()
	var b bytes.Buffer
	w := gzip.NewWriter(&b)
	w.Write([]byte(s))
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func TestReadFileGzip(t *testing.T) {
	dir := t.TempDir()
	files := map[string][]byte{
		"a.csv.gz":    gz(t, csvHeader+"2024-05-01T10:00:00Z,acct,sku,1,GB,0.10,USD\nbad,acct,sku,1,GB,0.10,USD\n"),
		"b.ndjson.gz": gz(t, "{\"ChargePeriodStart\":\"2024-05-01T10:00:00Z\"}\n{\"ChargePeriodStart\":1}\n"),
		"c.json.gz":   gz(t, "[\n{\"ChargePeriodStart\":\"2024-05-01T10:00:00Z\"},\n{}]"),
		"d.csv":       gz(t, csvHeader+"2024-05-01T10:00:00Z,acct,sku,1,GB,0.10,USD\n"), // gzip without .gz is still recognised
	}
	want := map[string]string{
		"a.csv.gz":    `:3: ChargePeriodStart: "bad" is not an RFC 3339 time`,
		"b.ndjson.gz": ":2: ChargePeriodStart: want an RFC 3339 time string, got 1",
		"c.json.gz":   ":3: ChargePeriodStart: required",
	}
	for name, data := range files {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		rows, errs, err := ReadFile(path)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if len(rows) != 1 {
			t.Errorf("%s: %d good rows, want 1", name, len(rows))
		}
		var got []string
		for _, e := range errs {
			got = append(got, e.Error())
		}
		var wantErrs []string
		if w := want[name]; w != "" {
			wantErrs = []string{path + w}
		}
		if !slices.Equal(got, wantErrs) {
			t.Errorf("%s: errors %q, want %q", name, got, wantErrs)
		}
	}
}

func TestReadIOErrors(t *testing.T) {
	if _, _, err := ReadFile(filepath.Join(t.TempDir(), "missing.csv")); err == nil {
		t.Error("missing file: want an error")
	}
	// A truncated gzip stream is an I/O error, not a row problem.
	rec := "{\"ChargePeriodStart\":\"2024-05-01T10:00:00Z\",\"SkuId\":\"%d\"}"
	var nd, arr, csv strings.Builder
	csv.WriteString("ChargePeriodStart,SkuId\n")
	arr.WriteString("[")
	for i := range 5000 {
		fmt.Fprintf(&nd, rec+"\n", i)
		fmt.Fprintf(&arr, rec+",\n", i)
		fmt.Fprintf(&csv, "2024-05-01T10:00:00Z,%d\n", i)
	}
	for f, src := range map[Format]string{CSV: csv.String(), NDJSON: nd.String(), JSONArray: arr.String()} {
		data := gz(t, src)
		_, err := Read("t.gz", bytes.NewReader(data[:len(data)/2]), f, func(Row) error { return nil })
		if err == nil || !strings.HasPrefix(err.Error(), "t.gz: ") {
			t.Errorf("%v: truncated gzip: got %v, want an error naming the file", f, err)
		}
	}
	// fn's error stops the reading and is returned.
	stop := errors.New("stop")
	n := 0
	_, err := Read("s.ndjson", strings.NewReader("{\"ChargePeriodStart\":\"2024-05-01T10:00:00Z\"}\n{\"ChargePeriodStart\":\"2024-05-01T10:00:00Z\"}\n"), NDJSON, func(Row) error {
		n++
		return stop
	})
	if !errors.Is(err, stop) || n != 1 {
		t.Errorf("fn error: got %v after %d rows, want stop after 1", err, n)
	}
	if _, err := Read("x", strings.NewReader(""), Format(42), func(Row) error { return nil }); err == nil {
		t.Error("invalid format: want an error")
	}
}

func TestNDJSONLineTooLong(t *testing.T) {
	src := "{\"ChargePeriodStart\":\"2024-05-01T10:00:00Z\"}\n{\"SkuId\":\"" + strings.Repeat("a", MaxLineBytes) + "\"}\n"
	rows, errs := read(t, "l.ndjson", src, NDJSON)
	want := []string{fmt.Sprintf("l.ndjson:2: line longer than %d bytes; reading stopped here", MaxLineBytes)}
	if len(rows) != 1 || !slices.Equal(errs, want) {
		t.Errorf("rows %d errors %q, want 1 and %q", len(rows), errs, want)
	}
}
