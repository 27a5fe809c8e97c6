package cloudcruiser

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/shopspring/decimal"
)

// uploadError is a failed upload: the HTTP status and the message of the
// Cloud Cruiser JSON error body.
type uploadError struct {
	status int
	msg    string
}

func (e *uploadError) Error() string { return e.msg }

func badRequest(format string, args ...any) *uploadError {
	return &uploadError{status: http.StatusBadRequest, msg: fmt.Sprintf(format, args...)}
}

// parseOptions is what the parser needs from the server's config.
type parseOptions struct {
	extraTypes   map[string]string // Config.ExtraFieldTypes
	declaredOnly bool              // Config.DeclaredExtraFieldsOnly
	layout       Layout
	decimals     DecimalForm
	allowOffDate bool
	loc          *time.Location
	dayStart     time.Time // accounting date, local midnight
	dayEnd       time.Time // next local midnight
	date         string
	zone         string
	keepUpTo     int
	keepFirst    int
}

// parseResult is a validated upload, ready to replace its date.
type parseResult struct {
	records  int
	quantity decimal.Decimal
	cost     decimal.Decimal
	kept     []Record
}

// recordState is the scratch space of the record being read; it is reused
// across records so a large upload allocates little per record.
type recordState struct {
	have       uint64
	start, end time.Time
	startRaw   string
	accountID  string
	meterID    string
	quantity   decimal.Decimal
	cost       decimal.Decimal
	extras     map[string]struct{}
}

func (st *recordState) reset() {
	st.have = 0
	st.startRaw, st.accountID, st.meterID = "", "", ""
	st.quantity, st.cost = decimal.Decimal{}, decimal.Decimal{}
	clear(st.extras)
}

type parser struct {
	opt parseOptions
	dec *json.Decoder
	st  recordState
	res parseResult
}

// parseUpload reads the file of part "data" token by token. Nothing is
// kept but the running sums and the records the store keeps, so memory does
// not grow with the size of the upload beyond opt.keepUpTo records.
func parseUpload(r io.Reader, opt parseOptions) (*parseResult, *uploadError) {
	p := &parser{opt: opt, dec: json.NewDecoder(tagReader{r})}
	p.dec.UseNumber()
	p.st.extras = map[string]struct{}{}
	if err := p.run(); err != nil {
		return nil, err
	}
	return &p.res, nil
}

// bodyError is a failure to read the part (a truncated multipart body, a
// body over the limit), as opposed to malformed JSON in it.
type bodyError struct{ err error }

func (e *bodyError) Error() string { return e.err.Error() }
func (e *bodyError) Unwrap() error { return e.err }

// tagReader marks every read error but io.EOF as a bodyError, so the
// parser can tell a broken body from a JSON file that ends early.
type tagReader struct{ r io.Reader }

func (t tagReader) Read(b []byte) (int, error) {
	n, err := t.r.Read(b)
	if err != nil && err != io.EOF {
		err = &bodyError{err}
	}
	return n, err
}

// readErr turns a decoder error into the upload's answer.
func (p *parser) readErr(err error) *uploadError {
	var be *bodyError
	switch {
	case errors.As(err, &be):
		e := multipartErr(be.err)
		e.msg += fmt.Sprintf(" (after %d complete record(s))", p.res.records)
		return e
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return badRequest("Malformed JSON in part \"data\": file ends after %d complete record(s)", p.res.records)
	default:
		return badRequest("Malformed JSON in part \"data\" after %d complete record(s): %v", p.res.records, err)
	}
}

func (p *parser) token() (json.Token, *uploadError) {
	t, err := p.dec.Token()
	if err != nil {
		return nil, p.readErr(err)
	}
	return t, nil
}

func (p *parser) expectDelim(want json.Delim, what string) *uploadError {
	t, err := p.token()
	if err != nil {
		return err
	}
	if d, ok := t.(json.Delim); !ok || d != want {
		return badRequest("Malformed file in part \"data\": %s, found %s", what, describe(t))
	}
	return nil
}

func (p *parser) run() *uploadError {
	if err := p.expectDelim('[', "want a JSON array of records"); err != nil {
		return err
	}
	var header []string
	if p.opt.layout == LayoutHeaderRow {
		h, err := p.readHeader()
		if err != nil {
			return err
		}
		header = h
	}
	for p.dec.More() {
		var err *uploadError
		if p.opt.layout == LayoutHeaderRow {
			err = p.readRow(header)
		} else {
			err = p.readObject()
		}
		if err != nil {
			return err
		}
		if err := p.finishRecord(); err != nil {
			return err
		}
	}
	if err := p.expectDelim(']', "want the end of the record array"); err != nil {
		return err
	}
	if t, err := p.dec.Token(); err != io.EOF {
		if err != nil {
			return p.readErr(err)
		}
		return badRequest("Malformed file in part \"data\": %s after the record array", describe(t))
	}
	return nil
}

