package h1client

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptrace"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Transport is an HTTP/1.1 http.RoundTripper that runs every exchange on
// the calling goroutine. Its zero value is usable (it dials with a
// net.Dialer); set fields before the first RoundTrip and do not change
// them afterwards. A Transport is safe for concurrent use.
type Transport struct {
	// Dial opens a TCP connection to addr ("host:port"). Its errors are
	// returned wrapped, so errors.As finds the caller's error types. nil
	// means a zero net.Dialer.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)

	// TLSClientConfig configures TLS for https URLs, run over the dialled
	// connection. ServerName defaults to the URL's host; NextProtos is
	// always ["http/1.1"]. nil means the zero tls.Config.
	TLSClientConfig *tls.Config

	// TLSSessionCache, when set, is the session cache of the connections
	// to addr ("host:port"), in place of TLSClientConfig's: crypto/tls
	// keys its cache by server name alone, which the endpoints behind
	// one name share (a resumed session is the server's own).
	TLSSessionCache func(addr string) tls.ClientSessionCache

	// ConnectTimeout bounds making a connection: the dial and, for
	// https, the TLS handshake, together, from the dial's start (as
	// Envoy's connect_timeout covers TLS session setup). 0 means only
	// the request's context (and Dial's own bound) bounds them.
	ConnectTimeout time.Duration

	// IdleTimeout is how long a connection may sit idle before it is
	// closed instead of reused (checked when a connection is taken). 0
	// means no limit.
	IdleTimeout time.Duration

	// ExpectContinueTimeout is how long a request with "Expect:
	// 100-continue" waits for the server's first response before sending
	// its body anyway. 0 means the body is sent at once, without waiting.
	ExpectContinueTimeout time.Duration

	// MaxIdlePerHost caps each host's idle connections. 0 means 2, as in
	// net/http; a negative value keeps no idle connections.
	MaxIdlePerHost int

	// MaxRequestsPerConn is how many exchanges a connection carries in
	// its life (Envoy's max_requests_per_connection): it is closed at
	// the end of the last instead of being reused. 0 means no limit.
	MaxRequestsPerConn int

	// MaxConnAge is how long a connection is reused from its dial
	// (Envoy's max_connection_duration): one past it is closed at the
	// end of its exchange, or, idle, by the sweep of idle connections
	// (within a second) or when taken. 0 means no limit.
	MaxConnAge time.Duration

	// MaxConnsPerHost caps each host's open connections, dialling, in use
	// and idle. A request at the cap waits for a connection to be returned
	// or closed, or for its context to end. 0 means no limit.
	MaxConnsPerHost int

	// DialOverflow, when set, reports whether an error of Dial means
	// that a cap on connections beyond this Transport's was reached (a
	// cluster's max_connections across its endpoints). A request whose
	// dial it refuses waits, as at MaxConnsPerHost, for one of its
	// host's connections to be returned or closed (an idle one is taken
	// at once), as long as the host has one open; with none, it fails
	// with the error. Envoy's connection pools queue the same way.
	DialOverflow func(error) bool

	// MaxResponseHeaderBytes caps a response's status line and header
	// block (and, separately, each 1xx response's and the trailers). 0
	// means 10 MiB, as in net/http.
	MaxResponseHeaderBytes int

	// ReadBufferSize and WriteBufferSize size each connection's buffers.
	// 0 means 4 KiB.
	ReadBufferSize, WriteBufferSize int

	// Now is the clock idle expiry is measured with. nil means time.Now.
	Now func() time.Time

	mu sync.Mutex
	// hosts holds each host's pool while it has a connection open (or
	// a request at it): a host whose last connection closed is removed,
	// so that endpoints that come and go leave nothing behind.
	hosts map[hostKey]*hostPool // guarded by mu
	// keep is the last Retain's: the hosts whose connections are pooled
	// (nil: all). Guarded by mu.
	keep func(addr string) bool
	// retries counts the calls of RetryOverflowed (changed under mu).
	// A request refused a dial joins its host's queue only if none came
	// since the dial began: one that did may have raised the cap after
	// the refusal and found the queue without it (see dialSlot).
	retries atomic.Uint64
	// sweeper, armed while connections are idle, closes idle
	// connections the server closed or that expired (see sweep).
	sweeper *time.Timer // guarded by mu
	swept   bool        // guarded by mu: the sweeper is armed
	// noSweep turns the sweeper off (tests that need a stale idle
	// connection to stay in the pool).
	noSweep bool

	// writers holds the write buffers of connections not sending a
	// request, readers the read buffers of idle connections. A request
	// head is written and flushed in one go, so a connection needs its
	// write buffer only while it sends, and its read buffer only from
	// its request to the end of the response: sharing the buffers keeps
	// the few in use warm in the cache instead of one pair per
	// connection, most of them idle or waiting for a response.
	writers, readers sync.Pool
}

