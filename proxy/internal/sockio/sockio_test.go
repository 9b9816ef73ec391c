package sockio

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// kinds are the two implementations every behaviour test runs against:
// the plain *net.TCPConn is the reference that Conn must match.
var kinds = []struct {
	name string
	wrap func(net.Conn) net.Conn
}{
	{"net.TCPConn", func(c net.Conn) net.Conn { return c }},
	{"sockio.Conn", Wrap},
}

// forEachKind runs f once with plain and once with wrapped connections.
func forEachKind(t *testing.T, f func(t *testing.T, wrap func(net.Conn) net.Conn)) {
	for _, k := range kinds {
		t.Run(k.name, func(t *testing.T) { f(t, k.wrap) })
	}
}

// pair returns the two ends of a loopback TCP connection, each passed
// through wrap, closed when the test ends.
func pair(t testing.TB, wrap func(net.Conn) net.Conn) (client, server net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s, err := ln.Accept()
	if err != nil {
		c.Close()
		t.Fatal(err)
	}
	client, server = wrap(c), wrap(s)
	t.Cleanup(func() {
		client.Close()
		server.Close()
	})
	return client, server
}

// tcp returns c's socket options, a *net.TCPConn's or a *Conn's.
func tcp(t testing.TB, c net.Conn) socketOptions {
	t.Helper()
	switch c := c.(type) {
	case *net.TCPConn:
		return c
	case *Conn:
		return c
	}
	t.Fatalf("%T is not a TCP connection", c)
	return nil
}

type socketOptions interface {
	SetReadBuffer(int) error
	SetWriteBuffer(int) error
	SetLinger(int) error
}

// smallBuffers shrinks the socket buffers so that a few hundred KiB fill
// them and writes take the wait-for-room path.
func smallBuffers(t testing.TB, writer, reader net.Conn) {
	t.Helper()
	if err := tcp(t, writer).SetWriteBuffer(16 << 10); err != nil {
		t.Fatal(err)
	}
	if err := tcp(t, reader).SetReadBuffer(16 << 10); err != nil {
		t.Fatal(err)
	}
}

// fillSendBuffer writes to c, whose peer does not read, until a write
// times out, so that the next write blocks.
func fillSendBuffer(t testing.TB, c net.Conn) {
	t.Helper()
	buf := make([]byte, 64<<10)
	for i := 0; i < 1000; i++ {
		c.SetWriteDeadline(time.Now().Add(20 * time.Millisecond))
		if _, err := c.Write(buf); err != nil {
			if !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("filling the send buffer: %v", err)
			}
			c.SetWriteDeadline(time.Time{})
			return
		}
	}
	t.Fatal("the send buffer never filled")
}

// blockedRead and blockedWrite are named so that waitIOWait can find the
// goroutine that calls them in a stack dump.
func blockedRead(c net.Conn, p []byte) (int, error)  { return c.Read(p) }
func blockedWrite(c net.Conn, p []byte) (int, error) { return c.Write(p) }

// waitIOWait waits until a goroutine is parked waiting for its socket
// inside fn, so that what the test does next happens to a blocked call
// rather than before it.
func waitIOWait(t testing.TB, fn string) {
	t.Helper()
	buf := make([]byte, 1<<20)
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		n := runtime.Stack(buf, true)
		for _, g := range strings.Split(string(buf[:n]), "\n\n") {
			// A plain TCPConn waits in Go's poller ("IO wait"), a Conn
			// on its side's wake channel.
			parked := strings.Contains(g, "[IO wait") || strings.Contains(g, "[chan receive")
			if parked && strings.Contains(g, "sockio."+fn+"(") {
				return
			}
		}
		runtime.Gosched()
	}
	t.Fatalf("no goroutine blocked in %s", fn)
}

// randomFill fills p with bytes from a seeded generator.
func randomFill(p []byte, seed byte) {
	rand.NewChaCha8([32]byte{seed}).Read(p)
}

