package h1server

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/outrigger-mesh/outrigger/proxy/h2server"
	"github.com/outrigger-mesh/outrigger/proxy/internal/sockio"
)

// Server serves HTTP/1.1 requests, and hands HTTP/2 connections to H2, on
// the listeners passed to Serve. Set its fields before the first Serve
// call and do not change them afterwards; the zero value of each field is
// its documented default. MaxHeaderBytes, ReadHeaderTimeout and
// IdleTimeout are the initial limits: SetLimits changes them for the
// connections accepted afterwards.
type Server struct {
	// Handler answers every request. It must not be nil.
	Handler http.Handler

	// H2 serves connections that open with the HTTP/2 client preface
	// (prior knowledge) and requests that ask to switch with
	// "Upgrade: h2c" (RFC 7540 §3.2). Nil: HTTP/1.1 only; such
	// connections then get 505 and upgrade requests are served as plain
	// HTTP/1.1. Its zero Handler, MaxHeaderBytes, IdleTimeout and ErrorLog are set to
	// this Server's by the first Serve, so an h2server.Server must not be
	// shared between Servers. Once SetLimits has been called, the
	// HTTP/2 connections accepted afterwards take its MaxHeaderBytes and
	// IdleTimeout instead of H2's. Shutdown and Close drive its Shutdown
	// and Close.
	H2 *h2server.Server

	// MaxHeaderBytes bounds the request line plus header block (and a
	// chunked body's trailer block); larger ones get 431. Zero means
	// http.DefaultMaxHeaderBytes (1 MiB); values above 1 GiB mean 1 GiB.
	// As with net/http, up to 4 KiB of read-ahead may be counted against
	// it.
	MaxHeaderBytes int

	// ReadHeaderTimeout bounds the time from a request's first byte (or,
	// for a connection's first request, from its accept) to the end of
	// its header block. Zero means no limit.
	ReadHeaderTimeout time.Duration
	// IdleTimeout bounds the wait for the next request on a keep-alive
	// connection, and, unless WriteTimeout or the handler's write
	// deadline does, the writes the server makes with no handler running
	// (what is left of a response once its handler has returned, and the
	// server's own answers: to a request it refuses, the 101 to an h2c
	// upgrade) and 1xx responses. Zero means no limit.
	IdleTimeout time.Duration
	// WriteTimeout, when set, is a write deadline for each response,
	// counted from the end of its request's header block. Zero means no
	// limit.
	WriteTimeout time.Duration

	// BaseContext is the parent of every request's context (HTTP/1.1 and
	// HTTP/2). Nil means context.Background. Cancelling it cancels every
	// request, hijacked connections' requests included.
	BaseContext context.Context

	// ErrorLog receives errors the Server cannot return to anyone: handler
	// panics, bad handler behaviour, HTTP/2 connection errors. Nil means
	// they are dropped.
	ErrorLog func(msg string, err error)

	// Refused, when set, is told of each request the Server answers
	// itself before any handler runs (a malformed request line, header
	// or Host, a header block over MaxHeaderBytes, framing it refuses,
	// an unsupported Expect or transfer coding: see the package doc), once,
	// on the connection's goroutine after the answer is written, and
	// must not block. Such a request closes its connection, so a client
	// causes at most one call per connection it opens. A connection that
	// ends before a whole request (EOF, a reset, a read-header timeout)
	// was answered nothing and is not reported. H2's Refused, when nil,
	// is set to this one by the first Serve.
	Refused func(Refusal)

	// HandshakeFailed, when set, is told of each TLS handshake (see
	// Limits.TLS) that failed, its deadline passing included, with its
	// error, on the connection's goroutine, which then closes the
	// connection. A handshake that Shutdown or Close ended, by closing
	// its connection, is not a failure and is not told. It must not
	// block.
	HandshakeFailed func(err error)

	// Gate, when set, admits the connections Serve accepts: each one is
	// offered to Gate.Admit as soon as it is accepted, and one refused is
	// closed at once, before anything is read from it or written to it
	// (the listener goes on accepting: a connection left in the kernel's
	// backlog would hold the client in its connect, and then time out,
	// where a closed one fails at once). Every admitted connection is
	// given back by one Gate.Release when the Server is done with it:
	// an HTTP/1.1 or HTTP/2 connection once closed, a hijacked one once
	// its handler has returned. Gate may be shared between Servers.
	Gate ConnGate

	initOnce sync.Once
	ctx      context.Context // BaseContext's child; Close cancels it
	cancel   context.CancelFunc

	// limits are the limits given to each connection at its accept:
	// those of the fields (set by init), then SetLimits's.
	limits atomic.Pointer[connLimits]

	inShutdown atomic.Bool
	// noKeepAlive: SetKeepAlivesEnabled(false).
	noKeepAlive atomic.Bool

	mu sync.Mutex
	// listeners are the listeners Serve is accepting on; guarded by mu.
	listeners map[*net.Listener]struct{}
	// conns are the connections being served (HTTP/1.1 and HTTP/2),
	// hijacked ones excepted; guarded by mu.
	conns map[*conn]struct{}
}

