package gateway

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/usagefleet/usagefleet/messages"
)

// CloudEvents 1.0 (https://github.com/cloudevents/spec, v1.0.2):
//
//   - cloudevents/spec.md: id, source, specversion and type are required
//     non-empty strings; time is RFC 3339; datacontenttype defaults to
//     application/json in the JSON format.
//   - cloudevents/formats/json-format.md: an event is a JSON object with its
//     attributes as members; "data" holds a JSON value when datacontenttype
//     is JSON (application/json or */*+json), "data_base64" binary data;
//     a batch (application/cloudevents-batch+json) is a JSON array of events.
//   - cloudevents/bindings/http-protocol-binding.md: binary mode carries
//     attributes in ce-<name> headers (values percent-encoded, section
//     3.1.3.2) and datacontenttype in Content-Type, the body is data;
//     structured mode is application/cloudevents+json.
//
// Here each event's data is one usage record (the JSON form of
// messages.UsageRecord). An event without ChargePeriodStart takes the
// event's time.

// event is one decoded CloudEvent.
type event struct {
	id, source, typ string
	time            time.Time
	rec             messages.UsageRecord
	problems        []ProblemError
	warnings        []ProblemError // kept but repaired
	key             string         // hex of sha256(source NUL id): the dedup key
	claim           string         // its claim's subject, subjEvents + key (key is its tail)
}

func (e *event) setKey() {
	h := sha256.New()
	h.Write([]byte(e.source))
	h.Write([]byte{0})
	h.Write([]byte(e.id))
	var sum [sha256.Size]byte
	b := make([]byte, len(subjEvents)+32)
	copy(b, subjEvents)
	hex.Encode(b[len(subjEvents):], h.Sum(sum[:0])[:16])
	e.claim = string(b)
	e.key = e.claim[len(subjEvents):]
}

// isJSONType: application/json, text/json or a +json structured suffix.
func isJSONType(ct string) bool {
	if ct == "" {
		return true // the JSON format's default
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return false
	}
	return mt == "application/json" || mt == "text/json" || strings.HasSuffix(mt, "+json")
}

// decodeStructured reads one event object (b, and the same as src, a
// substring of the body that the event's strings share) with its record.
func decodeStructured(d *recordDecoder, b []byte, src string, w where) *event {
	ev := &event{}
	prefix := ""
	var errs problems
	var data []byte
	var dataSrc string
	var dataB64 string
	var ct, spec string
	var hasData bool
	_, err := scanObject(b, 0, func(key, val []byte, _, off int, plain bool) error {
		str := func() (string, bool) {
			if len(val) == 0 || val[0] != '"' {
				errs.add(w.String()+"."+string(key), "want a string")
				return "", false
			}
			if plain {
				return src[off+1 : off+len(val)-1], true
			}
			var out string
			if jsonUnmarshalString(val, &out) != nil {
				errs.add(w.String()+"."+string(key), "invalid string")
				return "", false
			}
			return out, true
		}
		switch string(key) {
		case "specversion":
			spec, _ = str()
		case "id":
			ev.id, _ = str()
		case "source":
			ev.source, _ = str()
		case "type":
			ev.typ, _ = str()
		case "datacontenttype":
			ct, _ = str()
		case "time":
			if s, ok := str(); ok {
				t, err := time.Parse(time.RFC3339Nano, s)
				if err != nil {
					errs.add(w.String()+".time", "not an RFC 3339 time")
				}
				ev.time = t.UTC()
			}
		case "data":
			data, dataSrc, hasData = val, src[off:off+len(val)], true
		case "data_base64":
			dataB64, _ = str()
			hasData = true
		}
		return nil
	})
	prefix = w.String()
	if err != nil {
		errs.add(prefix, err.Error())
		ev.problems = errs.result()
		return ev
	}
	checkAttrs(ev, spec, prefix, &errs)
	if !isJSONType(ct) {
		errs.add(prefix+".datacontenttype", quote(ct)+": the data must be a JSON usage record (application/json)")
	}
	if dataB64 != "" {
		raw, err := base64.StdEncoding.DecodeString(dataB64)
		if err != nil {
			errs.add(prefix+".data_base64", "not base64")
		}
		data, dataSrc = raw, string(raw)
	}
	if !hasData || len(data) == 0 {
		errs.add(prefix+".data", "required: the usage record")
	} else if len(errs.list) == 0 {
		w.sub = ".data"
		d.start = ev.time
		d.record(data, dataSrc, &ev.rec, w, &errs)
		if d.filled && len(errs.list) > 0 {
			timeProblems(&errs, prefix+".data", prefix+".time")
		}
	}
	ev.problems, ev.warnings = errs.result(), errs.warns
	return ev
}

