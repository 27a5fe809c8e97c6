package main

// --publish-timeout (issue 12 item 13): a publish that cannot complete ends
// with a clear error and exit code 1 (README "Exit codes"), never hangs.

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/usagefleet/usagefleet/internal/broker"
	"github.com/usagefleet/usagefleet/messages"
)

// bareNATS is an embedded JetStream server with none of the fleet's
// streams; js is a client of it.
func bareNATS(t *testing.T) (url string, nc *nats.Conn, js jetstream.JetStream) {
	t.Helper()
	e, err := broker.StartEmbedded(t.TempDir(), 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	nc, err = nats.Connect(e.URL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err = jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return e.URL, nc, js
}

// cliFor runs the CLI under a context of d: long enough for anything the
// test means to happen, and a cut-off if the command would otherwise hang
// (its error then does not name --publish-timeout).
func cliFor(t *testing.T, d time.Duration, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	var out, errb syncBuffer
	code = runContext(ctx, args, &out, &errb)
	return code, out.String(), errb.String()
}

// A server without the streams: said at once (not retried until the
// timeout), with how to create them, exit 1.
func TestPublishToAServerWithoutTheStreams(t *testing.T) {
	url, _, _ := bareNATS(t)
	file := write(t, t.TempDir(), "u.csv", goodCSV)
	code, stdout, stderr := cliFor(t, 2*time.Minute, "publish", "--feed", "f", "--source", "svc", "--nats", url, "--publish-timeout", "1h", file)
	if code != exitFail {
		t.Fatalf("exit %d, want %d; stderr:\n%s", code, exitFail, stderr)
	}
	if !strings.Contains(stderr, "stream missing on this server") || !strings.Contains(stderr, "start a usage-worker") || !strings.Contains(stderr, "nothing published") {
		t.Fatalf("stderr does not say the stream is missing and how to create it:\n%s", stderr)
	}
	if stdout != "" {
		t.Fatalf("stdout %q", stdout)
	}
}

// A publish that stalls (the stream exists, but nothing acks what is
// published on usage.>) ends at --publish-timeout with an error that names
// the timeout and says a rerun completes it, exit 1, well before the outer
// cut-off of two minutes. With the flag ignored, the run went on to that
// cut-off and said only "context deadline exceeded" (checked by editing
// publish.go).
func TestPublishTimeoutEndsAStalledPublish(t *testing.T) {
	url, nc, js := bareNATS(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// USAGE and the batch-claims bucket exist, so the producer finds its
	// setup; USAGE stores nothing on usage.>, and a silent subscriber
	// there takes every publish without answering.
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: messages.StreamUsage, Subjects: []string{"elsewhere.>"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: messages.BucketBatches}); err != nil {
		t.Fatal(err)
	}
	sub, err := nc.SubscribeSync("usage.>")
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}

	file := write(t, t.TempDir(), "u.csv", goodCSV)
	code, stdout, stderr := cliFor(t, 2*time.Minute, "publish", "--feed", "f", "--source", "svc", "--nats", url, "--publish-timeout", "2s", file)
	if code != exitFail {
		t.Fatalf("exit %d, want %d; stderr:\n%s", code, exitFail, stderr)
	}
	if !strings.Contains(stderr, "--publish-timeout 2s") || !strings.Contains(stderr, "run it again") {
		t.Fatalf("stderr does not name the timeout and what to do:\n%s", stderr)
	}
	if !strings.Contains(stderr, "nothing published") {
		t.Fatalf("stderr does not say nothing was published:\n%s", stderr)
	}
	if stdout != "" {
		t.Fatalf("stdout %q", stdout)
	}
	if m, err := sub.NextMsg(0); err != nil || m.Header.Get(messages.HdrMsgID) == "" {
		t.Fatalf("the publish never reached the server (%v): the test did not stall it", err)
	}
}
