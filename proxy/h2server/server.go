package h2server

import (
	"bufio"
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// Server serves HTTP/2 connections handed to ServeConn. Set its fields
// before the first ServeConn call and do not change them afterwards; the
// zero value of each field is its documented default.
type Server struct {
	// Handler answers every request. It must not be nil.
	Handler http.Handler

	// MaxConcurrentStreams is the SETTINGS_MAX_CONCURRENT_STREAMS the
	// server announces and enforces: a stream opened while this many
	// handlers run is refused (RST_STREAM REFUSED_STREAM). A stream the
	// client reset counts until its handler has returned. Zero means 250.
	MaxConcurrentStreams uint32

	// MaxHeaderBytes bounds a request's decoded header list (RFC 9113
	// §6.5.2 SETTINGS_MAX_HEADER_LIST_SIZE, name and value lengths plus 32
	// per field); a larger one is answered 431. Zero means
	// http.DefaultMaxHeaderBytes (1 MiB).
	MaxHeaderBytes int

	// IdleTimeout closes a connection (GOAWAY NO_ERROR, then close) that
	// has had no open stream for this long. It also bounds the last
	// write of a connection that ends without streams: what a client
	// that stopped reading has not taken is dropped with the
	// connection. Zero means no limit.
	IdleTimeout time.Duration

	// ReadHeaderTimeout bounds the time a request's header block may
	// stay open: from a HEADERS frame without END_HEADERS to the
	// CONTINUATION that ends it. While the block is open the client may
	// send nothing else and the server holds what it has decoded, so a
	// block left open would hold the connection's reader, and up to
	// twice MaxHeaderBytes of fields, as long as another stream kept the
	// idle timeout away. It also bounds the client preface, up to the
	// end of its SETTINGS frame, from the start of ServeConn. Past it
	// the connection gets GOAWAY ENHANCE_YOUR_CALM and is closed. Zero
	// means 10 s.
	ReadHeaderTimeout time.Duration

	// MaxUploadBufferPerStream is the receive window of each stream: how
	// much request body the client may send ahead of the handler's reads.
	// Zero means 1 MiB. Values are capped at 2^31-1.
	MaxUploadBufferPerStream int32
	// MaxUploadBufferPerConnection is the connection's receive window,
	// shared by all its streams. Zero means 1 MiB; values below 65535
	// (the protocol's initial window) are raised to it.
	MaxUploadBufferPerConnection int32

	// BaseContext is the parent of every request's context when ServeConn
	// is given no ConnOpts.Context. Nil means context.Background.
	BaseContext context.Context

	// ErrorLog receives errors the Server cannot return to anyone: handler
	// panics (but http.ErrAbortHandler) and connections closed with
	// ENHANCE_YOUR_CALM. Nil drops them.
	ErrorLog func(msg string, err error)

	// Refused, when set, is told of each request stream the server ends
	// itself before any handler runs: one malformed (RFC 9113 §8.1.1:
	// reset PROTOCOL_ERROR, its header block decoded or not) or whose
	// header list is over MaxHeaderBytes (answered 431). It is called
	// once per stream on the connection's reading goroutine, after the
	// answer is queued and with no lock held, and must not block. A
	// stream refused for the stream limit or after GOAWAY
	// (REFUSED_STREAM, which a client may send again) is no such
	// request, nor are malformed trailers, which come while a handler
	// runs. A connection that breaks more streams than it completes is
	// closed after about 100 (ENHANCE_YOUR_CALM): the calls a client
	// causes are bounded as its requests are.
	Refused func(Refusal)

	// now is the clock of the rapid-reset rule; nil means time.Now.
	now func() time.Time
	// workerTrim replaces the package's workerTrim when set (tests).
	workerTrim time.Duration
	// noticeWait replaces the package's noticeWait when set (tests).
	noticeWait time.Duration

	inShutdown atomic.Bool

	mu sync.Mutex
	// conns are the connections being served; guarded by mu.
	conns map[*serverConn]struct{}
}

// ConnOpts are per-connection options of ServeConn. A nil *ConnOpts is
// the same as a zero one.
type ConnOpts struct {
	// Context is the parent of the connection's request contexts; its
	// cancellation ends the connection. Nil means Server.BaseContext.
	Context context.Context

	// Prefix holds bytes already read from the connection (by an
	// HTTP/1.1 reader that found the client preface, or that read an
	// upgrade request and what followed it). They are read before the
	// connection itself. ServeConn does not keep Prefix after it returns.
	Prefix []byte

	// Upgrade, when set, is a request read over HTTP/1.1 with
	// "Upgrade: h2c" (RFC 7540 §3.2) and answered 101: it is served as
	// stream 1, half-closed (remote), so its body must have been read
	// whole already. Settings is then the decoded HTTP2-Settings payload,
	// applied as the client's first SETTINGS.
	Upgrade  *http.Request
	Settings []byte

	// Limits, when set, replace the Server's MaxHeaderBytes, IdleTimeout
	// and ReadHeaderTimeout for this connection, for its whole life
	// (proxy/h1server passes the limits in force when it accepted the
	// connection). Nil means the Server's.
	Limits *ConnLimits

	// TLS is the state of the TLS connection c is (its handshake done),
	// which every request's Request.TLS then is; nil for cleartext.
	TLS *tls.ConnectionState
}

// ConnLimits are the limits of one connection that ConnOpts.Limits may
// set instead of the Server's fields of the same names. Each zero value
// means what the Server field's zero value means (1 MiB, no idle
// timeout, 10 s), not the Server's value.
type ConnLimits struct {
	// MaxHeaderBytes is the connection's SETTINGS_MAX_HEADER_LIST_SIZE,
	// announced and enforced as Server.MaxHeaderBytes is.
	MaxHeaderBytes int
	// IdleTimeout closes the connection once it has had no open stream
	// for this long, as Server.IdleTimeout does.
	IdleTimeout time.Duration
	// ReadHeaderTimeout bounds the time a header block stays open, and
	// the client preface, as Server.ReadHeaderTimeout does.
	ReadHeaderTimeout time.Duration
}

const (
	defaultMaxStreams   = 250
	defaultStreamWindow = 1 << 20
	defaultConnWindow   = 1 << 20
	// initialWindow is the window every stream and the connection start
	// with before any SETTINGS or WINDOW_UPDATE (RFC 9113 §6.9.2).
	initialWindow = 65535
	// maxWindow is the largest flow-control window (RFC 9113 §6.9.1).
	maxWindow = 1<<31 - 1
	// defaultMaxFrame is SETTINGS_MAX_FRAME_SIZE's initial value; the
	// server keeps it for what it reads.
	defaultMaxFrame = 16384
	// defaultReadHeaderTimeout is ReadHeaderTimeout's default, as the
	// proxy's listeners default their read_header_timeout.
	defaultReadHeaderTimeout = 10 * time.Second
)

func (s *Server) maxStreams() uint32 {
	if s.MaxConcurrentStreams > 0 {
		return s.MaxConcurrentStreams
	}
	return defaultMaxStreams
}

// maxHeaderList is the SETTINGS_MAX_HEADER_LIST_SIZE for a
// MaxHeaderBytes of n.
func maxHeaderList(n int) uint32 {
	if n > 0 {
		return uint32(min(n, 1<<30))
	}
	return http.DefaultMaxHeaderBytes
}

// readHeaderTimeout is the header block timeout for a ReadHeaderTimeout
// of d.
func readHeaderTimeout(d time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return defaultReadHeaderTimeout
}

func (s *Server) streamWindow() int32 {
	if s.MaxUploadBufferPerStream > 0 {
		return s.MaxUploadBufferPerStream
	}
	return defaultStreamWindow
}

func (s *Server) connWindow() int32 {
	if s.MaxUploadBufferPerConnection > 0 {
		return max(s.MaxUploadBufferPerConnection, initialWindow)
	}
	return defaultConnWindow
}

func (s *Server) logf(msg string, err error) {
	if s.ErrorLog != nil {
		s.ErrorLog(msg, err)
	}
}

// ServeConn serves HTTP/2 on c until the connection ends: the client
// closes it, a connection error, the idle timeout, Shutdown or Close, or
// the cancellation of the connection's context. It then closes c, and
// returns once every handler it started has returned (their contexts are
// cancelled when the connection ends). The caller must not use c
// afterwards.
func (s *Server) ServeConn(c net.Conn, opts *ConnOpts) {
	if opts == nil {
		opts = &ConnOpts{}
	}
	parent := opts.Context
	if parent == nil {
		parent = s.BaseContext
	}
	if parent == nil {
		parent = context.Background()
	}
	sc := newServerConn(s, c, parent, opts.Limits)
	sc.tls = opts.TLS
	err := sc.start(opts)
	s.track(sc, true)
	defer s.track(sc, false)
	sc.serve(opts, err)
}

func (s *Server) track(sc *serverConn, add bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if add {
		if s.conns == nil {
			s.conns = map[*serverConn]struct{}{}
		}
		s.conns[sc] = struct{}{}
		if s.inShutdown.Load() {
			// Served, but told at once to go away once its (upgrade)
			// stream and those the client opened before it saw the
			// notice are done.
			sc.startShutdown()
		}
	} else {
		delete(s.conns, sc)
	}
}

// Shutdown closes every connection gracefully, in two steps (RFC 9113
// §6.8): a GOAWAY(NO_ERROR) naming stream 2^31-1 and a PING, so that
// the client stops opening streams, then, once the PING is acknowledged
// or after a second without the acknowledgement, a GOAWAY(NO_ERROR)
// naming the last stream the client opened. Streams the client opened
// before the second GOAWAY are served; those it opens after it are
// refused with REFUSED_STREAM, which tells the client they were not
// processed and may be retried. Each connection closes once it has sent
// the second GOAWAY and its streams are done. Shutdown returns nil when
// every connection has ended, or ctx's error once ctx is done, after
// closing the connections that remain (as Close does). ServeConn calls
// made after Shutdown get the same two steps at once, and serve their
// connection only until its streams are done.
func (s *Server) Shutdown(ctx context.Context) error {
	s.inShutdown.Store(true)
	s.mu.Lock()
	for sc := range s.conns {
		sc.startShutdown()
	}
	s.mu.Unlock()

	const maxPoll = 50 * time.Millisecond
	poll := time.Millisecond
	timer := time.NewTimer(poll)
	defer timer.Stop()
	for {
		s.mu.Lock()
		n := len(s.conns)
		s.mu.Unlock()
		if n == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			s.Close()
			return ctx.Err()
		case <-timer.C:
			poll = min(2*poll, maxPoll)
			timer.Reset(poll)
		}
	}
}

