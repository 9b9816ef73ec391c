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
// timer, and nothing of them but a nil pointer (stream.dl). The write
// deadline's timer is made and armed only when the handler waits to
// send (for window, or for room under maxPending): a proxy sets one on
// every response, and most are sent without waiting, so until then a
// send compares the deadline with the clock instead. Once a
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
// expired, made when it is first armed, armed while it runs for at, and
// expired, which fails the deadline's operations until at changes.
type deadline struct {
	at      time.Time
	timer   *time.Timer
	armed   bool
	expired bool
}

// set moves d to t and arms the timer for a time in the future, which
// calls fire; one passed marks d expired at once; zero clears it.
func (d *deadline) set(t time.Time, fire func()) {
	d.move(t)
	d.arm(fire)
}

// move moves d to t without arming the timer (see arm): one passed
// marks d expired at once; zero clears it.
func (d *deadline) move(t time.Time) {
	d.at, d.expired, d.armed = t, false, false
	d.stop()
	d.expired = d.passed()
}

// arm starts the timer for a deadline in the future that it does not
// run for yet; one that has passed meanwhile is marked expired instead.
func (d *deadline) arm(fire func()) {
	if d.at.IsZero() || d.expired || d.armed {
		return
	}
	wait := time.Until(d.at)
	switch {
	case wait <= 0:
		d.expired = true
	case d.timer == nil:
		d.timer = time.AfterFunc(wait, fire)
		d.armed = true
	default:
		d.timer.Reset(wait)
		d.armed = true
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
		st.rw.endBound = false
		d.write.move(t)
		if st.sendWaiting != notWaiting {
			d.write.arm(st.writeDeadlineFired)
		}
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

// writeExpiredLocked says whether the write deadline has passed: the
// timer says so while it is armed, the clock otherwise.
func (st *stream) writeExpiredLocked() bool {
	d := st.dl.Load()
	if d == nil {
		return false
	}
	if !d.write.expired && !d.write.armed && d.write.passed() {
		d.write.expired = true
	}
	return d.write.expired
}

// armWriteLocked arms the write deadline's timer, if one is set, before
// the handler waits to send, so that the deadline wakes it. It reports
// whether the deadline has passed already: the handler must not wait.
func (st *stream) armWriteLocked() (expired bool) {
	d := st.dl.Load()
	if d == nil {
		return false
	}
	d.write.arm(st.writeDeadlineFired)
	return d.write.expired
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
