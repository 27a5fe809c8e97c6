// Package fault injects failures into the sandbox emulators: error statuses
// (with Retry-After), the ambiguous "apply the request, then answer 5xx",
// hung requests and connection resets. Every emulator in internal/sandbox
// shares it, so tests and the demo drive faults the same way everywhere.
//
// An emulator asks Pick for the fault of a request, calls Before (which
// answers faults that happen before the request is applied), applies the
// request, and, for ApplyThenStatus, answers the fault status instead of
// success.
package fault

import (
	"encoding/json"
	"fmt"
	"math/rand"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Kind is the kind of fault injected.
type Kind string

const (
	// None injects nothing.
	None Kind = ""
	// Status answers Code (with RetryAfter, if set) without applying the request.
	Status Kind = "status"
	// ApplyThenStatus applies the request, then answers Code: the client
	// cannot tell whether its request took effect.
	ApplyThenStatus Kind = "apply-then-status"
	// ApplyThenReset applies the request, then drops the connection without
	// an answer: the case an idempotency key exists for.
	ApplyThenReset Kind = "apply-then-reset"
	// Timeout holds the request for Delay (or until the client goes away)
	// without applying it, then drops the connection.
	Timeout Kind = "timeout"
	// Reset drops the connection without an answer and without applying.
	Reset Kind = "reset"
)

// Rule says which requests get which fault.
type Rule struct {
	Kind       Kind          `json:"kind"`
	Code       int           `json:"code,omitempty"`        // HTTP status for Status and ApplyThenStatus
	RetryAfter string        `json:"retry_after,omitempty"` // Retry-After header value, seconds or HTTP date
	Rate       float64       `json:"rate,omitempty"`        // probability in (0,1]; 0 means 1
	Count      int           `json:"count,omitempty"`       // fire at most this many times; 0 = unlimited
	Delay      time.Duration `json:"delay,omitempty"`       // for Timeout; 0 means 30s
	Method     string        `json:"method,omitempty"`      // only this method ("" = any)
	Path       string        `json:"path,omitempty"`        // only paths with this prefix ("" = any)
	Message    string        `json:"message,omitempty"`     // error message the emulator puts in its body
}

func (r Rule) matches(req *http.Request) bool {
	if r.Method != "" && !strings.EqualFold(r.Method, req.Method) {
		return false
	}
	return r.Path == "" || strings.HasPrefix(req.URL.Path, r.Path)
}

// Injector holds the active rules. The zero value is not usable; call New.
type Injector struct {
	mu       sync.Mutex
	rng      *rand.Rand
	rules    []Rule
	fired    []int
	injected map[Kind]int
}

// New returns an injector with no rules. seed makes the random choices
// repeatable.
func New(seed int64) *Injector {
	return &Injector{rng: rand.New(rand.NewSource(seed)), injected: map[Kind]int{}}
}

// Set replaces the rules. The first matching rule that fires wins.
func (i *Injector) Set(rules ...Rule) {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.rules = append([]Rule(nil), rules...)
	i.fired = make([]int, len(rules))
}

// Clear removes every rule.
func (i *Injector) Clear() { i.Set() }

// Pick returns the fault for req, or a Rule of Kind None.
func (i *Injector) Pick(req *http.Request) Rule {
	if i == nil {
		return Rule{}
	}
	i.mu.Lock()
	defer i.mu.Unlock()
	for n, r := range i.rules {
		if !r.matches(req) {
			continue
		}
		if r.Count > 0 && i.fired[n] >= r.Count {
			continue
		}
		if r.Rate > 0 && r.Rate < 1 && i.rng.Float64() >= r.Rate {
			continue
		}
		i.fired[n]++
		i.injected[r.Kind]++
		return r
	}
	return Rule{}
}

// Injected reports how many faults of each kind fired.
func (i *Injector) Injected() map[Kind]int {
	i.mu.Lock()
	defer i.mu.Unlock()
	out := make(map[Kind]int, len(i.injected))
	for k, v := range i.injected {
		out[k] = v
	}
	return out
}

// ErrorBody renders an emulator's error body for a status fault.
type ErrorBody func(code int, message string) []byte

// Before answers the faults that happen before a request is applied
// (Status, Timeout, Reset) and reports whether it did. For None and the
// apply-then kinds it does nothing and returns false.
func Before(w http.ResponseWriter, req *http.Request, f Rule, body ErrorBody) bool {
	switch f.Kind {
	case Status:
		Write(w, f, body)
		return true
	case Timeout:
		d := f.Delay
		if d == 0 {
			d = 30 * time.Second
		}
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
		case <-req.Context().Done():
		}
		panic(http.ErrAbortHandler)
	case Reset:
		panic(http.ErrAbortHandler)
	}
	return false
}

// After answers the faults that happen after a request was applied
// (ApplyThenStatus, ApplyThenReset) and reports whether it did.
func After(w http.ResponseWriter, f Rule, body ErrorBody) bool {
	switch f.Kind {
	case ApplyThenStatus:
		Write(w, f, body)
		return true
	case ApplyThenReset:
		panic(http.ErrAbortHandler)
	}
	return false
}

