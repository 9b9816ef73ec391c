package h2client

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/outrigger-mesh/outrigger/proxy/internal/roundtrip"
)

// hostPool is one host's connections. Its fields are guarded by the
// Transport's mu.
type hostPool struct {
	addr  string
	conns []*conn
	// dialing is the dial in flight, if any: requests that find every
	// connection full wait for it rather than dial one each.
	dialing *dialCall
	// draining: Retain let the host go, so each of its connections
	// closes when its last stream ends.
	draining bool
	// freed wakes the requests waiting at DialOverflow's cap for a
	// stream slot on one of the host's connections (a new one
	// included), or for one of them to close.
	freed slotSignal
	// closes counts the sockets of the host's connections closed, whose
	// places under DialOverflow's cap are free (see socketClosed), and
	// the calls of RetryOverflowed, which may have made room under it.
	closes uint64
}

// slotSignal wakes the requests waiting for room on a host's
// connections: the first in line when one stream slot comes free (first
// in, first out, as Envoy's pending requests), every one when more room
// may have been made (a connection dialled or closed, a raised cap). Its
// mu is taken under no other lock's protection of it and takes none, so
// a connection calls notify with its own mu held.
type slotSignal struct {
	// waiting counts the requests in line: notify does nothing without
	// one, so a stream's end costs one atomic load.
	waiting atomic.Int32
	mu      sync.Mutex
	line    []*slotWaiter // guarded by mu
}

// slotWaiter is one request's place in a slotSignal's line.
type slotWaiter struct {
	// ch receives when the request is taken out of line to look again.
	ch chan struct{}
	// queued: in line; woken: taken out by a notify, since the request
	// last armed. Guarded by the slotSignal's mu.
	queued, woken bool
}

func newSlotWaiter() *slotWaiter { return &slotWaiter{ch: make(chan struct{}, 1)} }

// arm puts w in line, unless it is there, before the request looks for
// room: room made after the look wakes it, room made before it is found
// by the look (see notify). A request taken out of line to look, and
// that found none (another took it), goes back to the front; a new one
// to the back.
func (s *slotSignal) arm(w *slotWaiter) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if w.queued {
		return
	}
	select {
	case <-w.ch: // the look that follows stands for it
	default:
	}
	if w.woken {
		s.line = slices.Insert(s.line, 0, w)
	} else {
		s.line = append(s.line, w)
	}
	w.queued, w.woken = true, false
	s.waiting.Add(1)
}

// disarm takes w out of line as the request gives up its wait. A wake
// it had not acted on is passed on to the next in line, whose look may
// find the room it was woken for.
func (s *slotSignal) disarm(w *slotWaiter) {
	s.mu.Lock()
	if w.queued {
		s.line = slices.DeleteFunc(s.line, func(x *slotWaiter) bool { return x == w })
		w.queued = false
		s.waiting.Add(-1)
	}
	pass := w.woken
	w.woken = false
	s.mu.Unlock()
	if pass {
		s.notifyOne()
	}
}

// notifyOne wakes the first request in line, for one stream slot that
// came free. It is called after the room is made (under the lock the
// waiters' look takes): a waiter whose look missed it had armed before,
// which this load sees.
func (s *slotSignal) notifyOne() {
	if s.waiting.Load() == 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.line) > 0 {
		s.wakeLocked(s.line[0])
		s.line = slices.Delete(s.line, 0, 1)
	}
}

// notify wakes every request in line: more than one slot may have come
// free, or the host's connections changed so that they dial.
func (s *slotSignal) notify() {
	if s.waiting.Load() == 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, w := range s.line {
		s.wakeLocked(w)
	}
	clear(s.line)
	s.line = s.line[:0]
}

func (s *slotSignal) wakeLocked(w *slotWaiter) {
	w.queued, w.woken = false, true
	s.waiting.Add(-1)
	w.ch <- struct{}{} // buffered, and empty: sent to once per arm
}

// ErrConnectionWait is in the error (test with errors.Is) of a request
// whose wait for room on its host's connections, at a cap DialOverflow
// recognises, or for another request's dial to the host, ended with its
// context or deadline, whose cause the error wraps too. The request took
// no stream: the host never saw it, and a caller should not count it
// against the host (a dial that fails is the dialling request's).
var ErrConnectionWait = errors.New("h2client: waiting for a stream")

// dialCall is one dial (and handshake) in flight. done is closed when it
// ends; c or err is its result.
type dialCall struct {
	done chan struct{}
	c    *conn
	err  error
	// ctxErr is set when the dial ended because the dialling request's
	// context ended: the waiters, whose contexts may be alive, try again.
	ctxErr bool
	// closesAt is the host's closes when the dial began: a socket that
	// closes after it may have left the place DialOverflow's cap then
	// refused, so a refused dial is followed by another, not a wait
	// (see getConn).
	closesAt uint64
}

// overflow reports whether a dial error is DialOverflow's cap.
func (t *Transport) overflow(err error) bool {
	return t.DialOverflow != nil && t.DialOverflow(err)
}

