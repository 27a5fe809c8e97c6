package input

import (
	"encoding/json"
	"strconv"
	"strings"
	"time"

	"github.com/usagefleet/usagefleet/messages"
)

// colKind is what a column holds.
type colKind int

const (
	colString colKind = iota + 1
	colDecimal
	colTime
	colTags   // the Tags JSON object
	colJSON   // another JSON column (SkuPriceDetails, ...): its text
	colTag    // one tag: Tags.<key> or tag:<key>
	colExtStr // x_<Name>[:string], or a kept unknown column
	colExtInt
	colExtDec
)

type column struct {
	header string // as written, for errors
	kind   colKind
	name   string         // FOCUS name, tag key, or extension name without x_
	field  messages.Field // the FOCUS column name names, found once
}

// parseHeader maps header cells to columns; bad cells are reported at line.
// It also tells the file's FOCUS version and warns once about every
// column kept as an extension column.
func parseHeader(c *collector, line int, header []string) ([]column, bool) {
	cols := make([]column, len(header))
	ok := true
	seen := map[string]string{} // identity -> header cell that claimed it
	var names []string
	for i, h := range header {
		h = strings.TrimSpace(h)
		if i == 0 {
			h = strings.TrimPrefix(h, "\ufeff")
		}
		names = append(names, h)
		col, problem := headerColumn(h)
		if problem == "" && col.kind == 0 {
			col, problem = unknownColumn(c, line, h)
		}
		if problem != "" {
			field := clipField(h)
			if h == "" {
				field = "column " + strconv.Itoa(i+1)
			}
			c.add(line, field, "%s", problem)
			ok = false
			continue
		}
		id := col.identity()
		if prev, dup := seen[id]; dup {
			if prev == h {
				c.add(line, clipField(h), "repeated column")
			} else {
				c.add(line, clipField(h), "same column as %q", prev)
			}
			ok = false
			continue
		}
		seen[id] = h
		cols[i] = col
	}
	c.version = messages.FocusVersion(names)
	return cols, ok
}

// unknownColumn keeps a column that is neither FOCUS nor x_ as an
// extension column (warned once), or refuses it when strict.
func unknownColumn(c *collector, line int, h string) (column, string) {
	hint := ""
	for _, fc := range messages.FocusColumns() {
		if strings.EqualFold(fc.Name, h) {
			hint = " (the FOCUS column " + fc.Name + " differs only in case)"
		}
	}
	if c.strict {
		return column{}, "not a FOCUS column" + hint + " (--strict refuses it; extension columns start with x_, tag columns with Tags. or tag:)"
	}
	name := extName(h)
	col := column{header: h, kind: colExtStr, name: name}
	if p := extNameProblem(name); p != "" {
		return col, p
	}
	c.warnOnce("column\x00"+h, line, clipField(h), "not a FOCUS column%s: kept as extension column x_%s", hint, name)
	return col, ""
}