const (
	defaultMaxIdle        = 2
	defaultMaxHeaderBytes = 10 << 20
	defaultBufferSize     = 4 << 10
	// max1xx caps the informational responses read before the final one.
	max1xx = 10
)

// getWriter returns a write buffer on c, from the pool when it has one.
func (t *Transport) getWriter(c *conn) *bufio.Writer {
	if bw, _ := t.writers.Get().(*bufio.Writer); bw != nil {
		bw.Reset(c)
		return bw
	}
	ws := t.WriteBufferSize
	if ws <= 0 {
		ws = defaultBufferSize
	}
	return bufio.NewWriterSize(c, ws)
}

// putWriter returns bw to the pool. What it still holds (a failed
// write's bytes) is dropped: the connection is closed after a failed
// write.
func (t *Transport) putWriter(bw *bufio.Writer) {
	bw.Reset(nil)
	t.writers.Put(bw)
}

// getReader returns a read buffer on nc, from the pool when it has one.
func (t *Transport) getReader(nc net.Conn) *bufio.Reader {
	if br, _ := t.readers.Get().(*bufio.Reader); br != nil {
		br.Reset(nc)
		return br
	}
	rs := t.ReadBufferSize
	if rs <= 0 {
		rs = defaultBufferSize
	}
	return bufio.NewReaderSize(nc, rs)
}

// putReader returns br, which holds nothing, to the pool.
func (t *Transport) putReader(br *bufio.Reader) {
	br.Reset(nil)
	t.readers.Put(br)
}

func (t *Transport) now() time.Time {
	if t.Now != nil {
		return t.Now()
	}
	return time.Now()
}

func (t *Transport) maxIdle() int {
	if t.MaxIdlePerHost == 0 {
		return defaultMaxIdle
	}
	return max(t.MaxIdlePerHost, 0)
}

func (t *Transport) maxHeaderBytes() int {
	if t.MaxResponseHeaderBytes > 0 {
		return t.MaxResponseHeaderBytes
	}
	return defaultMaxHeaderBytes
}

// RoundTrip sends req and returns the response head; the body is read
// from the connection as the caller reads Response.Body. It closes
// req.Body, also on errors.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	return t.RoundTripHooks(req.Context(), req, nil, time.Time{})
}