// Write answers the status of f with the emulator's error body.
func Write(w http.ResponseWriter, f Rule, body ErrorBody) {
	code := f.Code
	if code == 0 {
		code = http.StatusInternalServerError
	}
	if f.RetryAfter != "" {
		w.Header().Set("Retry-After", f.RetryAfter)
	}
	msg := f.Message
	if msg == "" {
		msg = fmt.Sprintf("injected fault: %d %s", code, http.StatusText(code))
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	if body != nil {
		_, _ = w.Write(body(code, msg))
	}
}

// AdminHandler serves the rules: GET shows them and the counts, PUT or POST
// replaces them with a JSON array of rules, DELETE clears them.
func (i *Injector) AdminHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.Method {
		case http.MethodGet:
			i.mu.Lock()
			state := map[string]any{"rules": append([]Rule(nil), i.rules...), "fired": append([]int(nil), i.fired...)}
			i.mu.Unlock()
			state["injected"] = i.Injected()
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(state)
		case http.MethodPut, http.MethodPost:
			var rules []Rule
			dec := json.NewDecoder(r.Body)
			dec.DisallowUnknownFields()
			if err := dec.Decode(&rules); err != nil {
				http.Error(w, "fault rules: "+err.Error(), http.StatusBadRequest)
				return
			}
			i.Set(rules...)
			w.WriteHeader(http.StatusNoContent)
		case http.MethodDelete:
			i.Clear()
			w.WriteHeader(http.StatusNoContent)
		default:
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		}
	})
}

// ParseSpec parses the command-line form of a rule list: comma-separated
// rules, each KIND[:key=value...][@rate][xcount], where KIND is a status
// code ("500"), "apply-500" (ApplyThenStatus), "apply-reset", "timeout" or
// "reset", and keys
// are retry (Retry-After), delay (Go duration), path and method.
//
//	500@0.1,429:retry=2x3,apply-500@0.2,timeout:delay=5s@0.05,reset@0.05
func ParseSpec(spec string) ([]Rule, error) {
	var rules []Rule
	for _, item := range strings.Split(spec, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		r, err := parseRule(item)
		if err != nil {
			return nil, err
		}
		rules = append(rules, r)
	}
	return rules, nil
}

// parseRule parses one item of a fault spec, e.g. 500@0.1x2:path=/ingest.
func parseRule(item string) (Rule, error) {
	var r Rule
	// The @rate and xcount suffixes may follow the kind or any option
	// but a path (a path may itself end in "x1" or hold "@"): put them
	// on the kind when a path is given, e.g. 500@0.1x2:path=/ingest/x1.
	segs := strings.Split(item, ":")
	for i, seg := range segs {
		if strings.HasPrefix(seg, "path=") {
			continue
		}
		if n := strings.LastIndex(seg, "x"); n > 0 && isDigits(seg[n+1:]) {
			c, _ := strconv.Atoi(seg[n+1:])
			r.Count = c
			seg = seg[:n]
		}
		if n := strings.LastIndex(seg, "@"); n >= 0 {
			rate, err := strconv.ParseFloat(seg[n+1:], 64)
			if err != nil || rate <= 0 || rate > 1 {
				return Rule{}, fmt.Errorf("fault %q: rate must be in (0,1]", item)
			}
			r.Rate = rate
			seg = seg[:n]
		}
		segs[i] = seg
	}
	rest := strings.Join(segs, ":")
	parts := strings.Split(rest, ":")
	kind := parts[0]
	switch {
	case kind == "timeout":
		r.Kind = Timeout
	case kind == "reset":
		r.Kind = Reset
	case kind == "apply-reset":
		r.Kind = ApplyThenReset
	case strings.HasPrefix(kind, "apply-"):
		r.Kind = ApplyThenStatus
		kind = strings.TrimPrefix(kind, "apply-")
		fallthrough
	default:
		code, err := strconv.Atoi(kind)
		if err != nil || code < 400 || code > 599 {
			return Rule{}, fmt.Errorf("fault %q: want a 4xx/5xx status, apply-<status>, timeout or reset", item)
		}
		if r.Kind == None {
			r.Kind = Status
		}
		r.Code = code
	}
	for _, kv := range parts[1:] {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return Rule{}, fmt.Errorf("fault %q: option %q is not key=value", item, kv)
		}
		switch k {
		case "retry":
			r.RetryAfter = v
		case "delay":
			d, err := time.ParseDuration(v)
			if err != nil {
				return Rule{}, fmt.Errorf("fault %q: delay: %v", item, err)
			}
			r.Delay = d
		case "path":
			r.Path = v
		case "method":
			r.Method = strings.ToUpper(v)
		default:
			return Rule{}, fmt.Errorf("fault %q: unknown option %q (want retry, delay, path, method)", item, k)
		}
	}
	return r, nil
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}
