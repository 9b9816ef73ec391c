package h1client

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/url"
	"slices"
	"time"
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
	// waiters queue, first come first served, requests waiting for a
	// connection under MaxConnsPerHost.
	waiters []*waiter
}

// waiter is a request queued at MaxConnsPerHost. It receives exactly one
// value: a connection handed over by a finished request, or nil, meaning
// a slot was handed over and the waiter may dial.
type waiter struct{ ch chan *conn }

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
	t.hosts[k] = hp
	return hp, nil
}

// getConn returns a connection for one exchange: the most recently idle
// one that has not expired, else a new one, waiting at MaxConnsPerHost.
func (t *Transport) getConn(ctx context.Context, hp *hostPool) (c *conn, wasIdle bool, idleTime time.Duration, err error) {
	for {
		c = nil
		now := t.now()
		var expired []*conn
		t.mu.Lock()
		if n := len(hp.idle); n > 0 {
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
		if c != nil {
			t.mu.Unlock()
			// Bytes buffered while idle are unsolicited (or the tail of a
			// response longer than it said): the connection is unusable.
			if c.br.Buffered() > 0 || idleTime >= peekAfter && !c.alive() {
				c.discard()
				continue
			}
			return c, true, idleTime, nil
		}
		if t.MaxConnsPerHost <= 0 || hp.open-len(expired) < t.MaxConnsPerHost {
			// Take a slot for a new connection. Expired connections
			// hand theirs over: open counts them until they close.
			hp.open++
			t.mu.Unlock()
			for _, e := range expired {
				e.discard()
			}
			c, err = t.dial(ctx, hp)
			return c, false, 0, err
		}
		w := &waiter{ch: make(chan *conn, 1)}
		hp.waiters = append(hp.waiters, w)
		t.mu.Unlock()
		for _, e := range expired {
			e.discard()
		}
		select {
		case c = <-w.ch:
		case <-ctx.Done():
			t.mu.Lock()
			i := slices.Index(hp.waiters, w)
			if i >= 0 {
				hp.waiters = slices.Delete(hp.waiters, i, i+1)
			}
			t.mu.Unlock()
			if i < 0 {
				// Handed something as the context ended: pass it on.
				if c := <-w.ch; c != nil {
					c.release(true)
				} else {
					hp.releaseSlot()
				}
			}
			return nil, false, 0, fmt.Errorf("h1client: waiting for a connection to %s: %w", hp.key.addr, context.Cause(ctx))
		}
		if c != nil {
			return c, false, 0, nil
		}
		// A slot was handed over.
		c, err = t.dial(ctx, hp)
		return c, false, 0, err
	}
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
	if len(hp.idle) >= t.maxIdle() {
		t.mu.Unlock()
		c.discard()
		return
	}
	c.idleAt = now
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

// sweep closes idle connections that expired or that the server closed
// (found by peekAlive), so that they hold no socket (in CLOSE_WAIT) and
// no MaxConnsPerHost slot while nothing asks for their host. It runs on
// a timer, in a goroutine of its own only while it runs, and re-arms
// itself while connections are idle. A connection taken for a request
// while it is checked is left alone: only connections still idle after
// the check are removed.
func (t *Transport) sweep() {
	now := t.now()
	var check []*conn
	var expired []*conn
	t.mu.Lock()
	t.swept = false
	for _, hp := range t.hosts {
		for _, c := range hp.idle {
			if t.IdleTimeout > 0 && now.Sub(c.idleAt) >= t.IdleTimeout {
				expired = append(expired, c)
			} else if c.raw != nil {
				check = append(check, c)
			}
		}
	}
	t.mu.Unlock()
	dead := expired
	for _, c := range check {
		if !peekAlive(c.raw, c.tlsState != nil) {
			dead = append(dead, c)
		}
	}
	var gone []*conn
	t.mu.Lock()
	for _, c := range dead {
		hp := c.hp
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
	t.mu.Unlock()
}
