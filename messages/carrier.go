package messages

import "github.com/nats-io/nats.go"

// HeaderCarrier carries trace context in NATS headers. Producers inject
// with it and workers extract with it: nats.Header is case-sensitive, so
// both sides must use the same carrier (it keeps keys exactly as the
// propagator writes them, e.g. "traceparent").
type HeaderCarrier nats.Header

// Get returns the value of key.
func (c HeaderCarrier) Get(key string) string {
	if v := c[key]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// Set sets key to value.
func (c HeaderCarrier) Set(key, value string) { c[key] = []string{value} }

// Keys lists the keys.
func (c HeaderCarrier) Keys() []string {
	out := make([]string, 0, len(c))
	for k := range c {
		out = append(out, k)
	}
	return out
}
