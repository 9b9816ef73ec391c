package sockio

import (
	"net"
	"os"
	"syscall"
	"time"
)

// The exported methods of *net.TCPConn that are not about reading and
// writing, made on Conn's socket as net.TCPConn makes them, with the
// same defaults and the same errors. The socket is Conn's alone, so they
// cannot be passed on to the TCPConn, which Wrap closed.

// LocalAddr: see net.TCPConn.
func (c *Conn) LocalAddr() net.Addr { return c.laddr }

// RemoteAddr: see net.TCPConn.
func (c *Conn) RemoteAddr() net.Addr { return c.raddr }

// control runs fn on the descriptor, unless Close has begun (the
// descriptor is then closed, or about to be).
func (c *Conn) control(fn func(fd int) error) error {
	if c.refs.Add(1) >= refClosing {
		c.refs.Add(-1)
		return net.ErrClosed
	}
	defer c.refs.Add(-1)
	return fn(int(c.fd))
}

// opErr shapes a failed option or control call as net.TCPConn's: a
// system call's errno named after the call.
func (c *Conn) opErr(op, call string, err error) error {
	if err == nil {
		return nil
	}
	return &net.OpError{Op: op, Net: "tcp", Source: c.laddr, Addr: c.raddr, Err: named(call, err)}
}

// named is err, an errno named after the system call that failed with
// it; any other error as it is.
func named(call string, err error) error {
	if errno, ok := err.(syscall.Errno); ok {
		return os.NewSyscallError(call, errno)
	}
	return err
}

func (c *Conn) setInt(level, name, v int) error {
	return c.opErr("set", "setsockopt", c.control(func(fd int) error {
		return syscall.SetsockoptInt(fd, level, name, v)
	}))
}

// CloseRead: see net.TCPConn.
func (c *Conn) CloseRead() error { return c.shutdown(syscall.SHUT_RD) }

// CloseWrite: see net.TCPConn.
func (c *Conn) CloseWrite() error { return c.shutdown(syscall.SHUT_WR) }

func (c *Conn) shutdown(how int) error {
	err := c.control(func(fd int) error { return syscall.Shutdown(fd, how) })
	if err == nil {
		return nil
	}
	return c.closeError(named("shutdown", err))
}

// File: see net.TCPConn. It returns a duplicate of the socket's
// descriptor. As with net.TCPConn's, changing the socket through it
// may or may not have the desired effect; in particular, making it
// blocking leaves Conn's reads and writes blocking the thread they run
// on, and a Close waiting for them. Unlike net.TCPConn's, the file's
// Fd leaves the socket non-blocking.
func (c *Conn) File() (*os.File, error) {
	nfd := -1
	err := c.control(func(fd int) error {
		var errno syscall.Errno
		if nfd, errno = dupCloexec(uintptr(fd)); errno != 0 {
			return os.NewSyscallError("fcntl", errno)
		}
		return nil
	})
	if err != nil {
		return nil, &net.OpError{Op: "file", Net: "tcp", Source: c.laddr, Addr: c.raddr, Err: err}
	}
	// Named as net names it; either address may be missing (a failed
	// getsockname when the connection was made).
	var ls, rs string
	if c.laddr != nil {
		ls = c.laddr.String()
	}
	if c.raddr != nil {
		rs = c.raddr.String()
	}
	return os.NewFile(uintptr(nfd), "tcp:"+ls+"->"+rs), nil
}

// SyscallConn: see net.TCPConn. Read and Write wait for the socket
// through sockio's poller, by the Conn's deadlines.
func (c *Conn) SyscallConn() (syscall.RawConn, error) { return rawConn{c}, nil }

// rawConn is a Conn's syscall.RawConn.
type rawConn struct{ c *Conn }

func (r rawConn) Control(f func(fd uintptr)) error {
	c := r.c
	err := c.control(func(fd int) error {
		f(uintptr(fd))
		return nil
	})
	if err != nil {
		// Shaped as net's: no source, the local address.
		return &net.OpError{Op: "raw-control", Net: "tcp", Addr: c.laddr, Err: err}
	}
	return nil
}

func (r rawConn) Read(f func(fd uintptr) bool) error {
	return r.c.rawIO(&r.c.r, "raw-read", f)
}

func (r rawConn) Write(f func(fd uintptr) bool) error {
	return r.c.rawIO(&r.c.w, "raw-write", f)
}