// result is what a Read or Write returned.
type result struct {
	n   int
	err error
}

// checkOpError checks that err has the shape net.TCPConn gives it: a
// *net.OpError for op naming both ends of c.
// checkTimeout checks that err is op's deadline error as net.TCPConn
// shapes it: os.ErrDeadlineExceeded, a net.Error whose Timeout() is true,
// a *net.OpError naming op and both ends.
func checkTimeout(t testing.TB, c net.Conn, err error, op string) {
	t.Helper()
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("%s = %v, want os.ErrDeadlineExceeded", op, err)
	}
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Errorf("%s error %v is not a net.Error with Timeout()", op, err)
	}
	checkOpError(t, c, err, op)
}

func checkOpError(t testing.TB, c net.Conn, err error, op string) *net.OpError {
	t.Helper()
	var oe *net.OpError
	if !errors.As(err, &oe) {
		t.Fatalf("error %v (%T) is not a *net.OpError", err, err)
	}
	if oe.Op != op || oe.Net != "tcp" || oe.Source != c.LocalAddr() || oe.Addr != c.RemoteAddr() {
		t.Errorf("OpError{Op: %q, Net: %q, Source: %v, Addr: %v}, want {%q, %q, %v, %v}",
			oe.Op, oe.Net, oe.Source, oe.Addr, op, "tcp", c.LocalAddr(), c.RemoteAddr())
	}
	return oe
}

func TestWrapReturnsConnForTCP(t *testing.T) {
	c, _ := pair(t, Wrap)
	if _, ok := c.(*Conn); !ok {
		t.Fatalf("Wrap(*net.TCPConn) = %T, want *sockio.Conn", c)
	}
	// The methods callers reach through interfaces stay available.
	if _, ok := c.(interface{ CloseWrite() error }); !ok {
		t.Error("wrapped conn has no CloseWrite")
	}
	if _, ok := c.(syscall.Conn); !ok {
		t.Error("wrapped conn has no SyscallConn")
	}
	nd, ok := c.(interface{ SetNoDelay(bool) error })
	if !ok {
		t.Fatal("wrapped conn has no SetNoDelay")
	}
	if err := nd.SetNoDelay(false); err != nil {
		t.Errorf("SetNoDelay: %v", err)
	}
}

func TestWrapLeavesOtherConnsUnchanged(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	if got := Wrap(a); got != a {
		t.Fatalf("Wrap(net.Pipe end) = %T %p, want the same conn %p", got, got, a)
	}
}

func TestRoundTripBothDirections(t *testing.T) {
	c, s := pair(t, Wrap)
	for i, dir := range []struct{ from, to net.Conn }{{c, s}, {s, c}, {c, s}} {
		msg := bytes.Repeat([]byte{byte('a' + i)}, 1000+i)
		errc := make(chan error, 1)
		go func() {
			_, err := dir.from.Write(msg)
			errc <- err
		}()
		got := make([]byte, len(msg))
		if _, err := io.ReadFull(dir.to, got); err != nil {
			t.Fatalf("round %d: read: %v", i, err)
		}
		if err := <-errc; err != nil {
			t.Fatalf("round %d: write: %v", i, err)
		}
		if !bytes.Equal(got, msg) {
			t.Fatalf("round %d: read %q, want %q", i, got, msg)
		}
	}
}

func TestZeroLengthReadAndWrite(t *testing.T) {
	forEachKind(t, func(t *testing.T, wrap func(net.Conn) net.Conn) {
		c, _ := pair(t, wrap)
		if n, err := c.Read(nil); n != 0 || err != nil {
			t.Errorf("Read(nil) = %d, %v; want 0, nil", n, err)
		}
		if n, err := c.Read([]byte{}); n != 0 || err != nil {
			t.Errorf("Read([]byte{}) = %d, %v; want 0, nil", n, err)
		}
		if n, err := c.Write(nil); n != 0 || err != nil {
			t.Errorf("Write(nil) = %d, %v; want 0, nil", n, err)
		}
	})
}

