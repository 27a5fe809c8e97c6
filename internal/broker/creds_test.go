package broker_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nkeys"

	"github.com/usagefleet/usagefleet/internal/broker"
	"github.com/usagefleet/usagefleet/internal/usagegen"
	"github.com/usagefleet/usagefleet/messages"
	"github.com/usagefleet/usagefleet/producer"
)

// operator is a decentralized-auth (JWT) trust chain made for one test:
// an operator, a system account and an application account with
// JetStream, all in a memory resolver.
type operator struct {
	t        *testing.T
	claims   *jwt.OperatorClaims
	kp       nkeys.KeyPair
	sys      nkeys.KeyPair
	app      nkeys.KeyPair
	appJWT   string
	resolver *server.MemAccResolver
}

func newOperator(t *testing.T) *operator {
	t.Helper()
	o := &operator{t: t, kp: mustKey(t, nkeys.CreateOperator), sys: mustKey(t, nkeys.CreateAccount), app: mustKey(t, nkeys.CreateAccount), resolver: &server.MemAccResolver{}}
	o.claims = jwt.NewOperatorClaims(pub(t, o.kp))
	o.claims.Name = "usagefleet-test-operator"
	// Encoding self-signs the operator and fills in its issuer and id.
	if _, err := o.claims.Encode(o.kp); err != nil {
		t.Fatal(err)
	}
	sys := jwt.NewAccountClaims(pub(t, o.sys))
	sys.Name = "SYS"
	o.store(sys)
	return o
}

// account stores the application account, with JetStream enabled and the
// given users revoked, and returns its claims.
func (o *operator) account(revoked ...string) *jwt.AccountClaims {
	o.t.Helper()
	ac := jwt.NewAccountClaims(pub(o.t, o.app))
	ac.Name = "BILLING"
	ac.Limits.JetStreamLimits = jwt.JetStreamLimits{MemoryStorage: jwt.NoLimit, DiskStorage: jwt.NoLimit, Streams: jwt.NoLimit, Consumer: jwt.NoLimit}
	for _, u := range revoked {
		ac.Revoke(u)
	}
	o.appJWT = o.store(ac)
	return ac
}

func (o *operator) store(ac *jwt.AccountClaims) string {
	o.t.Helper()
	tok, err := ac.Encode(o.kp)
	if err != nil {
		o.t.Fatal(err)
	}
	if err := o.resolver.Store(ac.Subject, tok); err != nil {
		o.t.Fatal(err)
	}
	return tok
}

// user issues a user of the account signed by issuer and returns its
// public key, seed and JWT.
func (o *operator) user(issuer nkeys.KeyPair, name string) (pubKey, seed, token string) {
	o.t.Helper()
	kp := mustKey(o.t, nkeys.CreateUser)
	uc := jwt.NewUserClaims(pub(o.t, kp))
	uc.Name = name
	tok, err := uc.Encode(issuer)
	if err != nil {
		o.t.Fatal(err)
	}
	s, err := kp.Seed()
	if err != nil {
		o.t.Fatal(err)
	}
	return uc.Subject, string(s), tok
}

// credsFile writes a creds file the way `nsc generate creds` does.
func credsFile(t *testing.T, dir, name, token, seed string) string {
	t.Helper()
	b, err := jwt.FormatUserConfig(token, []byte(seed))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, name+".creds")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func mustKey(t *testing.T, create func() (nkeys.KeyPair, error)) nkeys.KeyPair {
	t.Helper()
	kp, err := create()
	if err != nil {
		t.Fatal(err)
	}
	return kp
}

