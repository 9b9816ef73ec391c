package h2client

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
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
}

// dialCall is one dial (and handshake) in flight. done is closed when it
// ends; c or err is its result.
type dialCall struct {
	done chan struct{}
	c    *conn
	err  error
	// ctxErr is set when the dial ended because the dialling request's
	// context ended: the waiters, whose contexts may be alive, try again.
	ctxErr bool
}

// getConn returns a connection with a stream slot reserved for the
// caller: the first open connection with room for one more stream, else a
// new one; avoid, when set, is not taken (a retry goes elsewhere). One dial per host is in flight at a time; others wait for it.
// reused reports whether the connection carried streams before. A
// deadline (zero: none) bounds the wait for a dial and the dial as ctx
// does; only those make a context for it.
func (t *Transport) getConn(ctx context.Context, deadline time.Time, addr string, avoid *conn) (c *conn, reused bool, err error) {
	if addr == "" {
		return nil, false, errors.New("h2client: request has no host")
	}
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return nil, false, fmt.Errorf("h2client: bad address %q: %w", addr, err)
	}
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
		c = nil
		for _, cc := range hp.conns {
			if cc == avoid {
				continue
			}
			ok, r, exp := cc.reserve(now)
			if exp {
				expired = append(expired, cc)
				continue
			}
			if ok {
				c, reused = cc, r
				break
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
			select {
			case <-dc.done:
			case <-ctx.Done():
				return nil, false, fmt.Errorf("h2client: waiting for a connection to %s: %w", addr, context.Cause(ctx))
			}
			if dc.err != nil && !dc.ctxErr {
				return nil, false, dc.err
			}
			continue
		}
		dc := &dialCall{done: make(chan struct{})}
		hp.dialing = dc
		dctx := ctx
		if len(hp.conns) == len(expired) {
			// The host's first connection (bar those expiring): a cap on connections shared
			// with other hosts does not hold it back (see
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
			}
		}
		if !usable && len(hp.conns) == 0 && t.hosts[addr] == hp {
			delete(t.hosts, addr)
		}
		t.mu.Unlock()
		close(dc.done)
		if dc.err != nil {
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
			return nil, fmt.Errorf("h2client: handshake with %s: %w", addr, context.Cause(ctx))
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
	}
	if len(hp.conns) == 0 && hp.dialing == nil && t.hosts[hp.addr] == hp {
		delete(t.hosts, hp.addr)
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
