package collect

import (
	"errors"
	"fmt"
	"io"

	"go.yaml.in/yaml/v3"

	"github.com/usagefleet/usagefleet/messages"
)

// RegisterSettings registers the platform type typ whose settings S are
// decoded with DecodeStrict, checked (and given their defaults) by
// S.Validate with their key, then handed to build (a platform's New).
func RegisterSettings[S any, PS interface {
	*S
	Validate(key string) error
}, P Platform](typ string, build func(S, Env) (P, error)) {
	Register(typ, func(node *yaml.Node, key string, env Env) (Platform, error) {
		var s S
		if err := DecodeStrict(node, &s, key); err != nil {
			return nil, err
		}
		if err := PS(&s).Validate(key); err != nil {
			return nil, err
		}
		p, err := build(s, env)
		if err != nil {
			return nil, err // not a Platform holding a nil P
		}
		return p, nil
	})
}

// ParseReport reads a report's CSV file from body into sink, a record per
// row as record maps it (or the column and reason it refuses the row
// with; neither a record nor a reason: the row is skipped). A file
// without the required columns, or whose header check (nil: none)
// refuses, is refused as a whole; format names it in errors
// ("csv_v2_0: ...").
func ParseReport(body io.Reader, format string, required []string, check func(*CSV) error, sink Sink, record func(*CSV) (rec *messages.UsageRecord, column, reason string)) (FetchInfo, error) {
	c, err := NewCSV(body)
	if err != nil {
		return FetchInfo{}, Permanent(fmt.Errorf("%s: %w", format, err))
	}
	if err := c.Require(required...); err != nil {
		return FetchInfo{}, Permanent(fmt.Errorf("%s: %w", format, err))
	}
	if check != nil {
		if err := check(c); err != nil {
			return FetchInfo{}, Permanent(fmt.Errorf("%s: %w", format, err))
		}
	}
	for {
		err := c.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		var re *RowError
		if errors.As(err, &re) {
			sink.Reject(c.Row(), re.Column, re.Reason)
			continue
		}
		if err != nil {
			return FetchInfo{Rows: c.Rows()}, fmt.Errorf("%s: %w", format, err)
		}
		rec, col, reason := record(c)
		switch {
		case reason != "":
			sink.Reject(c.Row(), col, reason)
		case rec != nil:
			sink.Record(c.Row(), rec)
		}
	}
	return FetchInfo{Rows: c.Rows()}, nil
}
