package broker_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/usagefleet/usagefleet/internal/broker"
	"github.com/usagefleet/usagefleet/internal/config"
	"github.com/usagefleet/usagefleet/messages"
)

// A throwaway user nkey for these tests only (it guards nothing).
const (
	testNKeySeed = "SUAM6V4DE2TIXYVLGVFPVDPHFDRYSFR45TSBFQTSF7LQRZFNRDHZ5ZG44A"
	testNKeyPub  = "UDSXOXEFT5GDXLEYOBATAD75AXZALIY75TKORKFTSLI3CSYLITEEP2IX"
)

// startServer starts a JetStream server on loopback configured by edit.
func startServer(t *testing.T, edit func(*server.Options)) string {
	t.Helper()
	o := &server.Options{Host: "127.0.0.1", Port: server.RANDOM_PORT, JetStream: true, StoreDir: t.TempDir(), NoSigs: true, NoLog: true}
	edit(o)
	s, err := server.NewServer(o)
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("server not ready")
	}
	return fmt.Sprintf("nats://127.0.0.1:%d", s.Addr().(*net.TCPAddr).Port)
}

// selfSigned writes a CA-less self-signed certificate for 127.0.0.1 and
// returns the server's TLS config and the certificate's path.
func selfSigned(t *testing.T) (*tls.Config, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "usagefleet-test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}, MinVersion: tls.VersionTLS12}, path
}

// TestConnectAuthenticates connects the way the binaries do with every
// credential kind a real cluster may ask for, creates the streams with
// the connection, and checks that a refused credential is an error that
// does not show it.
func TestConnectAuthenticates(t *testing.T) {
	dir := t.TempDir()
	seedFile := filepath.Join(dir, "user.nk")
	if err := os.WriteFile(seedFile, []byte(testNKeySeed+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	serverTLS, caFile := selfSigned(t)
	tests := []struct {
		name   string
		server func(*server.Options)
		opts   func(url string) broker.Options
		bad    func(url string) broker.Options // a credential the server refuses
		secret string                          // must not appear in the refusal
	}{
		{
			name:   "token",
			server: func(o *server.Options) { o.Authorization = "tok-s3cret-value" },
			opts: func(u string) broker.Options {
				return broker.Options{URL: u, Token: config.NewSecret("tok-s3cret-value")}
			},
			bad: func(u string) broker.Options {
				return broker.Options{URL: u, Token: config.NewSecret("tok-wrong-value")}
			},
			secret: "tok-wrong-value",
		},
		{
			name:   "user and password",
			server: func(o *server.Options) { o.Users = []*server.User{{Username: "worker", Password: "pw-s3cret-value"}} },
			opts: func(u string) broker.Options {
				return broker.Options{URL: u, User: "worker", Password: config.NewSecret("pw-s3cret-value")}
			},
			bad: func(u string) broker.Options {
				// Credentials in the URL are redacted from the error too.
				return broker.Options{URL: strings.Replace(u, "nats://", "nats://worker:pw-wrong-value@", 1)}
			},
			secret: "pw-wrong-value",
		},
		{
			name:   "nkey",
			server: func(o *server.Options) { o.Nkeys = []*server.NkeyUser{{Nkey: testNKeyPub}} },
			opts:   func(u string) broker.Options { return broker.Options{URL: u, NKeyFile: seedFile} },
			bad:    func(u string) broker.Options { return broker.Options{URL: u} },
			secret: testNKeySeed,
		},
		{
			name: "TLS",
			server: func(o *server.Options) {
				o.TLSConfig, o.TLS, o.TLSVerify = serverTLS, true, false
			},
			opts: func(u string) broker.Options {
				return broker.Options{URL: strings.Replace(u, "nats://", "tls://", 1), TLS: broker.TLSOptions{CAFile: caFile}}
			},
			bad: func(u string) broker.Options {
				return broker.Options{URL: strings.Replace(u, "nats://", "tls://", 1)} // no CA: the certificate is unknown
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			url := startServer(t, tt.server)
			o := tt.opts(url)
			if err := o.Validate("nats"); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			nc, err := broker.Connect(ctx, o, "connect-test")
			if err != nil {
				t.Fatal(err)
			}
			defer nc.Close()
			js, err := jetstream.New(nc)
			if err != nil {
				t.Fatal(err)
			}
			if err := broker.EnsureStreams(ctx, js, broker.StreamOptions{}); err != nil {
				t.Fatal(err)
			}
			// Created, then updated on purpose: a second run that asks
			// for a longer retention with update set applies it.
			if err := broker.EnsureStreams(ctx, js, broker.StreamOptions{UsageMaxAge: config.Duration(90 * 24 * time.Hour), Update: true}); err != nil {
				t.Fatal(err)
			}
			st, err := js.Stream(ctx, messages.StreamUsage)
			if err != nil {
				t.Fatal(err)
			}
			if got := st.CachedInfo().Config.MaxAge; got != 90*24*time.Hour {
				t.Fatalf("USAGE max age %v after the update, want 2160h", got)
			}

			bad, err := broker.Connect(ctx, tt.bad(url), "connect-test-refused")
			if err == nil {
				bad.Close()
				t.Fatal("the server's refusal was not an error")
			}
			if !strings.Contains(err.Error(), "connecting to NATS at ") {
				t.Errorf("error %q does not say where it was connecting", err)
			}
			if tt.secret != "" && strings.Contains(err.Error(), tt.secret) {
				t.Errorf("the error shows the credential: %v", err)
			}
		})
	}
}

func TestValidateNamesTheKey(t *testing.T) {
	t.Setenv("UF_NATSUTIL_TEST_TOKEN", "x")
	missing := filepath.Join(t.TempDir(), "missing.creds")
	for _, tt := range []struct {
		o    broker.Options
		want string
	}{
		{broker.Options{URL: "nats://x", Token: config.Secret{Env: "UF_NATSUTIL_TEST_TOKEN"}, User: "u"}, "config: nats: set one of creds_file, nkey_file, token, user/password"},
		{broker.Options{URL: "nats://x", CredsFile: missing}, "config: nats.creds_file: stat " + missing},
		{broker.Options{URL: "nats://x", User: "u", Password: config.Secret{Env: "UF_NATSUTIL_TEST_UNSET"}}, "config: nats.password: environment variable UF_NATSUTIL_TEST_UNSET is not set"},
		{broker.Options{URL: "nats://x", TLS: broker.TLSOptions{CertFile: missing}}, "config: nats.tls.cert_file: stat "},
		{broker.Options{Token: config.Secret{Env: "UF_NATSUTIL_TEST_TOKEN"}}, "config: nats.url: credentials are set but no url"},
	} {
		err := tt.o.Validate("nats")
		if err == nil || !strings.HasPrefix(err.Error(), tt.want) {
			t.Errorf("%+v: err %v, want %q", tt.o, err, tt.want)
		}
	}
}
