package h1client

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"time"

	"github.com/outrigger-mesh/outrigger/proxy/internal/roundtrip"
)

// hostKey names a host's connections: scheme and the address dialled.
type hostKey struct{ scheme, addr string }

// hostPool is one host's connections. Its mutable fields are guarded by
// the Transport's mu.
type hostPool struct {
	t         *Transport
	key       hostKey
	tlsConfig *tls.Config // for https: the Transport's, with ServerName and ALPN set

	// idle holds idle connections, most recently used last (LIFO: a hot
	// connection is reused, cold ones age out).
	idle []*conn
	// open counts connections dialling, in use, idle or upgraded: what
	// MaxConnsPerHost caps.
	open int
	// dialing counts, of open, the connections being dialled (or their
	// TLS handshakes made): none a waiter can be handed.
	dialing int
	// waiters queue, first come first served, requests waiting for a
	// connection under MaxConnsPerHost.
	waiters []*waiter
	// removed is set when the pool left the Transport's hosts, its last
	// connection closed; a request that looked it up before then
	// attaches it again, or uses its successor (see attachLocked).
	removed bool
	// draining: Retain let the host go, so a connection is closed at
	// the end of its exchange rather than kept idle.
	draining bool
}

// ErrConnectionWait is in the error (test with errors.Is) of a request
// whose wait for one of its host's connections (at MaxConnsPerHost, or
// at a cap DialOverflow recognises) ended with its context or deadline,
// whose cause the error wraps too. The request took no connection: the
// host never saw it, and a caller should not count it against the host
// (Envoy's router tells outlier detection nothing of a request still
// pending in its pool).
var ErrConnectionWait = errors.New("h1client: waiting for a connection")

// waiter is a request queued at MaxConnsPerHost. It receives exactly one
// value: a connection handed over by a finished request, or nil, meaning
// a slot was handed over and the waiter may dial, or, when err is set
// (before the send), that the host's last connection failed to be made
// and the waiter fails with err (see failSlot).
type waiter struct {
	ch  chan *conn
	err error
}

