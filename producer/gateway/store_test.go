package gateway

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// A PubAck (the batch record's) is read without decoding it: a stored or
// duplicate ack is nil, anything else an error that says what it was.
func TestPubAckError(t *testing.T) {
	ack := func(data string, status string) *nats.Msg {
		m := &nats.Msg{Data: []byte(data), Header: nats.Header{}}
		if status != "" {
			m.Header.Set("Status", status)
		}
		return m
	}
	for _, ok := range []string{`{"stream":"GATEWAY","seq":7}`, `{"stream":"GATEWAY","seq":7,"duplicate":true}`} {
		if err := pubAckError(ack(ok, "")); err != nil {
			t.Errorf("%s: %v", ok, err)
		}
	}
	var apiErr *jetstream.APIError
	if err := pubAckError(ack(`{"error":{"code":503,"err_code":10077,"description":"maximum messages exceeded"},"stream":"GATEWAY","seq":0}`, "")); !errors.As(err, &apiErr) || apiErr.ErrorCode != 10077 {
		t.Errorf("an error ack: %v", err)
	}
	if err := pubAckError(ack("", "503")); !errors.Is(err, jetstream.ErrNoStreamResponse) {
		t.Errorf("no responders: %v", err)
	}
	if err := pubAckError(ack("hello", "")); err == nil {
		t.Error("not a PubAck: nil")
	}
}

// The single event's answer, written without encoding/json when that is a
// plain copy, is byte for byte what json.Marshal writes; anything else
// goes through json.Marshal.
func TestEventAnswerAsJSONMarshal(t *testing.T) {
	strs := []string{"", "e1", "/svc/a", "stored", "duplicate", "e-3Z9x", "a\"b", `a\b`, "<tag>", "a&b", "tab\there", "ünï", "\u2028", "\x7f", "\xff", "~ !#$%'()*+,-./:;=?@[]^_`{|}"}
	for _, id := range strs {
		for _, src := range strs {
			for _, batch := range []string{"", "e-1", "<x>"} {
				for _, warn := range [][]ProblemError{nil, {{Pointer: "event.data.x", Detail: "kept"}}} {
					r := EventResult{ID: id, Source: src, Status: "stored", BatchID: batch, Warnings: warn}
					want, _ := json.Marshal(r)
					want = append(want, '\n')
					got, ok := r.appendPlain(nil)
					if !ok {
						if plainJSON(id) && plainJSON(src) && plainJSON(batch) && warn == nil {
							t.Errorf("%+v: not written plainly", r)
						}
						continue
					}
					if !bytes.Equal(got, want) {
						t.Errorf("%+v:\n got %s\nwant %s", r, got, want)
					}
				}
			}
		}
	}
}

// The batched direct get's request, written in place, is what
// encoding/json writes.
func TestMultiLastRequest(t *testing.T) {
	for _, subjects := range [][]string{
		{"gateway.events.00"},
		{"gateway.events.0123456789abcdef0123456789abcdef", "gateway.events.fedcba9876543210fedcba9876543210", "gateway.events.aa"},
	} {
		want, _ := json.Marshal(struct {
			MultiLast []string `json:"multi_last"`
			Batch     int      `json:"batch"`
		}{subjects, len(subjects)})
		if got := multiLastRequest(subjects); string(got) != string(want) {
			t.Errorf("%s, want %s", got, want)
		}
	}
}

// An event's dedup key, and so its claim's subject, is what it always
// was (claims stored before must still be found): the hex of the first
// 16 bytes of SHA-256(source NUL id).
func TestEventClaimSubject(t *testing.T) {
	for _, c := range []struct{ source, id string }{{"/s", "1"}, {"https://example.com/svc", "7f3a-ü"}, {"", ""}} {
		ev := &event{source: c.source, id: c.id}
		ev.setKey()
		sum := sha256.Sum256([]byte(c.source + "\x00" + c.id))
		want := hex.EncodeToString(sum[:16])
		if ev.key != want || ev.claim != subjEvents+want {
			t.Errorf("%+v: key %q claim %q, want %q", c, ev.key, ev.claim, want)
		}
	}
}
