package collect

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"

	"go.yaml.in/yaml/v3"

	"github.com/usagefleet/usagefleet/messages"
)

// RegisterSettings registers the platform type typ whose settings S are
// decoded with DecodeStrict, checked (and given their defaults) by
// S.Validate with their key, then handed to build.
func RegisterSettings[S any, PS interface {
	*S
	Validate(key string) error
}](typ string, build func(S, Env) (Platform, error)) {
	Register(typ, func(node *yaml.Node, key string, env Env) (Platform, error) {
		var s S
		if err := DecodeStrict(node, &s, key); err != nil {
			return nil, err
		}
		if err := PS(&s).Validate(key); err != nil {
			return nil, err
		}
		return build(s, env)
	})
}

// Download sends the request for a report's file. A 404 says the report is
// gone (ErrReportGone): it is requested again.
func Download(ctx context.Context, api *API, rq Request) (*http.Response, error) {
	resp, err := api.Do(ctx, rq)
	if err != nil {
		var ae *APIError
		if errors.As(err, &ae) && ae.Status == http.StatusNotFound {
			return nil, fmt.Errorf("%w: %v", ErrReportGone, err)
		}
		return nil, err
	}
	return resp, nil
}

// ParseReport reads a report's CSV file from body into sink, a record per
// row as record maps it (or the column and reason it refuses the row
// with). A file without the required columns is refused as a whole;
// format names it in errors ("csv_v2_0: ...").
func ParseReport(body io.Reader, format string, required []string, sink Sink, record func(*CSV) (rec *messages.UsageRecord, column, reason string)) (FetchInfo, error) {
	c, err := NewCSV(body)
	if err != nil {
		return FetchInfo{}, Permanent(fmt.Errorf("%s: %w", format, err))
	}
	if err := c.Require(required...); err != nil {
		return FetchInfo{}, Permanent(fmt.Errorf("%s: %w", format, err))
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
		if reason != "" {
			sink.Reject(c.Row(), col, reason)
			continue
		}
		sink.Record(c.Row(), rec)
	}
	return FetchInfo{Rows: c.Rows()}, nil
}
