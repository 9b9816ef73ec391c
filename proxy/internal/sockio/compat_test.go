package sockio

import (
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"syscall"
	"testing"
	"time"
)

// net.Buffers.WriteTo writes through an unexported method of the
// connection when it has one; a Conn must not lend it the TCPConn's,
// which would bypass its write deadline and write lock.
func TestBuffersWriteToKeepsTheWriteDeadline(t *testing.T) {
	forEachKind(t, func(t *testing.T, wrap func(net.Conn) net.Conn) {
		c, _ := pair(t, wrap)
		c.SetWriteDeadline(time.Now().Add(-time.Second))
		bufs := net.Buffers{[]byte("a"), []byte("b")}
		n, err := bufs.WriteTo(c)
		if n != 0 || !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("net.Buffers.WriteTo past the write deadline = %d, %v; want 0, os.ErrDeadlineExceeded", n, err)
		}
	})
}

// Every exported method of *net.TCPConn is a method of *Conn, with the
// same signature: callers find them through interfaces.
func TestConnHasEveryTCPConnMethod(t *testing.T) {
	tcpT, connT := reflect.TypeFor[*net.TCPConn](), reflect.TypeFor[*Conn]()
	for i := range tcpT.NumMethod() {
		m := tcpT.Method(i)
		cm, ok := connT.MethodByName(m.Name)
		if !ok {
			t.Errorf("*Conn has no method %s", m.Name)
			continue
		}
		// Drop the receivers before comparing.
		if !sameSignature(m.Type, cm.Type) {
			t.Errorf("*Conn.%s is %v, *net.TCPConn.%s is %v", m.Name, cm.Type, m.Name, m.Type)
		}
	}
}

func sameSignature(a, b reflect.Type) bool {
	if a.NumIn() != b.NumIn() || a.NumOut() != b.NumOut() || a.IsVariadic() != b.IsVariadic() {
		return false
	}
	for i := 1; i < a.NumIn(); i++ {
		if a.In(i) != b.In(i) {
			return false
		}
	}
	for i := range a.NumOut() {
		if a.Out(i) != b.Out(i) {
			return false
		}
	}
	return true
}

// The methods a Conn passes on reach the socket.
func TestPassedOnMethodsReachTheSocket(t *testing.T) {
	c, s := pair(t, Wrap)
	sc := c.(*Conn)
	if sc.LocalAddr().String() != s.RemoteAddr().String() || sc.RemoteAddr().String() != s.LocalAddr().String() {
		t.Errorf("addresses %v->%v, peer's %v->%v", sc.LocalAddr(), sc.RemoteAddr(), s.LocalAddr(), s.RemoteAddr())
	}
	for name, err := range map[string]error{
		"SetNoDelay":         sc.SetNoDelay(false),
		"SetKeepAlive":       sc.SetKeepAlive(true),
		"SetKeepAlivePeriod": sc.SetKeepAlivePeriod(time.Minute),
		"SetKeepAliveConfig": sc.SetKeepAliveConfig(net.KeepAliveConfig{Enable: true, Idle: time.Minute}),
		"SetLinger":          sc.SetLinger(1),
		"SetReadBuffer":      sc.SetReadBuffer(64 << 10),
		"SetWriteBuffer":     sc.SetWriteBuffer(64 << 10),
	} {
		if err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, err := sc.MultipathTCP(); err != nil {
		t.Errorf("MultipathTCP: %v", err)
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var nodelay int
	rc.Control(func(fd uintptr) {
		nodelay, err = syscall.GetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_NODELAY)
	})
	if err != nil || nodelay != 0 {
		t.Errorf("TCP_NODELAY = %d, %v after SetNoDelay(false)", nodelay, err)
	}
	f, err := sc.File()
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	if err := sc.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	s.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, err := s.Read(make([]byte, 1)); n != 0 || err == nil {
		t.Errorf("peer Read after CloseWrite = %d, %v; want the end of the stream", n, err)
	}
	if err := sc.CloseRead(); err != nil {
		t.Fatal(err)
	}
}

// An empty Write makes the write call as net.TCPConn's does, and so
// reports a connection that can no longer be written.
func TestZeroLengthWriteAfterCloseWriteFails(t *testing.T) {
	forEachKind(t, func(t *testing.T, wrap func(net.Conn) net.Conn) {
		c, _ := pair(t, wrap)
		if err := c.(interface{ CloseWrite() error }).CloseWrite(); err != nil {
			t.Fatal(err)
		}
		n, err := c.Write(nil)
		if n != 0 || !errors.Is(err, syscall.EPIPE) {
			t.Fatalf("Write(nil) after CloseWrite = %d, %v; want 0, EPIPE", n, err)
		}
		checkOpError(t, c, err, "write")
	})
}

// Setting a deadline on a closed connection fails as on net.TCPConn:
// Op "set", no Source, the local address as Addr.
func TestSetDeadlineAfterCloseError(t *testing.T) {
	forEachKind(t, func(t *testing.T, wrap func(net.Conn) net.Conn) {
		c, _ := pair(t, wrap)
		local := c.LocalAddr()
		c.Close()
		for name, set := range map[string]func(time.Time) error{
			"SetDeadline": c.SetDeadline, "SetReadDeadline": c.SetReadDeadline, "SetWriteDeadline": c.SetWriteDeadline,
		} {
			err := set(time.Now())
			var oe *net.OpError
			if !errors.As(err, &oe) || !errors.Is(err, net.ErrClosed) {
				t.Errorf("%s after Close = %v, want a *net.OpError wrapping net.ErrClosed", name, err)
				continue
			}
			if oe.Op != "set" || oe.Net != "tcp" || oe.Source != nil || oe.Addr == nil || oe.Addr.String() != local.String() {
				t.Errorf("%s after Close: OpError{Op: %q, Net: %q, Source: %v, Addr: %v}, want {\"set\", \"tcp\", <nil>, %v}",
					name, oe.Op, oe.Net, oe.Source, oe.Addr, local)
			}
		}
	})
}

// A call that finds Close begun between its checks and its system call
// (here refs is marked as Close marks it, the closed flag not yet set)
// makes no call and fails with net.TCPConn's error shape, naming both
// ends.
func TestCallDuringCloseErrorShape(t *testing.T) {
	c, _ := pair(t, Wrap)
	sc := c.(*Conn)
	sc.refs.Add(refClosing)
	defer sc.refs.Add(-refClosing)
	if _, err := c.Read(make([]byte, 1)); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Read = %v, want net.ErrClosed", err)
	} else {
		checkOpError(t, c, err, "read")
	}
	if _, err := c.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Write = %v, want net.ErrClosed", err)
	} else {
		checkOpError(t, c, err, "write")
	}
}