func checkAttrs(ev *event, spec, prefix string, errs *problems) {
	if spec != "1.0" {
		errs.add(prefix+".specversion", quote(spec)+": want \"1.0\"")
	}
	if ev.id == "" {
		errs.add(prefix+".id", "required: a non-empty string")
	}
	if ev.source == "" {
		errs.add(prefix+".source", "required: a non-empty URI-reference")
	} else if _, err := url.Parse(ev.source); err != nil {
		errs.add(prefix+".source", "not a URI-reference")
	}
	if ev.typ == "" {
		errs.add(prefix+".type", "required: a non-empty string")
	}
	ev.setKey()
}

// timeProblems: a record without ChargePeriodStart took the event's time
// before it was validated; a problem with that ChargePeriodStart (its
// year) is the time's, and says so at the time's pointer.
func timeProblems(errs *problems, recPrefix, timePtr string) {
	for i := range errs.list {
		if errs.list[i].Pointer == recPrefix+".ChargePeriodStart" {
			errs.list[i].Pointer = timePtr
			errs.list[i].Detail = "as the record's ChargePeriodStart: " + errs.list[i].Detail
		}
	}
}

// decodeBatch reads a JSON array of events.
func decodeBatch(b []byte, max int) ([]*event, *Problem) {
	i := skipWS(b, 0)
	if i >= len(b) || b[i] != '[' {
		return nil, invalid("want a JSON array of CloudEvents", ProblemError{Pointer: "", Detail: "the body is not a JSON array"})
	}
	var d recordDecoder
	src := string(b) // the events' strings are substrings of it
	var out []*event
	i = skipWS(b, i+1)
	if i < len(b) && b[i] == ']' {
		return out, nil
	}
	for n := 0; ; n++ {
		i = skipWS(b, i)
		end, err := scanValue(b, i)
		if err != nil {
			return nil, invalid("The body is not valid JSON", ProblemError{Pointer: "events[" + strconv.Itoa(n) + "]", Detail: err.Error()})
		}
		if len(out) >= max {
			return nil, tooManyRecords(max)
		}
		out = append(out, decodeStructured(&d, b[i:end], src[i:end], at("events", n)))
		i = skipWS(b, end)
		if i < len(b) && b[i] == ',' {
			i++
			continue
		}
		if i < len(b) && b[i] == ']' {
			if j := skipWS(b, i+1); j < len(b) {
				return nil, invalid("The body is not valid JSON", ProblemError{Detail: synErr(j, "data after the closing ]").Error()})
			}
			return out, nil
		}
		return nil, invalid("The body is not valid JSON", ProblemError{Detail: synErr(i, "want ',' or ']' after an event").Error()})
	}
}

// decodeBinary reads a binary-mode event: ce-* headers and the body.
func decodeBinary(h http.Header, body []byte) *event {
	ev := &event{}
	var errs problems
	get := func(name string) string {
		v := h.Get(name)
		if u, err := url.PathUnescape(v); err == nil {
			return u
		}
		errs.add("header."+strings.ToLower(name), "bad percent-encoding")
		return v
	}
	ev.id, ev.source, ev.typ = get("Ce-Id"), get("Ce-Source"), get("Ce-Type")
	if t := get("Ce-Time"); t != "" {
		tt, err := time.Parse(time.RFC3339Nano, t)
		if err != nil {
			errs.add("header.ce-time", "not an RFC 3339 time")
		}
		ev.time = tt.UTC()
	}
	checkAttrs(ev, get("Ce-Specversion"), "header.ce", &errs)
	for i := range errs.list {
		errs.list[i].Pointer = strings.Replace(errs.list[i].Pointer, "header.ce.", "header.ce-", 1)
	}
	if !isJSONType(h.Get("Content-Type")) {
		errs.add("header.content-type", "the data must be a JSON usage record (application/json)")
	}
	if len(errs.list) == 0 {
		d := recordDecoder{start: ev.time}
		d.record(body, string(body), &ev.rec, where{base: "data", idx: -1}, &errs)
		if d.filled && len(errs.list) > 0 {
			timeProblems(&errs, "data", "header.ce-time")
		}
	}
	ev.problems, ev.warnings = errs.result(), errs.warns
	return ev
}
