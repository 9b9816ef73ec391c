package proxytest

import (
	"net"
	"sync"
)

// PipeListener hands a server the server ends of net.Pipe connections,
// which buffer nothing: a write waits for the client to read it, as one
// to a client whose socket buffers are full (it pipelined requests and
// read none of the answers). Its address is 127.0.0.1, port 0.
type PipeListener struct {
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

// NewPipeListener returns a PipeListener with no connection yet.
func NewPipeListener() *PipeListener {
	return &PipeListener{conns: make(chan net.Conn), done: make(chan struct{})}
}

// Dial makes a pipe, waits until Accept takes its server end, and returns
// its client end.
func (l *PipeListener) Dial() net.Conn {
	client, server := net.Pipe()
	l.conns <- server
	return client
}

// Accept returns the server end of the next Dial's pipe, or net.ErrClosed
// once the listener is closed.
func (l *PipeListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

// Close ends Accept; the pipes already handed out stay open.
func (l *PipeListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

// Addr is 127.0.0.1, port 0.
func (l *PipeListener) Addr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)} }
