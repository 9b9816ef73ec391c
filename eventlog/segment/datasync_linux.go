//go:build linux

package segment

import (
	"os"
	"syscall"
)

// syncData makes f's data and the metadata needed to read it back (its size)
// durable. fdatasync(2) skips the timestamp-only inode updates that fsync
// also writes; it is what the group commit and rolls use.
func syncData(f *os.File) error {
	for {
		err := syscall.Fdatasync(int(f.Fd()))
		if err != syscall.EINTR {
			if err != nil {
				return &os.PathError{Op: "fdatasync", Path: f.Name(), Err: err}
			}
			return nil
		}
	}
}
