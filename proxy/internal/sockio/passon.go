package sockio

import (
	"net"
	"os"
	"syscall"
	"time"
)

// The exported methods of *net.TCPConn that Conn does not make its own,
// passed on to the TCPConn.

// LocalAddr: see net.TCPConn.
func (c *Conn) LocalAddr() net.Addr { return c.tcp.LocalAddr() }

// RemoteAddr: see net.TCPConn.
func (c *Conn) RemoteAddr() net.Addr { return c.tcp.RemoteAddr() }

// CloseRead: see net.TCPConn.
func (c *Conn) CloseRead() error { return c.tcp.CloseRead() }

// CloseWrite: see net.TCPConn.
func (c *Conn) CloseWrite() error { return c.tcp.CloseWrite() }

// File: see net.TCPConn.
func (c *Conn) File() (*os.File, error) { return c.tcp.File() }

// SyscallConn: see net.TCPConn. The RawConn is the TCPConn's behind an
// interface that shows only Control, Read and Write: os.File looks for
// more (the TCPConn's internal/poll descriptor) to sendfile to the
// socket, which would bypass Write's deadline and lock.
func (c *Conn) SyscallConn() (syscall.RawConn, error) {
	rc, err := c.tcp.SyscallConn()
	if err != nil {
		return nil, err
	}
	return rawConn{rc}, nil
}

// rawConn is a syscall.RawConn and nothing more.
type rawConn struct{ syscall.RawConn }

// MultipathTCP: see net.TCPConn.
func (c *Conn) MultipathTCP() (bool, error) { return c.tcp.MultipathTCP() }

// SetKeepAlive: see net.TCPConn.
func (c *Conn) SetKeepAlive(keepalive bool) error { return c.tcp.SetKeepAlive(keepalive) }

// SetKeepAliveConfig: see net.TCPConn.
func (c *Conn) SetKeepAliveConfig(config net.KeepAliveConfig) error {
	return c.tcp.SetKeepAliveConfig(config)
}

// SetKeepAlivePeriod: see net.TCPConn.
func (c *Conn) SetKeepAlivePeriod(d time.Duration) error { return c.tcp.SetKeepAlivePeriod(d) }

// SetLinger: see net.TCPConn.
func (c *Conn) SetLinger(sec int) error { return c.tcp.SetLinger(sec) }

// SetNoDelay: see net.TCPConn.
func (c *Conn) SetNoDelay(noDelay bool) error { return c.tcp.SetNoDelay(noDelay) }

// SetReadBuffer: see net.TCPConn.
func (c *Conn) SetReadBuffer(bytes int) error { return c.tcp.SetReadBuffer(bytes) }

// SetWriteBuffer: see net.TCPConn.
func (c *Conn) SetWriteBuffer(bytes int) error { return c.tcp.SetWriteBuffer(bytes) }
