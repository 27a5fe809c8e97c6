package input

import (
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/format"
)

// Parquet: AWS Data Exports and Azure Cost Management write FOCUS as
// Parquet. A Parquet file is read from its footer, so a stream is first
// copied to a temporary file (bounded by the input limit, removed after).
// Top-level columns are named like a CSV header and typed by the same
// rules; each value becomes the text a CSV cell would hold, exactly:
//
//   - strings (BYTE_ARRAY) as they are;
//   - DECIMAL (any physical type) from its unscaled integer and scale,
//     exact; integers as integers;
//   - FLOAT and DOUBLE as the shortest decimal that reads back as the same
//     binary value (strconv 'g', -1): the exporter wrote a binary float,
//     this is the number it meant, never rounded further;
//   - TIMESTAMP (millis, micros, nanos), INT96 timestamps and DATE as UTC
//     date/times;
//   - a MAP column (AWS writes Tags as map<string,string>) as the JSON
//     object of its entries, so Tags, SkuPriceDetails and x_ map columns
//     read like their CSV form;
//   - null as null.
//
// Other nested columns (lists, structs) are not read: a warning names each
// once. Rows are numbered from 1 in errors ("file:row").

// parquetCol is how one top-level Parquet column is read.
type parquetCol struct {
	col    column
	leaves []int          // leaf column indexes: one, or a map's key and value
	typ    []parquet.Type // their types
	isMap  bool
}

func readParquet(c *collector, r io.Reader, lim *LimitReader, fn func(Row) error) error {
	tmp, err := os.CreateTemp("", "usage-parquet-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	size, err := io.Copy(tmp, r)
	if err != nil {
		return err
	}
	f, err := parquet.OpenFile(tmp, size)
	if err != nil {
		c.add(0, "", "not a readable Parquet file: %v", err)
		return nil
	}
	var total int64
	for _, rg := range f.Metadata().RowGroups {
		for _, cc := range rg.Columns {
			total += cc.MetaData.TotalUncompressedSize
		}
	}
	if total > lim.Max() {
		return fmt.Errorf("the Parquet columns are %d bytes uncompressed, more than %d (the --max-bytes limit): %w", total, lim.Max(), ErrTooLarge)
	}
	pcols, ok := parquetColumns(c, f.Schema())
	return readParquetRows(c, f, pcols, ok, fn)
}

// parquetColumns maps the schema's top-level columns to columns, like a
// CSV header.
func parquetColumns(c *collector, s *parquet.Schema) ([]parquetCol, bool) {
	byTop := map[string]*parquetCol{}
	var order []string
	for _, path := range s.Columns() {
		leaf, _ := s.Lookup(path...)
		top := path[0]
		pc := byTop[top]
		if pc == nil {
			pc = &parquetCol{}
			byTop[top] = pc
			order = append(order, top)
		}
		pc.leaves = append(pc.leaves, leaf.ColumnIndex)
		pc.typ = append(pc.typ, leaf.Node.Type())
		if len(path) > 1 {
			pc.isMap = len(path) == 3 && (path[2] == "key" || path[2] == "value")
		}
	}
	cols, ok := parseHeader(c, 1, order)
	var out []parquetCol
	for i, top := range order {
		pc := byTop[top]
		pc.col = cols[i]
		if len(pc.leaves) > 1 && !(pc.isMap && len(pc.leaves) == 2) {
			c.warnOnce("nested\x00"+top, 1, clipField(top), "a nested Parquet column (not a map): not read")
			continue
		}
		if !pc.isMap && (pc.col.kind == colExtStr) && !strings.Contains(pc.col.header, ":") {
			pc.col.kind = extKindOf(pc.typ[0], pc.col.kind)
		}
		out = append(out, *pc)
	}
	return out, ok
}

// extKindOf types an extension column by its Parquet type.
func extKindOf(t parquet.Type, def colKind) colKind {
	if lt := t.LogicalType(); lt != nil {
		switch lt.Value.(type) {
		case *format.DecimalType:
			return colExtDec
		case *format.IntType:
			return colExtInt
		}
		return def
	}
	switch t.Kind() {
	case parquet.Int32, parquet.Int64:
		return colExtInt
	case parquet.Float, parquet.Double:
		return colExtDec
	}
	return def
}
