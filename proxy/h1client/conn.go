package h1client

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/outrigger-mesh/outrigger/proxy/internal/roundtrip"
)

// conn is one connection to a host. Between exchanges it belongs to its
// hostPool's idle list; during one, to the request's goroutine (and, after
// RoundTrip returned, to the response body).
type conn struct {
	hp *hostPool
	nc net.Conn
	// br is the read buffer from the start of an exchange to the end of
	// its response, nil while the connection is idle (see
	// Transport.readers).
	br *bufio.Reader
	// bw is the write buffer while a request is sent, nil otherwise
	// (see Transport.writers).
	bw  *bufio.Writer
	raw syscall.RawConn // the TCP socket, for the liveness peek; nil if not exposed
	// input is nc's InputPending, when nc has one (see InputPender).
	input InputPender

	tlsState *tls.ConnectionState // shared by every response on the connection
	// guard is what TLS reads the connection through (nil without TLS):
	// see tlsHoldsInput.
	guard *readGuard

	// probe receives the byte read to check that a request body of known
	// length ends where it said (see checkBodyEnd).
	probe [1]byte

	// deadline is the deadline set on nc, zero for none: the current
	// exchange's (for it and its body), or, while c is idle, the last
	// exchange's, which the next one replaces when it differs.
	deadline time.Time

	// written counts bytes written to nc in the current exchange, to tell
	// a request that never left from one the server may have seen.
	written int64
	// reused is set once the connection has served an exchange.
	reused bool
	// born is when the connection was dialled and exchanges counts those
	// begun on it (a connection handed on unused counts none), for the
	// Transport's MaxConnAge and MaxRequestsPerConn.
	born      time.Time
	exchanges int
	// unframedRisk is set when the last response had no body by its
	// framing (HEAD, 1xx, 204, 304, Content-Length 0): a server that
	// wrote one anyway (one that ignores HEAD, say) may have sent it
	// after the head, too late for release to see it buffered, so the
	// connection is peeked at before its next use (see getConn).
	unframedRisk bool
	idleAt       time.Time // guarded by the Transport's mu while idle
	// idleGen counts the connection's idle spells (guarded by the
	// Transport's mu), so that a sweep tells one it checked from a
	// later one.
	idleGen uint64

	// cancelFn is c.cancel, bound once so that registering it with
	// context.AfterFunc or a roundtrip.EndWatcher allocates no closure per request.
	cancelFn func()
	// stop unregisters the AfterFunc of the current exchange, if any.
	stop func() bool
	// ew and ewToken are the current exchange's roundtrip.EndWatcher registration,
	// used instead of stop when its context has one.
	ew      roundtrip.EndWatcher
	ewToken uint64
	// cancelled is set by the AfterFunc before it moves the deadline;
	// deadline changes check it afterwards (see setReadDeadline).
	cancelled atomic.Bool
	closed    atomic.Bool

	// peekFn is c.peek, bound at the first check of the connection
	// before a request, so that later checks allocate no closure;
	// peekSt is its answer. Only the goroutine that took c uses them
	// (a sweep peeks with a closure of its own).
	peekFn func(fd uintptr)
	peekSt peekState
}

// HandshakeError is a TLS connection to an upstream that could not be
// established: the handshake failed or timed out, the server chose an
// application protocol other than HTTP/1.1, or the server refused the
// handshake after the client's end of it (see refusedHandshake). The
// server processed no byte of the request, so, like a refused TCP
// connection, it is a connect failure.
type HandshakeError struct {
	Addr string
	Err  error
}

func (e *HandshakeError) Error() string {
	return fmt.Sprintf("h1client: tls handshake with %s: %v", e.Addr, e.Err)
}

func (e *HandshakeError) Unwrap() error { return e.Err }

// aLongTimeAgo is a deadline that has passed: setting it ends blocked
// reads and writes at once.
var aLongTimeAgo = time.Unix(1, 0)

