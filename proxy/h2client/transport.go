package h2client

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"
)

// Transport is an HTTP/2 http.RoundTripper for upstream connections. Its
// zero value is usable (it dials plain TCP, i.e. h2c with prior
// knowledge); set fields before the first RoundTrip and do not change
// them afterwards. A Transport is safe for concurrent use.
type Transport struct {
	// Dial returns a connection ready for HTTP/2 to addr ("host:port"):
	// plain TCP for h2c, or a TLS connection that negotiated "h2". The
	// connection preface is the first thing sent on it. Its errors are
	// returned wrapped, so errors.As finds the caller's error types. nil
	// means a zero net.Dialer.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)

	// IdleTimeout is how long a connection without open streams is kept
	// before it is closed. 0 means 90s; a negative value means no limit.
	IdleTimeout time.Duration

	// MaxStreamsPerConn is how many streams a connection carries in its
	// life (Envoy's max_requests_per_connection): the last one it may
	// take leaves it open for the streams it has and closes it when they
	// end. 0 means no limit.
	MaxStreamsPerConn int

	// MaxConnAge is how long a connection takes new streams from its
	// dial (Envoy's max_connection_duration): past it, the connection
	// takes none, and closes when its streams end (at once if it has
	// none). 0 means no limit.
	MaxConnAge time.Duration

	// DialOverflow, when set, reports whether an error of Dial means
	// that a cap on connections beyond this Transport's was reached (a
	// cluster's max_connections across its endpoints). A request that
	// finds every stream of its host's connections taken and whose dial
	// DialOverflow refuses waits for a stream to end, a connection to
	// close (it then dials again) or a new connection with room, for as
	// long as its context and deadline allow (then failing with
	// ErrConnectionWait). A host with no connection that takes new
	// streams (none, or only ones going away) has its next dialled with
	// a context marked roundtrip.WithFirstConn, which the cap should let
	// through, so that there is always a connection to wait on. Envoy's
	// connection pools queue the same way (but count a connection going
	// away as busy).
	DialOverflow func(error) bool

	// ReadIdleTimeout is how long a connection may stay silent before a
	// PING is sent to check it (the check runs between one and two
	// ReadIdleTimeouts after the last frame read). The check also closes
	// a connection one of whose writes has not returned since the
	// previous check: the server stopped reading. 0 means 30s; a negative
	// value turns the check off.
	ReadIdleTimeout time.Duration

	// PingTimeout is how long a PING sent by the ReadIdleTimeout check may
	// go unanswered before the connection is closed. It also bounds what
	// is due as promptly: the server's first SETTINGS frame and its
	// acknowledgement of ours, both counted from our connection preface
	// (beyond it the connection ends with GOAWAY SETTINGS_TIMEOUT, RFC
	// 9113 §6.5.3), and the time one response header block (HEADERS and
	// its CONTINUATION frames) may stay open (beyond it, GOAWAY
	// ENHANCE_YOUR_CALM). 0 means 15s.
	PingTimeout time.Duration

	// MinPingInterval is the least time between two PINGs of the
	// ReadIdleTimeout check on one connection: while a connection stays
	// silent it is checked again only once MinPingInterval has passed
	// since its previous PING. gRPC servers count PINGs that come closer
	// than their keepalive enforcement's minimum (5 minutes by default in
	// grpc-go and grpc-java), also on a connection whose streams are
	// waiting for the server, and after the third such PING end the
	// connection with GOAWAY ENHANCE_YOUR_CALM "too_many_pings", failing
	// its streams (gRFC A8). Each such GOAWAY doubles the spacing for
	// every connection of the Transport from then on (up to
	// maxPingSpacing), as grpc-go's client doubles its keepalive time: a
	// server stricter than the minimum is met after a few. 0 means 5
	// minutes; a negative value means no minimum (the spacing then
	// starts from ReadIdleTimeout when it doubles).
	MinPingInterval time.Duration

	// MaxHeaderListSize caps the decoded size (RFC 9113 §6.5.2: names,
	// values and 32 bytes per field) of a response's header block and of
	// its trailers; it is advertised as SETTINGS_MAX_HEADER_LIST_SIZE. A
	// block over it resets its stream (PROTOCOL_ERROR); a single field
	// longer than it, or a frame far beyond it, is a connection error,
	// as in x/net/http2. The blocks are decoded as x/net/http2's framer
	// decodes them, which counts "trailer" fields (the names of the
	// trailers to come) against a budget of their own of the same size, so a block may decode to up
	// to twice it. 0 means 10 MiB, as in x/net/http2.
	MaxHeaderListSize uint32

	// ExpectContinueTimeout is how long a request with a body and
	// "Expect: 100-continue" waits, after its HEADERS, for the server's
	// 100 Continue before sending its body anyway. A final response that
	// comes first is returned and the body is not sent; other 1xx
	// responses do not end the wait. 0 means the body is sent at once,
	// without waiting (the Expect field is passed on all the same).
	ExpectContinueTimeout time.Duration

	// Now is the clock idle expiry is measured with. nil means time.Now.
	Now func() time.Time

	// pingSpacing, when above MinPingInterval, is the spacing that
	// GOAWAYs "too_many_pings" doubled it to (see minPingInterval).
	pingSpacing atomic.Int64

	mu sync.Mutex
	// hosts holds each host's connections while it has any (or a dial in
	// flight): a host whose last connection closed is removed.
	hosts map[string]*hostPool // guarded by mu
	// keep is the last Retain's: the hosts whose connections are pooled
	// (nil: all). Guarded by mu.
	keep func(addr string) bool
}

