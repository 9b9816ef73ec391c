package proxytest

import (
	"net"
	"sync"
)

// StallingClose stands for connections whose Close stalls, as a TLS
// connection's does while its close_notify waits for room in a send
// buffer its client stopped reading (up to crypto/tls's five seconds):
// the Close of each connection Wrap returns sends on Closing, then waits
// until Release; its later calls close at once.
type StallingClose struct {
	Closing chan struct{}
	release chan struct{}
	once    sync.Once
}

// NewStallingClose returns a StallingClose whose Closing holds n sends.
func NewStallingClose(n int) *StallingClose {
	return &StallingClose{Closing: make(chan struct{}, n), release: make(chan struct{})}
}

// Release lets every stalled Close, and those to come, go on. It may be
// called more than once.
func (s *StallingClose) Release() { s.once.Do(func() { close(s.release) }) }

// Wrap returns c with a Close that stalls.
func (s *StallingClose) Wrap(c net.Conn) net.Conn { return &stallingConn{Conn: c, s: s} }

type stallingConn struct {
	net.Conn
	s    *StallingClose
	once sync.Once
}

func (c *stallingConn) Close() error {
	c.once.Do(func() {
		c.s.Closing <- struct{}{}
		<-c.s.release
	})
	return c.Conn.Close()
}
