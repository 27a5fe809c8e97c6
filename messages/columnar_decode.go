package messages

import (
	"errors"
	"fmt"
	"unsafe"
)

// column is one column of a schema-2 part as the decoder reads it.
type column struct {
	fixed int    // fixed column position, detailBase+n for Detail column n, or -1 for an extension column
	ext   string // extension name without "x_"
}

var errNotColumnar = errors.New("not a schema-2 payload")

// decodeColumnar reads a schema-2 payload. Strings are substrings of one
// copy of the payload (one allocation for them all); Tags and Ext maps are
// allocated per record that has them.
func (d *fastDecoder) decodeColumnar(dst []UsageRecord, outer int) ([]UsageRecord, error) {
	if outer < 1 {
		return dst, fmt.Errorf("payload: %w: no column list", errNotColumnar)
	}
	if err := d.readColumns(); err != nil {
		return dst, err
	}
	d.columnar = true
	n := outer - 1
	if n > len(d.b) {
		return dst, fmt.Errorf("payload: bad record count %d", n)
	}
	// Every string below is a substring of d.s: a copy of the payload, or,
	// when reusing, the payload itself (the caller keeps it unchanged).
	if d.reuse {
		d.s = unsafe.String(unsafe.SliceData(d.b), len(d.b))
	} else {
		d.s = string(d.b)
	}
	base := len(dst)
	if cap(dst)-base < n {
		nd := make([]UsageRecord, base, base+n)
		copy(nd, dst)
		dst = nd
	}
	dst = dst[:base+n]
	for k := 0; k < n; k++ {
		r := &dst[base+k]
		if d.reuse {
			d.tags, d.exts, d.types, d.det = r.Tags, r.Ext, r.TagTypes, r.Detail
		}
		*r = UsageRecord{}
		if err := d.row(r, d.cols); err != nil {
			var de *DecodeError
			if errors.As(err, &de) {
				de.Record = k
				return dst[:base], de
			}
			return dst[:base], &DecodeError{Record: k, Err: err}
		}
		if d.exts != nil && len(d.spareExts) < maxSpareExts {
			d.spareExts = append(d.spareExts, d.exts) // the old record's, not taken
		}
		d.exts = nil
	}
	if d.i != len(d.b) {
		return dst[:base], fmt.Errorf("payload: trailing bytes after %d records", n)
	}
	return dst, nil
}

// readColumns reads a schema-2 part's column list into d.cols.
func (d *fastDecoder) readColumns() error {
	ncols, err := d.arrayLen()
	if err != nil {
		return fmt.Errorf("payload: columns: %w", err)
	}
	if ncols > len(d.b) {
		return fmt.Errorf("payload: bad column count %d", ncols)
	}
	cols := d.cols[:0]
	var seen uint32
	var dseen uint64
	for c := 0; c < ncols; c++ {
		nb, err := d.strBytes()
		if err != nil {
			return fmt.Errorf("payload: column %d: %w", c, err)
		}
		name := string(nb)
		if len(name) > 2 && name[:2] == "x_" {
			// Names are not checked further than schema 1 checks keys:
			// publishing validates them.
			ext := name[2:]
			for _, o := range cols {
				if o.fixed < 0 && o.ext == ext {
					return fmt.Errorf("payload: column %q appears twice", name)
				}
			}
			cols = append(cols, column{fixed: -1, ext: ext})
			continue
		}
		f := fixedColumn(name)
		if f < 0 {
			dc, ok := detailIndex[name]
			if !ok {
				return fmt.Errorf("payload: column %d: unknown column %q", c, name)
			}
			if dseen&(1<<dc) != 0 {
				return fmt.Errorf("payload: column %q appears twice", name)
			}
			dseen |= 1 << dc
			cols = append(cols, column{fixed: detailBase + dc})
			continue
		}
		if seen&(1<<f) != 0 {
			return fmt.Errorf("payload: column %q appears twice", name)
		}
		seen |= 1 << f
		cols = append(cols, column{fixed: f})
	}
	d.cols = cols
	return nil
}

func (d *fastDecoder) row(r *UsageRecord, cols []column) error {
	n, err := d.arrayLen()
	if err != nil {
		return err
	}
	if n != len(cols) {
		return fmt.Errorf("record has %d values for %d columns", n, len(cols))
	}
	for _, c := range cols {
		if err := d.value(r, c); err != nil {
			return &DecodeError{Field: columnName(c), Err: err}
		}
	}
	return nil
}

