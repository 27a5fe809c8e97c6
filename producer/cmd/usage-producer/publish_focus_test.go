package main

import (
	"context"
	"errors"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/usagefleet/usagefleet/messages"
	"github.com/usagefleet/usagefleet/producer/input"
)

// Every FOCUS fixture, as the provider writes it, publishes with one
// command, and every record's exact BilledCost per currency is in the
// USAGE stream: the totals (written by hand from the files) and the
// multiset of the records' costs.
func TestPublishFOCUSExports(t *testing.T) {
	n := startNATS(t)
	fixtures := []struct {
		file, source, version string
		cost                  map[string]string
		warns                 int
	}{
		{"aws-focus-1.0.csv", "aws", "1.0", map[string]string{"USD": "75.5146"}, 0},
		{"azure-focus-1.2.csv", "azure", "1.2", map[string]string{"EUR": "130.1259"}, 0},
		{"gcp-focus-1.1.ndjson", "gcp", "1.1", map[string]string{"USD": "12.345678" + strings.Repeat("0", 93) + "15", "JPY": "1500"}, 1},
		{"oci-focus-1.0.csv", "oci", "1.0", map[string]string{"GBP": "103.214"}, 12},
		{"focus-1.3.csv", "f13", "1.3", map[string]string{"USD": "100.00"}, 1},
		{"aws-focus-1.2.parquet", "awspq", "1.2", map[string]string{"USD": "112.8456789012"}, 0},
	}
	for _, fx := range fixtures {
		t.Run(fx.file, func(t *testing.T) {
			path := filepath.Join("..", "..", "input", "testdata", "focus", fx.file)
			code, stdout, stderr := cli(t, "publish", "--feed", "f", "--source", fx.source, "--nats", n.url, path)
			if code != exitOK {
				t.Fatalf("exit %d\nstdout: %s\nstderr: %s", code, stdout, stderr)
			}
			if !strings.Contains(stderr, "FOCUS "+fx.version+" (told from its columns)") {
				t.Errorf("stderr does not tell the version %s:\n%s", fx.version, stderr)
			}
			if got := strings.Count(stderr, "(warning)"); got != fx.warns {
				t.Errorf("%d warnings, want %d:\n%s", got, fx.warns, stderr)
			}
			want := fileCosts(t, path)
			got, sums := streamCosts(t, n, fx.source)
			if !reflect.DeepEqual(sums, fx.cost) {
				t.Errorf("stream totals %v, want %v", sums, fx.cost)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("stream record costs %v, file %v", got, want)
			}
		})
	}
}

// fileCosts is "<currency> <BilledCost>" of every record of the file,
// sorted.
func fileCosts(t *testing.T, path string) []string {
	t.Helper()
	rows, errs, err := input.ReadFile(path)
	if err != nil || len(errs) > 0 {
		t.Fatalf("%v %v", err, errs)
	}
	var out []string
	for _, r := range rows {
		if r.Record.BilledCost.IsSet() {
			out = append(out, r.Record.BillingCurrency+" "+r.Record.BilledCost.String())
		}
	}
	sort.Strings(out)
	return out
}

// streamCosts reads every part source stored in USAGE.
func streamCosts(t *testing.T, n *testNATS, source string) ([]string, map[string]string) {
	t.Helper()
	ctx := context.Background()
	st, err := n.js.Stream(ctx, messages.StreamUsage)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	sums := map[string]*messages.Sum{}
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && seq > 0; seq++ {
		m, err := st.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if m.Header.Get(messages.HdrSource) != source {
			continue
		}
		p, err := messages.DecodePart(m.Header, m.Data)
		if err != nil {
			t.Fatalf("seq %d: %v", seq, err)
		}
		if p.Meta.Schema != 3 {
			t.Errorf("seq %d: schema %d, want 3 (the part carries FOCUS Detail columns)", seq, p.Meta.Schema)
		}
		for _, r := range p.Records {
			if r.Detail == nil || r.Detail.BillingPeriodStart.IsZero() {
				t.Errorf("seq %d: a record arrived without its BillingPeriodStart", seq)
			}
			if !r.BilledCost.IsSet() {
				continue
			}
			out = append(out, r.BillingCurrency+" "+r.BilledCost.String())
			if sums[r.BillingCurrency] == nil {
				sums[r.BillingCurrency] = &messages.Sum{}
			}
			sums[r.BillingCurrency].Add(r.BilledCost)
		}
	}
	sort.Strings(out)
	totals := map[string]string{}
	for c, s := range sums {
		totals[c] = s.Decimal().String()
	}
	return out, totals
}

// --strict refuses a file with a column that is neither FOCUS nor x_.
func TestPublishStrict(t *testing.T) {
	n := startNATS(t)
	path := filepath.Join("..", "..", "input", "testdata", "focus", "focus-1.3.csv")
	code, _, stderr := cli(t, "publish", "--strict", "--feed", "f", "--source", "s", "--nats", n.url, path)
	if code != exitFail || !strings.Contains(stderr, "Owner Team: not a FOCUS column (--strict refuses it") || n.usageMsgs(t) != 0 {
		t.Fatalf("exit %d, %d messages, stderr:\n%s", code, n.usageMsgs(t), stderr)
	}
}
