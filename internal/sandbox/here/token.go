package here

import (
	"encoding/json"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

type authBody struct {
	Error            string `json:"error"`
	ErrorDescription string `json:"error_description"`
	// HERE account's ErrorResponse fields, alongside.
	ErrorID    string `json:"errorId,omitempty"`
	HTTPStatus int    `json:"httpStatus,omitempty"`
	ErrorCode  int    `json:"errorCode,omitempty"`
	Message    string `json:"message,omitempty"`
}

func writeAuthError(w http.ResponseWriter, status, code int, msg string) {
	name := http.StatusText(status)
	switch status {
	case http.StatusUnauthorized:
		name = "Unauthorized"
	case http.StatusForbidden:
		name = "Forbidden"
	}
	b := authBody{Error: name, ErrorDescription: msg, ErrorID: "ERROR-" + newUUID(), HTTPStatus: status, ErrorCode: code, Message: msg}
	writeJSON(w, status, b)
}

// tokenRequest is what a token request asks for.
type tokenRequest struct {
	isJSON    bool       // a JSON body (answered in JSON field names)
	form      url.Values // the form body (signed with the request)
	grant     string
	scope     string
	expiresIn int64
}

// readTokenRequest reads a token request's body, form or JSON; a body it
// cannot take is answered here.
func readTokenRequest(w http.ResponseWriter, r *http.Request) (tr tokenRequest, ok bool) {
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if mt != "application/x-www-form-urlencoded" && mt != "application/json" {
		code := 400004
		if mt == "" {
			code = 400003
		}
		writeAuthError(w, http.StatusBadRequest, code, "Content-Type must be application/x-www-form-urlencoded or application/json")
		return tr, false
	}
	raw, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 64<<10))
	if err != nil {
		writeAuthError(w, http.StatusBadRequest, 400200, "cannot read the request body")
		return tr, false
	}
	tr.isJSON = mt == "application/json"
	if tr.isJSON {
		var body struct {
			GrantType       string          `json:"grantType"`
			ExpiresIn       *int64          `json:"expiresIn"`
			Scope           string          `json:"scope"`
			ClientAssertion json.RawMessage `json:"clientAssertion"`
		}
		if err := json.Unmarshal(raw, &body); err != nil {
			writeAuthError(w, http.StatusBadRequest, 400002, "Invalid JSON.")
			return tr, false
		}
		if body.ClientAssertion != nil {
			writeAuthError(w, http.StatusBadRequest, 400200, "JWT client assertions are not supported by the sandbox; sign the request with OAuth 1.0")
			return tr, false
		}
		tr.grant, tr.scope = body.GrantType, body.Scope
		if body.ExpiresIn != nil {
			tr.expiresIn = *body.ExpiresIn
		}
	} else {
		if tr.form, err = url.ParseQuery(string(raw)); err != nil {
			writeAuthError(w, http.StatusBadRequest, 400200, "cannot parse the form body")
			return tr, false
		}
		tr.grant, tr.scope = tr.form.Get("grant_type"), tr.form.Get("scope")
		if v := tr.form.Get("expires_in"); v != "" {
			if tr.expiresIn, err = strconv.ParseInt(v, 10, 64); err != nil {
				writeAuthError(w, http.StatusBadRequest, 400208, "expires_in: Not a number.")
				return tr, false
			}
		}
		if tr.form.Has("client_assertion") {
			writeAuthError(w, http.StatusBadRequest, 400200, "JWT client assertions are not supported by the sandbox; sign the request with OAuth 1.0")
			return tr, false
		}
	}
	return tr, true
}

func (s *Server) handleToken(w http.ResponseWriter, r *http.Request) {
	tr, ok := readTokenRequest(w, r)
	if !ok {
		return
	}
	nonce, ts, ae := s.verifyOAuth(r, tr.form)
	if ae == nil && s.useNonce(nonce, ts) != nil {
		ae = unauth(codeNonceUsed, "Nonce already consumed.")
	}
	if ae != nil {
		s.mu.Lock()
		s.stats.signatureFailures++
		if ae.status == http.StatusUnauthorized {
			s.stats.authFailures++
		}
		s.mu.Unlock()
		writeAuthError(w, ae.status, ae.code, ae.msg)
		return
	}
	if tr.grant != "client_credentials" {
		writeJSON(w, http.StatusBadRequest, map[string]any{"error": "unsupported_grant_type",
			"error_description": "Illegal grant type: want client_credentials", "errorCode": 400290, "httpStatus": 400})
		return
	}
	if tr.expiresIn < 0 {
		writeAuthError(w, http.StatusBadRequest, 400209, "expires_in: Value too small")
		return
	}
	ttl := s.cfg.TokenTTL
	if tr.expiresIn > 0 && time.Duration(tr.expiresIn)*time.Second < ttl {
		ttl = time.Duration(tr.expiresIn) * time.Second
	}
	tok := "sbx." + randomHex(32)
	s.mu.Lock()
	s.tokens[tok] = s.now().Add(ttl)
	s.stats.tokensIssued++
	s.mu.Unlock()
	secs := int64(ttl / time.Second)
	if tr.isJSON {
		out := map[string]any{"accessToken": tok, "tokenType": "bearer", "expiresIn": secs}
		if tr.scope != "" {
			out["scope"] = tr.scope
		}
		writeJSON(w, http.StatusOK, out)
		return
	}
	out := map[string]any{"access_token": tok, "token_type": "bearer", "expires_in": secs}
	if tr.scope != "" {
		out["scope"] = tr.scope
	}
	writeJSON(w, http.StatusOK, out)
}

// authed checks the bearer token, the realm and the correlation id.
func (s *Server) authed(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		auth := r.Header.Get("Authorization")
		scheme, tok, _ := strings.Cut(auth, " ")
		if auth == "" || !strings.EqualFold(scheme, "Bearer") || tok == "" {
			s.countAuthFailure()
			writeJSON(w, http.StatusUnauthorized, authBody{Error: "Unauthorized", ErrorDescription: "No credentials found."})
			return
		}
		s.mu.Lock()
		exp, ok := s.tokens[tok]
		s.mu.Unlock()
		if !ok || !s.now().Before(exp) {
			s.countAuthFailure()
			writeJSON(w, http.StatusUnauthorized, authBody{Error: "Unauthorized", ErrorDescription: "Access Token no longer valid."})
			return
		}
		if s.cfg.RequireCorrelationID && r.Header.Get("X-Correlation-ID") == "" {
			writeProblem(w, r, http.StatusBadRequest, "E706000", "Missing X-Correlation-ID", "the X-Correlation-ID header is required", "Send an X-Correlation-ID header (a UUID)")
			return
		}
		realm := r.PathValue("realm")
		if _, known := s.cfg.Realms[realm]; len(realm) < 5 || len(realm) > 30 || !known {
			writeProblem(w, r, http.StatusBadRequest, "E706001", "Invalid Realm", "Realm "+realm+" is invalid or unknown.", "Correct input data and retry request")
			return
		}
		h(w, r)
	}
}

func (s *Server) countAuthFailure() {
	s.mu.Lock()
	s.stats.authFailures++
	s.mu.Unlock()
}
