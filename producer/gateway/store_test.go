package gateway

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// The claims' acks are read without decoding each PubAck: a stored or
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
