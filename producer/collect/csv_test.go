package collect

import (
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"strconv"
	"strings"
	"testing"
)

func TestFieldName(t *testing.T) {
	for in, want := range map[string]string{
		"Org ID (realmId)":              "realmId",
		"Usage Amount (billableValue) ": "billableValue",
		"realmId":                       "realmId",
		"\ufefftenant.id":               "tenant.id",
		"usage.delta.total":             "usage.delta.total",
		"Odd ()":                        "Odd ()",
	} {
		if got := FieldName(in); got != want {
			t.Errorf("FieldName(%q) = %q; want %q", in, got, want)
		}
	}
}

func gz(s string) []byte {
	var b bytes.Buffer
	w := gzip.NewWriter(&b)
	w.Write([]byte(s))
	w.Close()
	return b.Bytes()
}

func TestCSVRowsKeepTheirLines(t *testing.T) {
	const file = "Org ID (realmId),name,Usage Amount (billableValue)\n" +
		"org1,\"two\nlines\",1.5\n" + // line 2-3
		"org2,short\n" + // line 4: too few fields
		"org3,\"bad\"quote\",2\n" + // line 5: not CSV
		"org4,ok,3\n" // line 6
	for name, body := range map[string][]byte{"plain": []byte(file), "gzip": gz(file)} {
		t.Run(name, func(t *testing.T) {
			c, err := NewCSV(bytes.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			if err := c.Require("realmId", "billableValue"); err != nil {
				t.Fatal(err)
			}
			if err := c.Require("featureId"); err == nil || !strings.Contains(err.Error(), "featureId") {
				t.Fatalf("Require: %v", err)
			}
			var got []string
			for {
				err := c.Next()
				if errors.Is(err, io.EOF) {
					break
				}
				var re *RowError
				if errors.As(err, &re) {
					got = append(got, re.Error())
					continue
				}
				if err != nil {
					t.Fatal(err)
				}
				got = append(got, c.Get("realmId")+"@"+strconv.Itoa(c.Line()))
			}
			want := "org1@2|line 4: 2 fields, the header has 3|line 5: not valid CSV: extraneous or missing \" in quoted-field|org4@6"
			if strings.Join(got, "|") != want {
				t.Fatalf("got  %s\nwant %s", strings.Join(got, "|"), want)
			}
			if got[len(got)-1] != "org4@6" || c.Rows() != 4 {
				t.Fatalf("rows %d, got %v", c.Rows(), got)
			}
		})
	}
}

func TestCSVEmptyAndDuplicateHeader(t *testing.T) {
	if _, err := NewCSV(strings.NewReader("")); err == nil {
		t.Fatal("empty file accepted")
	}
	if _, err := NewCSV(strings.NewReader("Org (realmId),realmId\n")); err == nil || !strings.Contains(err.Error(), "twice") {
		t.Fatalf("duplicate column: %v", err)
	}
}

// Every row, good or rejected, comes with its bytes as the file holds
// them (quotes, commas, embedded newlines; no line end; blank lines the
// reader skips are not part of the next row), gzipped or not, and the
// header line comes raw too.
func TestCSVRowKeepsItsRawBytes(t *testing.T) {
	const header = "Org ID (realmId),name,Usage Amount (billableValue)"
	rows := []struct {
		raw  string
		line int
	}{
		{`org1,"two` + "\r\n" + `lines, ""quoted""",1.5`, 2}, // lines 2-3
		{`org2,short`, 5},         // after an empty line 4: too few fields
		{`org3,"bad"quote",2`, 6}, // not CSV
		{`org4,ok,3`, 7},
		{strings.Repeat("x", 10000) + ",long,4", 8}, // longer than the reader's buffer
		{`org6,"last, no newline",5`, 9},
	}
	file := header + "\r\n" + rows[0].raw + "\r\n\r\n" + rows[1].raw + "\n" + rows[2].raw + "\n" + rows[3].raw + "\r\n" + rows[4].raw + "\n" + rows[5].raw
	for name, body := range map[string][]byte{"plain": []byte(file), "gzip": gz(file)} {
		t.Run(name, func(t *testing.T) {
			c, err := NewCSV(bytes.NewReader(body))
			if err != nil {
				t.Fatal(err)
			}
			for i := 0; ; i++ {
				err := c.Next()
				if errors.Is(err, io.EOF) {
					if i != len(rows) {
						t.Fatalf("%d rows; want %d", i, len(rows))
					}
					break
				}
				var re *RowError
				if err != nil && !errors.As(err, &re) {
					t.Fatal(err)
				}
				row := c.Row()
				if string(row.Raw) != rows[i].raw || row.Line != rows[i].line || string(row.Header) != header {
					t.Errorf("row %d: line %d raw %.60q header %q; want line %d raw %.60q", i, row.Line, row.Raw, row.Header, rows[i].line, rows[i].raw)
				}
			}
		})
	}
}
