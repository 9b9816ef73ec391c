package sockio

import (
	"io"
	"math"
	"net"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// maxRW bounds one read or write, as internal/poll does.
const maxRW = 1 << 30

// Conn is a TCP connection taken over from a *net.TCPConn: its socket is
// sockio's alone, with Read, Write and deadlines of its own. Every other
// exported method of *net.TCPConn (CloseWrite, SyscallConn, SetNoDelay,
// ...) is Conn's too, made on the same socket (see passon.go).
type Conn struct {
	// fd is the socket: a duplicate of the TCPConn's descriptor, which
	// Wrap then closes, so that the socket leaves Go's network poller.
	// A socket that stayed there as well would make every event twice,
	// once in sockio's epoll instance and once in Go's, whose poll would
	// then hand the runtime events nobody waits for. Nothing but Close
	// closes fd (see refs).
	fd           uintptr
	laddr, raddr net.Addr
	multipath    bool // the TCPConn's MultipathTCP
	pl           *poller
	slot         int32
	gen          uint32
	closed       atomic.Bool
	// refs counts the system calls under way on fd, plus refClosing
	// once Close has begun. Close waits for the count to fall back to
	// refClosing before it closes the descriptor, and a call that finds
	// refClosing set makes no system call: fd is never used after it
	// was closed, when its number may already name another file.
	// RawConn.Control keeps that promise too, at the cost of a lock,
	// a deferred unlock and two indirect calls on every system call.
	refs atomic.Int32

	r, w side
}

// side is the state of one direction: whether the socket may be ready,
// the deadline, and how a waiter is woken.
type side struct {
	mu    sync.Mutex // one Read (one Write) at a time
	ready atomic.Bool
	// hup is sticky: the peer closed its side, or the socket failed. A
	// read that returned less than asked may have left an end of stream
	// or an error behind it, of which no new event will tell.
	hup  atomic.Bool
	wake chan struct{} // capacity 1: a pending wake-up is never lost
	// waiting is set while a Read or Write may block on wake. Whoever
	// changes what a waiter looks at (ready, hup, the deadline, the
	// timer) stores that first and then sends only if waiting is set
	// (notify); the waiter sets waiting and then looks again before it
	// blocks. One of the two always sees the other's store, so no
	// wake-up is lost, and the usual case (nobody waiting: an event or a
	// new deadline while the connection is busy) costs a load instead of
	// a channel send.
	waiting  atomic.Bool
	deadline atomic.Int64               // monotonic nanoseconds (see mono); 0: none
	timer    atomic.Pointer[time.Timer] // wakes a waiter at its deadline; set under mu
	timerAt  atomic.Int64               // when timer fires (mono); 0: not armed

	// The system call of the side: sysRead or sysWrite.
	sys func(fd uintptr, p []byte) (int, syscall.Errno)
}

// init readies a side whose system call is sys. Nothing is known of the
// socket yet, so it counts as ready: it is tried before any wait.
func (s *side) init(sys func(uintptr, []byte) (int, syscall.Errno)) {
	s.wake = make(chan struct{}, 1)
	s.ready.Store(true)
	s.sys = sys
}

// refClosing is added to Conn.refs by Close. It dwarfs any count of
// calls under way (two sides, one call each, plus a moment's count
// from calls that back out).
const refClosing = 1 << 30

// do makes side s's system call on b, retried on EINTR, unless Close
// has begun: then it reports net.ErrClosed and makes no call.
func (c *Conn) do(s *side, b []byte) (int, syscall.Errno, error) {
	if c.refs.Add(1) >= refClosing {
		c.refs.Add(-1)
		return 0, 0, net.ErrClosed
	}
	for {
		n, errno := s.sys(c.fd, b)
		if errno != syscall.EINTR {
			c.refs.Add(-1)
			return n, errno, nil
		}
	}
}

func (s *side) signal() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// notify wakes the side's waiter, if there is one, after a change of
// what it waits for has been stored (see waiting).
func (s *side) notify() {
	if s.waiting.Load() {
		s.signal()
	}
}

// Wrap returns c as a *Conn when it is a *net.TCPConn the poller can
// watch, and c unchanged otherwise. A *Conn returned has closed c: its
// socket lives on in the *Conn.
func Wrap(c net.Conn) net.Conn {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return c
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return c
	}
	fd, errno := -1, syscall.Errno(0)
	if err := rc.Control(func(s uintptr) { fd, errno = dupCloexec(s) }); err != nil || errno != 0 {
		return c
	}
	mp, _ := tc.MultipathTCP()
	sc := &Conn{fd: uintptr(fd), laddr: tc.LocalAddr(), raddr: tc.RemoteAddr(), multipath: mp}
	sc.r.init(sysRead)
	sc.w.init(sysWrite)
	if err := register(sc); err != nil {
		syscall.Close(fd)
		return c
	}
	// The TCPConn's descriptor goes, and with it the socket's place in
	// Go's poller (the close takes it out of the poller's epoll instance
	// first). The socket stays open through fd: no FIN, no linger.
	tc.Close()
	return sc
}

