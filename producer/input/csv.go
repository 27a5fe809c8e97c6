package input

import (
	"encoding/csv"
	"encoding/json"
	"errors"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/usagefleet/usagefleet/messages"
)

// colKind is what a CSV column holds.
type colKind int

const (
	colString colKind = iota + 1
	colDecimal
	colTime
	colTags   // the Tags JSON object
	colTag    // one tag: Tags.<key> or tag:<key>
	colExtStr // x_<Name>[:string]
	colExtInt
	colExtDec
)

type column struct {
	header string // as written, for errors
	kind   colKind
	name   string // FOCUS name, tag key, or extension name without x_
}

// parseHeader maps header cells to columns; bad cells are reported at line.
func parseHeader(c *collector, line int, header []string) ([]column, bool) {
	cols := make([]column, len(header))
	ok := true
	seen := map[string]string{} // identity -> header cell that claimed it
	for i, h := range header {
		h = strings.TrimSpace(h)
		col, problem := headerColumn(h)
		if problem != "" {
			field := h
			if field == "" {
				field = "column " + strconv.Itoa(i+1)
			}
			c.add(line, field, "%s", problem)
			ok = false
			continue
		}
		id := col.identity()
		if prev, dup := seen[id]; dup {
			if prev == h {
				c.add(line, h, "repeated column")
			} else {
				c.add(line, h, "same column as %q", prev)
			}
			ok = false
			continue
		}
		seen[id] = h
		cols[i] = col
	}
	return cols, ok
}

func (c column) identity() string {
	switch c.kind {
	case colTag:
		return "tag\x00" + c.name
	case colExtStr, colExtInt, colExtDec:
		return "x\x00" + c.name
	}
	return c.name
}

func headerColumn(h string) (column, string) {
	col := column{header: h}
	switch {
	case h == "":
		return col, "empty column name"
	case strings.HasPrefix(h, "Tags."), strings.HasPrefix(h, "tag:"):
		_, key, _ := strings.Cut(strings.Replace(h, "Tags.", "tag:", 1), ":")
		if key == "" {
			return col, "tag column without a key"
		}
		if len(key) > 256 {
			return col, "tag key longer than 256 bytes"
		}
		col.kind, col.name = colTag, key
		return col, ""
	case strings.HasPrefix(h, "x_"):
		name, typ, typed := strings.Cut(h[2:], ":")
		switch {
		case !typed, typ == "string":
			col.kind = colExtStr
		case typ == "int":
			col.kind = colExtInt
		case typ == "decimal":
			col.kind = colExtDec
		default:
			return col, "extension column type " + strconv.Quote(typ) + " is not string, int or decimal"
		}
		col.name = name
		if p := extNameProblem(name); p != "" {
			return col, p
		}
		return col, ""
	}
	switch messages.ColumnOf(h) {
	case messages.ColString:
		col.kind = colString
	case messages.ColDecimal:
		col.kind = colDecimal
	case messages.ColTime:
		col.kind = colTime
	case messages.ColTags:
		col.kind = colTags
	default:
		return col, "unknown column (FOCUS names are case-sensitive; extension columns start with x_, tag columns with Tags. or tag:)"
	}
	col.name = h
	return col, ""
}

// extNameProblem asks messages' own rule whether name can be an extension
// column, so the header is refused once instead of every row.
func extNameProblem(name string) string {
	r := messages.UsageRecord{ChargePeriodStart: time.Unix(0, 0), Ext: map[string]messages.ExtValue{name: messages.ExtStr("")}}
	for _, fe := range r.Validate() {
		if fe.Field == "x_"+name {
			return fe.Problem
		}
	}
	return ""
}

func readCSV(c *collector, r io.Reader, fn func(Row) error) error {
	cr := csv.NewReader(r)
	cr.ReuseRecord = true
	header, err := cr.Read()
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
	if len(header) > 0 {
		header[0] = strings.TrimPrefix(header[0], "\ufeff")
	}
	cols, headerOK := parseHeader(c, headerLine, header)
	for {
		rec, err := cr.Read()
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
		csvRecord(c, line, cols, rec, &ur)
		if c.endRow(line, &ur, true) && headerOK {
			if err := fn(Row{Line: line, Record: ur}); err != nil {
				return err
			}
		}
	}
}

// csvRecord fills ur from one row, reporting every bad cell.
func csvRecord(c *collector, line int, cols []column, rec []string, ur *messages.UsageRecord) {
	bad := func(col column, format string, args ...any) {
		c.add(line, col.header, format, args...)
	}
	var tagCols map[string]string // tags from per-key columns
	for i, col := range cols {
		v := rec[i]
		if col.kind == 0 || v == "" {
			continue // a bad header column, or unset
		}
		switch col.kind {
		case colString:
			ur.SetString(col.name, v)
		case colDecimal:
			d, err := messages.ParseDecimal(strings.TrimSpace(v))
			if err != nil {
				bad(col, "%v", err)
				continue
			}
			ur.SetDecimal(col.name, d)
		case colTime:
			t, err := messages.ParseTime(strings.TrimSpace(v))
			if err != nil {
				bad(col, "%v", err)
				continue
			}
			ur.SetTime(col.name, t)
		case colTags:
			if err := ur.SetJSONField("Tags", json.RawMessage(v)); err != nil {
				bad(col, "%v", err)
			}
		case colTag:
			if tagCols == nil {
				tagCols = map[string]string{}
			}
			tagCols[col.name] = v
		case colExtStr:
			setExt(ur, col.name, messages.ExtStr(v))
		case colExtInt:
			n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			if err != nil {
				bad(col, "%q is not a 64-bit integer", v)
				continue
			}
			setExt(ur, col.name, messages.ExtI(n))
		case colExtDec:
			d, err := messages.ParseDecimal(strings.TrimSpace(v))
			if err != nil {
				bad(col, "%v", err)
				continue
			}
			setExt(ur, col.name, messages.ExtDec(d))
		}
	}
	for _, col := range cols {
		if col.kind != colTag {
			continue
		}
		v, set := tagCols[col.name]
		if !set {
			continue
		}
		if prev, both := ur.Tags[col.name]; both && prev != v {
			bad(col, "%q conflicts with %q in the Tags column", v, prev)
			continue
		}
		if ur.Tags == nil {
			ur.Tags = map[string]string{}
		}
		ur.Tags[col.name] = v
	}
}

func setExt(ur *messages.UsageRecord, name string, v messages.ExtValue) {
	if ur.Ext == nil {
		ur.Ext = map[string]messages.ExtValue{}
	}
	ur.Ext[name] = v
}