func TestZeroLengthReadAndWriteAfterCloseFail(t *testing.T) {
	// net.TCPConn takes the connection's read or write lock even for an
	// empty buffer, so a closed connection says so.
	forEachKind(t, func(t *testing.T, wrap func(net.Conn) net.Conn) {
		c, _ := pair(t, wrap)
		c.Close()
		if n, err := c.Read(nil); n != 0 || !errors.Is(err, net.ErrClosed) {
			t.Errorf("Read(nil) after Close = %d, %v; want 0, net.ErrClosed", n, err)
		} else {
			checkOpError(t, c, err, "read")
		}
		if n, err := c.Write(nil); n != 0 || !errors.Is(err, net.ErrClosed) {
			t.Errorf("Write(nil) after Close = %d, %v; want 0, net.ErrClosed", n, err)
		} else {
			checkOpError(t, c, err, "write")
		}
	})
}

func TestZeroLengthWriteAfterWriteDeadlineTimesOut(t *testing.T) {
	// net.TCPConn checks the write deadline before writing even nothing;
	// an empty read returns before the deadline is looked at.
	forEachKind(t, func(t *testing.T, wrap func(net.Conn) net.Conn) {
		c, _ := pair(t, wrap)
		c.SetDeadline(time.Now().Add(-time.Second))
		if n, err := c.Write(nil); n != 0 || !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("Write(nil) past the deadline = %d, %v; want 0, os.ErrDeadlineExceeded", n, err)
		} else {
			checkOpError(t, c, err, "write")
		}
		if n, err := c.Read(nil); n != 0 || err != nil {
			t.Errorf("Read(nil) past the deadline = %d, %v; want 0, nil", n, err)
		}
	})
}

func TestReadEOFWhenPeerCloses(t *testing.T) {
	forEachKind(t, func(t *testing.T, wrap func(net.Conn) net.Conn) {
		c, s := pair(t, wrap)
		if _, err := s.Write([]byte("bye")); err != nil {
			t.Fatal(err)
		}
		s.Close()
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		got, err := io.ReadAll(c)
		if err != nil || string(got) != "bye" {
			t.Fatalf("ReadAll = %q, %v; want \"bye\", nil", got, err)
		}
		// The end of the stream is reported again, bare.
		if n, err := c.Read(make([]byte, 8)); n != 0 || err != io.EOF {
			t.Fatalf("Read after EOF = %d, %v; want 0, io.EOF", n, err)
		}
	})
}

func TestCloseWriteIsEOFForPeerOtherDirectionWorks(t *testing.T) {
	forEachKind(t, func(t *testing.T, wrap func(net.Conn) net.Conn) {
		c, s := pair(t, wrap)
		if _, err := c.Write([]byte("request")); err != nil {
			t.Fatal(err)
		}
		if err := c.(interface{ CloseWrite() error }).CloseWrite(); err != nil {
			t.Fatal(err)
		}
		s.SetReadDeadline(time.Now().Add(10 * time.Second))
		got, err := io.ReadAll(s)
		if err != nil || string(got) != "request" {
			t.Fatalf("server ReadAll = %q, %v; want \"request\", nil", got, err)
		}
		if _, err := s.Write([]byte("response")); err != nil {
			t.Fatalf("server write after the client's CloseWrite: %v", err)
		}
		s.Close()
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		got, err = io.ReadAll(c)
		if err != nil || string(got) != "response" {
			t.Fatalf("client ReadAll = %q, %v; want \"response\", nil", got, err)
		}
		// Writing after CloseWrite fails as it does on the plain conn.
		_, err = c.Write([]byte("x"))
		if !errors.Is(err, syscall.EPIPE) {
			t.Fatalf("Write after CloseWrite = %v, want EPIPE", err)
		}
		checkOpError(t, c, err, "write")
	})
}