// Close closes every connection now and cancels their requests'
// contexts. It does not wait for the handlers to return (ServeConn
// does). Connections handed to ServeConn afterwards are served until
// their streams are done, as after Shutdown.
func (s *Server) Close() error {
	s.inShutdown.Store(true)
	s.mu.Lock()
	conns := make([]*serverConn, 0, len(s.conns))
	for sc := range s.conns {
		conns = append(conns, sc)
	}
	s.mu.Unlock()
	// Outside s.mu: closing a connection runs the functions its
	// streams' contexts had registered for their end.
	for _, sc := range conns {
		sc.closeNow()
	}
	return nil
}

// Pools of per-connection buffers: a connection keeps them for its life.
var (
	readerPool = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, readBufSize) }}
	// bodyBufPool holds response writers' body buffers.
	bodyBufPool = sync.Pool{New: func() any { b := make([]byte, 0, bodyBufSize); return &b }}
)

const (
	readBufSize = 16 << 10
	// bodyBufSize is how much response body a handler's writes are held
	// back, so that a small response leaves with its header block in one
	// append (and, if the handler returns, with END_STREAM and a
	// Content-Length).
	bodyBufSize = 4 << 10
	// maxPending bounds the bytes appended but not yet written on a
	// connection: handlers writing bodies wait while more is pending.
	maxPending = 256 << 10
	// maxPendingControl bounds the pending bytes when the reader has to
	// answer (PING, SETTINGS acknowledgements, RST_STREAM) a client that
	// does not read: beyond it the connection is closed rather than
	// buffered without end.
	maxPendingControl = 4 * maxPending
	// keptWriteBuf bounds the write buffers a connection keeps between
	// writes; larger ones, grown for a burst, are dropped.
	keptWriteBuf = 64 << 10
)
