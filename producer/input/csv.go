package input

import (
	"encoding/csv"
	"errors"
	"io"

	"github.com/usagefleet/usagefleet/messages"
)

func readCSV(c *collector, r io.Reader, lim *limitReader, fn func(Row) error) error {
	cr := csv.NewReader(r)
	cr.ReuseRecord = true
	next := func() ([]string, error) {
		lim.record(MaxRecordBytes+slack, "a CSV record longer than 16 MiB (MaxRecordBytes)")
		rec, err := cr.Read()
		lim.record(-1, "")
		return rec, err
	}
	header, err := next()
	if errors.Is(err, io.EOF) {
		c.add(1, "", "no header row")
		return nil
	}
	if err != nil {
		var pe *csv.ParseError
		if errors.As(err, &pe) {
			c.add(pe.StartLine, "", "header: %v", pe.Err)
			return nil
		}
		return err
	}
	headerLine, _ := cr.FieldPos(0)
	cols, headerOK := parseHeader(c, headerLine, header)
	for {
		rec, err := next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			var pe *csv.ParseError
			if !errors.As(err, &pe) {
				return err
			}
			if errors.Is(pe.Err, csv.ErrFieldCount) {
				c.add(pe.StartLine, "", "row has %d fields, the header has %d", len(rec), len(cols))
			} else {
				c.add(pe.StartLine, "", "%v", pe.Err)
			}
			continue
		}
		line, _ := cr.FieldPos(0)
		var ur messages.UsageRecord
		c.beginRow()
		var tagCols map[string]string
		for i, col := range cols {
			setCell(c, line, col, rec[i], &ur, &tagCols)
		}
		mergeTagCols(c, line, cols, tagCols, &ur)
		if c.endRow(line, &ur, true) && headerOK {
			if err := fn(Row{Line: line, Record: ur}); err != nil {
				return err
			}
		}
	}
}
