package bench

import (
	"bytes"
	"crypto/rand"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"
)

// echoServer serves loopback connections that echo what they read.
func echoServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				io.Copy(c, c)
			}()
		}
	}()
	return ln.Addr().String()
}

func startProxy(t *testing.T, upstream string, delay time.Duration) *delayProxy {
	t.Helper()
	p, err := startDelayProxy(upstream, delay)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// TestDelayProxyAddsItsDelayEachWay: a round trip through the proxy to an
// echo server takes at least twice the one-way delay. (A lower bound only:
// load can only add to it.)
func TestDelayProxyAddsItsDelayEachWay(t *testing.T) {
	const delay = 40 * time.Millisecond
	p := startProxy(t, echoServer(t), delay)
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	buf := make([]byte, 4)
	for i := range 3 {
		start := time.Now()
		if _, err := c.Write([]byte("ping")); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(c, buf); err != nil {
			t.Fatal(err)
		}
		if rtt := time.Since(start); rtt < 2*delay || string(buf) != "ping" {
			t.Errorf("round trip %d: %q after %v; want \"ping\" after at least %v", i, buf, rtt, 2*delay)
		}
	}
}

// TestDelayProxyKeepsEveryByteInOrder sends 16 MB of random bytes through
// a proxy with a delay, in both directions at once (an echo), written in
// uneven pieces, and gets exactly them back; a half-close travels too.
func TestDelayProxyKeepsEveryByteInOrder(t *testing.T) {
	p := startProxy(t, echoServer(t), 2*time.Millisecond)
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	want := make([]byte, 16<<20)
	rand.Read(want)
	go func() {
		rest := want
		for n := 1; len(rest) > 0; n = n*7%100_003 + 1 {
			k := min(n, len(rest))
			if _, err := c.Write(rest[:k]); err != nil {
				return
			}
			rest = rest[k:]
		}
		c.(*net.TCPConn).CloseWrite()
	}()
	got, err := io.ReadAll(c) // ends only if the half-close went through both ways
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("got %d bytes back, want the %d sent, in order (first difference at %d)", len(got), len(want), firstDiff(got, want))
	}
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// TestDelayProxyReadsWhileItHolds: with a delay of an hour nothing comes
// out, yet 24 MB go in (more than the kernel's socket buffers hold
// without the proxy reading: 4 MB of send buffer, and a receive window
// that does not grow while nobody reads). A proxy that waited out the
// delay before reading more (stop and wait, throughput bounded by the
// delay) would block the writer here.
func TestDelayProxyReadsWhileItHolds(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var arrived atomic.Int64
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		n, _ := io.Copy(io.Discard, c)
		arrived.Add(n)
	}()
	p := startProxy(t, ln.Addr().String(), time.Hour)
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	wrote := make(chan error, 1)
	go func() {
		buf := make([]byte, 1<<20)
		for range 24 {
			if _, err := c.Write(buf); err != nil {
				wrote <- err
				return
			}
		}
		wrote <- nil
	}()
	select {
	case err := <-wrote:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second): // generous: it takes milliseconds
		t.Fatal("24 MB did not go into the proxy in 30s: it stops reading while data waits out its delay")
	}
	if n := arrived.Load(); n != 0 {
		t.Errorf("%d bytes arrived before their delay of an hour", n)
	}
}