// dupCloexec duplicates fd, close-on-exec as every descriptor Go opens;
// -1 and the errno on failure. The duplicate shares the socket's flags:
// it is non-blocking too.
func dupCloexec(fd uintptr) (int, syscall.Errno) {
	for {
		nfd, _, errno := syscall.Syscall(syscall.SYS_FCNTL, fd, syscall.F_DUPFD_CLOEXEC, 0)
		if errno == syscall.EINTR {
			continue
		}
		if errno != 0 {
			return -1, errno
		}
		return int(nfd), 0
	}
}

// Read reads as net.TCPConn.Read does: io.EOF at the end of the stream,
// and a *net.OpError for anything else. It makes the read system call
// only when the socket may hold data: after a read that filled p, or
// once the poller reported it readable.
func (c *Conn) Read(p []byte) (int, error) {
	if len(p) > maxRW {
		p = p[:maxRW]
	}
	s := &c.r
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(p) == 0 {
		// As net.TCPConn: only a closed connection fails an empty read.
		if c.closed.Load() {
			return 0, c.opError("read", net.ErrClosed)
		}
		return 0, nil
	}
	for {
		if err := c.wait(s); err != nil {
			return 0, c.opError("read", err)
		}
		s.ready.Store(false)
		n, errno, err := c.do(s, p)
		switch {
		case err != nil:
			return 0, c.opError("read", err)
		case errno == syscall.EAGAIN:
			// hup is never cleared here: the poller may have set it
			// between this read and now, for an end of stream that
			// brings no further event. (A TCP socket with hup set
			// returns the end or an error, not EAGAIN, so this does not
			// spin.)
			continue
		case errno != 0:
			s.ready.Store(true) // the error stays; the next read sees it
			return 0, c.opError("read", os.NewSyscallError("read", errno))
		case n == 0:
			s.ready.Store(true)
			return 0, io.EOF
		}
		if n == len(p) {
			s.ready.Store(true) // there may be more
		}
		return n, nil
	}
}

// InputPending reports whether input may have come since the last Read
// left the socket empty: bytes or an end of stream (or an error) that
// the poller has seen an event for since, or a last Read that filled
// its buffer, after which there may be more. False means no input has
// come that the poller has seen: a pool can take an idle connection
// without looking at its socket for bytes the server sent unasked. Two
// atomic loads.
func (c *Conn) InputPending() bool { return c.r.ready.Load() || c.r.hup.Load() }

