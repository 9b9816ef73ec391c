//go:build linux

package segment

import (
	"os"
	"syscall"
)

// syncData makes f's data and the metadata needed to read it back (its size)
// durable. fdatasync(2) skips the timestamp-only inode updates that fsync
// also writes; it is what the group commit and rolls use. The call goes
// through SyscallConn so that the descriptor stays referenced (and cannot
// be closed and reused) while it runs.
func syncData(f *os.File) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		for {
			serr = syscall.Fdatasync(int(fd))
			if serr != syscall.EINTR {
				return
			}
		}
	}); err != nil {
		return err
	}
	if serr != nil {
		return &os.PathError{Op: "fdatasync", Path: f.Name(), Err: serr}
	}
	return nil
}
