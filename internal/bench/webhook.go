package bench

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/bits"
	"net"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/usagefleet/usagefleet/messages"
)

// countingWebhook is the receiver of `--dest webhook` (without --strict):
// it counts records and sums their BilledCost exactly per BillingCurrency
// with a scanner that walks the body's structure once and reads only
// those two values, so a drain into it measures the worker, not the
// receiver (the sandbox receiver decodes every record with encoding/json).
//
// What it checks: POST, Content-Type application/json, the body under the
// limit, a JSON array of objects whose strings are closed, BilledCost a
// decimal string (or null/absent), BillingCurrency a string. What it does
// not: the syntax of other values (numbers, literals), UTF-8. Requests are
// counted once per Idempotency-Key (a repeat is counted apart, as the
// sandbox does), so exactly-once effect is what it totals.
type countingWebhook struct {
	srv     *http.Server
	url     string
	maxBody int64

	mu    sync.Mutex
	keys  map[string]struct{}
	stats webhookCount
}

// webhookCount is what the receiver holds.
type webhookCount struct {
	Requests          int
	DuplicateRequests int // a repeated Idempotency-Key: not counted in Records or Cost
	Rejected          int
	Records           int
	BodyBytes         int64
	Cost              map[string]*messages.Sum // per BillingCurrency ("" when absent)
	LastError         string
}

// startCountingWebhook serves the receiver on a random loopback port;
// records are POSTed to its url.
func startCountingWebhook(maxBody int64) (*countingWebhook, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	h := &countingWebhook{maxBody: maxBody, keys: map[string]struct{}{}, stats: webhookCount{Cost: map[string]*messages.Sum{}}}
	h.srv = &http.Server{Handler: http.HandlerFunc(h.ingest), ReadHeaderTimeout: 10 * time.Second}
	h.url = "http://" + ln.Addr().String() + "/ingest"
	go h.srv.Serve(ln)
	return h, nil
}

func (h *countingWebhook) Close() { h.srv.Close() }

// count returns records and cost per currency held so far.
func (h *countingWebhook) count() webhookCount {
	h.mu.Lock()
	defer h.mu.Unlock()
	c := h.stats
	c.Cost = make(map[string]*messages.Sum, len(h.stats.Cost))
	for k, v := range h.stats.Cost {
		s := *v
		c.Cost[k] = &s
	}
	return c
}

var bodyPool = sync.Pool{New: func() any { return new(bytes.Buffer) }}

func (h *countingWebhook) ingest(w http.ResponseWriter, r *http.Request) {
	fail := func(code int, msg string) {
		h.mu.Lock()
		h.stats.Rejected++
		h.stats.LastError = msg
		h.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		fmt.Fprintf(w, "{\"error\":%s}", strconv.Quote(msg))
	}
	if r.Method != http.MethodPost {
		fail(http.StatusMethodNotAllowed, "use POST")
		return
	}
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		fail(http.StatusUnsupportedMediaType, fmt.Sprintf("Content-Type must be application/json, got %q", ct))
		return
	}
	buf := bodyPool.Get().(*bytes.Buffer)
	defer bodyPool.Put(buf)
	buf.Reset()
	if _, err := buf.ReadFrom(io.LimitReader(r.Body, h.maxBody+1)); err != nil {
		fail(http.StatusBadRequest, "reading body: "+err.Error())
		return
	}
	if int64(buf.Len()) > h.maxBody {
		fail(http.StatusRequestEntityTooLarge, fmt.Sprintf("body larger than %d bytes", h.maxBody))
		return
	}
	var t tally
	if err := scanRecords(buf.Bytes(), &t); err != nil {
		fail(http.StatusBadRequest, err.Error())
		return
	}
	key := r.Header.Get("Idempotency-Key")
	h.mu.Lock()
	h.stats.Requests++
	h.stats.BodyBytes += int64(buf.Len())
	if _, seen := h.keys[key]; seen && key != "" {
		h.stats.DuplicateRequests++
	} else {
		if key != "" {
			h.keys[key] = struct{}{}
		}
		h.stats.Records += t.records
		t.addTo(h.stats.Cost)
	}
	h.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	fmt.Fprintf(w, "{\"received\":%d}", t.records)
}

