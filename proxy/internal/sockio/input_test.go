package sockio

import (
	"testing"
	"time"
)

// InputPending says whether input may have come since the last read
// left the socket empty: yes once more bytes or the peer's end came,
// and after a read that filled its buffer. (That it is false after a
// read that took all there was is not asserted: the poller may still
// report the bytes that read took, a moment later, which costs a pool
// one look at the socket.)
func TestInputPending(t *testing.T) {
	c, s := pair(t, Wrap)
	conn, ok := c.(*Conn)
	if !ok {
		t.Skip("the socket cannot be watched here")
	}
	waitPending := func(what string) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for !conn.InputPending() {
			if time.Now().After(deadline) {
				t.Fatalf("InputPending still false after %s", what)
			}
			time.Sleep(time.Millisecond)
		}
	}
	buf := make([]byte, 64)
	if _, err := s.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	if n, err := c.Read(buf); err != nil || string(buf[:n]) != "hello" {
		t.Fatalf("Read = %q, %v", buf[:n], err)
	}
	if _, err := s.Write([]byte("more")); err != nil {
		t.Fatal(err)
	}
	waitPending("the peer wrote")
	if n, err := c.Read(buf); err != nil || string(buf[:n]) != "more" {
		t.Fatalf("Read = %q, %v", buf[:n], err)
	}
	// A read that fills its buffer may have left more behind.
	if _, err := s.Write([]byte("ab")); err != nil {
		t.Fatal(err)
	}
	waitPending("the peer wrote again")
	if n, err := c.Read(buf[:1]); err != nil || n != 1 {
		t.Fatalf("Read = %d, %v", n, err)
	}
	if !conn.InputPending() {
		t.Fatal("no input pending after a read that filled its buffer")
	}
	if n, err := c.Read(buf); err != nil || string(buf[:n]) != "b" {
		t.Fatalf("Read = %q, %v", buf[:n], err)
	}
	s.Close()
	waitPending("the peer closed")
}