const (
	defaultIdleTimeout       = 90 * time.Second
	defaultReadIdleTimeout   = 30 * time.Second
	defaultPingTimeout       = 15 * time.Second
	defaultMinPingInterval   = 5 * time.Minute
	defaultMaxHeaderListSize = 10 << 20
	// max1xx caps the informational responses accepted before the final one.
	max1xx = 10
)

func (t *Transport) now() time.Time {
	if t.Now != nil {
		return t.Now()
	}
	return time.Now()
}

func (t *Transport) idleTimeout() time.Duration {
	if t.IdleTimeout == 0 {
		return defaultIdleTimeout
	}
	return t.IdleTimeout
}

func (t *Transport) readIdleTimeout() time.Duration {
	if t.ReadIdleTimeout == 0 {
		return defaultReadIdleTimeout
	}
	return t.ReadIdleTimeout
}

func (t *Transport) pingTimeout() time.Duration {
	if t.PingTimeout <= 0 {
		return defaultPingTimeout
	}
	return t.PingTimeout
}

func (t *Transport) minPingInterval() time.Duration {
	d := t.MinPingInterval
	if d == 0 {
		d = defaultMinPingInterval
	}
	return max(d, time.Duration(t.pingSpacing.Load()))
}

// maxPingSpacing bounds the doubling of the PING spacing: gRPC servers'
// strictest enforcement, for PINGs on a connection without streams, is
// two hours.
const maxPingSpacing = 2 * time.Hour

// slowPings doubles the PING spacing after a server ended a connection
// for PINGs that came too often (GOAWAY ENHANCE_YOUR_CALM
// "too_many_pings").
func (t *Transport) slowPings() {
	for {
		cur := t.pingSpacing.Load()
		base := max(t.minPingInterval(), t.readIdleTimeout())
		next := min(2*base, maxPingSpacing)
		if t.pingSpacing.CompareAndSwap(cur, int64(next)) {
			return
		}
	}
}

func (t *Transport) maxHeaderListSize() uint32 {
	if t.MaxHeaderListSize == 0 {
		return defaultMaxHeaderListSize
	}
	return t.MaxHeaderListSize
}

// RoundTrip sends req on a stream of a connection to req.URL.Host and
// returns once the response's header block arrived; the body streams as
// the caller reads Response.Body while the request body is still being
// sent (full duplex). It closes req.Body, also on errors. It is
// RoundTripHooks on req's context, without hooks or deadline.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	return t.RoundTripHooks(req.Context(), req, nil, time.Time{})
}