func TestReadDeadlineExpires(t *testing.T) {
	forEachKind(t, func(t *testing.T, wrap func(net.Conn) net.Conn) {
		c, _ := pair(t, wrap)
		c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		n, err := c.Read(make([]byte, 16))
		if n != 0 {
			t.Errorf("Read returned %d bytes", n)
		}
		checkTimeout(t, c, err, "read")
	})
}

func TestReadDeadlineInPastFailsAtOnceEvenWithDataPending(t *testing.T) {
	forEachKind(t, func(t *testing.T, wrap func(net.Conn) net.Conn) {
		c, s := pair(t, wrap)
		if _, err := s.Write([]byte("pending")); err != nil {
			t.Fatal(err)
		}
		c.SetReadDeadline(time.Now().Add(-time.Second))
		if n, err := c.Read(make([]byte, 16)); n != 0 || !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("Read = %d, %v; want 0, os.ErrDeadlineExceeded", n, err)
		}
		// Clearing the deadline makes the data readable again.
		c.SetReadDeadline(time.Time{})
		got := make([]byte, len("pending"))
		if _, err := io.ReadFull(c, got); err != nil || string(got) != "pending" {
			t.Fatalf("after clearing the deadline: ReadFull = %q, %v", got, err)
		}
	})
}

func TestClearedReadDeadlineDoesNotFire(t *testing.T) {
	forEachKind(t, func(t *testing.T, wrap func(net.Conn) net.Conn) {
		c, s := pair(t, wrap)
		c.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
		c.SetReadDeadline(time.Time{})
		done := make(chan result, 1)
		go func() {
			n, err := blockedRead(c, make([]byte, 16))
			done <- result{n, err}
		}()
		waitIOWait(t, "blockedRead")
		// Well past the cleared deadline, the read is still waiting and
		// takes the data when it comes.
		select {
		case r := <-done:
			t.Fatalf("Read returned %d, %v with the deadline cleared", r.n, r.err)
		case <-time.After(100 * time.Millisecond):
		}
		if _, err := s.Write([]byte("late")); err != nil {
			t.Fatal(err)
		}
		if r := <-done; r.n != 4 || r.err != nil {
			t.Fatalf("Read = %d, %v; want 4, nil", r.n, r.err)
		}
	})
}

func TestSetReadDeadlineInterruptsBlockedRead(t *testing.T) {
	forEachKind(t, func(t *testing.T, wrap func(net.Conn) net.Conn) {
		c, _ := pair(t, wrap)
		done := make(chan result, 1)
		go func() {
			n, err := blockedRead(c, make([]byte, 16))
			done <- result{n, err}
		}()
		waitIOWait(t, "blockedRead")
		c.SetReadDeadline(time.Now().Add(-time.Second))
		select {
		case r := <-done:
			if r.n != 0 || !errors.Is(r.err, os.ErrDeadlineExceeded) {
				t.Fatalf("Read = %d, %v; want 0, os.ErrDeadlineExceeded", r.n, r.err)
			}
			checkOpError(t, c, r.err, "read")
		case <-time.After(10 * time.Second):
			c.Close()
			<-done
			t.Fatal("SetReadDeadline in the past did not interrupt the blocked Read")
		}
	})
}

func TestWriteDeadlinePeerNeverReads(t *testing.T) {
	forEachKind(t, func(t *testing.T, wrap func(net.Conn) net.Conn) {
		c, s := pair(t, wrap)
		smallBuffers(t, c, s)
		buf := make([]byte, 16<<20)
		// A second, not 100 ms: the Write must begin before the
		// deadline to write some, and a deadline passed before it did
		// (its goroutine stalled on a loaded machine) failed it with
		// nothing written, on net.TCPConn as on Conn.
		c.SetWriteDeadline(time.Now().Add(time.Second))
		n, err := c.Write(buf)
		if n <= 0 || n >= len(buf) {
			t.Errorf("Write wrote %d of %d bytes, want some but not all", n, len(buf))
		}
		checkTimeout(t, c, err, "write")
	})
}