// Write writes all of p, waiting for room as needed, as
// net.TCPConn.Write does.
func (c *Conn) Write(p []byte) (int, error) {
	s := &c.w
	s.mu.Lock()
	defer s.mu.Unlock()
	// As net.TCPConn: a closed connection or a passed deadline fails
	// the write before any byte is sent, even an empty one.
	if err := c.check(s); err != nil {
		return 0, c.opError("write", err)
	}
	// Even an empty Write makes the call, as net.TCPConn's does: it
	// reports a connection that can no longer be written.
	nn := 0
	for {
		b := p[nn:]
		if len(b) > maxRW {
			b = b[:maxRW]
		}
		// Cleared before the attempt: a wake-up that comes after a
		// failed attempt is then never lost.
		s.ready.Store(false)
		n, errno, err := c.do(s, b)
		nn += n
		switch {
		case err != nil:
			return nn, c.opError("write", err)
		case nn == len(p) && errno == 0:
			return nn, nil
		case errno == syscall.EAGAIN:
			if err := c.wait(s); err != nil {
				return nn, c.opError("write", err)
			}
		case errno != 0:
			return nn, c.opError("write", os.NewSyscallError("write", errno))
		case n == 0:
			return nn, c.opError("write", io.ErrUnexpectedEOF)
		}
	}
}

// check reports why an operation on side s cannot start: the connection
// is closed or the deadline has passed.
func (c *Conn) check(s *side) error {
	if c.closed.Load() {
		return net.ErrClosed
	}
	if dl := s.deadline.Load(); dl != 0 && dl <= mono() {
		return os.ErrDeadlineExceeded
	}
	return nil
}

// wait returns once side s may be ready, or why it cannot be waited on.
func (c *Conn) wait(s *side) error {
	for {
		if err := c.check(s); err != nil {
			if c.closed.Load() {
				s.disarm()
			}
			return err
		}
		if s.ready.Load() || s.hup.Load() {
			return nil
		}
		dl := s.deadline.Load()
		if dl != 0 {
			s.arm(dl)
		}
		// Waiting, then a second look at everything a notify follows:
		// a change stored before the flag is seen here, one stored after
		// it sees the flag and sends. A timer that fired meanwhile (for
		// this deadline or an earlier one, see arm) is re-armed.
		s.waiting.Store(true)
		if s.ready.Load() || s.hup.Load() || c.closed.Load() ||
			s.deadline.Load() != dl || dl != 0 && s.timerAt.Load() == 0 {
			s.waiting.Store(false)
			continue
		}
		<-s.wake
		s.waiting.Store(false)
	}
}

// arm makes sure the timer fires by dl. A timer armed for an earlier
// time is left as it is: when it fires, the waiter finds its deadline
// still ahead and arms it again. A new deadline per request, later than
// the last, so costs no timer change per wait, and a wait that ends
// before the timer leaves it armed.
func (s *side) arm(dl int64) {
	if at := s.timerAt.Load(); at != 0 && at <= dl {
		return
	}
	s.timerAt.Store(dl)
	// A deadline that has passed fires the timer at once. dl - mono()
	// is not computed for it: a deadline centuries ago (time.Until
	// saturates, see monoAt), stored between a waiter's check and this
	// call, would wrap round to a timer centuries away, and the waiter,
	// not yet waiting when the deadline was set, would get no wake-up.
	var d time.Duration
	if now := mono(); dl > now {
		d = time.Duration(dl - now)
	}
	if t := s.timer.Load(); t != nil {
		t.Reset(d)
	} else {
		s.timer.Store(time.AfterFunc(d, s.fire))
	}
}

// disarm stops the timer, so that a closed connection is not kept
// reachable by it until its deadline.
func (s *side) disarm() {
	if t := s.timer.Load(); t != nil {
		t.Stop()
	}
}

// fire runs on the timer's goroutine: the timer is no longer armed, and
// a waiter (if any) looks at its deadline again.
func (s *side) fire() {
	s.timerAt.Store(0)
	s.notify()
}

// SetDeadline sets both deadlines; see net.Conn.
func (c *Conn) SetDeadline(t time.Time) error {
	if err := c.SetReadDeadline(t); err != nil {
		return err
	}
	return c.SetWriteDeadline(t)
}

// SetReadDeadline sets the read deadline; see net.Conn. A Read waiting
// meanwhile goes by the new one.
func (c *Conn) SetReadDeadline(t time.Time) error { return c.setDeadline(&c.r, t) }

