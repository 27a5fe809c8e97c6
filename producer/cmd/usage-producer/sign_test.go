package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nats-io/nkeys"

	"github.com/usagefleet/usagefleet/messages"
)

// --signing-key-file signs every part as the source: a worker that binds
// sources to keys (messages.SourceKeys) accepts the parts under the
// source's public key, and refuses them under any other key.
func TestPublishSignsWithTheSigningKeyFile(t *testing.T) {
	n := startNATS(t)
	dir := t.TempDir()
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	seed, _ := kp.Seed()
	pub, _ := kp.PublicKey()
	keyFile := filepath.Join(dir, "svc.nk")
	if err := os.WriteFile(keyFile, append(seed, '\n'), 0o600); err != nil {
		t.Fatal(err)
	}
	a := write(t, dir, "a.csv", goodCSV)
	code, _, stderr := cli(t, "publish", "--feed", "f", "--source", "svc", "--signing-key-file", keyFile, "--nats", n.url, a)
	if code != exitOK {
		t.Fatalf("exit %d, stderr:\n%s", code, stderr)
	}
	other, _ := nkeys.CreateUser()
	otherPub, _ := other.PublicKey()
	st, err := n.js.Stream(context.Background(), messages.StreamUsage)
	if err != nil {
		t.Fatal(err)
	}
	info, _ := st.Info(context.Background())
	if info.State.Msgs == 0 {
		t.Fatal("nothing stored")
	}
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq; seq++ {
		m, err := st.GetMsg(context.Background(), seq)
		if err != nil {
			t.Fatal(err)
		}
		if err := (messages.SourceKeys{"svc": {pub}}).VerifyPart(m.Subject, m.Header); err != nil {
			t.Errorf("part %d: not verified under the source's key: %v", seq, err)
		}
		if err := messages.VerifyPayload(m.Header, m.Data); err != nil {
			t.Errorf("part %d: payload: %v", seq, err)
		}
		if err := (messages.SourceKeys{"svc": {otherPub}}).VerifyPart(m.Subject, m.Header); err == nil {
			t.Errorf("part %d: verified under another key", seq)
		}
	}
}

// A key file that is not a user seed is a usage error that names the
// file, never its content, and publishes nothing.
func TestPublishRefusesABadSigningKeyFile(t *testing.T) {
	n := startNATS(t)
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.nk")
	const secretish = "SUAMNOTASEEDBUTSECRETLOOKINGTEXT"
	if err := os.WriteFile(bad, []byte(secretish), 0o600); err != nil {
		t.Fatal(err)
	}
	a := write(t, dir, "a.csv", goodCSV)
	code, stdout, stderr := cli(t, "publish", "--feed", "f", "--source", "svc", "--signing-key-file", bad, "--nats", n.url, a)
	if code != exitUsage || !strings.Contains(stderr, "--signing-key-file "+bad) {
		t.Fatalf("exit %d, stderr:\n%s", code, stderr)
	}
	if strings.Contains(stdout+stderr, secretish) {
		t.Error("the key file's content was printed")
	}
	if got := n.usageMsgs(t); got != 0 {
		t.Errorf("USAGE holds %d messages, want 0", got)
	}
}
