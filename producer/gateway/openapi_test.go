package gateway

import (
	"context"
	"fmt"
	"mime"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.yaml.in/yaml/v3"

	"github.com/usagefleet/usagefleet/messages"
)

// TestHandlersAnswerAsTheOpenAPIDocumentSays exercises every path, method
// and status of openapi.yaml and checks each answer's content type and
// JSON body against the document (every member documented, every required
// one present, types as documented); every problem answer is a complete
// problem body.
func TestHandlersAnswerAsTheOpenAPIDocumentSays(t *testing.T) {
	var doc struct {
		Paths map[string]map[string]struct {
			Responses map[string]struct {
				Ref     string         `yaml:"$ref"`
				Content map[string]any `yaml:"content"`
			} `yaml:"responses"`
		} `yaml:"paths"`
		Components struct {
			Responses map[string]struct {
				Content map[string]any `yaml:"content"`
			} `yaml:"responses"`
		} `yaml:"components"`
	}
	if err := yaml.Unmarshal(OpenAPI(), &doc); err != nil {
		t.Fatal(err)
	}
	api := loadDoc(t)
	e := start(t, func(c *Config) { c.Limits.MaxBodyBytes = 64 << 10; c.Limits.MaxRecords = 3 })
	type call struct {
		path, method, pattern string
		body                  string
		h                     map[string]string
		want                  int
		pointer               string // the first problem's pointer, when one is expected
	}
	ndj := auth("Content-Type", "application/x-ndjson")
	good := string(ndjson(2, "1"))
	bad := `{"ChargePeriodStart":"2026-03-01T10:00:00Z"}` + "\n" + `{"ChargePeriodStart":"2026-03-01T10:00:00Z","BilledCost":"abc","BillingCurrency":"USD"}` + "\n"
	cej := auth("Content-Type", "application/cloudevents+json")
	big := strings.Repeat(" ", 70<<10)
	calls := []call{
		{"/v1/usage", "post", "/v1/usage", good, ndj, 200, ""},
		{"/v1/usage", "post", "/v1/usage", bad, ndj, 400, "records[1].BilledCost"},
		{"/v1/usage", "post", "/v1/usage", good, map[string]string{"Authorization": "Bearer wrong-key-0123456789", "Content-Type": "application/x-ndjson"}, 401, ""},
		{"/v1/usage", "post", "/v1/usage?source=other", good, ndj, 403, ""},
		{"/v1/usage", "post", "/v1/usage", big, ndj, 413, ""},
		{"/v1/usage", "post", "/v1/usage", good, auth("Content-Type", "application/xml"), 415, ""},
		{"/v1/usage", "post", "/v1/usage", good, auth("Content-Type", "application/x-ndjson", "Idempotency-Key", "k1"), 200, ""},
		{"/v1/usage", "post", "/v1/usage", good + "\n", auth("Content-Type", "application/x-ndjson", "Idempotency-Key", "k1"), 422, ""},
		{"/v1/usage", "get", "/v1/usage", "", auth(), 405, ""},
		// A member neither FOCUS nor x_: kept as x_Cost_Center, with warnings.
		{"/v1/usage", "post", "/v1/usage", `{"ChargePeriodStart":"2026-03-01T10:00:00Z","BilledCost":"1","BillingCurrency":"USD","Cost Center":"42"}` + "\n", ndj, 200, ""},
		{"/v1/events", "post", "/v1/events", ce("w1", "/s", `{"BilledCost":"1","BillingCurrency":"USD","Cost Center":"42"}`), cej, 200, ""},
		{"/v1/events", "post", "/v1/events", "[" + ce("w2", "/s", `{"BilledCost":"1","BillingCurrency":"USD","Cost Center":"42"}`) + "]", auth("Content-Type", "application/cloudevents-batch+json"), 200, ""},
		{"/v1/events", "post", "/v1/events", ce("o1", "/s", usageData), cej, 200, ""},
		{"/v1/events", "post", "/v1/events", "[" + ce("b1", "/s", usageData) + "," + ce("o1", "/s", usageData) + `,{"specversion":"1.0","id":"b3","source":"/s","type":"t","data":{"BilledCost":"x"}}]`, auth("Content-Type", "application/cloudevents-batch+json"), 200, ""},
		{"/v1/events", "post", "/v1/events", `{"specversion":"1.0","source":"/s","type":"t","data":{}}`, cej, 400, "event.id"},
		{"/v1/events", "post", "/v1/events", ce("o1", "/s", usageData), map[string]string{"Content-Type": "application/cloudevents+json"}, 401, ""},
		{"/v1/events", "post", "/v1/events?feed=other", ce("o2", "/s", usageData), cej, 403, ""},
		{"/v1/events", "post", "/v1/events", "[" + strings.Repeat(ce("m", "/s", usageData)+",", 3) + ce("m", "/s", usageData) + "]", auth("Content-Type", "application/cloudevents-batch+json"), 413, ""},
		{"/v1/events", "post", "/v1/events", usageData, auth("Content-Type", "application/json"), 415, ""},
		{"/v1/batches/{id}", "get", "/v1/batches/nope", "", auth(), 404, ""},
		{"/v1/batches/{id}", "get", "/v1/batches/nope?wait=soon", "", auth(), 400, "query.wait"},
		{"/v1/batches/{id}", "get", "/v1/batches/nope", "", nil, 401, ""},
		{"/openapi.yaml", "get", "/openapi.yaml", "", nil, 200, ""},
		{"/healthz", "get", "/healthz", "", nil, 200, ""},
		{"/readyz", "get", "/readyz", "", nil, 200, ""},
	}
	seen := map[string]bool{}
	check := func(c call) reply {
		t.Helper()
		r := e.do(strings.ToUpper(c.method), c.pattern, []byte(c.body), c.h)
		where := fmt.Sprintf("%s %s → %d", strings.ToUpper(c.method), c.pattern, c.want)
		if r.code != c.want {
			t.Fatalf("%s: got %d %s", where, r.code, r.body)
		}
		seen[c.path+" "+c.method+" "+fmt.Sprint(c.want)] = true
		op, ok := doc.Paths[c.path][c.method]
		if !ok {
			if c.want == 405 { // documented on the path's one method
				r.problem(t)
				seen[c.path+" post 405"] = true
				return r
			}
			t.Fatalf("%s: not in the document", where)
		}
		resp, ok := op.Responses[fmt.Sprint(c.want)]
		if !ok {
			t.Fatalf("%s: the document has no such response", where)
		}
		content := resp.Content
		if resp.Ref != "" {
			content = doc.Components.Responses[resp.Ref[strings.LastIndex(resp.Ref, "/")+1:]].Content
		}
		mt, _, _ := mime.ParseMediaType(r.h.Get("Content-Type"))
		if _, ok := content[mt]; !ok {
			t.Errorf("%s: Content-Type %q is not among the document's %v", where, mt, keys(content))
		}
		if mt == "application/json" || mt == "application/problem+json" {
			api.checkBody(t, c.path, c.method, c.want, mt, r.body)
		}
		if mt == "application/problem+json" {
			p := r.problem(t)
			if c.pointer != "" && (len(p.Errors) == 0 || p.Errors[0].Pointer != c.pointer) {
				t.Errorf("%s: problems %+v, want the first at %s", where, p.Errors, c.pointer)
			}
			if (c.want == 429 || c.want == 503) && r.h.Get("Retry-After") == "" {
				t.Errorf("%s: no Retry-After", where)
			}
		}
		return r
	}
	var batchURL string
	for _, c := range calls {
		r := check(c)
		if c.path == "/v1/usage" && c.want == 200 {
			var a usageAnswer
			r.json(t, &a)
			batchURL = a.StatusURL
		}
	}
	check(call{"/v1/batches/{id}", "get", batchURL, "", auth(), 200, ""})
	check(call{"/v1/batches/{id}", "get", batchURL, "", map[string]string{"X-API-Key": otherKey}, 403, ""})

	// 429: the USAGE stream at its limits (discard new, one message).
	js, _ := jetstream.New(e.nc)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, _ := js.Stream(ctx, messages.StreamUsage)
	cfg := st.CachedInfo().Config
	cfg.MaxMsgs, cfg.Discard = 1, jetstream.DiscardNew
	if _, err := js.UpdateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	check(call{"/v1/usage", "post", "/v1/usage", strings.Replace(good, "2026-03-01T10", "2026-03-02T10", -1), ndj, 429, ""})
	check(call{"/v1/events", "post", "/v1/events", ce("full", "/s", strings.Replace(usageData, "{", `{"ChargePeriodStart":"2026-03-05T00:00:00Z",`, 1)), cej, 429, ""})

	// 503: a draining replica.
	e.gw.draining.Store(true)
	check(call{"/v1/usage", "post", "/v1/usage", good, ndj, 503, ""})
	check(call{"/v1/events", "post", "/v1/events", ce("d", "/s", usageData), cej, 503, ""})
	check(call{"/readyz", "get", "/readyz", "", nil, 503, ""})

	var missing []string
	for path, ops := range doc.Paths {
		for method, op := range ops {
			for status := range op.Responses {
				if k := path + " " + method + " " + status; !seen[k] {
					missing = append(missing, k)
				}
			}
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Errorf("not exercised: %v", missing)
	}
}

func keys(m map[string]any) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