// A Close that finds another one begun does not close the descriptor
// while a call is under way either (here one is counted in refs, its
// system call not yet made, as when its goroutine is preempted just
// before it): the call would then be made on a closed descriptor, whose
// number may already name another file.
func TestSecondCloseWaitsForCallUnderWay(t *testing.T) {
	c, _ := pair(t, Wrap)
	sc := c.(*Conn)
	sc.refs.Add(1)
	ended := false
	endCall := func() {
		if !ended {
			ended = true
			sc.refs.Add(-1)
		}
	}
	defer endCall()
	first := make(chan error, 1)
	go func() { first <- sc.Close() }()
	for deadline := time.Now().Add(10 * time.Second); sc.refs.Load() < refClosing; {
		if time.Now().After(deadline) {
			t.Fatal("the first Close never began to wait for the call")
		}
		time.Sleep(time.Millisecond)
	}
	second := make(chan error, 1)
	go func() { second <- sc.Close() }()
	errs := make([]error, 0, 2)
	select {
	case err := <-second:
		t.Error("the second Close returned while a call was under way")
		errs = append(errs, err)
	case <-time.After(100 * time.Millisecond):
	}
	if _, _, errno := syscall.Syscall(syscall.SYS_FCNTL, sc.fd, syscall.F_GETFD, 0); errno != 0 {
		t.Errorf("the descriptor was closed under a call under way: fcntl: %v", errno)
	}
	endCall()
	errs = append(errs, <-first)
	if len(errs) < 2 {
		errs = append(errs, <-second)
	}
	for _, err := range errs {
		if err != nil && !errors.Is(err, net.ErrClosed) {
			t.Errorf("Close = %v, want nil or net.ErrClosed", err)
		}
	}
}

// io.Copy between a file and a Conn: os.File finds the socket through
// SyscallConn to use sendfile or splice, which would wait in Go's poller
// by the TCPConn's deadlines, never set, instead of the Conn's. The
// Conn's deadlines must hold either way.
func TestFileCopyKeepsDeadlines(t *testing.T) {
	forEachKind(t, func(t *testing.T, wrap func(net.Conn) net.Conn) {
		t.Run("to conn", func(t *testing.T) {
			c, s := pair(t, wrap)
			smallBuffers(t, c, s)
			f, err := os.Create(filepath.Join(t.TempDir(), "body"))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if err := f.Truncate(32 << 20); err != nil {
				t.Fatal(err)
			}
			c.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
			copyWithin(t, c, func() (int64, error) { return io.Copy(c, f) })
		})
		t.Run("from conn", func(t *testing.T) {
			c, _ := pair(t, wrap)
			f, err := os.Create(filepath.Join(t.TempDir(), "body"))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
			copyWithin(t, c, func() (int64, error) { return io.Copy(f, c) })
		})
	})
}

// copyWithin runs copy and expects it to time out well within 10 s;
// past that it closes c to end it.
func copyWithin(t *testing.T, c net.Conn, copy func() (int64, error)) {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		_, err := copy()
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("copy = %v, want os.ErrDeadlineExceeded", err)
		}
	case <-time.After(10 * time.Second):
		c.Close()
		<-done
		t.Fatal("the copy outlived the deadline")
	}
}