func (t *Transport) dial(ctx context.Context, hp *hostPool) (*conn, error) {
	dial := t.Dial
	if dial == nil {
		var d net.Dialer
		dial = d.DialContext
	}
	// failed gives up the slot of a connection that could not be made:
	// a failure of the endpoint fails the host's waiters with it (see
	// failSlot), the end of the request's own context does not.
	reqCtx := ctx
	failed := func(err error) {
		if reqCtx.Err() != nil {
			err = nil
		}
		hp.failSlot(err)
	}
	if t.ConnectTimeout > 0 {
		// The connection outlives ctx: a bound on its making only.
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, t.ConnectTimeout)
		defer cancel()
	}
	t.mu.Lock()
	first := hp.open == 1 // the slot the caller holds, and no other
	hp.dialing++          // until made, or given up in failSlot
	t.mu.Unlock()
	if first && t.DialOverflow != nil && !roundtrip.FirstConn(ctx) {
		ctx = roundtrip.WithFirstConn(ctx)
	}
	nc, err := dial(ctx, "tcp", hp.key.addr)
	if err != nil {
		wrapped := fmt.Errorf("h1client: dial %s: %w", hp.key.addr, err)
		if t.DialOverflow != nil && t.DialOverflow(err) {
			// The slot stays taken: getConn decides (overflowed).
			hp.dialEnded()
			return nil, &overflowError{wrapped}
		}
		failed(wrapped)
		return nil, wrapped
	}
	c := &conn{hp: hp, nc: nc, born: t.now()}
	if sc, ok := nc.(syscall.Conn); ok {
		c.raw, _ = sc.SyscallConn()
	}
	if ip, ok := nc.(InputPender); ok && hp.tlsConfig == nil {
		c.input = ip
	}
	if hp.tlsConfig != nil {
		c.guard = &readGuard{Conn: nc}
		tc := tls.Client(c.guard, hp.tlsConfig)
		if err := tc.HandshakeContext(ctx); err != nil {
			herr := &HandshakeError{Addr: hp.key.addr, Err: err}
			c.closed.Store(true) // never in the pool: no one else holds it
			_ = c.nc.Close()
			failed(herr)
			return nil, herr
		}
		st := tc.ConnectionState()
		if p := st.NegotiatedProtocol; p != "" && p != "http/1.1" {
			tc.Close()
			herr := &HandshakeError{Addr: hp.key.addr, Err: fmt.Errorf("negotiated protocol %q, not http/1.1", p)}
			failed(herr)
			return nil, herr
		}
		c.tlsState = &st
		c.nc = tc
	}
	c.cancelFn = c.cancel
	hp.dialEnded()
	return c, nil
}

// Write counts what goes to the connection; the bufio.Writer writes
// through it.
func (c *conn) Write(p []byte) (int, error) {
	n, err := c.nc.Write(p)
	c.written += int64(n)
	return n, err
}

// cancel runs when the exchange's context ends: it moves the deadline
// into the past, ending any blocked read or write.
func (c *conn) cancel() {
	c.cancelled.Store(true)
	_ = c.nc.SetDeadline(aLongTimeAgo)
}

// watch arranges for ctx to cancel the exchange. c.cancel suits an
// EndWatcher's synchronous call: it sets a flag and moves the
// connection's deadline, and never blocks.
func (c *conn) watch(ctx context.Context) {
	c.stop, c.ew = nil, nil
	if ew, ok := ctx.(roundtrip.EndWatcher); ok {
		c.ew, c.ewToken = ew, ew.WatchEnd(c.cancelFn)
		return
	}
	if ctx.Done() == nil {
		return
	}
	c.stop = context.AfterFunc(ctx, c.cancelFn)
}

// unwatch ends the watch; false means cancel ran or is running, so the
// connection may not be reused.
func (c *conn) unwatch() bool {
	ok := true
	switch {
	case c.ew != nil:
		ok = c.ew.StopWatch(c.ewToken)
		c.ew = nil
	case c.stop != nil:
		ok = c.stop()
		c.stop = nil
	}
	return ok && !c.cancelled.Load()
}

