package input

import (
	"errors"
	"fmt"
	"io"
	"math/big"
	"strconv"
	"time"

	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/format"
	"github.com/shopspring/decimal"

	"github.com/usagefleet/usagefleet/messages"
)

// The Parquet reader as it was before it read column by column in
// parallel (row by row, a string per value): the tests compare the
// reader with it, row for row and problem for problem.

// oldReadParquet reads f's rows as the reader did, good rows to fn.
func oldReadParquet(c *collector, f *parquet.File, fn func(Row) error) error {
	pcols, ok := parquetColumns(c, f.Schema())
	rd := parquet.NewReader(f)
	defer rd.Close()
	buf := make([]parquet.Row, 64)
	var scratch oldRowScratch
	line := 0
	for {
		n, err := rd.ReadRows(buf)
		for _, row := range buf[:n] {
			line++
			var ur messages.UsageRecord
			c.beginRow()
			oldParquetRow(&scratch, c, line, pcols, row, &ur, nil)
			if !c.endRow(line, &ur, true) || !ok {
				continue
			}
			if err := fn(Row{Line: line, Record: ur}); err != nil {
				return err
			}
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("row %d: %w", line+1, err)
		}
	}
}

// oldRowScratch is what parquetRow reuses from row to row (a map per row was
// 40% of reading a Parquet file).
type oldRowScratch struct {
	byLeaf [][]parquet.Value
	cols   []column
}

func oldParquetRow(sc *oldRowScratch, c *collector, line int, pcols []parquetCol, row parquet.Row, ur *messages.UsageRecord, rsc *recordScratch) {
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
			text = oldMapJSON(byLeaf(pc.leaves[0]), byLeaf(pc.leaves[1]), pc.typ[1])
		} else if vs := byLeaf(pc.leaves[0]); len(vs) > 0 {
			var err error
			if text, err = oldValueText(vs[0], pc.typ[0]); err != nil {
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

// oldMapJSON renders a map column's entries as a JSON object ("" for null).
func oldMapJSON(keys, vals []parquet.Value, vt parquet.Type) string {
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
		t, err := oldValueText(v, vt)
		switch {
		case err != nil, v.IsNull():
			b = append(b, "null"...)
		case v.Kind() == parquet.ByteArray || v.Kind() == parquet.FixedLenByteArray && !oldIsDecimal(vt):
			b = messages.AppendJSONString(b, t)
		default:
			b = append(b, t...)
		}
	}
	return string(append(b, '}'))
}

func oldIsDecimal(t parquet.Type) bool {
	if lt := t.LogicalType(); lt != nil {
		_, ok := lt.Value.(*format.DecimalType)
		return ok
	}
	return false
}

// oldValueText is the text of one value ("" for null).
func oldValueText(v parquet.Value, t parquet.Type) (string, error) {
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
