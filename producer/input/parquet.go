package input

import (
	"errors"
	"fmt"
	"io"
	"math/big"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/format"
	"github.com/shopspring/decimal"

	"github.com/usagefleet/usagefleet/messages"
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
	// Spooled (ReadEncoded): good rows are written ahead of their parts
	// into batches of encoded rows, from one record reused for every row,
	// as a CSV file's are; else each row is a record of its own for fn.
	enc := parquetEncoder(c, pcols, ok)
	rd := parquet.NewReader(f)
	defer rd.Close()
	buf := make([]parquet.Row, 64)
	var scratch rowScratch
	var reused messages.UsageRecord
	line := 0
	for {
		n, err := rd.ReadRows(buf)
		for _, row := range buf[:n] {
			line++
			var ur messages.UsageRecord
			rec := &ur
			if enc != nil {
				enc.rsc.reset(&reused)
				rec = &reused
			}
			c.beginRow()
			parquetRowWith(&scratch, c, line, pcols, row, rec, enc.scratch())
			if !c.endRow(line, rec, true) || !ok {
				continue
			}
			if enc != nil {
				if err := enc.add(rec); err != nil {
					return err
				}
				continue
			}
			if err := fn(Row{Line: line, Record: ur}); err != nil {
				return err
			}
		}
		if errors.Is(err, io.EOF) {
			return enc.flush()
		}
		if err != nil {
			return fmt.Errorf("row %d: %w", line+1, err)
		}
	}
}

// parquetEncoding writes a Parquet file's good rows into batches of
// encoded rows (ReadEncoded), handed to the collector's enc.
type parquetEncoding struct {
	rsc  recordScratch
	w    messages.RowWriter
	sink rowSink
}

// parquetEncoder is the encoding of a Parquet file's rows, or nil when
// they go to fn as records (not spooled, a bad schema, or more extension
// columns than a row is written with).
func parquetEncoder(c *collector, pcols []parquetCol, schemaOK bool) *parquetEncoding {
	if c.enc == nil || !schemaOK {
		return nil
	}
	cols := make([]column, len(pcols))
	for i, pc := range pcols {
		cols[i] = pc.col
	}
	ext, ok := encodedExt(cols)
	if !ok {
		return nil
	}
	free := make(chan *EncodedRows, 4)
	next := func(int) *EncodedRows { return newEncodedRows(free, ext, 0) }
	return &parquetEncoding{sink: rowSink{enc: next(0), flush: c.enc, next: next}}
}

// scratch lends the reused record's maps to setCell (nil without e).
func (e *parquetEncoding) scratch() *recordScratch {
	if e == nil {
		return nil
	}
	return &e.rsc
}

// add writes a good row, and hands the batch on once it is full.
func (e *parquetEncoding) add(r *messages.UsageRecord) error { return e.sink.put(&e.w, r) }