// nilNext consumes a nil if one is next.
func (d *fastDecoder) nilNext() bool {
	if d.i < len(d.b) && d.b[d.i] == 0xc0 {
		d.i++
		return true
	}
	return false
}

// sub reads a str (or bin) as a substring of d.s; nil reads as "".
func (d *fastDecoder) sub() (string, error) {
	// Fast path: a fixstr (under 32 bytes) or nil, most of a record.
	if i := d.i; i < len(d.b) {
		switch c := d.b[i]; {
		case c&0xe0 == 0xa0:
			end := i + 1 + int(c&0x1f)
			if end <= len(d.b) {
				d.i = end
				return d.s[i+1 : end], nil
			}
		case c == 0xc0:
			d.i = i + 1
			return "", nil
		}
	}
	b, err := d.strBytes()
	if err != nil || len(b) == 0 {
		return "", err
	}
	end := d.i
	return d.s[end-len(b) : end], nil
}

func (d *fastDecoder) value(r *UsageRecord, c column) error {
	switch f := c.fixed; {
	case f < 0:
		if d.nilNext() {
			return nil
		}
		return d.ext(r, c.ext)
	case f >= detailBase:
		return d.detailValue(r, f-detailBase)
	case f == colStart || f == colEnd:
		t, err := d.time()
		if err != nil {
			return err
		}
		if f == colStart {
			r.ChargePeriodStart = t
		} else {
			r.ChargePeriodEnd = t
		}
	case f < colFirstDec:
		s, err := d.sub()
		if err != nil {
			return err
		}
		*strFieldOf(r, f-colFirstStr) = s
	case f < colTags:
		if d.nilNext() {
			return nil
		}
		s, err := d.sub()
		if err != nil {
			return err
		}
		v, err := decimalOf(s)
		if err != nil {
			return err
		}
		*decFieldOf(r, f-colFirstDec) = v
	default:
		m, err := d.mapLen()
		if err != nil || m <= 0 {
			return err
		}
		return d.readTags(r, m)
	}
	return nil
}

// decimalOf is ParseDecimal without an allocation for canonical input.
func decimalOf(s string) (Decimal, error) {
	if isCanonical(s) {
		return Decimal{s}, nil
	}
	return ParseDecimal(s)
}

// validExtName is ^[A-Za-z][A-Za-z0-9_]{0,63}$.
func validExtName(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'A' && c <= 'Z', c >= 'a' && c <= 'z':
		case i > 0 && (c >= '0' && c <= '9' || c == '_'):
		default:
			return false
		}
	}
	return true
}

// strFieldOf is the string field strFields[i] names, without a call through
// a function value.
func strFieldOf(r *UsageRecord, i int) *string {
	switch i {
	case 0:
		return &r.BillingAccountId
	case 1:
		return &r.BillingAccountName
	case 2:
		return &r.SubAccountId
	case 3:
		return &r.SubAccountName
	case 4:
		return &r.ProviderName
	case 5:
		return &r.PublisherName
	case 6:
		return &r.ServiceName
	case 7:
		return &r.ServiceCategory
	case 8:
		return &r.ChargeCategory
	case 9:
		return &r.ChargeDescription
	case 10:
		return &r.SkuId
	case 11:
		return &r.SkuPriceId
	case 12:
		return &r.SkuMeter
	case 13:
		return &r.InvoiceId
	case 14:
		return &r.ResourceId
	case 15:
		return &r.ResourceName
	case 16:
		return &r.ResourceType
	case 17:
		return &r.RegionId
	case 18:
		return &r.RegionName
	case 19:
		return &r.AvailabilityZone
	case 20:
		return &r.ConsumedUnit
	case 21:
		return &r.PricingUnit
	}
	return &r.BillingCurrency
}

// decFieldOf is the decimal field decFields[i] names.
func decFieldOf(r *UsageRecord, i int) *Decimal {
	switch i {
	case 0:
		return &r.ConsumedQuantity
	case 1:
		return &r.PricingQuantity
	case 2:
		return &r.BilledCost
	case 3:
		return &r.EffectiveCost
	case 4:
		return &r.ListCost
	}
	return &r.ContractedCost
}