// ConnGate admits a Server's connections (Server.Gate). Its methods are
// called from the accept loop and from the connections' goroutines,
// concurrently; they must not block.
type ConnGate interface {
	// Admit reports whether a connection just accepted may be served.
	Admit() bool
	// Release gives back a connection Admit admitted.
	Release()
}

// Refusal is a request the Server answered itself before any handler
// ran (Server.Refused); HTTP/1.1 and HTTP/2 report the same type.
type Refusal = h2server.Refusal

// Limits are the limits of a Server that SetLimits changes while it
// serves. Each zero value means what the Server field of the same name
// means when zero: http.DefaultMaxHeaderBytes (1 MiB), no read-header
// timeout, no idle timeout.
type Limits struct {
	// MaxHeaderBytes is as Server.MaxHeaderBytes, and is also HTTP/2
	// connections' SETTINGS_MAX_HEADER_LIST_SIZE.
	MaxHeaderBytes int
	// ReadHeaderTimeout is as Server.ReadHeaderTimeout.
	ReadHeaderTimeout time.Duration
	// IdleTimeout is as Server.IdleTimeout, and is also HTTP/2
	// connections' idle timeout.
	IdleTimeout time.Duration
	// TLS, when set, has the connections speak TLS with this
	// configuration: each does its handshake on its own goroutine (never
	// the accept loop's), within HandshakeTimeout of its accept, and is
	// then handed to H2 when ALPN chose "h2", or when ALPN chose none
	// and it opens with the HTTP/2 client preface, else served as
	// HTTP/1.1 (without "Upgrade: h2c", which is for cleartext only:
	// RFC 9113 §3.1; after ALPN chose "http/1.1" the preface is an
	// HTTP/1.1 request of version 2.0, answered 505); its requests' Request.TLS is the connection's state, and
	// ReadHeaderTimeout counts from the handshake's end. Its NextProtos
	// are the protocols offered ("h2" and "http/1.1"). Nil means
	// cleartext.
	TLS *tls.Config
	// HandshakeTimeout bounds a TLS connection's handshake, from its
	// accept. Zero means no limit.
	HandshakeTimeout time.Duration
}

// connLimits are the limits a connection keeps for its life, taken at
// its accept; one value is shared by all connections accepted under it.
type connLimits struct {
	maxHeaderBytes    int // the default applied
	readHeaderTimeout time.Duration
	idleTimeout       time.Duration
	// h2 is handed to H2 with HTTP/2 connections; nil (the fields'
	// limits) leaves H2's own MaxHeaderBytes, ReadHeaderTimeout and
	// IdleTimeout in force.
	h2 *h2server.ConnLimits
	// tls and handshakeTimeout are Limits.TLS and HandshakeTimeout.
	tls              *tls.Config
	handshakeTimeout time.Duration
}

// SetLimits replaces MaxHeaderBytes, ReadHeaderTimeout and IdleTimeout,
// and the TLS settings, for the connections Serve accepts after it returns, HTTP/1.1 and
// HTTP/2 alike (for HTTP/2 connections, l's MaxHeaderBytes,
// ReadHeaderTimeout and IdleTimeout then replace H2's). Connections already accepted keep the
// limits they were accepted with, for their whole life. It may be called
// from any goroutine, before or while Serve runs; the Server's fields
// keep their initial values. A configuration reload calls it so that
// new connections follow the new configuration.
func (s *Server) SetLimits(l Limits) {
	s.limits.Store(&connLimits{
		maxHeaderBytes:    maxHeaderBytes(l.MaxHeaderBytes),
		readHeaderTimeout: l.ReadHeaderTimeout,
		idleTimeout:       l.IdleTimeout,
		h2:                &h2server.ConnLimits{MaxHeaderBytes: l.MaxHeaderBytes, IdleTimeout: l.IdleTimeout, ReadHeaderTimeout: l.ReadHeaderTimeout},
		tls:               l.TLS,
		handshakeTimeout:  l.HandshakeTimeout,
	})
}