func TestCloseUnblocksRead(t *testing.T) {
	forEachKind(t, func(t *testing.T, wrap func(net.Conn) net.Conn) {
		c, _ := pair(t, wrap)
		done := make(chan result, 1)
		go func() {
			n, err := blockedRead(c, make([]byte, 16))
			done <- result{n, err}
		}()
		waitIOWait(t, "blockedRead")
		c.Close()
		select {
		case r := <-done:
			if r.n != 0 || !errors.Is(r.err, net.ErrClosed) {
				t.Fatalf("Read = %d, %v; want 0, net.ErrClosed", r.n, r.err)
			}
			checkOpError(t, c, r.err, "read")
		case <-time.After(10 * time.Second):
			t.Fatal("Close did not unblock the Read")
		}
	})
}

func TestCloseUnblocksWrite(t *testing.T) {
	forEachKind(t, func(t *testing.T, wrap func(net.Conn) net.Conn) {
		c, s := pair(t, wrap)
		smallBuffers(t, c, s)
		fillSendBuffer(t, c)
		done := make(chan result, 1)
		go func() {
			n, err := blockedWrite(c, make([]byte, 1<<20))
			done <- result{n, err}
		}()
		waitIOWait(t, "blockedWrite")
		c.Close()
		select {
		case r := <-done:
			if !errors.Is(r.err, net.ErrClosed) {
				t.Fatalf("Write = %d, %v; want net.ErrClosed", r.n, r.err)
			}
			checkOpError(t, c, r.err, "write")
		case <-time.After(10 * time.Second):
			t.Fatal("Close did not unblock the Write")
		}
	})
}

func TestReadAndWriteAfterClose(t *testing.T) {
	forEachKind(t, func(t *testing.T, wrap func(net.Conn) net.Conn) {
		c, _ := pair(t, wrap)
		c.Close()
		n, err := c.Read(make([]byte, 16))
		if n != 0 || !errors.Is(err, net.ErrClosed) {
			t.Errorf("Read after Close = %d, %v; want 0, net.ErrClosed", n, err)
		} else {
			checkOpError(t, c, err, "read")
		}
		n, err = c.Write([]byte("x"))
		if n != 0 || !errors.Is(err, net.ErrClosed) {
			t.Errorf("Write after Close = %d, %v; want 0, net.ErrClosed", n, err)
		} else {
			checkOpError(t, c, err, "write")
		}
	})
}

// resetByPeer makes the peer end the connection with a RST.
func resetByPeer(t testing.TB, peer net.Conn) {
	t.Helper()
	if err := tcp(t, peer).SetLinger(0); err != nil {
		t.Fatal(err)
	}
	peer.Close()
}

func TestReadResetByPeer(t *testing.T) {
	forEachKind(t, func(t *testing.T, wrap func(net.Conn) net.Conn) {
		c, s := pair(t, wrap)
		resetByPeer(t, s)
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		n, err := c.Read(make([]byte, 16))
		if n != 0 || !errors.Is(err, syscall.ECONNRESET) {
			t.Fatalf("Read = %d, %v; want 0, ECONNRESET", n, err)
		}
		oe := checkOpError(t, c, err, "read")
		var se *os.SyscallError
		if !errors.As(oe.Err, &se) || se.Syscall != "read" {
			t.Errorf("OpError.Err = %#v, want *os.SyscallError for read", oe.Err)
		}
	})
}

