package cloudzero

import (
	"net/http"
	"strings"
	"testing"
)

func TestAuth(t *testing.T) {
	e := newEmulator(t, Config{})
	body := cbf("sum", "2024-08", "13 1")
	validate := "/v2/connections/billing/anycost/validate_billing_drop"
	tests := []struct {
		name string
		q    req
		want int
	}{
		{"bare key", req{path: dropsURL(conn1), auth: key1, body: body}, 200},
		{"Bearer prefix", req{path: dropsURL(conn1), auth: "Bearer " + key1, body: body}, 403},
		{"lowercase bearer", req{path: dropsURL(conn1), auth: "bearer " + key1, body: body}, 403},
		{"wrong key", req{path: dropsURL(conn1), auth: key1 + "x", body: body}, 403},
		{"key prefix", req{path: dropsURL(conn1), auth: key1[:10], body: body}, 403},
		{"other connection's key", req{path: dropsURL(conn1), auth: key2, body: body}, 403},
		{"no header", req{path: dropsURL(conn1), body: body}, 403},
		{"unknown connection", req{path: dropsURL("nope"), auth: key1, body: body}, 404},
		{"GET list bare key", req{method: "GET", path: dropsURL(conn1), auth: key1}, 200},
		{"GET list Bearer", req{method: "GET", path: dropsURL(conn1), auth: "Bearer " + key1}, 403},
		{"GET month wrong key", req{method: "GET", path: dropsURL(conn1) + "/2024-08", auth: key2}, 403},
		{"GET unknown connection", req{method: "GET", path: dropsURL("nope"), auth: key1}, 404},
		{"validate any connection's key", req{path: validate, auth: key2, body: body}, 200},
		{"validate Bearer", req{path: validate, auth: "Bearer " + key2, body: body}, 403},
		{"validate no key", req{path: validate, body: body}, 403},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := e.do(t, tt.q)
			if r.code != tt.want {
				t.Fatalf("got %d %s, want %d", r.code, r.raw, tt.want)
			}
			if strings.Contains(r.raw, key1) || strings.Contains(r.raw, key2) {
				t.Fatalf("answer echoes an API key: %s", r.raw)
			}
			if r.code == 403 || r.code == 404 {
				if msg, _ := r.json(t)["message"].(string); msg == "" {
					t.Fatalf("%d without a message: %s", r.code, r.raw)
				}
			}
		})
	}
	// Only the one accepted POST applied anything; validate stored nothing.
	e.checkHours(t, conn1, totals{"16 13": "1 1"})
	e.checkHours(t, conn2, totals{})
}

func TestKeyRevokeRestore(t *testing.T) {
	e := newEmulator(t, Config{})
	body := cbf("sum", "", "10 1")
	steps := []struct {
		name    string
		setKey  func()
		auth    string
		want    int
		applied int // rows stored after the step
	}{
		{"initial key works", nil, key1, 200, 1},
		{"revoked: old key refused", func() { e.SetKey(conn1, "") }, key1, 403, 1},
		{"revoked: empty header refused", nil, "", 403, 1},
		{"restored", func() { e.SetKey(conn1, key1) }, key1, 200, 2},
		{"rotated over HTTP: old key refused", func() {
			r := e.do(t, req{method: http.MethodPut, path: "/_sandbox/keys/" + conn1, body: "rotated-key\n"})
			if r.code != http.StatusNoContent {
				t.Fatalf("PUT key: %d %s", r.code, r.raw)
			}
		}, key1, 403, 2},
		{"rotated over HTTP: new key works", nil, "rotated-key", 200, 3},
		{"revoked over HTTP", func() {
			e.do(t, req{method: http.MethodPut, path: "/_sandbox/keys/" + conn1, body: ""})
		}, "rotated-key", 403, 3},
	}
	for _, st := range steps {
		if st.setKey != nil {
			st.setKey()
		}
		r := e.do(t, req{path: dropsURL(conn1), auth: st.auth, body: body})
		if r.code != st.want {
			t.Fatalf("%s: got %d %s, want %d", st.name, r.code, r.raw, st.want)
		}
		if got := e.Hours(conn1)[hourAt(16, 10)].Rows; got != st.applied {
			t.Fatalf("%s: %d rows stored, want %d", st.name, got, st.applied)
		}
	}
	// A new connection can be added for the demo.
	e.do(t, req{method: http.MethodPut, path: "/_sandbox/keys/new-conn", body: "new-key"})
	if r := e.do(t, req{path: dropsURL("new-conn"), auth: "new-key", body: body}); r.code != 200 {
		t.Fatalf("new connection: %d %s", r.code, r.raw)
	}
}
