package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/usagefleet/usagefleet/producer/gateway"
)

// selfSigned writes a loopback certificate and key and returns the pool
// that trusts it.
func selfSigned(t *testing.T, dir string) (string, string, *x509.CertPool) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(key)
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

// TestServeTLSThenDrain runs the binary's serve on an embedded NATS with
// TLS: HTTPS answers, a publish is stored, and cancelling (as SIGTERM does)
// drains and returns without error.
func TestServeTLSThenDrain(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile, pool := selfSigned(t, dir)
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	t.Setenv("TEST_GATEWAY_KEY", "serve-test-key-0123456789")
	cfgFile := filepath.Join(dir, "gateway.yaml")
	os.WriteFile(cfgFile, []byte(fmt.Sprintf("listen: %q\ntls: {cert_file: %q, key_file: %q}\nnats: {data_dir: %q}\ndrain_timeout: 5s\nkeys:\n  - {name: t, secret: {env: TEST_GATEWAY_KEY}, sources: [s], feeds: [f]}\n",
		addr, certFile, keyFile, filepath.Join(dir, "nats"))), 0o600)
	cfg, err := gateway.Load(cfgFile)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- serve(ctx, cfg, slog.New(slog.NewTextHandler(io.Discard, nil))) }()
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}, Timeout: 10 * time.Second}
	base := "https://" + addr
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := client.Get(base + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("not ready over TLS: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	req, _ := http.NewRequest("POST", base+"/v1/usage", bytes.NewReader([]byte(`{"ChargePeriodStart":"2026-03-01T10:00:00Z","BilledCost":"1.25","BillingCurrency":"EUR"}`)))
	req.Header.Set("Authorization", "Bearer serve-test-key-0123456789")
	req.Header.Set("Content-Type", "application/x-ndjson")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"cost":"1.25"`) {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	// Plain HTTP on the TLS port is refused.
	if resp, err := http.Get("http://" + addr + "/healthz"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == 200 {
			t.Error("plain HTTP was served on the TLS listener")
		}
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("serve after cancel: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not drain")
	}
}

func TestCheckNamesTheBadKey(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "g.yaml")
	os.WriteFile(f, []byte("keys:\n  - {name: a, secret: {env: X_UNSET_GATEWAY}, sources: [s], feeds: [f]}\nlinger: {dely: 1ms}\n"), 0o600)
	var out, errb bytes.Buffer
	if code := run([]string{"check", "--config", f}, &out, &errb); code != 1 || !strings.Contains(errb.String(), "linger.dely (line 3): unknown key") {
		t.Errorf("check: %d %q", code, errb.String())
	}
}

// Every subcommand's help exits 0 and prints on stdout; usage errors exit
// 64; validate (and check) say what serve says at start.
func TestHelpVersionValidate(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "g.yaml")
	os.WriteFile(bad, []byte("keys:\n  - {name: a, secret: {env: X_UNSET_GATEWAY}, sources: [s], feeds: [f]}\nlinger: {dely: 1ms}\n"), 0o600)
	for _, tc := range []struct {
		args     []string
		code     int
		out, err string
	}{
		{[]string{"-h"}, 0, "usage-gateway validate --config FILE", ""},
		{[]string{"help"}, 0, "usage-gateway version", ""},
		{[]string{"serve", "-h"}, 0, "-config", ""},
		{[]string{"validate", "--help"}, 0, "-config", ""},
		{[]string{"check", "-h"}, 0, "-config", ""},
		{[]string{"bench", "-h"}, 0, "-batch-size", ""},
		{[]string{"version"}, 0, "usage-gateway ", ""},
		{[]string{"version", "--json"}, 0, `"go_version"`, ""},
		{[]string{"validate"}, 64, "", "--config is required"},
		{[]string{"validate", "--nope"}, 64, "", "flag provided but not defined"},
		{[]string{"validate", "--config", bad}, 1, "", "linger.dely (line 3): unknown key"},
		{[]string{"--config", bad}, 1, "", "linger.dely (line 3): unknown key"},
	} {
		var out, errb bytes.Buffer
		code := run(tc.args, &out, &errb)
		if code != tc.code || !strings.Contains(out.String(), tc.out) || !strings.Contains(errb.String(), tc.err) {
			t.Errorf("%v: exit %d, stdout %q, stderr %q; want %d, %q, %q", tc.args, code, out.String(), errb.String(), tc.code, tc.out, tc.err)
		}
	}
}

// The bench's raw client reads answers as net/http writes them: with a
// Content-Length, chunked, and with Connection: close (then it dials again).
func TestBenchRawClient(t *testing.T) {
	var n atomic.Int64
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if r.Header.Get("Authorization") != "Bearer "+benchKey || r.Header.Get("Content-Type") != "application/test" {
			w.WriteHeader(401)
			return
		}
		switch n.Add(1) {
		case 2: // chunked
			w.Write(b)
			w.(http.Flusher).Flush()
			w.Write([]byte("-more"))
		case 3:
			w.Header().Set("Connection", "close")
			w.Write(b)
		default:
			w.Write(b)
		}
	}))
	defer hs.Close()
	c := &rawClient{addr: strings.TrimPrefix(hs.URL, "http://"), path: "/x", ct: "application/test"}
	defer c.close()
	for i, want := range []string{"one", "two-more", "three", "four"} {
		body := strings.TrimSuffix(want, "-more")
		code, got, err := c.post([]byte(body))
		if err != nil || code != 200 || string(got) != want {
			t.Fatalf("request %d: %d %q %v, want 200 %q", i+1, code, got, err, want)
		}
		if i == 2 && c.conn != nil {
			t.Fatal("the connection was kept after Connection: close")
		}
	}
}
