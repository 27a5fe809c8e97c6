package input

import (
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/usagefleet/usagefleet/messages"
)

// EncodedRows are good rows of a CSV file already written as their
// values (messages.RowWriter), in file order: what a spool needs of
// them, with no record held. Row i's values are Vals[Rows[i-1].End:Rows[i].End]
// (from 0 for the first).
type EncodedRows struct {
	// Ext is the sorted list of extension names the rows were written
	// against: the file's extension columns, the same for all its rows.
	Ext   []string
	Vals  []byte
	Rows  []EncodedRow
	Costs []CurrencySum // the rows' BilledCost per BillingCurrency

	free chan *EncodedRows // where Release puts it, for its reader to fill again
}

// Release gives e back to the reader that filled it, to be filled again:
// call it once nothing uses e (or what it holds) any more. A reader keeps
// a few; the rest are left to the GC.
func (e *EncodedRows) Release() {
	if e.free == nil {
		return
	}
	e.Vals, e.Rows, e.Costs = e.Vals[:0], e.Rows[:0], e.Costs[:0]
	select {
	case e.free <- e:
	default:
	}
}

// EncodedRow is one row of EncodedRows.
type EncodedRow struct {
	Hour int64 // ChargePeriodStart's UTC hour, in Unix seconds
	Use  messages.RowUse
	End  int // the end of its values in Vals
}

// CurrencySum is the sum of BilledCost of the rows in one BillingCurrency
// ("" when a row has none), over the rows that have a BilledCost.
type CurrencySum struct {
	Currency string
	Sum      messages.Sum
}

// Values is row i's values.
func (e *EncodedRows) Values(i int) []byte {
	start := 0
	if i > 0 {
		start = e.Rows[i-1].End
	}
	return e.Vals[start:e.Rows[i].End]
}

// add writes a good record with w.
func (e *EncodedRows) add(w *messages.RowWriter, r *messages.UsageRecord) error {
	vals, u, ok := w.Append(e.Vals, r, e.Ext)
	if !ok {
		// The names come from the header every value's column is in.
		return errors.New("input: a row has an extension column outside its header's")
	}
	e.Vals = vals
	e.Rows = append(e.Rows, EncodedRow{Hour: r.ChargePeriodStart.Unix() - mod(r.ChargePeriodStart.Unix(), 3600), Use: u, End: len(vals)})
	if r.BilledCost.IsSet() {
		for i := range e.Costs {
			if e.Costs[i].Currency == r.BillingCurrency {
				e.Costs[i].Sum.Add(r.BilledCost)
				return nil
			}
		}
		// The currency is a piece of the row's line: a copy, not the line.
		e.Costs = append(e.Costs, CurrencySum{Currency: strings.Clone(r.BillingCurrency)})
		e.Costs[len(e.Costs)-1].Sum.Add(r.BilledCost)
	}
	return nil
}

func mod(a, b int64) int64 {
	m := a % b
	if m < 0 {
		m += b
	}
	return m
}

// encodedExt is the sorted extension names of a header's columns, and
// whether rows can be encoded against them (at most messages.MaxRowExt).
func encodedExt(cols []column) ([]string, bool) {
	var ext []string
	for _, col := range cols {
		switch col.kind {
		case colExtStr, colExtInt, colExtDec:
			ext = append(ext, col.name)
		}
	}
	sort.Strings(ext)
	return ext, len(ext) <= messages.MaxRowExt
}

// ReadEncoded is ReadWith for a reader that spools: the good rows of a CSV
// file (whose header has at most messages.MaxRowExt extension columns) go
// to enc, written ahead of their parts, a batch at a time, each batch
// enc's to keep; other inputs' rows go to fn, as ReadWith gives them. The
// problems, the result and the errors are ReadWith's.
func ReadEncoded(name string, r io.Reader, opt Options, fn func(Row) error, enc func(*EncodedRows) error) (Result, error) {
	var fnErr error
	deliver := func(row Row) error {
		fnErr = fn(row)
		return fnErr
	}
	c := &collector{file: name, strict: opt.Strict, enc: func(e *EncodedRows) error {
		fnErr = enc(e)
		return fnErr
	}}
	format, err := readFormat(c, r, opt, deliver)
	if err != nil && err != fnErr {
		err = fmt.Errorf("%s: %w", name, err)
	}
	return Result{Errors: c.list(), Warnings: c.warns, Format: format, Version: c.version}, err
}
