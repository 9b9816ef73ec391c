//go:build !(linux || darwin)

package h1client

import "syscall"

// peekAlive has no cheap non-blocking peek here: an idle connection is
// assumed alive, and a stale one is caught by the retry of RoundTrip.
func peekAlive(syscall.RawConn, bool) bool { return true }

func peekFD(uintptr) peekState { return peekQuiet }