// tally is one body's records and cost per currency; a body is nearly
// always one currency, so the last one is kept at hand.
type tally struct {
	records int
	lastCur string
	last    *messages.Sum
	cost    map[string]*messages.Sum
}

func (t *tally) add(cost, currency []byte) error {
	t.records++
	if t.last == nil || string(currency) != t.lastCur {
		if t.cost == nil {
			t.cost = map[string]*messages.Sum{}
		}
		s := t.cost[string(currency)]
		if s == nil {
			s = &messages.Sum{}
			t.cost[string(currency)] = s
		}
		t.lastCur, t.last = string(currency), s
	}
	if cost == nil {
		return nil
	}
	return t.last.AddPlain(cost)
}

func (t *tally) addTo(m map[string]*messages.Sum) {
	for cur, s := range t.cost {
		if m[cur] == nil {
			m[cur] = &messages.Sum{}
		}
		m[cur].AddSum(*s)
	}
}

var (
	keyCost     = []byte("BilledCost")
	keyCurrency = []byte("BillingCurrency")
)

// scanRecords walks a JSON array of objects and adds each object's
// BilledCost and BillingCurrency (top-level keys only: a tag of the same
// name inside Tags is not them) to t. Strings are skipped with IndexByte,
// so the walk costs little more than a pass over the bytes.
func scanRecords(b []byte, t *tally) error {
	i := skipSpace(b, 0)
	if i >= len(b) || b[i] != '[' {
		return errors.New("body must be a JSON array of objects")
	}
	i = skipSpace(b, i+1)
	if i < len(b) && b[i] == ']' {
		return trailing(b, i+1)
	}
	for n := 0; ; n++ {
		if i >= len(b) || b[i] != '{' {
			return fmt.Errorf("element %d: not a JSON object", n)
		}
		var cost, cur []byte
		var err error
		i, cost, cur, err = scanObject(b, i)
		if err != nil {
			return fmt.Errorf("element %d: %v", n, err)
		}
		if err := t.add(cost, cur); err != nil {
			return fmt.Errorf("element %d: BilledCost %q: %v", n, cost, err)
		}
		i = skipSpace(b, i)
		if i >= len(b) {
			return errors.New("the array is not closed")
		}
		switch b[i] {
		case ',':
			i = skipSpace(b, i+1)
		case ']':
			return trailing(b, i+1)
		default:
			return fmt.Errorf("after element %d: %q where , or ] belongs", n, b[i])
		}
	}
}

func trailing(b []byte, i int) error {
	if skipSpace(b, i) != len(b) {
		return errors.New("data after the array")
	}
	return nil
}

// scanObject reads the object at b[i] ('{') and returns the index after
// it and the contents of its BilledCost and BillingCurrency strings (nil
// when absent or null).
func scanObject(b []byte, i int) (end int, cost, cur []byte, err error) {
	i = skipSpace(b, i+1)
	if i < len(b) && b[i] == '}' {
		return i + 1, nil, nil, nil
	}
	for {
		if i >= len(b) || b[i] != '"' {
			return 0, nil, nil, errors.New("a key must be a string")
		}
		ks, ke, ok := stringAt(b, i)
		if !ok {
			return 0, nil, nil, errors.New("a key's string is not closed")
		}
		key := b[ks:ke]
		i = skipSpace(b, ke+1)
		if i >= len(b) || b[i] != ':' {
			return 0, nil, nil, fmt.Errorf("%q: no colon after the key", key)
		}
		i = skipSpace(b, i+1)
		wantCost, wantCur := bytes.Equal(key, keyCost), bytes.Equal(key, keyCurrency)
		switch {
		case (wantCost || wantCur) && i < len(b) && b[i] == '"':
			vs, ve, ok := stringAt(b, i)
			if !ok {
				return 0, nil, nil, fmt.Errorf("%s: the string is not closed", key)
			}
			if wantCost {
				cost = b[vs:ve]
				if len(cost) == 0 {
					cost = nil // "" is no cost, as the sandbox reads it
				}
			} else {
				cur = b[vs:ve]
			}
			i = ve + 1
		case (wantCost || wantCur) && bytes.HasPrefix(b[i:], []byte("null")):
			i += 4
		case wantCost || wantCur:
			return 0, nil, nil, fmt.Errorf("%s: not a JSON string", key)
		default:
			if i, err = skipValue(b, i); err != nil {
				return 0, nil, nil, fmt.Errorf("%s: %v", key, err)
			}
		}
		i = skipSpace(b, i)
		if i >= len(b) {
			return 0, nil, nil, errors.New("the object is not closed")
		}
		switch b[i] {
		case ',':
			i = skipSpace(b, i+1)
		case '}':
			return i + 1, cost, cur, nil
		default:
			return 0, nil, nil, fmt.Errorf("%q where , or } belongs", b[i])
		}
	}
}

