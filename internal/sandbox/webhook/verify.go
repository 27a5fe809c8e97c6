package webhook

import (
	"bytes"
	"compress/gzip"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// DecodeSecret reads a Standard Webhooks symmetric secret: "whsec_"
// followed by standard base64 (the prefix may be left out, as the
// reference libraries allow). Its error never holds the secret.
func DecodeSecret(v string) ([]byte, error) {
	b, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(strings.TrimSpace(v), "whsec_"))
	if err != nil {
		return nil, errors.New("not a whsec_ secret (whsec_ followed by standard base64)")
	}
	if len(b) == 0 {
		return nil, errors.New("the secret is empty")
	}
	return b, nil
}

// verify checks the Standard Webhooks headers of a request whose body
// (inflated) is body, as a receiver does. Its error names what is wrong
// and never echoes a signature.
func (s *Server) verify(h http.Header, body []byte, now time.Time) error {
	id, ts, sigs := h.Get("Webhook-Id"), h.Get("Webhook-Timestamp"), h.Get("Webhook-Signature")
	if id == "" || ts == "" || sigs == "" {
		return errors.New("webhook signature: webhook-id, webhook-timestamp and webhook-signature are required")
	}
	t, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return errors.New("webhook signature: webhook-timestamp is not an integer Unix time")
	}
	switch age := now.Sub(time.Unix(t, 0)); {
	case age > s.cfg.SigningTolerance:
		return fmt.Errorf("webhook signature: webhook-timestamp is %s old, over the %s tolerance", age.Round(time.Second), s.cfg.SigningTolerance)
	case -age > s.cfg.SigningTolerance:
		return fmt.Errorf("webhook signature: webhook-timestamp is %s in the future, over the %s tolerance", (-age).Round(time.Second), s.cfg.SigningTolerance)
	}
	for _, k := range s.keys {
		m := hmac.New(sha256.New, k)
		io.WriteString(m, id+"."+ts+".")
		m.Write(body)
		want := []byte(base64.StdEncoding.EncodeToString(m.Sum(nil)))
		for _, sig := range strings.Fields(sigs) {
			version, val, ok := strings.Cut(sig, ",")
			if ok && version == "v1" && hmac.Equal([]byte(val), want) {
				return nil
			}
		}
	}
	return errors.New("webhook signature: no v1 signature matches a signing secret")
}

// inflate gunzips a body, to at most MaxInflatedBytes.
func (s *Server) inflate(raw []byte) ([]byte, int, error) {
	zr, err := gzip.NewReader(bytes.NewReader(raw))
	if err != nil {
		return nil, http.StatusBadRequest, fmt.Errorf("Content-Encoding is gzip but the body is not: %v", err)
	}
	out, err := io.ReadAll(io.LimitReader(zr, s.cfg.MaxInflatedBytes+1))
	if err != nil {
		return nil, http.StatusBadRequest, fmt.Errorf("inflating the gzip body: %v", err)
	}
	if int64(len(out)) > s.cfg.MaxInflatedBytes {
		return nil, http.StatusRequestEntityTooLarge, fmt.Errorf("gzip body inflates to more than %d bytes", s.cfg.MaxInflatedBytes)
	}
	s.mu.Lock()
	s.stats.Gzipped++
	s.stats.MaxInflatedBytes = max(s.stats.MaxInflatedBytes, int64(len(out)))
	s.mu.Unlock()
	return out, 0, nil
}
