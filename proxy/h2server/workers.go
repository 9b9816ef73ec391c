package h2server

import "time"

// Handler goroutines are reused within a connection. A new goroutine
// starts with a 2 KiB stack that a proxy's handler grows, by copying, to
// several times that: with a goroutine per stream, the creation and the
// growth were about 5 % of the proxy's CPU under h2c load (and 10 % of
// BenchmarkServerRawGET). So a goroutine whose handler has returned
// waits for the connection's next stream, its stack already grown; up to
// maxIdleWorkers wait per connection, the others end, and all end with
// the connection (ServeConn waits for them).
//
// What a handler leaves in its goroutine is seen by the handlers that
// run on it after: pprof labels set with pprof.SetGoroutineLabels (not
// those of pprof.Do, which restores them), a runtime.LockOSThread not
// undone. A handler that calls runtime.Goexit ends its goroutine only.

// A connection that has had no stream for workerTrim ends its waiting
// goroutines (trimWorkersLocked): each keeps a stack a handler grew, tens
// of KiB on a quiet connection that a client keeps open, when a burst
// that follows a quiet spell that long pays little for starting them
// again. The idle timer, reset whenever the last stream ends, fires for
// it, so the trim costs the streams nothing.
const workerTrim = 10 * time.Second

// trimDelay is the Server's workerTrim (tests set a shorter one).
func (s *Server) trimDelay() time.Duration {
	if s.workerTrim > 0 {
		return s.workerTrim
	}
	return workerTrim
}

// trimWorkersLocked ends the goroutines waiting for a stream: each takes
// a nil stream and returns. sc.mu is held and the connection is not
// dead, so work is still open (it is closed after the reader's end,
// which marks the connection dead first). A goroutine about to wait
// is not reached; it ends at the next trim or with the connection.
func (sc *serverConn) trimWorkersLocked() {
	if sc.dead {
		return
	}
	for n := sc.idleWorkers.Load(); n > 0; n-- {
		select {
		case sc.work <- nil:
		default:
			return
		}
	}
}

// maxIdleWorkers bounds the goroutines of a connection waiting for a
// stream. A connection never has more goroutines than it had streams in
// flight at once, so the bound matters only past that many: a client
// that keeps ten streams in flight finds ten goroutines waiting, even
// when the ten ended together. With a bound of 8 such a client made a
// new goroutine (and grew its stack) for one stream in seven under
// h2load -m10. The garbage collector shrinks the stacks of those that
// wait long.
const maxIdleWorkers = 64

// startHandler runs st's handler on a waiting goroutine of the
// connection, or on a new one. It is called without sc.mu, after st was
// registered (startStreamLocked), by the reader goroutine (or ServeConn's
// for an upgrade's stream 1).
func (sc *serverConn) startHandler(st *stream) {
	select {
	case sc.work <- st:
	default:
		sc.workers.Add(1)
		go sc.worker(st)
	}
}

// worker runs st's handler, then those of the streams it is handed.
func (sc *serverConn) worker(st *stream) {
	defer sc.workers.Done()
	for st != nil {
		sc.runHandler(st)
		st = sc.nextStream()
	}
}

// nextStream waits for a stream to serve, or returns nil: when enough
// goroutines wait already, or once the connection has ended.
func (sc *serverConn) nextStream() *stream {
	if sc.idleWorkers.Add(1) > maxIdleWorkers {
		sc.idleWorkers.Add(-1)
		return nil
	}
	// A plain receive, not a select on a second channel for the end: it
	// is cheaper, and every stream is sent before work is closed (nil
	// then).
	st := <-sc.work
	sc.idleWorkers.Add(-1)
	return st
}