// flush hands on the last batch (nothing without e).
func (e *parquetEncoding) flush() error {
	if e == nil {
		return nil
	}
	return e.sink.end()
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

// rowScratch is what parquetRow reuses from row to row (a map per row was
// 40% of reading a Parquet file).
type rowScratch struct {
	byLeaf [][]parquet.Value
	cols   []column
}

func parquetRowWith(sc *rowScratch, c *collector, line int, pcols []parquetCol, row parquet.Row, ur *messages.UsageRecord, rsc *recordScratch) {
	// Values of a row come grouped by leaf column, in column order.
	for i := range sc.byLeaf {
		sc.byLeaf[i] = sc.byLeaf[i][:0]
	}
	for _, v := range row {
		col := v.Column()
		if col < 0 {
			continue
		}
		for col >= len(sc.byLeaf) {
			sc.byLeaf = append(sc.byLeaf, nil)
		}
		sc.byLeaf[col] = append(sc.byLeaf[col], v)
	}
	byLeaf := func(i int) []parquet.Value {
		if i < len(sc.byLeaf) {
			return sc.byLeaf[i]
		}
		return nil
	}
	var tagCols map[string]string
	for _, pc := range pcols {
		var text string
		if pc.isMap {
			text = mapJSON(byLeaf(pc.leaves[0]), byLeaf(pc.leaves[1]), pc.typ[1])
		} else if vs := byLeaf(pc.leaves[0]); len(vs) > 0 {
			var err error
			if text, err = valueText(vs[0], pc.typ[0]); err != nil {
				c.add(line, pc.col.header, "%v", err)
				continue
			}
		}
		setCell(c, line, pc.col, text, ur, &tagCols, rsc)
	}
	if tagCols != nil {
		if len(sc.cols) != len(pcols) {
			sc.cols = sc.cols[:0]
			for _, pc := range pcols {
				sc.cols = append(sc.cols, pc.col)
			}
		}
		mergeTagCols(c, line, sc.cols, tagCols, ur)
	}
}

// mapJSON renders a map column's entries as a JSON object ("" for null).
func mapJSON(keys, vals []parquet.Value, vt parquet.Type) string {
	if len(keys) == 0 || keys[0].IsNull() {
		return ""
	}
	b := []byte{'{'}
	for i, k := range keys {
		if i > 0 {
			b = append(b, ',')
		}
		b = messages.AppendJSONString(b, string(k.ByteArray()))
		b = append(b, ':')
		var v parquet.Value
		if i < len(vals) {
			v = vals[i]
		}
		t, err := valueText(v, vt)
		switch {
		case err != nil, v.IsNull():
			b = append(b, "null"...)
		case v.Kind() == parquet.ByteArray || v.Kind() == parquet.FixedLenByteArray && !isDecimal(vt):
			b = messages.AppendJSONString(b, t)
		default:
			b = append(b, t...)
		}
	}
	return string(append(b, '}'))
}

func isDecimal(t parquet.Type) bool {
	if lt := t.LogicalType(); lt != nil {
		_, ok := lt.Value.(*format.DecimalType)
		return ok
	}
	return false
}

// valueText is the text of one value ("" for null).
func valueText(v parquet.Value, t parquet.Type) (string, error) {
	if v.IsNull() {
		return "", nil
	}
	var lt format.LogicalTypeValue
	if l := t.LogicalType(); l != nil {
		lt = l.Value
	}
	switch v.Kind() {
	case parquet.Boolean:
		return strconv.FormatBool(v.Boolean()), nil
	case parquet.Int32, parquet.Int64:
		n := v.Int64()
		if v.Kind() == parquet.Int32 {
			n = int64(v.Int32())
		}
		switch l := lt.(type) {
		case *format.DecimalType:
			return messages.FromBig(decimal.New(n, -l.Scale)).String(), nil
		case *format.TimestampType:
			unit := time.Millisecond
			if l.Unit.Value != nil {
				unit = l.Unit.Value.Duration()
			}
			return time.Unix(0, 0).Add(time.Duration(n) * unit).UTC().Format(time.RFC3339Nano), nil
		case *format.DateType:
			return time.Unix(n*86400, 0).UTC().Format(time.RFC3339), nil
		}
		return strconv.FormatInt(n, 10), nil
	case parquet.Int96:
		// Legacy timestamps: nanoseconds of the day, then the Julian day.
		i := v.Int96()
		nanos := int64(uint64(i[1])<<32 | uint64(i[0]))
		day := int64(i[2]) - 2440588 // the Julian day of 1970-01-01
		return time.Unix(day*86400, nanos).UTC().Format(time.RFC3339Nano), nil
	case parquet.Float:
		return strconv.FormatFloat(float64(v.Float()), 'g', -1, 32), nil
	case parquet.Double:
		return strconv.FormatFloat(v.Double(), 'g', -1, 64), nil
	case parquet.ByteArray, parquet.FixedLenByteArray:
		b := v.ByteArray()
		if l, ok := lt.(*format.DecimalType); ok {
			if len(b) > 64 {
				return "", fmt.Errorf("a decimal of %d bytes", len(b))
			}
			n := new(big.Int).SetBytes(b)
			if len(b) > 0 && b[0]&0x80 != 0 { // two's complement
				n.Sub(n, new(big.Int).Lsh(big.NewInt(1), uint(len(b)*8)))
			}
			return messages.FromBig(decimal.NewFromBigInt(n, -l.Scale)).String(), nil
		}
		if len(b) > MaxCellBytes {
			return "", fmt.Errorf("a value of %d bytes, more than the %d-byte cell limit", len(b), MaxCellBytes)
		}
		return string(b), nil
	}
	return "", fmt.Errorf("a Parquet %v value is not read", v.Kind())
}
