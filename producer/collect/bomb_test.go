package collect_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"io"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/usagefleet/usagefleet/messages"
	"github.com/usagefleet/usagefleet/producer/collect"
)

// bombPlatform serves one report whose file is a header and then a gzip
// of 1 GiB of NULs (about 1 MB), and counts its downloads.
type bombPlatform struct{ fetches atomic.Int32 }

func (*bombPlatform) Type() string           { return "bomb" }
func (*bombPlatform) Account() string        { return "acct" }
func (*bombPlatform) Fingerprint() string    { return "bomb" }
func (*bombPlatform) Limits() collect.Limits { return collect.Limits{Align: 24 * time.Hour} }
func (*bombPlatform) Request(context.Context, collect.Range) (string, error) {
	return "rep-bomb-1", nil
}
func (*bombPlatform) Status(context.Context, string) (collect.Status, error) {
	return collect.Status{State: collect.Ready}, nil
}
func (b *bombPlatform) Fetch(_ context.Context, _ string, _ collect.Status, _ collect.Range, sink collect.Sink) (collect.FetchInfo, error) {
	b.fetches.Add(1)
	var member bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&member, gzip.BestCompression)
	zw.Write(make([]byte, 1<<20))
	zw.Close()
	var header bytes.Buffer
	zw = gzip.NewWriter(&header)
	zw.Write([]byte("realmId,billableValue\n"))
	zw.Close()
	rs := []io.Reader{&header}
	for range 1024 {
		rs = append(rs, bytes.NewReader(member.Bytes()))
	}
	return collect.ParseReport(io.MultiReader(rs...), "bomb CSV", nil, nil, sink, func(*collect.CSV) (*messages.UsageRecord, string, string) {
		return nil, "", "unreachable"
	})
}

// A report file that is a gzip bomb fails the run with an error naming the
// report, the limit and the line, short, and is downloaded once: the same
// file downloaded again is the same bomb (issue 12 item 9).
func TestReportGzipBombFailsTheRunNamingTheReport(t *testing.T) {
	e := newEnv(t)
	p := &bombPlatform{}
	ctx, cancel := bg()
	defer cancel()
	_, err := e.collector(p, "bomb", collect.Options{}).Run(ctx)
	if !errors.Is(err, collect.ErrTooLarge) {
		t.Fatalf("err = %.300v; want ErrTooLarge", err)
	}
	msg := err.Error()
	for _, want := range []string{"report rep-bomb-1", "line 2", "longer than 16777216 bytes"} {
		if !strings.Contains(msg, want) {
			t.Errorf("the error %q does not say %q", msg, want)
		}
	}
	t.Logf("the error: %s", msg)
	if len(msg) > 400 {
		t.Errorf("a %d-byte error", len(msg))
	}
	if n := p.fetches.Load(); n != 1 {
		t.Errorf("the bomb was downloaded %d times: a limit is permanent", n)
	}
	if n := e.usageMsgs(); n != 0 {
		t.Errorf("%d parts published from a bomb", n)
	}
}