func (t *Transport) roundTrip(ctx context.Context, req *http.Request, o *outgoing, hooks Hooks, deadline time.Time) (*http.Response, error) {
	if req.URL == nil {
		return nil, errors.New("h1client: request has no URL")
	}
	if err := o.prepare(req); err != nil {
		return nil, err
	}
	hp, err := t.host(req.URL)
	if err != nil {
		return nil, err
	}
	ev := events{hooks: hooks, trace: httptrace.ContextClientTrace(ctx)}
	if ev.trace != nil && ev.trace.GetConn != nil {
		ev.trace.GetConn(hp.key.addr)
	}
	// A request that is not sent again when a stale connection fails it
	// (see exchange's stale) is not sent on one the server has closed:
	// every reused connection is checked for it, not only those idle
	// for peekAfter. One system call per such request; the others rely
	// on the retry.
	check := !o.idempotent || o.length != 0 && req.GetBody == nil
	for attempt := 0; ; attempt++ {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("h1client: %w", context.Cause(ctx))
		}
		// A retry follows a reused connection the server had closed,
		// as it may have closed others it held (a restart closes them
		// all): it dials, and any connection it still reuses (at
		// MaxConnsPerHost) is checked first.
		retry := attempt > 0
		c, wasIdle, idleTime, err := t.getConn(ctx, hp, deadline, check || retry, retry)
		if err != nil {
			return nil, err
		}
		if attempt == 0 {
			ev.gotConn(httptrace.GotConnInfo{Conn: c.nc, Reused: c.reused, WasIdle: wasIdle, IdleTime: idleTime})
		}
		resp, stale, err := c.exchange(ctx, deadline, req, o, &ev)
		if err == nil {
			return resp, nil
		}
		// A stale keep-alive connection: send once more on a fresh one
		// when the body can be sent again.
		if attempt > 0 || !stale || (o.length != 0 && req.GetBody == nil) {
			return nil, err
		}
		if o.length != 0 {
			o.closeBody()
			b, gerr := req.GetBody()
			if gerr != nil {
				return nil, fmt.Errorf("h1client: rewinding request body: %w (after %w)", gerr, err)
			}
			o.body = b
		}
	}
}

// CloseIdleConnections closes every idle connection. Connections in use
// are not touched.
func (t *Transport) CloseIdleConnections() {
	var idle []*conn
	t.mu.Lock()
	for _, hp := range t.hosts {
		idle = append(idle, hp.idle...)
		clear(hp.idle)
		hp.idle = hp.idle[:0]
	}
	if t.swept {
		t.sweeper.Stop()
		t.swept = false
	}
	t.mu.Unlock()
	for _, c := range idle {
		c.discard()
	}
}

// Retain keeps pooling the connections to the hosts ("host:port") keep
// reports true for, until the next Retain; nil keeps every host. The
// idle connections to any other host are closed, and those in use are
// closed at the end of their exchange instead of kept idle (one is
// still handed to a request waiting for that host at MaxConnsPerHost);
// so is each connection dialled to such a host later (a request that
// still goes there). A host a later Retain keeps again is pooled as
// before. keep is called with the Transport's lock held, now and for
// hosts used later: it must not block or call the Transport.
//
// A proxy calls it when its configuration drops endpoints, as Envoy
// drains the connection pools of a host removed from a cluster: idle
// connections that nothing will ask for would hold their sockets, and
// any cap on the connections open, until the idle timeout.
func (t *Transport) Retain(keep func(addr string) bool) {
	var idle []*conn
	t.mu.Lock()
	t.keep = keep
	for k, hp := range t.hosts {
		hp.draining = keep != nil && !keep(k.addr)
		if hp.draining {
			idle = append(idle, hp.idle...)
			clear(hp.idle)
			hp.idle = hp.idle[:0]
		}
	}
	t.mu.Unlock()
	for _, c := range idle {
		c.discard()
	}
}

// RetryOverflowed hands the requests waiting for one of their host's
// connections a slot to dial in, as far as MaxConnsPerHost allows: a cap
// DialOverflow recognises may have been raised since it refused them (a
// proxy applies new limits at once, as Envoy's circuit breakers do).
// Those it refuses again wait again, behind the others.
func (t *Transport) RetryOverflowed() {
	var woken []*waiter
	t.mu.Lock()
	t.retries.Add(1)
	for _, hp := range t.hosts {
		for len(hp.waiters) > 0 && (t.MaxConnsPerHost <= 0 || hp.open < t.MaxConnsPerHost) {
			woken = append(woken, hp.waiters[0])
			hp.waiters = slices.Delete(hp.waiters, 0, 1)
			hp.open++
		}
	}
	t.mu.Unlock()
	for _, w := range woken {
		w.ch <- nil // buffered, and only ever sent to once
	}
}

var _ http.RoundTripper = (*Transport)(nil)
