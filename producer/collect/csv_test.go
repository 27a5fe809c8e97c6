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
