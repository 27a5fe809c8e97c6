package gateway

import (
	"bytes"
	"encoding/json"
	"net/http"
	"testing"

	"github.com/usagefleet/usagefleet/messages"
	"github.com/usagefleet/usagefleet/producer/input"
)

// Fuzz targets, one per request decoder. Each checks that a decoder never
// panics, that what it accepts is what the producer's own reader accepts
// (NDJSON, CSV) or is valid JSON, and that every accepted record survives
// its JSON form unchanged.

func roundTrip(t *testing.T, recs []messages.UsageRecord) {
	t.Helper()
	for i := range recs {
		b := recs[i].AppendJSON(nil)
		var back messages.UsageRecord
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatalf("record %d: its JSON %s does not read back: %v", i, b, err)
		}
		if !bytes.Equal(back.AppendJSON(nil), b) {
			t.Fatalf("record %d changed through JSON: %s", i, b)
		}
	}
}

var seedRecord = `{"ChargePeriodStart":"2026-03-01T10:00:00Z","BilledCost":"1.5","BillingCurrency":"USD","Tags":{"a":"b"},"x_N":3}`

// seedUnknown carries members neither FOCUS nor x_: the producer keeps
// them as x_ extensions with a warning, and so must the gateway.
var seedUnknown = `{"ChargePeriodStart":"2026-03-01T10:00:00Z","BilledCost":"1.5","BillingCurrency":"USD","Cost Center":"42","costcenter":"7","9lives":"x"}`

func FuzzDecodeNDJSON(f *testing.F) {
	f.Add([]byte(seedRecord + "\n" + seedRecord))
	f.Add([]byte(`{"ChargePeriodStart":"x"}` + "\n\n" + `{"BilledCost":1e3}`))
	f.Add([]byte(`{"SkuId":"a\u00e9\n","SkuId":"b"}`))
	f.Add([]byte(seedUnknown + "\n" + seedRecord))
	f.Add([]byte(`{"ChargePeriodStart":"2026-03-01T10:00:00Z","Cost Center":"1","Cost_Center":"2"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		compareNDJSON(t, b)
	})
}

// compareNDJSON: the gateway's decoder and the producer's reader
// (usage-producer publish) decide alike: both refuse, or both keep the
// same records with a warning or both without.
func compareNDJSON(t *testing.T, b []byte) {
	t.Helper()
	var errs problems
	recs, _ := decodeNDJSON(b, 1000, &errs)
	var good []messages.UsageRecord
	res, err := input.ReadWith("f", bytes.NewReader(b), input.Options{Format: input.NDJSON}, func(r input.Row) error { good = append(good, r.Record); return nil })
	if err != nil || bytes.HasPrefix(b, []byte{0x1f, 0x8b}) || bytes.HasPrefix(b, []byte("\xef\xbb\xbf")) {
		return // an I/O-level difference (gzip, BOM, over-long line): not comparable
	}
	if (len(errs.list) == 0) != (len(res.Errors) == 0) {
		t.Fatalf("gateway problems %v; producer reader problems %v", errs.list, res.Errors)
	}
	if len(errs.list) != 0 {
		return
	}
	if len(recs) != len(good) {
		t.Fatalf("gateway read %d records, the producer reader %d", len(recs), len(good))
	}
	for i := range recs {
		if g, p := recs[i].AppendJSON(nil), good[i].AppendJSON(nil); !bytes.Equal(g, p) {
			t.Fatalf("record %d: gateway %s, producer reader %s", i, g, p)
		}
	}
	if (len(errs.warns) == 0) != (len(res.Warnings) == 0) {
		t.Fatalf("gateway warnings %v; producer reader warnings %v", errs.warns, res.Warnings)
	}
	roundTrip(t, recs)
}

func FuzzDecodeJSONArray(f *testing.F) {
	f.Add([]byte("[" + seedRecord + "," + seedRecord + "]"))
	f.Add([]byte(`[{"BilledCost":"1"},]`))
	f.Add([]byte(`[]`))
	f.Add([]byte("[" + seedUnknown + "]"))
	f.Fuzz(func(t *testing.T, b []byte) {
		var errs problems
		recs, _ := decodeJSONArray(b, 1000, &errs)
		if len(errs.list) == 0 {
			if !json.Valid(b) {
				t.Fatalf("accepted invalid JSON %q", b)
			}
			roundTrip(t, recs)
		}
	})
}

func FuzzDecodeCSV(f *testing.F) {
	f.Add([]byte("ChargePeriodStart,BilledCost,BillingCurrency,x_P:int\n2026-03-01T10:00:00Z,1.5,USD,3\n"))
	f.Add([]byte("ChargePeriodStart,Bogus\n2026-03-01,1\n\"2026-03-01\",\"x\n"))
	f.Add([]byte("ChargePeriodStart,BilledCost,BillingCurrency,Cost Center\n2026-03-01T10:00:00Z,1.5,USD,42\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		var errs problems
		recs, _ := decodeCSV(b, 1000, &errs)
		if len(errs.list) == 0 {
			roundTrip(t, recs)
		}
		for _, p := range errs.list {
			if p.Detail == "" {
				t.Fatalf("a problem without detail: %+v", p)
			}
		}
	})
}

func FuzzDecodeCloudEvents(f *testing.F) {
	f.Add([]byte(ce("1", "/s", usageData)), true)
	f.Add([]byte("["+ce("1", "/s", usageData)+","+ce("2", "/s", `{"BilledCost":"x"}`)+"]"), false)
	f.Add([]byte(`{"specversion":"1.0","id":"1","source":"/s","type":"t","data_base64":"e30="}`), true)
	f.Fuzz(func(t *testing.T, b []byte, single bool) {
		var evs []*event
		if single {
			var d recordDecoder
			evs = []*event{decodeStructured(&d, b, string(b), where{base: "event", idx: -1})}
		} else {
			var p *Problem
			evs, p = decodeBatch(b, 1000)
			if p == nil && !json.Valid(b) {
				t.Fatalf("accepted an invalid JSON batch %q", b)
			}
		}
		for _, ev := range evs {
			if len(ev.problems) == 0 {
				if ev.id == "" || ev.source == "" || ev.typ == "" || ev.rec.ChargePeriodStart.IsZero() {
					t.Fatalf("accepted an event without its required attributes: %+v", ev)
				}
				roundTrip(t, []messages.UsageRecord{ev.rec})
			}
		}
	})
}

func FuzzDecodeBinaryEvent(f *testing.F) {
	f.Add("1", "/s", "2026-03-01T10:00:00Z", []byte(usageData))
	f.Add("%zz", "", "x", []byte(`{}`))
	f.Fuzz(func(t *testing.T, id, source, tm string, body []byte) {
		h := http.Header{}
		h.Set("Ce-Specversion", "1.0")
		h.Set("Ce-Id", id)
		h.Set("Ce-Source", source)
		h.Set("Ce-Type", "t")
		h.Set("Ce-Time", tm)
		h.Set("Content-Type", "application/json")
		ev := decodeBinary(h, body)
		if len(ev.problems) == 0 {
			if ev.id == "" || ev.source == "" || ev.rec.ChargePeriodStart.IsZero() {
				t.Fatalf("accepted %+v", ev)
			}
			roundTrip(t, []messages.UsageRecord{ev.rec})
		}
	})
}