func (s *Server) init() {
	s.initOnce.Do(func() {
		// Unless SetLimits came first.
		s.limits.CompareAndSwap(nil, &connLimits{
			maxHeaderBytes:    s.maxHeaderBytes(),
			readHeaderTimeout: s.ReadHeaderTimeout,
			idleTimeout:       s.IdleTimeout,
		})
		parent := s.BaseContext
		if parent == nil {
			parent = context.Background()
		}
		s.ctx, s.cancel = context.WithCancel(parent)
		s.listeners = map[*net.Listener]struct{}{}
		s.conns = map[*conn]struct{}{}
		if h2 := s.H2; h2 != nil {
			if h2.Handler == nil {
				h2.Handler = s.Handler
			}
			if h2.MaxHeaderBytes == 0 {
				h2.MaxHeaderBytes = s.maxHeaderBytes()
			}
			if h2.ErrorLog == nil {
				h2.ErrorLog = s.ErrorLog
			}
			if h2.IdleTimeout == 0 {
				h2.IdleTimeout = s.IdleTimeout
			}
			if h2.Refused == nil {
				h2.Refused = s.Refused
			}
		}
	})
}

func (s *Server) maxHeaderBytes() int { return maxHeaderBytes(s.MaxHeaderBytes) }

// maxHeaderBytes is the header-size limit for a MaxHeaderBytes of n,
// capped at 1 GiB as H2's is (the read-ahead is added to it).
func maxHeaderBytes(n int) int {
	if n > 0 {
		return min(n, 1<<30)
	}
	return http.DefaultMaxHeaderBytes
}

func (s *Server) logf(msg string, err error) {
	if s.ErrorLog != nil {
		s.ErrorLog(msg, err)
	}
}

// Serve accepts connections on ln and serves each on its own goroutine
// until Shutdown or Close, which close ln; it then returns
// http.ErrServerClosed. Called after Shutdown or Close, it closes ln and
// returns http.ErrServerClosed at once. Any other accept error that is not
// temporary is returned as is.
func (s *Server) Serve(ln net.Listener) error {
	s.init()
	if s.Handler == nil {
		return errors.New("h1server: nil Handler")
	}
	if !s.trackListener(&ln, true) {
		ln.Close()
		return http.ErrServerClosed
	}
	defer s.trackListener(&ln, false)

	var delay time.Duration
	for {
		rw, err := ln.Accept()
		if err != nil {
			if s.inShutdown.Load() {
				return http.ErrServerClosed
			}
			var ne interface{ Temporary() bool }
			if errors.As(err, &ne) && ne.Temporary() {
				// Out of file descriptors and the like: back off as
				// net/http does, then try again.
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				s.logf("h1server: accept error, retrying", err)
				t := time.NewTimer(delay)
				select {
				case <-t.C:
				case <-s.ctx.Done():
					t.Stop()
				}
				continue
			}
			return err
		}
		delay = 0
		if s.Gate != nil && !s.Gate.Admit() {
			rw.Close()
			continue
		}
		rw = sockio.Wrap(rw)
		// One load per connection: its requests read c.lim.
		c := newConn(s, rw, s.limits.Load())
		if !s.trackConn(c, true) {
			rw.Close()
			if s.Gate != nil {
				s.Gate.Release()
			}
			continue
		}
		go c.serve()
	}
}

func (s *Server) trackListener(ln *net.Listener, add bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if add {
		if s.inShutdown.Load() {
			return false
		}
		s.listeners[ln] = struct{}{}
	} else {
		delete(s.listeners, ln)
	}
	return true
}

func (s *Server) trackConn(c *conn, add bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if add {
		if s.inShutdown.Load() {
			return false
		}
		s.conns[c] = struct{}{}
	} else {
		delete(s.conns, c)
	}
	return true
}

// closeListenersLocked closes every listener; s.mu must be held.
func (s *Server) closeListenersLocked() {
	for ln := range s.listeners {
		(*ln).Close()
		delete(s.listeners, ln)
	}
}

// Shutdown stops accepting (closing the listeners), closes idle HTTP/1.1
// connections, has H2 send GOAWAY to HTTP/2 connections (h2server's
// Shutdown), and waits until every connection has finished its requests
// and closed, or until ctx is done.
// A connection accepted before Shutdown whose first request has not
// arrived gets up to 5 s to send it.
// It returns nil after a complete drain (every connection goroutine has
// ended), else ctx's error; the remaining HTTP/1.1
// connections then stay open (call Close to end them), while H2 closes
// the HTTP/2 ones still open. HTTP/1.1
// connections finish their current request and close. Hijacked
// connections are neither waited for nor closed.
func (s *Server) Shutdown(ctx context.Context) error {
	s.StopAccepting()
	if s.H2 != nil {
		// H2 sends GOAWAY now, and to connections it is handed later.
		h2done := make(chan struct{})
		go func() {
			defer close(h2done)
			_ = s.H2.Shutdown(ctx)
		}()
		defer func() { <-h2done }()
	}

	const maxPoll = 100 * time.Millisecond
	poll := time.Millisecond
	timer := time.NewTimer(poll)
	defer timer.Stop()
	for {
		if s.closeIdle() == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-timer.C:
			poll = min(2*poll, maxPoll)
			timer.Reset(poll)
		}
	}
}

