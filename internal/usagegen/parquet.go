package usagegen

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/parquet-go/parquet-go"
)

// CSVToParquet writes the cells of the CSV read from r (a header, then
// rows: WriteFocusCSV's, or any export) as a Parquet file to w the way
// exporters type them: optional strings (NULL and empty cells null), and
// "x_<name>:int" columns as INT64 named x_<name>. Row groups of 64k rows.
func CSVToParquet(w io.Writer, r io.Reader) error {
	cr := csv.NewReader(r)
	cr.ReuseRecord = true
	header, err := cr.Read()
	if err != nil {
		return err
	}
	names := make([]string, len(header))
	isInt := make([]bool, len(header))
	group := parquet.Group{}
	for i, h := range header {
		names[i] = h
		if n, ok := strings.CutSuffix(h, ":int"); ok {
			names[i], isInt[i] = n, true
			group[n] = parquet.Optional(parquet.Int(64))
		} else {
			group[h] = parquet.Optional(parquet.String())
		}
	}
	schema := parquet.NewSchema("focus", group)
	// A Group's columns are in name order: where each CSV column goes.
	colOf := make([]int, len(header))
	for i, n := range names {
		leaf, ok := schema.Lookup(n)
		if !ok {
			return fmt.Errorf("parquet schema has no column %s", n)
		}
		colOf[i] = leaf.ColumnIndex
	}
	pw := parquet.NewWriter(w, schema, parquet.MaxRowsPerRowGroup(65536), parquet.Compression(&parquet.Snappy))
	row := make(parquet.Row, len(header))
	for {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		for i, v := range rec {
			var pv parquet.Value
			switch {
			case v == "" || v == "NULL":
				pv = parquet.NullValue().Level(0, 0, colOf[i])
			case isInt[i]:
				n, err := strconv.ParseInt(v, 10, 64)
				if err != nil {
					return fmt.Errorf("%s: %v", header[i], err)
				}
				pv = parquet.Int64Value(n).Level(0, 1, colOf[i])
			default:
				pv = parquet.ByteArrayValue([]byte(v)).Level(0, 1, colOf[i])
			}
			row[colOf[i]] = pv
		}
		if _, err := pw.WriteRows([]parquet.Row{row}); err != nil {
			return err
		}
	}
	return pw.Close()
}
