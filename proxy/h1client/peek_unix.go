//go:build linux || darwin

package h1client

import "syscall"

// peekAlive looks at an idle socket without blocking and without
// consuming anything (MSG_PEEK|MSG_DONTWAIT, through RawConn.Control,
// which takes no read lock and never waits in netpoll, so a sweep never
// stalls behind a connection a request took meanwhile): nothing to read
// means alive; end of stream or an error means the peer closed or reset
// it. Bytes waiting on a plain connection are unsolicited, so it is not
// reusable; under TLS they may be a post-handshake message the TLS
// layer consumes, so the connection is given the benefit of the doubt
// here (a connection's taker reads them through TLS to tell: see
// conn.alive), unless the peer has also ended its side: a TLS server
// closing a connection sends close_notify first (Go's and nginx's do),
// so its close leaves bytes waiting, and only the end of the stream
// behind them tells it (see peerClosed).
func peekAlive(rc syscall.RawConn, underTLS bool) bool {
	st := peekQuiet
	err := rc.Control(func(fd uintptr) { st = peekFD(fd) })
	return err == nil && (st == peekQuiet || st == peekPending && underTLS)
}

// peekFD is peekAlive's look at the socket fd.
func peekFD(fd uintptr) peekState {
	var b [1]byte
	n, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
	switch {
	case err == syscall.EAGAIN || err == syscall.EWOULDBLOCK:
		return peekQuiet
	case err != nil, n == 0, peerClosed(fd):
		return peekClosed
	}
	return peekPending
}
