package main

import "syscall"

// defaultMaxConnections is the cap on each proxy listener's downstream
// connections where its max_connections is 0 (proxy.Options'
// DefaultMaxConnections), and the soft open-file limit it is derived
// from: a quarter of that limit, so that the outbound and inbound
// listeners' clients together hold at most half of the descriptors
// (Envoy's advice for the sum of its connection limits), and what needs
// the rest finds one: the upstream connections those clients' requests
// are forwarded on, the admin and app API listeners, the event log's
// files. The limit is read once the Go runtime has raised it to the hard
// limit (package os does at start). The cap is 0, none, where the limit
// cannot be read or is unlimited.
func defaultMaxConnections() (maxConns int, nofile uint64) {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 0, 0
	}
	// RLIM_INFINITY is all ones; anything near it is no limit either.
	if rl.Cur >= 1<<40 {
		return 0, rl.Cur
	}
	return int(max(rl.Cur/4, 1)), rl.Cur
}