// getConn returns a connection with a stream slot reserved for the
// caller: the first open connection with room for one more stream, else a
// new one; avoid, when set, is not taken (a retry goes elsewhere). One dial per host is in flight at a time; others wait for it.
// A dial that DialOverflow refuses has the request, and those waiting
// for that dial, wait for a stream slot on the host's connections, or
// for one of them to close (when the request dials again); a host with
// no connection left has its first dialled (roundtrip.WithFirstConn).
// reused reports whether the connection carried streams before. A
// deadline (zero: none) bounds the waits and the dial as ctx does; only
// those make a context for it.
func (t *Transport) getConn(ctx context.Context, deadline time.Time, addr string, avoid *conn) (c *conn, reused bool, err error) {
	if addr == "" {
		return nil, false, errors.New("h2client: request has no host")
	}
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return nil, false, fmt.Errorf("h2client: bad address %q: %w", addr, err)
	}
	// overflowed: the last dial this request made or waited for was
	// refused at DialOverflow's cap; overHost had closed closesAt
	// sockets when that dial began. armed is the host in whose freed
	// line the request is, as w.
	var (
		overflowed bool
		overHost   *hostPool
		closesAt   uint64
		armed      *hostPool
		w          *slotWaiter
	)
	defer func() {
		if armed != nil {
			armed.freed.disarm(w)
		}
	}()
	for {
		var expired []*conn
		now := t.now()
		t.mu.Lock()
		hp := t.hosts[addr]
		if hp == nil {
			hp = &hostPool{addr: addr, draining: t.keep != nil && !t.keep(addr)}
			if t.hosts == nil {
				t.hosts = make(map[string]*hostPool)
			}
			t.hosts[addr] = hp
		}
		if overflowed {
			// Armed before the look below, so that room made after it
			// wakes the wait (see slotSignal.arm).
			if armed != nil && armed != hp {
				armed.freed.disarm(w)
			}
			if w == nil {
				w = newSlotWaiter()
			}
			armed = hp
			hp.freed.arm(w)
		}
		c = nil
		// live counts the connections that may take new streams once
		// theirs end: with none, the host's next connection is dialled
		// as its first. agesAt is when the first of them passes
		// MaxConnAge (zero: never), which takes it out of live with no
		// stream ending to wake a wait.
		live := 0
		var agesAt time.Time
		for _, cc := range hp.conns {
			if cc == avoid && !overflowed {
				// At the cap there is no other connection to be
				// had: the one avoided will do.
				live++
				continue
			}
			ok, r, exp, closing := cc.reserve(now)
			if exp {
				expired = append(expired, cc)
				continue
			}
			if ok {
				c, reused = cc, r
				break
			}
			if !closing {
				live++
				if a := t.MaxConnAge; a > 0 {
					if at := cc.born.Add(a); agesAt.IsZero() || at.Before(agesAt) {
						agesAt = at
					}
				}
			}
		}
		if c != nil {
			t.mu.Unlock()
			closeAll(expired, errIdleClosed)
			return c, reused, nil
		}
		if !deadline.IsZero() {
			// Every connection is full: the wait or the dial ahead
			// takes the deadline on a context.
			var cancel context.CancelFunc
			ctx, cancel = context.WithDeadline(ctx, deadline)
			defer cancel()
			deadline = time.Time{}
		}
		if dc := hp.dialing; dc != nil {
			t.mu.Unlock()
			closeAll(expired, errIdleClosed)
			// A request in line looks again when a stream slot comes
			// free before the dial ends.
			var wake <-chan struct{}
			if armed != nil {
				wake = w.ch
			}
			select {
			case <-wake:
				continue
			case <-dc.done:
			case <-ctx.Done():
				// Waiting for another request's dial (at the cap or
				// not): the host never saw this one, and the dial's
				// own failure, if any, is the dialling request's.
				return nil, false, fmt.Errorf("%w to %s: %w", ErrConnectionWait, addr, context.Cause(ctx))
			}
			if dc.err != nil && !dc.ctxErr {
				if !t.overflow(dc.err) {
					return nil, false, dc.err
				}
				overflowed, overHost, closesAt = true, hp, dc.closesAt
			}
			continue
		}
		if overflowed && hp == overHost && hp.closes == closesAt && live > 0 {
			// At the cap, and none of the host's connections closed
			// since: wait for room on them, or for the first of them to
			// age, when it counts as closing.
			t.mu.Unlock()
			closeAll(expired, errIdleClosed)
			var aged <-chan time.Time
			var tm *time.Timer
			var waitErr error
			if !agesAt.IsZero() {
				tm = time.NewTimer(agesAt.Sub(now))
				aged = tm.C
			}
			select {
			case <-w.ch:
			case <-aged:
			case <-ctx.Done():
				waitErr = fmt.Errorf("%w to %s: %w", ErrConnectionWait, addr, context.Cause(ctx))
			}
			if tm != nil {
				tm.Stop()
			}
			if waitErr != nil {
				return nil, false, waitErr
			}
			continue
		}
		overflowed = false
		if armed != nil {
			// Out of line while it dials, so that a slot that comes
			// free meanwhile goes to the next in line.
			armed.freed.disarm(w)
			armed = nil
		}
		// closesAt is read now, not with the refusal: the cap refuses
		// within Dial, without the lock, and a socket that closed
		// between the refusal and a read after Dial returned would
		// have the request wait in a place the cap has free.
		dc := &dialCall{done: make(chan struct{}), closesAt: hp.closes}
		hp.dialing = dc
		dctx := ctx
		if live == 0 {
			// The host's first connection, bar those expiring or
			// closing (Envoy's pools count a draining one as busy and
			// wait for it to close, which a long stream may put off
			// beyond any deadline): a cap on connections shared with
			// other hosts does not hold it back (see
			// roundtrip.WithFirstConn).
			dctx = roundtrip.WithFirstConn(ctx)
		}
		t.mu.Unlock()
		closeAll(expired, errIdleClosed)

		dc.c, dc.err = t.dial(dctx, hp)
		dc.ctxErr = dc.err != nil && ctx.Err() != nil
		t.mu.Lock()
		hp.dialing = nil
		ok, usable := false, false
		if dc.c != nil {
			// The dialling request takes the first stream: each request
			// dials at most once, even from a server that allows no
			// streams at all.
			ok, usable = dc.c.reserveFirst()
			if usable {
				hp.conns = append(hp.conns, dc.c)
				if hp.draining {
					// The dialling request's stream keeps it open.
					dc.c.drain()
				}
				// Its other streams are room for the requests
				// waiting at DialOverflow's cap: one whose dial the
				// cap let through (another host's connection closed
				// meanwhile, or this host's all take no new stream)
				// dialled it while they slept, and the server's
				// SETTINGS woke them before it was listed.
				hp.freed.notify()
			}
		}
		if !usable && len(hp.conns) == 0 && t.hosts[addr] == hp {
			delete(t.hosts, addr)
		}
		t.mu.Unlock()
		close(dc.done)
		if dc.err != nil {
			if t.overflow(dc.err) {
				if dc.ctxErr {
					// Refused, and out of time to wait.
					return nil, false, fmt.Errorf("%w to %s: %w", ErrConnectionWait, addr, context.Cause(ctx))
				}
				overflowed, overHost, closesAt = true, hp, dc.closesAt
				continue
			}
			return nil, false, dc.err
		}
		if !ok {
			dc.c.close(errNoStreams)
			return nil, false, fmt.Errorf("h2client: new connection to %s takes no stream", addr)
		}
		return dc.c, false, nil
	}
}