// SetWriteDeadline sets the write deadline; see net.Conn.
func (c *Conn) SetWriteDeadline(t time.Time) error { return c.setDeadline(&c.w, t) }

func (c *Conn) setDeadline(s *side, t time.Time) error {
	if c.closed.Load() {
		// Shaped as net.TCPConn's: no source, the local address.
		return &net.OpError{Op: "set", Net: "tcp", Addr: c.LocalAddr(), Err: net.ErrClosed}
	}
	var dl int64
	if !t.IsZero() {
		dl = monoAt(t)
	}
	s.deadline.Store(dl)
	s.notify()
	return nil
}

// Close closes the connection; a Read or Write waiting returns
// net.ErrClosed. A second Close fails as net.TCPConn's does.
func (c *Conn) Close() error {
	if !c.closed.CompareAndSwap(false, true) {
		// Another Close has begun, and may still wait for a call under
		// way before it closes the descriptor: this one returns after
		// that call too.
		c.awaitCalls()
		return c.closeError(net.ErrClosed)
	}
	c.r.signal()
	c.w.signal()
	c.r.disarm()
	c.w.disarm()
	c.pl.remove(c)
	c.refs.Add(refClosing) // no call starts from here on
	c.awaitCalls()
	if err := syscall.Close(int(c.fd)); err != nil {
		return c.closeError(os.NewSyscallError("close", err))
	}
	return nil
}

// closeError shapes a failed Close, CloseRead or CloseWrite as
// net.TCPConn's.
func (c *Conn) closeError(err error) error {
	return &net.OpError{Op: "close", Net: "tcp", Source: c.laddr, Addr: c.raddr, Err: err}
}

// awaitCalls returns once refClosing is set and no call is under way.
// The calls are non-blocking system calls, over in microseconds; the
// loop yields to them (one may be on this thread's own run queue,
// preempted before its call).
func (c *Conn) awaitCalls() {
	for c.refs.Load() != refClosing {
		runtime.Gosched()
	}
}

// ReadFrom and WriteTo hide the TCPConn's, which would bypass these
// deadlines; io.Copy then goes through Read and Write.
func (c *Conn) ReadFrom(r io.Reader) (int64, error) {
	return io.Copy(writerOnly{c}, r)
}

// WriteTo: see ReadFrom.
func (c *Conn) WriteTo(w io.Writer) (int64, error) {
	return io.Copy(w, readerOnly{c})
}

type writerOnly struct{ io.Writer }
type readerOnly struct{ io.Reader }

// opError shapes err as net.TCPConn's own errors are shaped.
func (c *Conn) opError(op string, err error) error {
	network := "tcp"
	if oe, ok := err.(*net.OpError); ok {
		// The raw-control error of a descriptor closed under the call:
		// its Source and Addr are not a read's or a write's.
		network, err = oe.Net, oe.Err
	}
	return &net.OpError{Op: op, Net: network, Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: err}
}

// monoBase anchors mono: a monotonic clock in nanoseconds, so that a
// deadline fits an atomic.Int64 and is immune to wall-clock steps.
var monoBase = time.Now()

func mono() int64 { return int64(time.Since(monoBase)) }

// monoAt is t on the mono clock, never 0 (0 means no deadline). A t
// beyond the clock's range is math.MaxInt64, never reached.
func monoAt(t time.Time) int64 {
	if t != t.Round(0) {
		// t has a monotonic reading (it came from time.Now): it is
		// placed on the clock without reading the clock. Round(0)
		// strips that reading, so only such a t differs from it.
		v := int64(t.Sub(monoBase)) // saturates, as time.Until does
		if v == 0 {
			v = -1
		}
		return v
	}
	// A wall-clock time (no monotonic reading) is placed by its distance
	// from now, so that a step of the wall clock since monoBase does not
	// move it.
	now := mono()
	d := int64(time.Until(t))
	v := now + d
	if d > 0 && v < now {
		v = math.MaxInt64
	}
	if v == 0 {
		v = -1
	}
	return v
}