// setDeadline makes d the exchange's deadline (zero: none) and nc's,
// unless nc has it already: a deadline change is not free (a sockio.Conn
// reads the clock for each direction). It runs only while no
// cancellation is watched (before watch, after unwatch), so it cannot
// overwrite one.
func (c *conn) setDeadline(d time.Time) {
	if d.Equal(c.deadline) {
		return
	}
	c.deadline = d
	_ = c.nc.SetDeadline(d)
}

// expired reports whether the exchange's deadline has passed.
func (c *conn) expired() bool {
	return !c.deadline.IsZero() && !time.Now().Before(c.deadline)
}

// ended reports whether the exchange was ended from outside: its context
// is done or its deadline passed.
func (c *conn) ended(ctx context.Context) bool {
	return ctx.Err() != nil || c.expired()
}

// cause is what ended the exchange from outside: the context's cause,
// else the deadline.
func (c *conn) cause(ctx context.Context) error {
	if ctx.Err() != nil {
		return context.Cause(ctx)
	}
	return context.DeadlineExceeded
}

// setReadDeadline sets a read deadline without losing a cancellation that
// raced with it: cancel stores the flag before its own SetDeadline, so a
// flag seen here after ours means its deadline may have been overwritten.
func (c *conn) setReadDeadline(t time.Time) {
	_ = c.nc.SetReadDeadline(t)
	if c.cancelled.Load() {
		_ = c.nc.SetDeadline(aLongTimeAgo)
	}
}

// release ends c's exchange: back to the pool when reuse is true, no
// cancellation fired and nothing is left in the read buffer, else closed.
// Bytes past the end of the response are ones the server sent unasked
// (a body after a 204, a response longer than it said): on a reused
// connection they would be read as the next request's response, and a
// connection handed straight to a waiting request is not checked again.
// c may hold no read buffer: one handed to a request whose context ended
// as it arrived is passed on unused. Under TLS such bytes may also be
// held by the TLS layer (see tlsHoldsInput).
func (c *conn) release(reuse bool) {
	if !c.unwatch() || !reuse || c.spent() || c.br != nil && c.br.Buffered() > 0 || c.tlsState != nil && c.tlsHoldsInput() {
		c.discard()
		return
	}
	if c.br != nil {
		c.hp.t.putReader(c.br)
		c.br = nil
	}
	// The deadline stays: nothing reads or writes an idle connection,
	// and the next exchange sets its own (see setDeadline).
	c.reused = true
	c.hp.putIdle(c)
}

// spent reports whether the connection has carried the Transport's
// MaxRequestsPerConn exchanges or is past its MaxConnAge: it is not to
// be reused. It reads the clock only under a MaxConnAge.
func (c *conn) spent() bool {
	t := c.hp.t
	return t.MaxRequestsPerConn > 0 && c.exchanges >= t.MaxRequestsPerConn ||
		t.MaxConnAge > 0 && t.now().Sub(c.born) >= t.MaxConnAge
}

// tlsHoldsInput reports whether the TLS layer holds input past the
// response: the rest of a record that also carried the response's end,
// when the last read took only what the response had left (a read of a
// body's end straight into the caller's buffer does), or records read
// from the socket with it, are in neither the read buffer nor the
// socket. A read with the guard up returns what the TLS layer holds, or
// a complete record it has, and would need the socket for anything
// more, which the guard refuses with a temporary error (which leaves a
// TLS connection usable): no wait, no system call, no allocation.
func (c *conn) tlsHoldsInput() bool {
	c.guard.refuse = true
	n, err := c.nc.Read(c.probe[:])
	c.guard.refuse = false
	return n > 0 || err != errGuarded
}

// readGuard is the connection under TLS. While refuse is set, which
// only the goroutine holding the connection does, around its own read,
// Read fails at once with errGuarded.
type readGuard struct {
	net.Conn
	refuse bool
}

func (g *readGuard) Read(p []byte) (int, error) {
	if g.refuse {
		return 0, errGuarded
	}
	return g.Conn.Read(p)
}

