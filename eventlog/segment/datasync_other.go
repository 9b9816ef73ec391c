//go:build !linux

package segment

import "os"

// syncData makes f's contents durable (fsync; fdatasync is Linux-only here).
func syncData(f *os.File) error { return f.Sync() }