func TestWriteResetByPeer(t *testing.T) {
	forEachKind(t, func(t *testing.T, wrap func(net.Conn) net.Conn) {
		c, s := pair(t, wrap)
		resetByPeer(t, s)
		// The first writes may be accepted before the RST is seen.
		var err error
		for i := 0; i < 1000 && err == nil; i++ {
			c.SetWriteDeadline(time.Now().Add(10 * time.Second))
			_, err = c.Write([]byte("after reset"))
		}
		if !errors.Is(err, syscall.EPIPE) && !errors.Is(err, syscall.ECONNRESET) {
			t.Fatalf("Write = %v, want EPIPE or ECONNRESET", err)
		}
		oe := checkOpError(t, c, err, "write")
		var se *os.SyscallError
		if !errors.As(oe.Err, &se) || se.Syscall != "write" {
			t.Errorf("OpError.Err = %#v, want *os.SyscallError for write", oe.Err)
		}
	})
}

func TestLargeWriteToSlowReaderArrivesIntact(t *testing.T) {
	c, s := pair(t, Wrap)
	smallBuffers(t, c, s)
	msg := make([]byte, 8<<20)
	randomFill(msg, 1)
	want := sha256.Sum256(msg)
	done := make(chan result, 1)
	go func() {
		c.SetWriteDeadline(time.Now().Add(60 * time.Second))
		n, err := c.Write(msg)
		done <- result{n, err}
	}()
	h := sha256.New()
	buf := make([]byte, 1500)
	s.SetReadDeadline(time.Now().Add(60 * time.Second))
	for got := 0; got < len(msg); {
		n, err := s.Read(buf)
		h.Write(buf[:n])
		got += n
		if err != nil {
			t.Fatalf("read after %d bytes: %v", got, err)
		}
	}
	if r := <-done; r.n != len(msg) || r.err != nil {
		t.Fatalf("Write = %d, %v; want %d, nil", r.n, r.err, len(msg))
	}
	if got := h.Sum(nil); !bytes.Equal(got, want[:]) {
		t.Fatal("the bytes read differ from the bytes written")
	}
}