// readObject reads one record in the objects layout: a flat object keyed by
// field name.
func (p *parser) readObject() *uploadError {
	n := p.res.records
	t, err := p.token()
	if err != nil {
		return err
	}
	if d, ok := t.(json.Delim); !ok || d != '{' {
		return badRequest("record index %d: want a JSON object keyed by field name, found %s", n, describe(t))
	}
	for p.dec.More() {
		kt, err := p.token()
		if err != nil {
			return err
		}
		key := kt.(string) // the decoder only yields string keys inside an object
		vt, err := p.token()
		if err != nil {
			return err
		}
		if err := p.setField(key, vt); err != nil {
			return err
		}
	}
	return p.expectDelim('}', fmt.Sprintf("record index %d: want the end of the object", n))
}

// readHeader reads the header row of the header-row layout.
func (p *parser) readHeader() ([]string, *uploadError) {
	if !p.dec.More() {
		return nil, badRequest("Malformed file in part \"data\": the header row is missing")
	}
	t, err := p.token()
	if err != nil {
		return nil, err
	}
	if d, ok := t.(json.Delim); !ok || d != '[' {
		return nil, badRequest("header row: want an array of field names, found %s", describe(t))
	}
	var header []string
	seen := map[string]bool{}
	for p.dec.More() {
		t, err := p.token()
		if err != nil {
			return nil, err
		}
		name, ok := t.(string)
		if !ok {
			return nil, badRequest("header row column %d: want a field name string, found %s", len(header), describe(t))
		}
		if seen[name] {
			return nil, badRequest("header row: field %s appears twice", quote(name))
		}
		if err := checkName(name); err != "" {
			return nil, badRequest("header row column %d: %s", len(header), err)
		}
		seen[name] = true
		header = append(header, name)
	}
	if err := p.expectDelim(']', "header row: want the end of the row"); err != nil {
		return nil, err
	}
	return header, nil
}

// readRow reads one record in the header-row layout.
func (p *parser) readRow(header []string) *uploadError {
	n := p.res.records
	t, err := p.token()
	if err != nil {
		return err
	}
	if d, ok := t.(json.Delim); !ok || d != '[' {
		return badRequest("record index %d: want an array of values, found %s", n, describe(t))
	}
	col := 0
	for p.dec.More() {
		vt, err := p.token()
		if err != nil {
			return err
		}
		if col >= len(header) {
			return badRequest("record index %d: more values than the %d header fields", n, len(header))
		}
		if err := p.setField(header[col], vt); err != nil {
			return err
		}
		col++
	}
	if col != len(header) {
		return badRequest("record index %d: %d values for %d header fields", n, col, len(header))
	}
	return p.expectDelim(']', fmt.Sprintf("record index %d: want the end of the row", n))
}

// finishRecord checks the record as a whole and adds it to the result.
func (p *parser) finishRecord() *uploadError {
	n := p.res.records
	st := &p.st
	if missing := required &^ st.have; missing != 0 {
		var names []string
		for i, f := range fields {
			if missing&(1<<i) == 0 {
				continue
			}
			name := fmt.Sprintf("%q", f.name)
			for k := range st.extras {
				if strings.EqualFold(k, f.name) {
					name += fmt.Sprintf(" (found %q; field names are case-sensitive)", k)
				}
			}
			names = append(names, name)
		}
		return badRequest("record index %d: missing required field(s) %s", n, strings.Join(names, ", "))
	}
	if !p.opt.allowOffDate && (st.start.Before(p.opt.dayStart) || !st.start.Before(p.opt.dayEnd)) {
		return badRequest("record index %d: field %q: %s is not on the accounting date %s in zoneOffset %s (from %s to before %s)",
			n, fUsageStart, quote(st.startRaw), p.opt.date, p.opt.zone,
			p.opt.dayStart.Format(time.RFC3339), p.opt.dayEnd.Format(time.RFC3339))
	}
	if st.end.Before(st.start) {
		return badRequest("record index %d: field %q is before %q", n, fUsageEnd, fUsageStart)
	}
	r := &p.res
	r.records++
	r.quantity = r.quantity.Add(st.quantity)
	hasCost := st.have&(1<<idxCost) != 0
	if hasCost {
		r.cost = r.cost.Add(st.cost)
	}
	// Keep every record while the date is small; once it grows past
	// keepUpTo, keep only the first keepFirst.
	if r.records <= p.opt.keepUpTo || len(r.kept) < p.opt.keepFirst {
		rec := Record{UsageStart: st.start.UTC(), AccountID: st.accountID, MeterID: st.meterID, Quantity: st.quantity.String()}
		if hasCost {
			rec.Cost = st.cost.String()
		}
		r.kept = append(r.kept, rec)
	}
	if r.records > p.opt.keepUpTo && len(r.kept) > p.opt.keepFirst {
		r.kept = append([]Record(nil), r.kept[:p.opt.keepFirst]...) // frees the large backing array
	}
	st.reset()
	return nil
}
