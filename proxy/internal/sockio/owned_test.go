package sockio

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

// socketInode is the inode of the socket behind fd ("socket:[N]").
func socketInode(t *testing.T, fd uintptr) string {
	t.Helper()
	l, err := os.Readlink(fmt.Sprintf("/proc/self/fd/%d", fd))
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	if !strings.HasPrefix(l, "socket:[") {
		t.Fatalf("fd %d is %q, not a socket", fd, l)
	}
	return strings.TrimSuffix(strings.TrimPrefix(l, "socket:["), "]")
}

// epollsWatching lists the epoll instances of the process that watch
// the socket with inode ino (their fdinfo names it as "ino:<hex>").
func epollsWatching(t *testing.T, ino string) []string {
	t.Helper()
	var n uint64
	if _, err := fmt.Sscan(ino, &n); err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("ino:%x ", n)
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	var found []string
	for _, e := range ents {
		if l, _ := os.Readlink("/proc/self/fd/" + e.Name()); l != "anon_inode:[eventpoll]" {
			continue
		}
		f, err := os.Open("/proc/self/fdinfo/" + e.Name())
		if err != nil {
			continue // closed meanwhile
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "tfd:") && strings.Contains(sc.Text()+" ", want) {
				found = append(found, e.Name())
			}
		}
		f.Close()
	}
	return found
}

// A wrapped socket is in one epoll instance, the poller's: the
// TCPConn's descriptor, and with it the socket's registration in Go's
// poller, is gone, so an event is not made twice.
func TestWrappedSocketLeavesGosPoller(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	tc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var orig uintptr
	rc, _ := tc.(*net.TCPConn).SyscallConn()
	rc.Control(func(fd uintptr) { orig = fd })
	ino := socketInode(t, orig)
	if got := epollsWatching(t, ino); len(got) != 1 {
		t.Fatalf("before Wrap the socket is in %d epoll instances (%v), want 1 (Go's)", len(got), got)
	}

	c := Wrap(tc).(*Conn)
	defer c.Close()
	if got := socketInode(t, c.fd); got != ino {
		t.Fatalf("the Conn's descriptor is socket %s, the TCPConn's was %s", got, ino)
	}
	got := epollsWatching(t, ino)
	if len(got) != 1 || got[0] != fmt.Sprint(c.pl.epfd) {
		t.Fatalf("after Wrap the socket is in epoll instances %v, want only the poller's (%d)", got, c.pl.epfd)
	}
	if _, err := tc.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("the TCPConn after Wrap: Write = %v, want net.ErrClosed", err)
	}
	// The socket itself is open: both ways still work, with no FIN sent.
	if _, err := c.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	s.SetDeadline(time.Now().Add(10 * time.Second))
	b := make([]byte, 4)
	if _, err := io.ReadFull(s, b); err != nil || string(b) != "ping" {
		t.Fatalf("peer read %q, %v", b, err)
	}
	if _, err := s.Write([]byte("pong")); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadFull(c, b); err != nil || string(b) != "pong" {
		t.Fatalf("read %q, %v", b, err)
	}

	// Close closes the socket: the peer sees the end of the stream.
	c.Close()
	if n, err := s.Read(b); n != 0 || err != io.EOF {
		t.Fatalf("peer Read after Close = %d, %v; want 0, io.EOF", n, err)
	}
	if err := c.Close(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("second Close = %v, want net.ErrClosed", err)
	} else {
		checkOpError(t, c, err, "close")
	}
}

// SyscallConn's Read waits for the socket through the poller, and by
// the Conn's read deadline.
func TestRawReadWaitsThroughThePoller(t *testing.T) {
	c, s := pair(t, Wrap)
	rc, err := c.(*Conn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	read := func() (string, error) {
		var got []byte
		err := rc.Read(func(fd uintptr) bool {
			b := make([]byte, 16)
			n, _, errno := syscall.Recvfrom(int(fd), b, syscall.MSG_DONTWAIT)
			if errno == syscall.EAGAIN {
				return false
			}
			if n > 0 {
				got = b[:n]
			}
			return true
		})
		return string(got), err
	}
	done := make(chan string, 1)
	go func() {
		got, err := read()
		if err != nil {
			got = err.Error()
		}
		done <- got
	}()
	if _, err := s.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	select {
	case got := <-done:
		if got != "hello" {
			t.Fatalf("raw read = %q, want hello", got)
		}
	case <-time.After(10 * time.Second):
		c.Close()
		<-done
		t.Fatal("the raw read never saw the data")
	}

	c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	if _, err := read(); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("raw read past the deadline = %v, want os.ErrDeadlineExceeded", err)
	} else {
		checkOpError(t, c, err, "raw-read")
	}
	c.Close()
	if err := rc.Control(func(uintptr) { t.Error("Control ran f after Close") }); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Control after Close = %v, want net.ErrClosed", err)
	}
}