// host returns u's hostPool, creating it on first use.
func (t *Transport) host(u *url.URL) (*hostPool, error) {
	k := hostKey{scheme: u.Scheme, addr: u.Host}
	if u.Port() == "" {
		// canonicalAddr's rule in net/http: the scheme's port.
		if u.Scheme == "https" {
			k.addr = net.JoinHostPort(u.Hostname(), "443")
		} else {
			k.addr = net.JoinHostPort(u.Hostname(), "80")
		}
	}
	t.mu.Lock()
	hp := t.hosts[k]
	t.mu.Unlock()
	if hp != nil {
		return hp, nil
	}
	hp = &hostPool{t: t, key: k}
	if k.scheme == "https" {
		cfg := &tls.Config{}
		if t.TLSClientConfig != nil {
			cfg = t.TLSClientConfig.Clone()
		}
		if cfg.ServerName == "" {
			h, _, err := net.SplitHostPort(k.addr)
			if err != nil {
				return nil, fmt.Errorf("h1client: bad address %q: %w", k.addr, err)
			}
			cfg.ServerName = h
		}
		cfg.NextProtos = []string{"http/1.1"}
		if t.TLSSessionCache != nil {
			cfg.ClientSessionCache = t.TLSSessionCache(k.addr)
		}
		hp.tlsConfig = cfg
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if prev := t.hosts[k]; prev != nil {
		return prev, nil
	}
	if t.hosts == nil {
		t.hosts = make(map[hostKey]*hostPool)
	}
	hp.draining = t.keep != nil && !t.keep(k.addr)
	t.hosts[k] = hp
	return hp, nil
}

// getConn returns a connection for one exchange: the most recently idle
// one that has not expired, else a new one, waiting at MaxConnsPerHost.
// A deadline (zero: none) bounds the dial and the wait as the context
// does. check asks for every connection used before to be checked
// (peeked at) before it is returned, not only one idle for peekAfter:
// the request cannot be sent again if a connection the server closed
// fails it. fresh asks for a new connection: an idle one is taken only
// at MaxConnsPerHost. A dial that DialOverflow refuses has the request
// wait as at MaxConnsPerHost while the host has a connection that may
// come free; with none, it is dialled as the host's first connection
// (see dialSlot).
func (t *Transport) getConn(ctx context.Context, hp *hostPool, deadline time.Time, check, fresh bool) (c *conn, wasIdle bool, idleTime time.Duration, err error) {
	// dctx is ctx bounded by deadline, made for the first dial or wait
	// (an idle connection needs none).
	var dctx context.Context
	var cancel context.CancelFunc
	defer func() {
		if cancel != nil {
			cancel()
		}
	}()
	bounded := func() context.Context {
		if dctx == nil {
			dctx, cancel = roundtrip.WithDeadline(ctx, deadline)
		}
		return dctx
	}
	// overflowed: the last dial was one DialOverflow refused and
	// dialSlot said to queue for one of the host's connections; seen is
	// t.retries as it was before that dial.
	var overflowed, queue bool
	var seen uint64
	for {
		c = nil
		now := t.now()
		if !deadline.IsZero() {
			// A passed deadline takes no connection. It is on the real
			// clock, which now is unless Now is injected.
			wall := now
			if t.Now != nil {
				wall = time.Now()
			}
			if !wall.Before(deadline) {
				return nil, false, 0, fmt.Errorf("h1client: %w", context.DeadlineExceeded)
			}
		}
		var expired []*conn
		t.mu.Lock()
		if hp.removed {
			hp = t.attachLocked(hp)
		}
		if n := len(hp.idle); n > 0 && (!fresh || overflowed || t.MaxConnsPerHost > 0 && hp.open >= t.MaxConnsPerHost) {
			c = hp.idle[n-1]
			hp.idle[n-1] = nil
			hp.idle = hp.idle[:n-1]
			idleTime = now.Sub(c.idleAt)
			if t.IdleTimeout > 0 && idleTime >= t.IdleTimeout {
				// LIFO: every connection below c idled longer.
				expired = append(slices.Clone(hp.idle), c)
				clear(hp.idle)
				hp.idle = hp.idle[:0]
				c = nil
			}
		}
		if c != nil && c.spent() {
			// Past MaxConnAge while idle.
			t.mu.Unlock()
			c.discard()
			continue
		}
		if c != nil {
			t.mu.Unlock()
			// An idle connection holds no read buffer (release checked
			// it was empty); bytes the server sent since are found by
			// the peek. Unsolicited bytes after a response without a
			// body are looked for too: read as the next response, they
			// would answer another request (net/http closes such a
			// connection as well). So are bytes the socket says may
			// have come since the response was read (InputPender).
			if (idleTime >= peekAfter || check || c.unframedRisk || c.input != nil && c.input.InputPending()) && !c.alive() {
				c.discard()
				continue
			}
			c.unframedRisk = false
			return c, true, idleTime, nil
		}
		if len(expired) > 0 || !overflowed && (t.MaxConnsPerHost <= 0 || hp.open < t.MaxConnsPerHost) {
			// Take a slot for a new connection: an expired
			// connection's, which it leaves closed without giving the
			// slot up (given up, it would go to a request queued
			// meanwhile, and both would dial in it), else a free one.
			// The other expired connections give theirs up. (Closed,
			// expired connections leave room under DialOverflow's cap
			// too, so an overflowed request dials again.)
			var took *conn
			if n := len(expired); n > 0 {
				took, expired = expired[n-1], expired[:n-1]
				took.closed.Store(true) // off the idle list: no one else holds it
			} else {
				hp.open++
			}
			t.mu.Unlock()
			if took != nil {
				_ = took.nc.Close()
			}
			for _, e := range expired {
				e.discard()
			}
			if c, queue, err = t.dialSlot(bounded(), hp, &seen); queue {
				overflowed = true
				continue
			}
			return c, false, 0, err
		}
		if overflowed && (hp.open == 0 || t.retries.Load() != seen) {
			// The host's connections closed since: none to wait for.
			// Its first connection is dialled instead (see dialSlot).
			// Or RetryOverflowed ran since the refused dial began: the
			// cap may be higher now, and the call that would have
			// woken this request found it not yet queued.
			t.mu.Unlock()
			overflowed = false
			continue
		}
		wctx := bounded()
		w := &waiter{ch: make(chan *conn, 1)}
		hp.waiters = append(hp.waiters, w)
		t.mu.Unlock()
		select {
		case c = <-w.ch:
		case <-wctx.Done():
			t.mu.Lock()
			i := slices.Index(hp.waiters, w)
			if i >= 0 {
				hp.waiters = slices.Delete(hp.waiters, i, i+1)
			}
			t.mu.Unlock()
			if i < 0 {
				// Handed something as the context ended: pass it on
				// (a failure holds nothing).
				if c := <-w.ch; c != nil {
					c.release(true)
				} else if w.err == nil {
					hp.releaseSlot()
				}
			}
			return nil, false, 0, fmt.Errorf("%w to %s: %w", ErrConnectionWait, hp.key.addr, context.Cause(wctx))
		}
		overflowed = false // woken: with a connection, or a slot to dial in
		if w.err != nil {
			// The host's last connection could not be made: no slot.
			return nil, false, 0, w.err
		}
		if c != nil {
			// Handed over at the end of its last response: looked at
			// as an idle connection is (bar the idle time), since bytes
			// the server sent past that response may be in the socket,
			// unread.
			if (check || c.unframedRisk || c.input != nil && c.input.InputPending()) && !c.alive() {
				// Closed, its slot kept: this request, first in line,
				// dials in its place rather than handing the slot to
				// the next waiter and queueing again behind the rest.
				if !c.closed.CompareAndSwap(false, true) {
					continue // closed meanwhile: its slot is gone
				}
				_ = c.nc.Close()
				if c, queue, err = t.dialSlot(wctx, hp, &seen); queue {
					overflowed = true
					continue
				}
				return c, false, 0, err
			}
			c.unframedRisk = false
			return c, false, 0, nil
		}
		// A slot was handed over.
		if c, queue, err = t.dialSlot(wctx, hp, &seen); queue {
			overflowed = true
			continue
		}
		return c, false, 0, err
	}
}

// dialSlot dials a connection to hp in a slot of hp's the caller
// holds. A dial DialOverflow refuses gives the slot up, without a
// hand-over, and reports queue while hp has other connections, which
// come free in time (a waiter handed the slot would dial and be refused
// as well); with none left, it is dialled again as hp's first
// connection (roundtrip.WithFirstConn), which the cap does not hold
// back, so that the host always has a connection to queue on. A Dial
// that refuses that one too fails the request. seen is set to
// t.retries as it was before the dial.
func (t *Transport) dialSlot(ctx context.Context, hp *hostPool, seen *uint64) (c *conn, queue bool, err error) {
	*seen = t.retries.Load()
	c, err = t.dial(ctx, hp)
	oe, ok := err.(*overflowError)
	if !ok {
		return c, false, err
	}
	t.mu.Lock()
	if hp.open > 1 {
		hp.open--
		t.mu.Unlock()
		return nil, true, oe.err
	}
	t.mu.Unlock()
	// Marked here, as decided under the lock: dial's own look at
	// hp.open may find another request's slot taken since.
	if c, err = t.dial(roundtrip.WithFirstConn(ctx), hp); err != nil {
		if oe, ok := err.(*overflowError); ok {
			hp.releaseSlot()
			err = oe.err
		}
	}
	return c, false, err
}

// overflowError is a dial error DialOverflow recognised, returned by
// dial with the connection's slot still held (see overflowed).
type overflowError struct{ err error }

func (e *overflowError) Error() string { return e.err.Error() }

// attachLocked returns the pool that now stands for removed hp's host:
// the one created since, or hp itself, put back. Either way every
// connection to the host is counted in one place.
func (t *Transport) attachLocked(hp *hostPool) *hostPool {
	if cur := t.hosts[hp.key]; cur != nil {
		return cur
	}
	if t.hosts == nil {
		t.hosts = make(map[hostKey]*hostPool)
	}
	hp.removed = false
	hp.draining = t.keep != nil && !t.keep(hp.key.addr)
	t.hosts[hp.key] = hp
	return hp
}

// putIdle hands c to the first waiter or keeps it idle; c is closed when
// the host has MaxIdlePerHost idle connections already.
func (hp *hostPool) putIdle(c *conn) {
	t := hp.t
	now := t.now()
	t.mu.Lock()
	if len(hp.waiters) > 0 {
		w := hp.waiters[0]
		hp.waiters = slices.Delete(hp.waiters, 0, 1)
		t.mu.Unlock()
		w.ch <- c // buffered, and only ever sent to once
		return
	}
	if hp.draining || len(hp.idle) >= t.maxIdle() {
		t.mu.Unlock()
		c.discard()
		return
	}
	c.idleAt = now
	c.idleGen++
	hp.idle = append(hp.idle, c)
	t.armSweepLocked()
	t.mu.Unlock()
}

// sweepEvery is how often idle connections are checked in the
// background while there are any.
const sweepEvery = time.Second

// armSweepLocked arms the sweeper if it is not armed.
func (t *Transport) armSweepLocked() {
	if t.swept || t.noSweep {
		return
	}
	t.swept = true
	if t.sweeper == nil {
		t.sweeper = time.AfterFunc(sweepEvery, t.sweep)
	} else {
		t.sweeper.Reset(sweepEvery)
	}
}

// sweep closes idle connections that expired (IdleTimeout, MaxConnAge) or
// that the server closed
// (found by peekAlive), so that they hold no socket (in CLOSE_WAIT) and
// no MaxConnsPerHost slot while nothing asks for their host. It runs on
// a timer, in a goroutine of its own only while it runs, and re-arms
// itself while connections are idle. The peeks run without the lock, so
// a connection may be taken for a request meanwhile: only connections
// still idle, and not reused, after the check are removed (see
// sweepRemove).
func (t *Transport) sweep() {
	cands := t.sweepCandidates()
	dead := cands[:0]
	for _, sc := range cands {
		if sc.expired || !peekAlive(sc.c.raw, sc.c.tlsState != nil) {
			dead = append(dead, sc)
		}
	}
	t.sweepRemove(dead)
}

// sweepCandidate is an idle connection a sweep checks, as it was when
// the sweep saw it.
type sweepCandidate struct {
	c       *conn
	gen     uint64 // c.idleGen then
	expired bool
}

// sweepCandidates lists the idle connections to close if expired, or to
// check with a peek.
func (t *Transport) sweepCandidates() []sweepCandidate {
	now := t.now()
	var cands []sweepCandidate
	t.mu.Lock()
	defer t.mu.Unlock()
	t.swept = false
	for _, hp := range t.hosts {
		for _, c := range hp.idle {
			// Past MaxConnAge too: with no request to take it, an
			// aged connection would stay open until IdleTimeout.
			expired := t.IdleTimeout > 0 && now.Sub(c.idleAt) >= t.IdleTimeout ||
				t.MaxConnAge > 0 && now.Sub(c.born) >= t.MaxConnAge
			if expired || c.raw != nil {
				cands = append(cands, sweepCandidate{c: c, gen: c.idleGen, expired: expired})
			}
		}
	}
	return cands
}

// sweepRemove closes the connections found dead that are still idle
// from the same spell: one taken for a request and given back meanwhile
// was judged on a socket that has since carried an exchange (a peek
// during it sees the response's bytes), so it stays. It re-arms the
// sweeper while connections are idle.
func (t *Transport) sweepRemove(dead []sweepCandidate) {
	var gone []*conn
	t.mu.Lock()
	for _, sc := range dead {
		c, hp := sc.c, sc.c.hp
		if c.idleGen != sc.gen {
			continue
		}
		if i := slices.Index(hp.idle, c); i >= 0 {
			hp.idle = slices.Delete(hp.idle, i, i+1)
			gone = append(gone, c)
		}
	}
	for _, hp := range t.hosts {
		if len(hp.idle) > 0 {
			t.armSweepLocked()
			break
		}
	}
	t.mu.Unlock()
	for _, c := range gone {
		c.discard()
	}
}

// failSlot gives up the place of a connection that could not be made,
// its dial ended (see dial): err is the endpoint's failure, nil when
// the request's own end cut the dial short. When the host has no other
// connection made (any other place is a dial still in flight), the
// requests waiting for one fail with err at once, as Envoy's pools fail
// their pending requests when a connection attempt fails, rather than
// each dial in turn and wait for the same failure (up to the connect
// timeout each, against an endpoint that does not answer); the proxy
// retries them elsewhere. Otherwise the place goes to the first waiter,
// or back to the host, as releaseSlot's.
func (hp *hostPool) failSlot(err error) {
	t := hp.t
	t.mu.Lock()
	hp.dialing--
	if err == nil || hp.open-1 != hp.dialing || len(hp.waiters) == 0 {
		t.mu.Unlock()
		hp.releaseSlot()
		return
	}
	waiters := hp.waiters
	hp.waiters = nil
	hp.open--
	if hp.open == 0 && t.hosts[hp.key] == hp {
		delete(t.hosts, hp.key)
		hp.removed = true
	}
	t.mu.Unlock()
	for _, w := range waiters {
		w.err = err
		w.ch <- nil // buffered, and only ever sent to once
	}
}

// dialEnded counts out of dialing a dial that made its connection, or
// that DialOverflow refused (its slot still held: see dialSlot).
func (hp *hostPool) dialEnded() {
	hp.t.mu.Lock()
	hp.dialing--
	hp.t.mu.Unlock()
}

// releaseSlot gives up a closed connection's place under MaxConnsPerHost:
// to the first waiter, or back to the host.
func (hp *hostPool) releaseSlot() {
	t := hp.t
	t.mu.Lock()
	if len(hp.waiters) > 0 {
		w := hp.waiters[0]
		hp.waiters = slices.Delete(hp.waiters, 0, 1)
		t.mu.Unlock()
		w.ch <- nil
		return
	}
	hp.open--
	if hp.open == 0 && t.hosts[hp.key] == hp {
		// No connection, so no idle one and no waiter: forget the host.
		delete(t.hosts, hp.key)
		hp.removed = true
	}
	t.mu.Unlock()
}