// stringAt returns the bounds of the contents of the string whose opening
// quote is b[i]: b[start:end], b[end] the closing quote.
func stringAt(b []byte, i int) (start, end int, ok bool) {
	start = i + 1
	for j := start; ; {
		q := indexQuote(b, j)
		if q < 0 {
			return 0, 0, false
		}
		bs := 0
		for p := q - 1; p >= start && b[p] == '\\'; p-- {
			bs++
		}
		if bs%2 == 0 {
			return start, q, true
		}
		j = q + 1
	}
}

const (
	ones8 = 0x0101010101010101
	high8 = 0x8080808080808080
)

// indexQuote is the index of the first '"' in b at or after j, or -1. Keys
// and most values are short: eight bytes at a time in a word, then
// bytes.IndexByte past 32 bytes (its set-up cost more than the scan of a
// short string, and stringAt was most of the receiver's CPU).
func indexQuote(b []byte, j int) int {
	for end := min(j+32, len(b)); j+8 <= end; j += 8 {
		// A byte of x is 0 where b holds '"': the lowest set bit of
		// (x - ones) &^ x & high marks the first (a borrow only runs
		// upward, past a zero byte).
		x := binary.LittleEndian.Uint64(b[j:]) ^ ('"' * ones8)
		if m := (x - ones8) &^ x & high8; m != 0 {
			return j + bits.TrailingZeros64(m)/8
		}
	}
	if k := bytes.IndexByte(b[j:], '"'); k >= 0 {
		return j + k
	}
	return -1
}

// skipValue returns the index after the value at b[i]: a string, an
// object or array (nested, strings inside skipped), or a bare literal
// (number, true, false, null, not checked further).
func skipValue(b []byte, i int) (int, error) {
	if i >= len(b) {
		return 0, errors.New("no value")
	}
	switch b[i] {
	case '"':
		_, e, ok := stringAt(b, i)
		if !ok {
			return 0, errors.New("the string is not closed")
		}
		return e + 1, nil
	case '{', '[':
		depth := 0
		for j := i; j < len(b); j++ {
			switch b[j] {
			case '"':
				_, e, ok := stringAt(b, j)
				if !ok {
					return 0, errors.New("a string is not closed")
				}
				j = e
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return j + 1, nil
				}
			}
		}
		return 0, errors.New("not closed")
	}
	j := i
	for j < len(b) && b[j] != ',' && b[j] != '}' && b[j] != ']' && !isSpace(b[j]) {
		j++
	}
	if j == i {
		return 0, fmt.Errorf("%q where a value belongs", b[i])
	}
	return j, nil
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

func skipSpace(b []byte, i int) int {
	for i < len(b) && isSpace(b[i]) {
		i++
	}
	return i
}

// costString prints cost per currency, currencies sorted: "12.5 EUR + 3 USD".
func costString(m map[string]*messages.Sum) string {
	curs := make([]string, 0, len(m))
	for c := range m {
		curs = append(curs, c)
	}
	sort.Strings(curs)
	parts := make([]string, 0, len(curs))
	for _, c := range curs {
		name := c
		if name == "" {
			name = "(no currency)"
		}
		parts = append(parts, m[c].Decimal().String()+" "+name)
	}
	if len(parts) == 0 {
		return "0"
	}
	return strings.Join(parts, " + ")
}
