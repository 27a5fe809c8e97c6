package cloudzero

import (
	"io"
	"testing"
)

// A body goes back to the pool only when the sender and every reader are
// done with it, however often a reader is closed.
func TestSharedBodyOutlivesItsReaders(t *testing.T) {
	b := newSharedBody([]byte("body"))
	r1 := b.reader()
	r2 := b.reader() // a re-send's GetBody
	b.done()         // the sender
	if b.buf == nil {
		t.Fatal("released while two readers are open")
	}
	_ = r1.Close()
	_ = r1.Close()
	if b.buf == nil {
		t.Fatal("a double Close released it while a reader is open")
	}
	got, _ := io.ReadAll(r2)
	if string(got) != "body" {
		t.Fatalf("read %q", got)
	}
	_ = r2.Close()
	if b.buf != nil {
		t.Fatal("not released once everyone was done")
	}
}
