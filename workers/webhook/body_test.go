package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/usagefleet/usagefleet/internal/usagegen"
	"github.com/usagefleet/usagefleet/workers/workerstest"
)

// TestBodyHoldsItsEncodingUntilClosed: a request body keeps the encoding
// it reads held after its sender let go, until the transport closes it;
// closing twice releases once, and nothing is read after Close.
func TestBodyHoldsItsEncodingUntilClosed(t *testing.T) {
	e := newEncoding()
	e.buf = append(e.buf, `[{"a":1}]`...)
	b := newBody(e, e.buf)
	e.release() // the sender is done
	if n := e.refs.Load(); n != 1 {
		t.Fatalf("after the sender released it the body should hold the encoding once, refs %d", n)
	}
	got, err := io.ReadAll(b)
	if err != nil || string(got) != `[{"a":1}]` {
		t.Fatalf("read %q, %v", got, err)
	}
	b.Close()
	b.Close()
	if n := e.refs.Load(); n != 0 {
		t.Fatalf("closed twice: refs %d, want 0", n)
	}
	if n, err := b.Read(make([]byte, 8)); n != 0 || !errors.Is(err, errBodyClosed) {
		t.Fatalf("a read after Close gave %d bytes, %v; want errBodyClosed", n, err)
	}
}

// heldBodies is a job's Send that answers at once without reading the
// body, keeping it open, as a transport may read a body after Do has
// returned; bodies over limit are answered 413.
type heldBodies struct {
	limit  int
	bodies []io.ReadCloser
	status []int
}

func (h *heldBodies) send(req *http.Request) (*http.Response, error) {
	status := http.StatusOK
	if req.ContentLength > int64(h.limit) {
		status = http.StatusRequestEntityTooLarge
	}
	h.bodies = append(h.bodies, req.Body)
	h.status = append(h.status, status)
	return &http.Response{StatusCode: status, Body: io.NopCloser(strings.NewReader("{}")), Header: http.Header{}}, nil
}

// TestBodiesReadAfterDeliverReturns: bodies read only after Deliver has
// returned, and after further parts were encoded (into buffers a released
// encoding would be reused for), still hold their own part's JSON: the
// whole part sent as one body, and the halves a 413 split it into.
func TestBodiesReadAfterDeliverReturns(t *testing.T) {
	recs := usagegen.Generate(40, usagegen.Options{Seed: 7, Hours: 1})
	var want [][]byte // each record's JSON
	for i := range recs {
		want = append(want, recs[i].AppendJSON(nil))
	}
	all := append(append([]byte{'['}, bytes.Join(want, []byte{','})...), ']')

	d, err := New("hook", Settings{URL: "http://127.0.0.1:1/ingest", MaxBodyBytes: 4 * len(all)}, "test")
	if err != nil {
		t.Fatal(err)
	}
	whole := &heldBodies{limit: len(all)}
	j := workerstest.New(nil, recs)
	j.Append, j.Send, j.Encode = true, whole.send, d.EncodeRow
	if err := d.Deliver(context.Background(), j); err != nil {
		t.Fatal(err)
	}
	// The receiver takes half the part at most: the part is split, and
	// each half's body is a copy of its own.
	split := &heldBodies{limit: len(all)/2 + 1}
	j2 := workerstest.New(nil, recs)
	j2.Append, j2.Send, j2.Encode = true, split.send, d.EncodeRow
	if err := d.Deliver(context.Background(), j2); err != nil {
		t.Fatal(err)
	}
	// Other parts, encoded while those bodies are still open.
	for i := 0; i < 4; i++ {
		oj := workerstest.New(nil, usagegen.Generate(40, usagegen.Options{Seed: uint64(100 + i), Hours: 1}))
		oj.Append, oj.Encode = true, d.EncodeRow
		oj.Send = func(req *http.Request) (*http.Response, error) {
			_, _ = io.Copy(io.Discard, req.Body)
			req.Body.Close()
			return &http.Response{StatusCode: http.StatusOK, Body: io.NopCloser(strings.NewReader("{}")), Header: http.Header{}}, nil
		}
		if err := d.Deliver(context.Background(), oj); err != nil {
			t.Fatal(err)
		}
	}

	read := func(b io.ReadCloser) []byte {
		t.Helper()
		got, err := io.ReadAll(b)
		if err != nil {
			t.Fatal(err)
		}
		b.Close()
		return got
	}
	if len(whole.bodies) != 1 {
		t.Fatalf("the whole part went in %d bodies, want 1", len(whole.bodies))
	}
	if got := read(whole.bodies[0]); !bytes.Equal(got, all) {
		t.Fatalf("the whole part's body read after Deliver returned is not its JSON:\n got %.200s\nwant %.200s", got, all)
	}
	var accepted [][]byte
	for i, b := range split.bodies {
		got := read(b)
		if !json.Valid(got) || got[0] != '[' {
			t.Fatalf("body %d is not a JSON array: %.200s", i, got)
		}
		if !bytes.Contains(all, got[1:len(got)-1]) {
			t.Fatalf("body %d is not a run of the part's records: %.200s", i, got)
		}
		if split.status[i] == http.StatusOK {
			accepted = append(accepted, got[1:len(got)-1])
		}
	}
	if len(accepted) < 2 {
		t.Fatalf("the split part went in %d accepted bodies, want at least 2", len(accepted))
	}
	if got := bytes.Join(accepted, []byte{','}); !bytes.Equal(got, all[1:len(all)-1]) {
		t.Fatalf("the accepted bodies do not add up to the part, in order")
	}
	if len(j2.Reasons()) != 0 {
		t.Fatalf("records rejected: %v", j2.Reasons())
	}
}
