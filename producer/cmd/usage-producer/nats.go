package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/usagefleet/usagefleet/internal/broker"
	"github.com/usagefleet/usagefleet/internal/config"
	"github.com/usagefleet/usagefleet/producer"
)

// natsFlags are the connection flags every command that talks to NATS
// shares. Secrets are never flag values (they would show in ps and shell
// history): the flags name the environment variables that hold them.
type natsFlags struct {
	url, creds, nkey       string
	tokenEnv               string
	user, passwordEnv      string
	tlsCA, tlsCert, tlsKey string
}

func (n *natsFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&n.url, "nats", "", "NATS server URL(s), comma-separated (default $NATS_URL, else "+nats.DefaultURL+")")
	fs.StringVar(&n.creds, "creds", "", "NATS credentials `file` (JWT and seed)")
	fs.StringVar(&n.nkey, "nkey", "", "NATS nkey seed `file`")
	fs.StringVar(&n.tokenEnv, "token-env", "", "environment `variable` holding the NATS token")
	fs.StringVar(&n.user, "user", "", "NATS user (password from --password-env)")
	fs.StringVar(&n.passwordEnv, "password-env", "", "environment `variable` holding the NATS password")
	fs.StringVar(&n.tlsCA, "tls-ca", "", "CA certificate `file` to verify the server")
	fs.StringVar(&n.tlsCert, "tls-cert", "", "client certificate `file` (with --tls-key)")
	fs.StringVar(&n.tlsKey, "tls-key", "", "client key `file` (with --tls-cert)")
}

// options resolves the flags into broker.Options; the error names the
// flag or variable at fault and never holds a secret.
func (n *natsFlags) options(getenv func(string) string) (broker.Options, error) {
	o := broker.Options{
		URL:       n.url,
		CredsFile: n.creds,
		NKeyFile:  n.nkey,
		User:      n.user,
		TLS:       broker.TLSOptions{CAFile: n.tlsCA, CertFile: n.tlsCert, KeyFile: n.tlsKey},
	}
	if o.URL == "" {
		o.URL = getenv("NATS_URL")
	}
	if o.URL == "" {
		o.URL = nats.DefaultURL
	}
	set := 0
	for _, v := range []string{n.creds, n.nkey, n.tokenEnv, n.user} {
		if v != "" {
			set++
		}
	}
	if set > 1 {
		return o, errors.New("use only one of --creds, --nkey, --token-env, --user")
	}
	if n.tokenEnv != "" {
		o.Token = config.Secret{Env: n.tokenEnv}
	}
	switch {
	case n.passwordEnv != "" && n.user == "":
		return o, errors.New("--password-env needs --user")
	case n.user != "" && n.passwordEnv == "":
		return o, errors.New("--user needs --password-env")
	case n.passwordEnv != "":
		o.Password = config.Secret{Env: n.passwordEnv}
	}
	if err := o.Validate("nats"); err != nil {
		var ce *config.Error
		if errors.As(err, &ce) {
			return o, fmt.Errorf("%s: %s", flagOf(ce.Key), ce.Msg)
		}
		return o, err
	}
	return o, nil
}

// flagOf names the flag behind a broker.Options key.
func flagOf(key string) string {
	switch key {
	case "nats.token":
		return "--token-env"
	case "nats.password":
		return "--password-env"
	case "nats.creds_file":
		return "--creds"
	case "nats.nkey_file":
		return "--nkey"
	case "nats.tls.ca_file":
		return "--tls-ca"
	case "nats.tls.cert_file":
		return "--tls-cert"
	case "nats.tls.key_file":
		return "--tls-key"
	case "nats.tls":
		return "--tls-cert/--tls-key"
	}
	return key
}

// connect opens the connection and a producer on it.
// key, when not nil, signs every part as the batch's source (workers that
// bind sources refuse unsigned parts: see messages.SignPart).
func connect(ctx context.Context, o broker.Options, key nkeys.KeyPair, stderr io.Writer) (*nats.Conn, *producer.Producer, error) {
	nc, err := broker.Connect(ctx, o, "usage-producer")
	if err != nil {
		return nil, nil, err
	}
	p, err := producer.New(nc, producer.Options{Logger: slog.New(slog.NewTextHandler(stderr, nil)), SigningKey: key})
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	return nc, p, nil
}

// loadSigningKey reads an nkey seed file (the source's signing key). The
// error names the flag and the file, never the file's content.
func loadSigningKey(path string) (nkeys.KeyPair, error) {
	if path == "" {
		return nil, nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--signing-key-file: %w", err)
	}
	kp, err := nkeys.FromSeed(bytes.TrimSpace(b))
	if err != nil {
		return nil, fmt.Errorf("--signing-key-file %s: not an nkey seed (make one with nk -gen user)", path)
	}
	if pub, _ := kp.PublicKey(); !nkeys.IsValidPublicUserKey(pub) {
		return nil, fmt.Errorf("--signing-key-file %s: a user nkey seed (SU...) is needed", path)
	}
	return kp, nil
}