// ErrUnprocessed is wrapped in the error of a request the server did not
// process — refused with REFUSED_STREAM, or above the last stream id of
// a GOAWAY, before any response (1xx included), or queued on a connection that failed
// before its HEADERS were handed to the socket — and that RoundTrip did
// not send again: its one more try failed the same way, or its body
// could not be sent again. The request may be sent again whatever its
// method (RFC 9113 §8.7). Test with errors.Is.
var ErrUnprocessed = errors.New("request not processed by the server")

// hostAddr is the address a URL's connections go to: its host, with the
// scheme's port when it names none (canonicalAddr's rule in net/http).
func hostAddr(u *url.URL) string {
	if u.Port() != "" || u.Host == "" {
		return u.Host
	}
	if u.Scheme == "https" {
		return net.JoinHostPort(u.Hostname(), "443")
	}
	return net.JoinHostPort(u.Hostname(), "80")
}

// CloseIdleConnections closes every connection that has no open stream
// and waits for their reader and writer goroutines to return (within
// about a second: the bound on writing what was queued). Connections in
// use are not touched.
func (t *Transport) CloseIdleConnections() {
	var idle []*conn
	t.mu.Lock()
	for _, hp := range t.hosts {
		for _, c := range hp.conns {
			if c.takeIfIdle() {
				idle = append(idle, c)
			}
		}
	}
	t.mu.Unlock()
	for _, c := range idle {
		c.close(errIdleClosed)
	}
	for _, c := range idle {
		<-c.readerDone
		<-c.writerDone
	}
}

// Retain keeps pooling the connections to the hosts ("host:port") keep
// reports true for, until the next Retain; nil keeps every host. Those
// to any other host take no new stream and close when their last
// stream ends, at once when they have none; so does each connection
// dialled to such a host later (a request that still goes there). A
// host a later Retain keeps again gets new connections. keep is called
// with the Transport's lock held, now and for hosts dialled later: it
// must not block or call the Transport.
//
// A proxy calls it when its configuration drops endpoints, as Envoy
// drains the connection pools of a host removed from a cluster: pooled
// connections that nothing will ask for would hold their sockets, and
// any cap on the connections open, until the idle timeout.
func (t *Transport) Retain(keep func(addr string) bool) {
	var idle []*conn
	var let []*hostPool
	t.mu.Lock()
	t.keep = keep
	for addr, hp := range t.hosts {
		hp.draining = keep != nil && !keep(addr)
		if !hp.draining {
			continue
		}
		let = append(let, hp)
		for _, c := range hp.conns {
			if c.drain() {
				idle = append(idle, c)
			}
		}
	}
	t.mu.Unlock()
	// The requests waiting at DialOverflow's cap for a stream on a
	// host let go look again: its connections take no new stream, so
	// they dial its next as its first, as a request that comes now
	// does, rather than sleep until a stream ends or their deadline.
	for _, hp := range let {
		hp.freed.notify()
	}
	closeAll(idle, errHostRetired)
}

// RetryOverflowed has the requests waiting at a cap DialOverflow
// recognises dial again, as when one of their host's connections
// closes: the cap may have been raised since it refused them (a proxy
// applies new limits at once, as Envoy's circuit breakers do). Those it
// refuses again wait again.
func (t *Transport) RetryOverflowed() {
	t.mu.Lock()
	hosts := make([]*hostPool, 0, len(t.hosts))
	for _, hp := range t.hosts {
		hp.closes++
		hosts = append(hosts, hp)
	}
	t.mu.Unlock()
	for _, hp := range hosts {
		hp.freed.notify()
	}
}

// errHostRetired ends a connection to a host Retain let go.
var errHostRetired = errors.New("h2client: connection closed: its host is no longer pooled")

// errIdleClosed ends a connection closed for idleness.
var errIdleClosed = errors.New("h2client: idle connection closed")

// closeReqBody closes a request body that RoundTrip will not send.
func closeReqBody(req *http.Request) {
	if req.Body != nil && req.Body != http.NoBody {
		req.Body.Close()
	}
}

var (
	_ http.RoundTripper = (*Transport)(nil)
	_ io.ReadCloser     = (*body)(nil)
)