// dial opens a connection and runs the handshake: preface and SETTINGS
// out, the server's SETTINGS in.
func (t *Transport) dial(ctx context.Context, hp *hostPool) (*conn, error) {
	addr := hp.addr
	dial := t.Dial
	if dial == nil {
		var d net.Dialer
		dial = d.DialContext
	}
	nc, err := dial(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("h2client: dial %s: %w", addr, err)
	}
	c, err := newConn(ctx, t, hp, nc)
	if err != nil {
		nc.Close()
		if ctx.Err() != nil {
			// Cut short by the request's context: still a connection
			// the server did not complete (one that never sends its
			// SETTINGS holds every request here), so a failure to
			// connect, not an end of the request's before one.
			err = context.Cause(ctx)
		}
		return nil, &HandshakeError{Addr: addr, Err: err}
	}
	return c, nil
}

// removeConn drops a closed connection from its host's list, and the host
// when that was its last connection.
func (t *Transport) removeConn(c *conn) {
	t.mu.Lock()
	defer t.mu.Unlock()
	hp := c.hp
	if hp == nil {
		return
	}
	if i := slices.Index(hp.conns, c); i >= 0 {
		hp.conns = slices.Delete(hp.conns, i, i+1)
		// It takes no stream: a host left with none that do has its
		// next dialled as its first. (Its place under DialOverflow's
		// cap is free once its socket has closed: socketClosed.)
		hp.freed.notify()
	}
	if len(hp.conns) == 0 && hp.dialing == nil && t.hosts[hp.addr] == hp {
		delete(t.hosts, hp.addr)
	}
}

// socketClosed counts the close of a socket of hp's host and wakes the
// requests waiting at DialOverflow's cap, which dial again. The cap
// counts a connection until its socket closes, which its writer does
// after removeConn, once it has written the last frames: counted by
// removeConn, a close let a waiter dial while the cap still held the
// place, be refused, and sleep on as if no connection had closed.
func (t *Transport) socketClosed(hp *hostPool) {
	if hp == nil {
		return
	}
	t.mu.Lock()
	// The host's pool now: hp, or the one made since its last
	// connection was removed, whose waiters the place is free for.
	cur := t.hosts[hp.addr]
	if cur != nil {
		cur.closes++
	}
	t.mu.Unlock()
	if cur != nil {
		cur.freed.notify()
	}
}

// errNoStreams closes a new connection whose server allows no streams
// (SETTINGS_MAX_CONCURRENT_STREAMS 0).
var errNoStreams = errors.New("h2client: connection closed: the server allows no streams")

func closeAll(cs []*conn, err error) {
	for _, c := range cs {
		c.close(err)
	}
}
