package h2server

import (
	"fmt"
	"os"
	"time"

	"golang.org/x/net/http2"
)

// A handler sets its stream's deadlines with http.ResponseController,
// from any goroutine while it runs. Each is a time, and a timer made on
// the first deadline set in the future: a stream that sets none has no
// timer, and nothing of them but a nil pointer (stream.dl). Once a
// deadline passes, its operations fail, with errors wrapping
// os.ErrDeadlineExceeded, until the deadline is moved later or cleared,
// as with net.Conn:
//
//   - the read deadline fails request body Reads; the stream goes on
//     (its unread body is reset NO_ERROR after the response);
//   - the write deadline fails Write, Flush and the end of the response
//     (finish) that would send, and wakes a handler waiting for send
//     window or for room under maxPending; the stream is then reset
//     INTERNAL_ERROR, as x/net/http2's server and nghttpx reset a stream
//     whose write timed out: the client learns that the response is
//     cut short, not complete (NO_ERROR after a partial body could be
//     taken for the server's whole answer), and the stream's window and
//     concurrency slot are released while the connection's other streams
//     go on.

// deadlines are a stream's handler deadlines, guarded by sc.mu.
type deadlines struct {
	read, write deadline
}

// deadline is one deadline: at (zero: none), the timer that marks it
// expired, made on the first deadline in the future, and expired, which
// fails the deadline's operations until at changes.
type deadline struct {
	at      time.Time
	timer   *time.Timer
	expired bool
}

// set moves d to t: a time in the future arms the timer, which calls
// fire; one passed marks d expired at once; zero clears it.
func (d *deadline) set(t time.Time, fire func()) {
	d.at, d.expired = t, false
	var wait time.Duration
	if !t.IsZero() {
		wait = time.Until(t)
	}
	switch {
	case wait > 0 && d.timer == nil:
		d.timer = time.AfterFunc(wait, fire)
	case wait > 0:
		d.timer.Reset(wait)
	default:
		d.stop()
		d.expired = !t.IsZero()
	}
}

// passed says whether d's time has come: a timer's stale firing (the
// deadline moved later or cleared meanwhile) finds it has not.
func (d *deadline) passed() bool { return !d.at.IsZero() && !time.Now().Before(d.at) }

func (d *deadline) stop() {
	if d.timer != nil {
		d.timer.Stop()
	}
}

var (
	// errReadDeadline fails a request body Read past the read deadline.
	errReadDeadline = fmt.Errorf("h2server: request body read: %w", os.ErrDeadlineExceeded)
	// errWriteDeadline fails a response write past the write deadline.
	errWriteDeadline = fmt.Errorf("h2server: response write: %w", os.ErrDeadlineExceeded)
)

// deadlinesLocked returns st's deadlines, made if need be.
func (st *stream) deadlinesLocked() *deadlines {
	d := st.dl.Load()
	if d == nil {
		d = new(deadlines)
		st.dl.Store(d)
	}
	return d
}

// setDeadline sets st's read or write deadline to t (see
// responseWriter.SetReadDeadline and SetWriteDeadline).
func (st *stream) setDeadline(t time.Time, write bool) error {
	sc := st.sc
	sc.mu.Lock()
	defer sc.mu.Unlock()
	if st.ended {
		return errHandlerDone
	}
	if t.IsZero() && st.dl.Load() == nil {
		return nil // none to clear
	}
	d := st.deadlinesLocked()
	if write {
		d.write.set(t, st.writeDeadlineFired)
	} else {
		d.read.set(t, st.readDeadlineFired)
	}
	st.deadlineExpiredLocked(d)
	return nil
}

// readDeadlineFired and writeDeadlineFired run on the deadlines' timers'
// goroutines.
func (st *stream) readDeadlineFired()  { st.deadlineFired(false) }
func (st *stream) writeDeadlineFired() { st.deadlineFired(true) }

func (st *stream) deadlineFired(write bool) {
	sc := st.sc
	sc.mu.Lock()
	defer sc.mu.Unlock()
	d := st.dl.Load()
	if st.ended {
		return
	}
	if write && d.write.passed() {
		d.write.expired = true
	} else if !write && d.read.passed() {
		d.read.expired = true
	} else {
		return
	}
	st.deadlineExpiredLocked(d)
}

// deadlineExpiredLocked wakes the handler if it waits in an operation
// whose deadline has expired: a body Read, or a wait to send.
func (st *stream) deadlineExpiredLocked(d *deadlines) {
	if d.read.expired {
		st.readCond.Broadcast()
	}
	if d.write.expired {
		st.sc.wakeSenderLocked(st)
	}
}

func (st *stream) readExpiredLocked() bool {
	d := st.dl.Load()
	return d != nil && d.read.expired
}

func (st *stream) writeExpiredLocked() bool {
	d := st.dl.Load()
	return d != nil && d.write.expired
}

// stopDeadlinesLocked stops the timers once the handler has returned.
func (st *stream) stopDeadlinesLocked() {
	if d := st.dl.Load(); d != nil {
		d.read.stop()
		d.write.stop()
	}
}

// sendBlockedLocked says why st's handler may not send now: its write
// deadline passed, which resets the stream (INTERNAL_ERROR, see above),
// or the stream or the connection is gone. Nil: it may.
func (sc *serverConn) sendBlockedLocked(st *stream) error {
	if st.writeExpiredLocked() {
		sc.resetLocked(st, http2.ErrCodeInternal)
		return errWriteDeadline
	}
	if st.reset || sc.dead {
		return errStreamGone
	}
	return nil
}