// errGuarded is a guarded read's error: temporary, as a timeout is, so
// that crypto/tls does not make it the connection's for good.
var errGuarded error = guardedError{}

type guardedError struct{}

func (guardedError) Error() string   { return "h1client: read refused while checking for buffered input" }
func (guardedError) Timeout() bool   { return true }
func (guardedError) Temporary() bool { return true }

// refusedHandshake returns err as a HandshakeError when it is the server
// refusing the TLS handshake, else err: a TLS alert from the server
// before any byte of the connection's first response. Under TLS 1.3 the
// client's handshake ends before the server has checked the client's
// certificate (RFC 8446 §4.4.2.4), so a server that wants one and got
// none, or one it does not trust, says so on the first read, after the
// request was written; the server never processed it.
func (c *conn) refusedHandshake(err error) error {
	var oe *net.OpError
	if c.tlsState == nil || c.exchanges != 1 || !errors.As(err, &oe) || oe.Op != "remote error" {
		return err
	}
	return &HandshakeError{Addr: c.hp.key.addr, Err: oe}
}

// fail ends a failed exchange: stops watching its context (which may
// outlive the request, and would keep c reachable until it ends) and
// closes c.
func (c *conn) fail() {
	c.unwatch()
	c.discard()
}

// discard closes c and gives its slot up.
func (c *conn) discard() {
	if c.closed.CompareAndSwap(false, true) {
		_ = c.nc.Close()
		c.hp.releaseSlot()
	}
}

// InputPender is a connection that can tell, without a system call,
// whether input may have come since its last read left the socket empty
// (proxy/internal/sockio's Conn can). Dial may return one; a connection
// that says so is looked at before it is taken from the pool however
// short its idle spell: bytes a server sent unasked on an idle
// connection (a second response, to a request smuggled past it) would
// be read as the answer to another client's request. Under TLS the
// question is not asked: bytes may be a post-handshake message.
type InputPender interface {
	InputPending() bool
}

// peekAfter is how long a connection must have been idle before taking it
// checks, with a system call, that the server has not closed it: a
// server's idle timeout is seconds long, so a busier connection is spared
// the call.
const peekAfter = time.Second

// peekState is what a look at an idle socket found (see peekFD).
type peekState uint8

const (
	peekQuiet   peekState = iota // nothing to read
	peekPending                  // bytes waiting, the peer's side still open
	peekClosed                   // end of stream, an error, or the peer's side ended
)

// tlsSettle is how long a taker reads an idle TLS connection that has
// bytes waiting: they are there already, so a read of what they hold
// returns at once, and a post-handshake message (which the TLS layer
// consumes, returning nothing) leaves the read waiting this long.
const tlsSettle = time.Millisecond

// alive checks an idle connection, its read buffer already found empty,
// before reuse: the socket neither closed by the peer nor holding
// unsolicited bytes (see peekAlive). Bytes waiting under TLS are read
// through it, which the goroutine that took c may do (a sweep may not):
// a post-handshake message is consumed and the read times out with
// nothing, while data (a body sent after a HEAD response, say, which a
// reuse would read as the next request's response) or close_notify
// (io.EOF) condemns c.
func (c *conn) alive() bool {
	if c.raw == nil {
		return true
	}
	if c.peekFn == nil {
		c.peekFn = c.peek
	}
	c.peekSt = peekClosed
	if c.raw.Control(c.peekFn) != nil {
		return false
	}
	switch c.peekSt {
	case peekQuiet:
		return true
	case peekPending:
		if c.tlsState != nil {
			_ = c.nc.SetReadDeadline(time.Now().Add(tlsSettle))
			n, err := c.nc.Read(c.probe[:])
			_ = c.nc.SetReadDeadline(c.deadline)
			return n == 0 && errors.Is(err, os.ErrDeadlineExceeded)
		}
	}
	return false
}

func (c *conn) peek(fd uintptr) { c.peekSt = peekFD(fd) }