// rawIO calls f until it returns true, waiting for side s between calls,
// as internal/poll's RawRead and RawWrite do. The first call is made at
// once, whatever s.ready says: f need not be a read or a write that
// waits for readiness (a liveness check, say), and a socket that can be
// written has no event to wait for once a Write has written to it (the
// kernel tells of room only after it ran out).
func (c *Conn) rawIO(s *side, op string, f func(fd uintptr) bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := c.check(s); err != nil {
		return c.opErr(op, "", err)
	}
	for {
		s.ready.Store(false) // before f: an event during f is kept
		done := false
		if err := c.control(func(fd int) error { done = f(uintptr(fd)); return nil }); err != nil {
			return c.opErr(op, "", err)
		}
		if done {
			s.ready.Store(true) // f may have left more behind
			return nil
		}
		if err := c.wait(s); err != nil {
			return c.opErr(op, "", err)
		}
	}
}

// MultipathTCP: see net.TCPConn. A connection that did not use MPTCP
// when wrapped never will; one that did may fall back to TCP later,
// which the socket tells as net asks it (MPTCP_INFO refused).
func (c *Conn) MultipathTCP() (bool, error) {
	if !c.multipath {
		return false, nil
	}
	fellBack := false
	_ = c.control(func(fd int) error {
		_, err := syscall.GetsockoptInt(fd, solMPTCP, mptcpInfo)
		// EOPNOTSUPP over IPv4, ENOPROTOOPT over IPv6.
		fellBack = err == syscall.EOPNOTSUPP || err == syscall.ENOPROTOOPT
		return nil
	})
	return !fellBack, nil
}

// The socket option level and option of MPTCP_INFO (linux/mptcp.h).
const (
	solMPTCP  = 0x11c
	mptcpInfo = 0x1
)

// The keep-alive defaults of package net: 15 s idle, 15 s between
// probes, 9 probes.
const (
	keepAliveIdle     = 15 * time.Second
	keepAliveInterval = 15 * time.Second
	keepAliveCount    = 9
)

// SetKeepAlive: see net.TCPConn.
func (c *Conn) SetKeepAlive(keepalive bool) error {
	return c.setInt(syscall.SOL_SOCKET, syscall.SO_KEEPALIVE, boolint(keepalive))
}

// SetKeepAliveConfig: see net.TCPConn.
func (c *Conn) SetKeepAliveConfig(config net.KeepAliveConfig) error {
	if err := c.SetKeepAlive(config.Enable); err != nil {
		return err
	}
	if err := c.setSeconds(syscall.TCP_KEEPIDLE, config.Idle, keepAliveIdle); err != nil {
		return err
	}
	if err := c.setSeconds(syscall.TCP_KEEPINTVL, config.Interval, keepAliveInterval); err != nil {
		return err
	}
	n := config.Count
	if n == 0 {
		n = keepAliveCount
	} else if n < 0 {
		return nil
	}
	return c.setInt(syscall.IPPROTO_TCP, syscall.TCP_KEEPCNT, n)
}

// SetKeepAlivePeriod: see net.TCPConn.
func (c *Conn) SetKeepAlivePeriod(d time.Duration) error {
	return c.setSeconds(syscall.TCP_KEEPIDLE, d, keepAliveIdle)
}

// setSeconds sets a TCP keep-alive time: 0 means def, a negative d
// leaves it unchanged, and the kernel's whole seconds round up.
func (c *Conn) setSeconds(name int, d, def time.Duration) error {
	if d == 0 {
		d = def
	} else if d < 0 {
		return nil
	}
	return c.setInt(syscall.IPPROTO_TCP, name, int((d+time.Second-1)/time.Second))
}

// SetLinger: see net.TCPConn.
func (c *Conn) SetLinger(sec int) error {
	var l syscall.Linger
	if sec >= 0 {
		l.Onoff, l.Linger = 1, int32(sec)
	}
	return c.opErr("set", "setsockopt", c.control(func(fd int) error {
		return syscall.SetsockoptLinger(fd, syscall.SOL_SOCKET, syscall.SO_LINGER, &l)
	}))
}

// SetNoDelay: see net.TCPConn.
func (c *Conn) SetNoDelay(noDelay bool) error {
	return c.setInt(syscall.IPPROTO_TCP, syscall.TCP_NODELAY, boolint(noDelay))
}

// SetReadBuffer: see net.TCPConn.
func (c *Conn) SetReadBuffer(bytes int) error {
	return c.setInt(syscall.SOL_SOCKET, syscall.SO_RCVBUF, bytes)
}

// SetWriteBuffer: see net.TCPConn.
func (c *Conn) SetWriteBuffer(bytes int) error {
	return c.setInt(syscall.SOL_SOCKET, syscall.SO_SNDBUF, bytes)
}

func boolint(b bool) int {
	if b {
		return 1
	}
	return 0
}
