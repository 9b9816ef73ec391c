package h1client

import (
	"syscall"
	"unsafe"
)

// pollFd is struct pollfd.
type pollFd struct {
	fd      int32
	events  int16
	revents int16
}

// pollRDHUP is POLLRDHUP: the peer shut down its sending side.
const pollRDHUP = 0x2000

// peerClosed reports whether the peer of socket fd has ended its
// sending side, whatever is still unread: a ppoll for POLLRDHUP that
// does not wait.
func peerClosed(fd uintptr) bool {
	p := pollFd{fd: int32(fd), events: pollRDHUP}
	var ts syscall.Timespec // zero: do not wait
	n, _, e := syscall.Syscall6(syscall.SYS_PPOLL, uintptr(unsafe.Pointer(&p)), 1, uintptr(unsafe.Pointer(&ts)), 0, 0, 0)
	return e == 0 && n == 1 && p.revents&(pollRDHUP|syscall.EPOLLHUP|syscall.EPOLLERR) != 0
}
