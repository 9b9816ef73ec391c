//go:build linux || darwin

package h1client

import "syscall"

// peekAlive looks at an idle socket without blocking and without
// consuming anything (MSG_PEEK|MSG_DONTWAIT through the runtime's
// RawConn, so no netpoll wait): nothing to read means alive; end of
// stream or an error means the peer closed or reset it. Bytes waiting on
// a plain connection are unsolicited, so it is not reusable; under TLS
// they may be a post-handshake message the TLS layer consumes, so the
// connection is given the benefit of the doubt.
func peekAlive(rc syscall.RawConn, underTLS bool) bool {
	alive := true
	err := rc.Read(func(fd uintptr) bool {
		var b [1]byte
		n, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		switch {
		case err == syscall.EAGAIN || err == syscall.EWOULDBLOCK:
			alive = true
		case err != nil, n == 0:
			alive = false
		default:
			alive = underTLS
		}
		return true // never wait for readiness
	})
	return err == nil && alive
}