func TestConcurrentReadAndWriteOnOneConn(t *testing.T) {
	c, s := pair(t, Wrap)
	smallBuffers(t, c, s)
	smallBuffers(t, s, c)
	const size = 2 << 20
	// Each end writes its stream while reading the other's, from two
	// goroutines per end.
	streams := [2][]byte{make([]byte, size), make([]byte, size)}
	randomFill(streams[0], 3)
	randomFill(streams[1], 5)
	ends := [2]net.Conn{c, s}
	sums := [2][sha256.Size]byte{}
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for i, conn := range ends {
		conn.SetDeadline(time.Now().Add(60 * time.Second))
		wg.Add(2)
		go func() {
			defer wg.Done()
			for p := streams[i]; len(p) > 0; {
				n, err := conn.Write(p[:min(len(p), 100_000)])
				p = p[n:]
				if err != nil {
					errs <- err
					return
				}
			}
		}()
		go func() {
			defer wg.Done()
			h := sha256.New()
			if _, err := io.CopyN(h, conn, size); err != nil {
				errs <- err
				return
			}
			copy(sums[i][:], h.Sum(nil))
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	// End 0 reads what end 1 wrote, and the other way round.
	if sums[0] != sha256.Sum256(streams[1]) || sums[1] != sha256.Sum256(streams[0]) {
		t.Fatal("the bytes read differ from the bytes written")
	}
}

func TestConcurrentWritesAreNotInterleaved(t *testing.T) {
	forEachKind(t, func(t *testing.T, wrap func(net.Conn) net.Conn) {
		c, s := pair(t, wrap)
		// Small buffers make each large frame take several write calls.
		smallBuffers(t, c, s)
		const writers, frames, payload = 4, 20, 100 << 10
		c.SetWriteDeadline(time.Now().Add(60 * time.Second))
		s.SetReadDeadline(time.Now().Add(60 * time.Second))
		var wg sync.WaitGroup
		errs := make(chan error, writers)
		for w := range writers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				// A frame is: writer id, sequence number, then the payload,
				// every byte of which is the writer id.
				frame := make([]byte, 8+payload)
				for seq := range frames {
					binary.BigEndian.PutUint32(frame[0:], uint32(w))
					binary.BigEndian.PutUint32(frame[4:], uint32(seq))
					for i := 8; i < len(frame); i++ {
						frame[i] = byte(w)
					}
					if n, err := c.Write(frame); n != len(frame) || err != nil {
						errs <- err
						return
					}
				}
			}()
		}
		next := make([]uint32, writers)
		frame := make([]byte, 8+payload)
		for range writers * frames {
			if _, err := io.ReadFull(s, frame); err != nil {
				t.Fatalf("reading frames: %v", err)
			}
			w, seq := binary.BigEndian.Uint32(frame[0:]), binary.BigEndian.Uint32(frame[4:])
			if w >= writers || seq != next[w] {
				t.Fatalf("frame header writer %d seq %d: the stream is interleaved", w, seq)
			}
			next[w]++
			for i := 8; i < len(frame); i++ {
				if frame[i] != byte(w) {
					t.Fatalf("writer %d frame %d: byte %d is %d; another write was interleaved", w, seq, i, frame[i])
				}
			}
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
	})
}

func TestConcurrentReadsShareTheStream(t *testing.T) {
	c, s := pair(t, Wrap)
	const size = 1 << 20
	msg := make([]byte, size)
	randomFill(msg, 7)
	var want uint64
	for _, b := range msg {
		want += uint64(b)
	}
	wrote := make(chan error, 1)
	go func() {
		_, err := s.Write(msg)
		s.Close()
		wrote <- err
	}()
	c.SetReadDeadline(time.Now().Add(60 * time.Second))
	// Several readers take turns on one conn; together they see every
	// byte exactly once.
	const readers = 4
	counts, sums := make([]int, readers), make([]uint64, readers)
	var wg sync.WaitGroup
	errs := make(chan error, readers)
	for r := range readers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 4096)
			for {
				n, err := c.Read(buf)
				if n == 0 && err == nil {
					errs <- errors.New("Read returned 0, nil")
					return
				}
				counts[r] += n
				for _, b := range buf[:n] {
					sums[r] += uint64(b)
				}
				if err == io.EOF {
					return
				}
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	if err := <-wrote; err != nil {
		t.Fatal(err)
	}
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	var total int
	var sum uint64
	for r := range readers {
		total += counts[r]
		sum += sums[r]
	}
	if total != size || sum != want {
		t.Fatalf("readers saw %d bytes summing to %d, want %d summing to %d", total, sum, size, want)
	}
}

// A read that returns less than asked leaves the side waiting for the
// next event, but an end of stream that arrived with the last bytes
// brings no further event: the next Read must still see it.
func TestEndOfStreamBehindAPartialRead(t *testing.T) {
	c, s := pair(t, Wrap)
	if _, err := s.Write(make([]byte, 5000)); err != nil {
		t.Fatal(err)
	}
	s.Close()
	// Wait until the poller has seen the peer's close, so that the data
	// and the end of stream are both reported before the first Read.
	sc := c.(*Conn)
	deadline := time.Now().Add(10 * time.Second)
	for !sc.r.hup.Load() {
		if time.Now().After(deadline) {
			t.Fatal("the poller never reported the peer's close")
		}
		runtime.Gosched()
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 4096)
	total := 0
	for {
		n, err := c.Read(buf)
		total += n
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("after %d bytes: %v", total, err)
		}
	}
	if total != 5000 {
		t.Fatalf("read %d bytes, want 5000", total)
	}
}

// Connections come and go; the poller closes with the last one and the
// next Wrap starts another. Every stream still ends in EOF.
func TestManyConnectionsEndInEOF(t *testing.T) {
	for i := range 50 {
		c, s := pair(t, Wrap)
		go func() {
			s.Write(make([]byte, 100000))
			s.Close()
		}()
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		n, err := io.Copy(io.Discard, readerOnly{c})
		if err != nil || n != 100000 {
			t.Fatalf("round %d: read %d bytes, %v; want 100000, nil", i, n, err)
		}
		c.Close()
	}
}