// SetKeepAlivesEnabled(false) has the responses whose header is written
// from then on say Connection: close, and their connections close after
// them, as during Shutdown, while the Server goes on accepting and
// serving: keep-alive clients are made to reconnect, on connections
// that go where their address now leads, before the listener closes.
// Unlike net/http's method of that name it closes no idle connection:
// such a close races the client's next request, which, answered, says
// Connection: close instead. HTTP/2 connections are left as they are.
// True undoes it. The zero Server keeps connections alive.
func (s *Server) SetKeepAlivesEnabled(v bool) { s.noKeepAlive.Store(!v) }

// StopAccepting is Shutdown's first step, which it returns after: the
// listeners are closed (Serve returns http.ErrServerClosed) and a Serve
// called later returns at once; each HTTP/1.1 connection closes after
// the response it is writing, which says Connection: close if its
// header is still to be written. It closes no idle connection and sends
// no GOAWAY: the Shutdown that follows does.
func (s *Server) StopAccepting() {
	s.init()
	s.inShutdown.Store(true)
	s.mu.Lock()
	s.closeListenersLocked()
	s.mu.Unlock()
}

// closeIdle closes the idle HTTP/1.1 connections and reports how many
// connections remain (closed ones count until their goroutine has left,
// so that Shutdown joins them).
func (s *Server) closeIdle() (busy int) {
	var idle []net.Conn
	s.mu.Lock()
	now := time.Now()
	for c := range s.conns {
		busy++
		if c.state.Load() == stateH2 {
			continue
		}
		if !c.used.Load() && now.Sub(c.accepted) < newConnGrace {
			// Accepted, but its first request has not arrived yet: it
			// may be on its way (net/http waits 5 s for these too).
			continue
		}
		if c.state.CompareAndSwap(stateIdle, stateClosed) {
			idle = append(idle, c.rwc)
		}
	}
	s.mu.Unlock()
	closeEach(idle)
	return busy
}

// closeEach closes idle connections, outside the Server's lock and each
// on its own: a TLS connection's Close sends close_notify first, which
// waits up to five seconds (crypto/tls's bound) for room in a send
// buffer its client stopped reading, and must hold up neither the other
// closes nor the Server (net/http closes them one after the other under
// its lock). A bare TCP socket's Close does not wait: it is closed at
// once. No handler runs on an idle connection, so none can write to one
// whose close is still to come.
func closeEach(conns []net.Conn) {
	for _, rc := range conns {
		if _, ok := rc.(*net.TCPConn); ok {
			rc.Close()
			continue
		}
		go rc.Close()
	}
}

// closeHard closes c's socket at once: a TLS connection's without the
// close_notify its Close would send first, which can wait up to five
// seconds for room in a send buffer its client stopped reading. For
// Close, which cuts connections short anyway.
func closeHard(c net.Conn) {
	if tc, ok := c.(*tls.Conn); ok {
		tc.NetConn().Close()
		return
	}
	c.Close()
}

// newConnGrace is how long Shutdown lets a connection accepted before it
// send its first request.
const newConnGrace = 5 * time.Second

// Close closes the listeners and every connection (hijacked ones
// excepted) at once, and cancels the context every request derives from,
// which ends requests on HTTP/2 and hijacked connections too. Unlike
// Shutdown it does not wait for the connections' goroutines.
func (s *Server) Close() error {
	s.init()
	s.inShutdown.Store(true)
	s.mu.Lock()
	s.closeListenersLocked()
	for c := range s.conns {
		c.state.Store(stateClosed)
		// At once, before the requests' contexts end below: a handler
		// that returns then must find its connection closed, or a
		// response it never wrote (an empty 200) could reach the
		// client as a whole one.
		closeHard(c.rwc)
	}
	s.mu.Unlock()
	if s.H2 != nil {
		_ = s.H2.Close()
	}
	s.cancel()
	return nil
}

// Pools of per-connection buffers: a keep-alive connection keeps its pair
// for its whole life; a closed one gives them back.
var (
	readerPool = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, readBufSize) }}
	writerPool = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, writeBufSize) }}
)

const (
	readBufSize  = 4 << 10
	writeBufSize = 8 << 10
	// bodyBufSize is how much response body is held back, before the
	// header block is written, in the hope that the handler finishes and
	// the response can carry a Content-Length (net/http holds 2 KiB). It
	// plus a usual header block fits writeBufSize, so such a response
	// leaves in one write.
	bodyBufSize = 4 << 10
)
