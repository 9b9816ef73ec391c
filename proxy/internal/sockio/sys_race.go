//go:build race

package sockio

import "syscall"

// Under the race detector the calls go through package syscall, which
// tells the detector that a write to a socket happens before the read
// that returns its bytes; raw calls would hide that ordering and report
// races that are not.

func errno(err error) syscall.Errno {
	if err == nil {
		return 0
	}
	return err.(syscall.Errno)
}

func sysRead(fd uintptr, p []byte) (int, syscall.Errno) {
	n, err := syscall.Read(int(fd), p)
	if n < 0 {
		n = 0
	}
	return n, errno(err)
}

func sysWrite(fd uintptr, p []byte) (int, syscall.Errno) {
	n, err := syscall.Write(int(fd), p)
	if n < 0 {
		n = 0
	}
	return n, errno(err)
}

func epollWait(epfd int, events []syscall.EpollEvent) (int, syscall.Errno) {
	n, err := syscall.EpollWait(epfd, events, 0)
	return n, errno(err)
}