// extName makes h a valid extension name: letters, digits and _, starting
// with a letter, at most 64 bytes.
func extName(h string) string {
	var b strings.Builder
	for _, r := range h {
		switch {
		case r >= 'A' && r <= 'Z', r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '_':
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
	}
	s := strings.Trim(b.String(), "_")
	if s == "" || !(s[0] >= 'A' && s[0] <= 'Z' || s[0] >= 'a' && s[0] <= 'z') {
		s = "col_" + s
	}
	if len(s) > 64 {
		s = s[:64]
	}
	return s
}

func clipField(h string) string {
	if len(h) > 80 {
		return strings.ToValidUTF8(h[:80], "?") + "…"
	}
	return strings.ToValidUTF8(h, "?")
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

// headerColumn maps a FOCUS, tag or x_ column name; kind 0 with no problem
// is a name none of those.
func headerColumn(h string) (column, string) {
	col := column{header: h}
	switch {
	case h == "":
		return col, "empty column name"
	case len(h) > 256:
		return col, "column name longer than 256 bytes"
	case strings.HasPrefix(h, "Tags."), strings.HasPrefix(h, "tag:"):
		_, key, _ := strings.Cut(strings.Replace(h, "Tags.", "tag:", 1), ":")
		if key == "" {
			return col, "tag column without a key"
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
	case messages.ColJSON:
		col.kind = colJSON
	default:
		return col, ""
	}
	col.name, col.field = h, messages.FieldOf(h)
	return col, ""
}

// extNameProblem asks messages' own rule whether name can be an extension
// column, so the header is refused once instead of every row.
func extNameProblem(name string) string {
	r := messages.UsageRecord{ChargePeriodStart: time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC), Ext: map[string]messages.ExtValue{name: messages.ExtStr("")}}
	for _, fe := range r.Validate() {
		if fe.Field == "x_"+name {
			return fe.Problem
		}
	}
	return ""
}

// recordScratch is what a reader that reuses its record (the encoded CSV
// path: a row is written out as soon as it is checked) reuses with it: the
// maps and the Detail, so a row costs the heap nothing but its line.
type recordScratch struct {
	tags   map[string]string
	types  map[string]messages.TagType
	ext    map[string]messages.ExtValue
	detail *messages.Detail
}

// reset makes ur an empty record that reuses sc's Ext map and Detail.
func (sc *recordScratch) reset(ur *messages.UsageRecord) {
	if sc.ext == nil {
		sc.ext, sc.detail = map[string]messages.ExtValue{}, &messages.Detail{}
	}
	clear(sc.ext)
	*sc.detail = messages.Detail{}
	*ur = messages.UsageRecord{Ext: sc.ext, Detail: sc.detail}
}

// setCell sets one cell's value (text, as a CSV holds it) on ur, reporting
// a bad value. Per-key tag columns go to tagCols (merged by mergeTagCols).
// sc, when set, lends the Tags maps.
func setCell(c *collector, line int, col column, v string, ur *messages.UsageRecord, tagCols *map[string]string, sc *recordScratch) {
	if col.kind == 0 || messages.IsNullText(v) {
		return // a bad header column, or null
	}
	bad := func(format string, args ...any) { c.add(line, col.header, format, args...) }
	if len(v) > MaxCellBytes {
		bad("a value of %d bytes, more than the %d-byte cell limit", len(v), MaxCellBytes)
		return
	}
	switch col.kind {
	case colString, colJSON:
		col.field.SetString(ur, v)
	case colDecimal:
		d, err := messages.ParseDecimal(strings.TrimSpace(v))
		if err != nil {
			bad("%v", err)
			return
		}
		col.field.SetDecimal(ur, d)
	case colTime:
		t, err := messages.ParseTime(strings.TrimSpace(v))
		if err != nil {
			bad("%v", err)
			return
		}
		col.field.SetTime(ur, t)
	case colTags:
		var tags map[string]string
		var types map[string]messages.TagType
		if sc != nil {
			tags, types = sc.tags, sc.types
		}
		if m, types, ok := fastKeyValue(v, tags, types); ok {
			if sc != nil {
				sc.tags, sc.types = m, types
			}
			if len(m) > 0 {
				ur.Tags, ur.TagTypes = m, types
			}
			return
		}
		if err := ur.SetJSONField("Tags", json.RawMessage(v)); err != nil {
			bad("%v", err)
		}
	case colTag:
		if *tagCols == nil {
			*tagCols = map[string]string{}
		}
		(*tagCols)[col.name] = v
	case colExtStr:
		setExt(ur, col.name, messages.ExtStr(v))
	case colExtInt:
		n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		if err != nil {
			bad("%s is not a 64-bit integer", quote(v))
			return
		}
		setExt(ur, col.name, messages.ExtI(n))
	case colExtDec:
		d, err := messages.ParseDecimal(strings.TrimSpace(v))
		if err != nil {
			bad("%v", err)
			return
		}
		setExt(ur, col.name, messages.ExtDec(d))
	}
}

// mergeTagCols adds the per-key tag columns' values to ur.Tags.
func mergeTagCols(c *collector, line int, cols []column, tagCols map[string]string, ur *messages.UsageRecord) {
	if tagCols == nil {
		return
	}
	for _, col := range cols {
		if col.kind != colTag {
			continue
		}
		v, set := tagCols[col.name]
		if !set {
			continue
		}
		if prev, both := ur.Tags[col.name]; both && (prev != v || ur.TagTypes[col.name] != 0) {
			c.add(line, col.header, "%s conflicts with %s in the Tags column", quote(v), quote(prev))
			continue
		}
		if ur.Tags == nil {
			ur.Tags = map[string]string{}
		}
		ur.Tags[col.name] = v
	}
}

// quote quotes a value for an error, clipped.
func quote(v string) string {
	if len(v) > 64 {
		return strconv.Quote(strings.ToValidUTF8(v[:64], "?")) + "…"
	}
	return strconv.Quote(v)
}

func setExt(ur *messages.UsageRecord, name string, v messages.ExtValue) {
	if ur.Ext == nil {
		ur.Ext = map[string]messages.ExtValue{}
	}
	ur.Ext[name] = v
}