func pub(t *testing.T, kp nkeys.KeyPair) string {
	t.Helper()
	p, err := kp.PublicKey()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestConnectWithCredsFile runs a nats-server in operator (JWT) mode,
// connects with a user's creds file the way the binaries do
// (Options.CredsFile through Validate and Connect), creates the fleet's
// streams and publishes a batch with the producer library in the
// account's JetStream; and checks that a revoked user, a user of an
// account the operator does not know and a creds file whose seed is not
// the JWT's are refused with an error that shows neither seed nor JWT.
func TestConnectWithCredsFile(t *testing.T) {
	op := newOperator(t)
	dir := t.TempDir()

	goodPub, goodSeed, goodJWT := op.user(op.app, "worker")
	revokedPub, revokedSeed, revokedJWT := op.user(op.app, "revoked-worker")
	op.account()
	// A user signed by an account key the operator never issued.
	stranger := mustKey(t, nkeys.CreateAccount)
	_, strangerSeed, strangerJWT := op.user(stranger, "stranger")
	// The good user's JWT with another user's seed: the nonce signature fails.
	_, otherSeed, _ := op.user(op.app, "other")

	srv := startJWTServer(t, op)
	url := srv.ClientURL()

	o := broker.Options{URL: url, CredsFile: credsFile(t, dir, "worker", goodJWT, goodSeed)}
	if err := o.Validate("nats"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	nc, err := broker.Connect(ctx, o, "creds-test")
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
	prod, err := producer.New(nc, producer.Options{})
	if err != nil {
		t.Fatal(err)
	}
	recs := usagegen.Generate(200, usagegen.Options{Seed: 5, Hours: 3})
	res, err := prod.Publish(ctx, &messages.Batch{ID: "creds-1", Feed: "cloud", Source: "creds-test", Records: recs})
	if err != nil {
		t.Fatalf("publishing as the creds user: %v", err)
	}
	st, err := js.Stream(ctx, messages.StreamUsage)
	if err != nil {
		t.Fatal(err)
	}
	if got := st.CachedInfo().State.Msgs; got != uint64(len(res.Parts)) || res.Records != len(recs) {
		t.Fatalf("USAGE holds %d messages after publishing %d records in %d parts", got, res.Records, len(res.Parts))
	}
	// The server agrees: the client is the user, in the application
	// account, whose JetStream holds the fleet's streams.
	connz, err := srv.Connz(&server.ConnzOptions{Username: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(connz.Conns) != 1 || connz.Conns[0].AuthorizedUser != goodPub || connz.Conns[0].Account != pub(t, op.app) {
		t.Fatalf("server connections %+v; want one, user %s in account %s", connz.Conns, goodPub, pub(t, op.app))
	}
	acc, err := srv.LookupAccount(pub(t, op.app))
	if err != nil {
		t.Fatal(err)
	}
	if u := acc.JetStreamUsage(); u.Streams != 7 { // USAGE, ACKS, DEAD and four KV buckets
		t.Fatalf("the account has %d streams, want 7", u.Streams)
	}

	// The user to be revoked logs in while it may, then the operator
	// revokes it: the server drops its connection and refuses it since.
	ro := broker.Options{URL: url, CredsFile: credsFile(t, dir, "revoked", revokedJWT, revokedSeed)}
	rnc, err := broker.Connect(ctx, ro, "creds-test-revoked")
	if err != nil {
		t.Fatalf("the user to be revoked could not log in before it was: %v", err)
	}
	defer rnc.Close()
	srv.UpdateAccountClaims(acc, op.account(revokedPub))
	for deadline := time.Now().Add(10 * time.Second); rnc.IsConnected(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the revoked user is still connected 10s after its revocation")
		}
	}
	if !nc.IsConnected() {
		t.Fatal("revoking another user dropped the good user")
	}

	secrets := []string{goodSeed, goodJWT, revokedSeed, revokedJWT, strangerSeed, strangerJWT, otherSeed, op.appJWT}
	for _, bad := range []struct{ name, token, seed, swapSeed string }{
		{"revoked", revokedJWT, revokedSeed, ""}, // the very file that worked above
		{"unknown account", strangerJWT, strangerSeed, ""},
		// jwt.FormatUserConfig refuses to write that, so swap it in after.
		{"seed of another user", goodJWT, goodSeed, otherSeed},
	} {
		t.Run(bad.name, func(t *testing.T) {
			path := credsFile(t, t.TempDir(), "bad", bad.token, bad.seed)
			if bad.swapSeed != "" {
				b, err := os.ReadFile(path)
				if err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, []byte(strings.Replace(string(b), bad.seed, bad.swapSeed, 1)), 0o600); err != nil {
					t.Fatal(err)
				}
				bad.seed = bad.swapSeed
			}
			o := broker.Options{URL: url, CredsFile: path}
			if bad.name == "revoked" {
				o = ro
			}
			if err := o.Validate("nats"); err != nil {
				t.Fatal(err)
			}
			bnc, err := broker.Connect(ctx, o, "creds-test-refused")
			if err == nil {
				bnc.Close()
				t.Fatal("the server accepted the creds")
			}
			msg := err.Error()
			if !strings.Contains(msg, "connecting to NATS at ") || !strings.Contains(strings.ToLower(msg), "authorization violation") {
				t.Errorf("error %q does not say where it was connecting and that the login was refused", msg)
			}
			for _, s := range secrets {
				if strings.Contains(msg, s) {
					t.Errorf("the error shows a credential: %v", err)
				}
			}
			// Nor a recognisable piece of one: the seed's key material, the
			// JWT's signature.
			for _, s := range []string{bad.seed[3:19], strings.Split(bad.token, ".")[2][:16]} {
				if strings.Contains(msg, s) {
					t.Errorf("the error shows part of a credential (%q): %v", s, err)
				}
			}
			t.Logf("refused: %v", err)
		})
	}
}

// startJWTServer starts a JetStream server on loopback that trusts op and
// resolves its accounts from memory.
func startJWTServer(t *testing.T, op *operator) *server.Server {
	t.Helper()
	s, err := server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: server.RANDOM_PORT, JetStream: true, StoreDir: t.TempDir(), NoSigs: true, NoLog: true,
		TrustedOperators: []*jwt.OperatorClaims{op.claims},
		AccountResolver:  op.resolver,
		SystemAccount:    pub(t, op.sys),
	})
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("server not ready")
	}
	return s
}