// The option methods fail after Close as net.TCPConn's do, naming both
// ends, and File's descriptor is a working duplicate before.
func TestOptionsAfterClose(t *testing.T) {
	forEachKind(t, func(t *testing.T, wrap func(net.Conn) net.Conn) {
		c, s := pair(t, wrap)
		opts := c.(interface {
			SetNoDelay(bool) error
			SetKeepAlive(bool) error
			SetLinger(int) error
			CloseWrite() error
			File() (*os.File, error)
		})
		f, err := opts.File()
		if err != nil {
			t.Fatal(err)
		}
		// Through the duplicate, a write reaches the peer (the file is
		// written with raw calls: Fd would make the socket blocking).
		frc, err := f.SyscallConn()
		if err != nil {
			t.Fatal(err)
		}
		var werr error
		frc.Control(func(fd uintptr) { _, werr = syscall.Write(int(fd), []byte("dup")) })
		f.Close()
		if werr != nil {
			t.Fatal(werr)
		}
		s.SetReadDeadline(time.Now().Add(10 * time.Second))
		b := make([]byte, 3)
		if _, err := io.ReadFull(s, b); err != nil || string(b) != "dup" {
			t.Fatalf("peer read %q, %v", b, err)
		}
		c.Close()
		for name, err := range map[string]error{
			"SetNoDelay":   opts.SetNoDelay(true),
			"SetKeepAlive": opts.SetKeepAlive(true),
			"SetLinger":    opts.SetLinger(0),
		} {
			if !errors.Is(err, net.ErrClosed) {
				t.Errorf("%s after Close = %v, want net.ErrClosed", name, err)
				continue
			}
			checkOpError(t, c, err, "set")
		}
		if err := opts.CloseWrite(); !errors.Is(err, net.ErrClosed) {
			t.Errorf("CloseWrite after Close = %v, want net.ErrClosed", err)
		} else {
			checkOpError(t, c, err, "close")
		}
		if _, err := opts.File(); !errors.Is(err, net.ErrClosed) {
			t.Errorf("File after Close = %v, want net.ErrClosed", err)
		} else {
			checkOpError(t, c, err, "file")
		}
	})
}

// SyscallConn's Read and Write call f at once, as net.TCPConn's do, and
// wait only when f asks for it: a socket that a Write has written to
// has no event to tell of room (the kernel tells of room only after it
// ran out), nor has one that a Read has emptied of data, and an f that
// checks the socket without waiting (a liveness check, say) would
// otherwise wait for the peer to send.
func TestRawIOTriesBeforeWaiting(t *testing.T) {
	forEachKind(t, func(t *testing.T, wrap func(net.Conn) net.Conn) {
		c, s := pair(t, wrap)
		rc, err := c.(syscall.Conn).SyscallConn()
		if err != nil {
			t.Fatal(err)
		}
		// A deadline, so that a raw call that waits fails instead of
		// hanging; none of them should wait.
		c.SetDeadline(time.Now().Add(2 * time.Second))
		s.SetDeadline(time.Now().Add(10 * time.Second))

		b := make([]byte, 16)
		if _, err := s.Write([]byte("y")); err != nil {
			t.Fatal(err)
		}
		if n, err := c.Read(b); n != 1 || err != nil {
			t.Fatalf("Read = %d, %v; want 1, nil", n, err)
		}
		calls := 0
		if err := rc.Read(func(uintptr) bool { calls++; return true }); err != nil || calls != 1 {
			t.Fatalf("raw read after a Read that emptied the socket = %v after %d calls of f, want nil after 1", err, calls)
		}

		// The event that brought "y" told of room too; the Write after
		// it finds room, and no event follows.
		if _, err := c.Write([]byte("x")); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(s, b[:1]); err != nil {
			t.Fatal(err)
		}
		calls = 0
		if err := rc.Write(func(uintptr) bool { calls++; return true }); err != nil || calls != 1 {
			t.Fatalf("raw write after a Write = %v after %d calls of f, want nil after 1", err, calls)
		}
	})
}

// File names the file as net.TCPConn's does, an address missing (net
// leaves one nil when getsockname or getpeername failed as the
// connection was made) named by nothing rather than a panic.
func TestFileWithoutAddresses(t *testing.T) {
	c, _ := pair(t, Wrap)
	sc := c.(*Conn)
	f, err := sc.File()
	if err != nil {
		t.Fatal(err)
	}
	want := "tcp:" + sc.LocalAddr().String() + "->" + sc.RemoteAddr().String()
	if f.Name() != want {
		t.Errorf("File().Name() = %q, want %q", f.Name(), want)
	}
	f.Close()

	sc.laddr, sc.raddr = nil, nil
	f, err = sc.File()
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if f.Name() != "tcp:->" {
		t.Errorf("File().Name() without addresses = %q, want %q", f.Name(), "tcp:->")
	}
}

// MultipathTCP answers as the TCPConn did: true over MPTCP, false over
// TCP, and false for an MPTCP dial that fell back to TCP (the listener
// does not speak MPTCP).
func TestMultipathTCPAnswersAsTheTCPConn(t *testing.T) {
	for _, tc := range []struct {
		name           string
		listen, dial   bool
		skipUnlessMPTC bool
	}{
		{"tcp", false, false, false},
		{"mptcp", true, true, true},
		{"fallback", false, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var lc net.ListenConfig
			lc.SetMultipathTCP(tc.listen)
			ln, err := lc.Listen(t.Context(), "tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			var d net.Dialer
			d.SetMultipathTCP(tc.dial)
			nc, err := d.DialContext(t.Context(), "tcp", ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			s, err := ln.Accept()
			if err != nil {
				nc.Close()
				t.Fatal(err)
			}
			defer s.Close()
			want, err := nc.(*net.TCPConn).MultipathTCP()
			if err != nil {
				t.Fatal(err)
			}
			if tc.skipUnlessMPTC && !want {
				nc.Close()
				t.Skip("MPTCP is not available on this kernel")
			}
			c := Wrap(nc).(*Conn)
			defer c.Close()
			got, err := c.MultipathTCP()
			if err != nil || got != want {
				t.Fatalf("MultipathTCP = %v, %v; the TCPConn said %v", got, err, want)
			}
			if tc.name == "fallback" && got {
				t.Fatal("an MPTCP dial to a TCP listener reports MPTCP")
			}
		})
	}
}
