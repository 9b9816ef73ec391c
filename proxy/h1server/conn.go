package h1server

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/outrigger-mesh/outrigger/proxy/h2server"
	"github.com/outrigger-mesh/outrigger/proxy/internal/reqctx"
	"golang.org/x/net/http2"
)

// Connection states, for Shutdown.
const (
	stateIdle     int32 = iota // between requests (or before the first)
	stateActive                // reading or serving a request
	stateH2                    // handed to H2
	stateHijacked              // owned by a handler
	stateClosed                // closed by Shutdown or Close
)

// watchDelay is how long a request runs before the connection is watched
// for the client going away (see conn.watchFired). Requests that finish
// sooner cost one timer reset and stop, and no read.
const watchDelay = 10 * time.Millisecond

// maxDrain is how much of a request body the handler left unread is read
// and dropped so that the connection can serve the next request; a longer
// remainder closes the connection instead (net/http's
// maxPostHandlerReadBytes).
const maxDrain = 256 << 10

// drainTimeout bounds the wait for the rest of a body the handler left
// unread: draining only saves a connection, and a client that stops
// sending must not hold it (and its goroutine) with the response unsent.
const drainTimeout = time.Second

// maxKeptHdrBuf bounds the response header buffer a connection keeps
// between requests: a larger one, grown for one big header block, is
// dropped rather than held by an idle keep-alive connection.
const maxKeptHdrBuf = 16 << 10

// aLongTimeAgo is a deadline in the past: setting it ends a blocked read.
var aLongTimeAgo = time.Unix(1, 0)

// conn is one accepted connection. Its goroutine (serve) reads requests,
// calls the handler and writes responses, one request at a time.
type conn struct {
	s        *Server
	lim      *connLimits // the Server's limits when it was accepted
	rwc      net.Conn
	remote   string
	state    atomic.Int32
	accepted time.Time   // for Shutdown's grace to new connections
	used     atomic.Bool // a request (or the HTTP/2 preface) arrived

	ctx    context.Context // cancelled when the connection ends
	cancel context.CancelFunc

	// The connection's current request context, ended by the one
	// context.AfterFunc on ctx (stopReqWatch; see watchConnEnd), and
	// what request contexts share of ctx; both set at the first request.
	curReq       atomic.Pointer[reqctx.Context]
	stopReqWatch func() bool
	reqConn      reqctx.Conn

	cr       connReader
	br       *bufio.Reader
	bw       *bufio.Writer
	tp       headReader // reads request heads (see head.go)
	hdrBuf   []byte     // the current response's header block, as snapshotted by WriteHeader
	body     []byte     // response body held back before the header block is written
	scratch  [64]byte
	hijacked bool

	// hasDeadline: a read deadline may be set on rwc.
	hasDeadline bool

	// tlsConn is rwc when the connection speaks TLS (connLimits.tls),
	// and tlsState its state once the handshake is done: every
	// request's Request.TLS.
	tlsConn  *tls.Conn
	tlsState *tls.ConnectionState

	// rdMu orders a handler's SetReadDeadline, which may come from any
	// goroutine (a timer ending a stalled request body), against the end
	// of its request: once rdClosed, the read deadline is the serving
	// goroutine's again.
	rdMu     sync.Mutex
	rdClosed bool
	// rdByHandler: the running handler set a read deadline (see
	// watchRead).
	rdByHandler atomic.Bool

	// contMu orders the automatic "100 Continue" (written by whoever
	// reads the request body first, possibly another goroutine) against
	// the response header block.
	contMu sync.Mutex
	// wdMu orders a handler's SetWriteDeadline, from any goroutine,
	// against the write deadline a 1xx response sets for itself (see
	// flushInterim); it guards the response's writeDeadline while the
	// handler runs.
	wdMu sync.Mutex

	// Client-gone watch state (see watchFired); guarded by wmu.
	timer       *time.Timer
	wmu         sync.Mutex
	wArmed      bool            // a handler is running
	wFired      bool            // the request has run for watchDelay
	wBodyDone   bool            // the request body is fully read (or there is none)
	wPipelined  bool            // bytes of a next request were buffered at the body's end
	wRunning    bool            // the watcher read is in progress
	wAborted    bool            // the watcher read was ended on purpose
	wReq        *reqctx.Context // the running request's context, cancelled when the client goes
	wDone       chan struct{}
	wConnClosed bool // the client went away (watcher EOF, failed write)
}

func newConn(s *Server, rwc net.Conn, lim *connLimits) *conn {
	c := &conn{s: s, lim: lim, rwc: rwc, accepted: time.Now()}
	c.remote = rwc.RemoteAddr().String()
	if lim.tls != nil {
		// The handshake is left to the connection's goroutine (see
		// handshake); tls.Server only wraps.
		c.tlsConn = tls.Server(rwc, lim.tls)
		c.rwc = c.tlsConn
	}
	c.cr.src = c.rwc
	return c
}

// handshake does the TLS handshake, within the handshake timeout, and
// reports whether it succeeded; a failure is passed to
// Server.HandshakeFailed. Shutdown and Close end a handshake under way by
// closing the connection, as they end the wait for a first request;
// that end is the server's doing, not the client's, and is not passed.
func (c *conn) handshake() bool {
	if d := c.lim.handshakeTimeout; d > 0 {
		_ = c.tlsConn.SetDeadline(c.accepted.Add(d))
	}
	if err := c.tlsConn.Handshake(); err != nil {
		// Shutdown and Close mark the connection closed before they
		// close it.
		if c.s.HandshakeFailed != nil && c.state.Load() != stateClosed {
			c.s.HandshakeFailed(err)
		}
		return false
	}
	_ = c.tlsConn.SetDeadline(time.Time{})
	st := c.tlsConn.ConnectionState()
	c.tlsState = &st
	return true
}

// connReader is the source of the connection's bufio.Reader. It enforces
// the header-size limit, and returns first the byte (or the error) the
// client-gone watcher read.
type connReader struct {
	src     io.Reader
	limit   bool
	remain  int64
	hitMax  bool
	hasByte bool
	byteBuf [1]byte
	err     error // sticky: the client went away
}

var errHeaderTooLarge = errors.New("request header too large")

func (cr *connReader) Read(p []byte) (int, error) {
	if cr.err != nil {
		return 0, cr.err
	}
	if cr.limit {
		if cr.remain <= 0 {
			cr.hitMax = true
			return 0, errHeaderTooLarge
		}
		if int64(len(p)) > cr.remain {
			p = p[:cr.remain]
		}
	}
	if len(p) == 0 {
		return 0, nil
	}
	if cr.hasByte {
		cr.hasByte = false
		p[0] = cr.byteBuf[0]
		cr.remain--
		return 1, nil
	}
	n, err := cr.src.Read(p)
	cr.remain -= int64(n)
	return n, err
}

// connWriter is the source of the connection's bufio.Writer: a failed
// write means the client is gone, so it cancels the request's context,
// as net/http does.
type connWriter struct{ c *conn }

func (cw connWriter) Write(p []byte) (int, error) {
	n, err := cw.c.rwc.Write(p)
	if err != nil {
		c := cw.c
		c.wmu.Lock()
		rc := c.wReq
		c.wConnClosed = true
		c.wmu.Unlock()
		if rc != nil {
			rc.Cancel()
		}
	}
	return n, err
}

func (cr *connReader) setLimit(n int) { cr.limit, cr.remain, cr.hitMax = true, int64(n), false }
func (cr *connReader) noLimit()       { cr.limit = false }

func (c *conn) serve() {
	s := c.s
	if s.Gate != nil {
		// Last, after the close below (or the hijacking handler's
		// return).
		defer s.Gate.Release()
	}
	c.ctx, c.cancel = context.WithCancel(context.WithValue(s.ctx, http.LocalAddrContextKey, c.rwc.LocalAddr()))
	c.br = readerPool.Get().(*bufio.Reader)
	c.br.Reset(&c.cr)
	c.bw = writerPool.Get().(*bufio.Writer)
	c.bw.Reset(connWriter{c})
	c.hdrBuf = make([]byte, 0, 1<<10)
	c.body = make([]byte, 0, bodyBufSize)
	keepBufs := true
	defer func() {
		if p := recover(); p != nil {
			// A bug of ours, not the handler's (those are recovered in
			// serveRequest): keep the process, lose the connection.
			buf := make([]byte, 16<<10)
			buf = buf[:runtime.Stack(buf, false)]
			s.logf("h1server: panic serving "+c.remote+": "+string(buf), nil)
			keepBufs = false
		}
		if c.stopReqWatch != nil {
			// The last request's context has ended: nothing is left
			// for the AfterFunc to do but start a goroutine.
			c.stopReqWatch()
		}
		c.cancel()
		if c.timer != nil {
			c.timer.Stop()
		}
		if !c.hijacked {
			c.rwc.Close()
			s.trackConn(c, false)
		}
		if keepBufs && !c.hijacked {
			c.br.Reset(nil)
			readerPool.Put(c.br)
			c.bw.Reset(nil)
			writerPool.Put(c.bw)
		}
		c.br, c.bw, c.tp.R = nil, nil, nil
	}()

	if c.tlsConn != nil {
		if !c.handshake() {
			return
		}
		if c.tlsState.NegotiatedProtocol == "h2" && s.H2 != nil {
			if !c.state.CompareAndSwap(stateIdle, stateActive) {
				return // closed by Shutdown or Close
			}
			c.used.Store(true)
			c.serveH2(nil, nil)
			return
		}
	}

	first := true
	for {
		// Wait for the next request's first byte: the read-header timeout
		// covers a new connection's wait, the idle timeout a kept-alive
		// one's.
		// The header-size limit counts from here; bytes of a pipelined
		// request already buffered (at most readBufSize) are not counted.
		lim := c.lim
		c.cr.setLimit(lim.maxHeaderBytes + readBufSize)
		// Empty lines before a request (which readRequest skips, see
		// skipEmptyLines) are no request yet: the wait for one goes on.
		if empty := leadingEmptyLines(c.br); empty == c.br.Buffered() {
			wait := lim.idleTimeout
			if first {
				wait = lim.readHeaderTimeout
			}
			c.setReadDeadline(wait)
			if _, err := c.br.Peek(empty + 1); err != nil {
				return
			}
		} else if lim.readHeaderTimeout == 0 {
			// A pipelined request is already here: no deadline left from
			// the previous request (a drain's) may cut its header short.
			c.clearReadDeadline()
		}
		if !c.state.CompareAndSwap(stateIdle, stateActive) {
			return // closed by Shutdown or Close
		}
		if first {
			c.used.Store(true)
		}
		// Over TLS the preface means HTTP/2 only when ALPN chose no
		// protocol: one that chose http/1.1 made the connection HTTP/1.1,
		// and the preface is then a request of version 2.0, refused as
		// such (RFC 7301: the protocol is the one ALPN selected).
		if first && s.H2 != nil && (c.tlsState == nil || c.tlsState.NegotiatedProtocol == "") && c.sawPreface() {
			c.cr.noLimit()
			c.clearReadDeadline()
			c.serveH2(nil, nil)
			return
		}
		// A header block already whole in the buffer needs no deadline.
		// A connection's first request keeps the deadline set at accept,
		// so that a client cannot wait out most of it before its first
		// byte and then get the whole timeout again.
		// Without a read-header timeout, the idle wait ends with the
		// first byte: the rest of the head is not held to it.
		if !first && (lim.readHeaderTimeout > 0 || c.hasDeadline) && !headerBuffered(c.br) {
			if lim.readHeaderTimeout > 0 {
				c.setReadDeadline(lim.readHeaderTimeout)
			} else {
				c.clearReadDeadline()
			}
		}
		first = false
		var hd head
		w, err := c.readRequest(&hd)
		if c.cr.hitMax {
			// Whatever the parser made of a cut-off head, it was too long.
			err = &httpError{http.StatusRequestHeaderFieldsTooLarge, ""}
		}
		c.cr.noLimit()
		if err != nil {
			c.replyError(err, &hd)
			return
		}
		c.clearReadDeadline()
		if s.WriteTimeout > 0 {
			_ = c.rwc.SetWriteDeadline(time.Now().Add(s.WriteTimeout))
		}
		if w.h2cSettings != nil {
			c.upgradeH2C(w)
			return
		}
		if !c.serveRequest(w) {
			return
		}
		if s.inShutdown.Load() || !c.state.CompareAndSwap(stateActive, stateIdle) {
			return
		}
		if s.inShutdown.Load() {
			return
		}
	}
}

func (c *conn) setReadDeadline(d time.Duration) {
	if d > 0 {
		_ = c.rwc.SetReadDeadline(time.Now().Add(d))
		c.hasDeadline = true
	} else {
		c.clearReadDeadline()
	}
}

func (c *conn) clearReadDeadline() {
	if c.hasDeadline {
		_ = c.rwc.SetReadDeadline(time.Time{})
		c.hasDeadline = false
	}
}

// headerBuffered reports whether br holds a whole header block: after
// the empty lines skipEmptyLines skips, a line and then an empty line
// (the lines may end in a bare LF, as readHead takes them). Empty lines
// alone are no header block.
func headerBuffered(br *bufio.Reader) bool {
	b, _ := br.Peek(br.Buffered())
	b = b[leadingEmptyLines(br):]
	if len(b) == 0 || b[0] == '\r' || b[0] == '\n' {
		return false
	}
	return bytes.Contains(b, []byte("\n\r\n")) || bytes.Contains(b, []byte("\n\n"))
}

// leadingEmptyLines counts the bytes of the empty lines buffered ahead
// of a request that skipEmptyLines skips: CR and LF bytes, at most
// maxEmptyLineBytes.
func leadingEmptyLines(br *bufio.Reader) int {
	b, _ := br.Peek(min(br.Buffered(), maxEmptyLineBytes))
	n := 0
	for n < len(b) && (b[n] == '\r' || b[n] == '\n') {
		n++
	}
	return n
}

var clientPreface = []byte(http2.ClientPreface)

// sawPreface reports whether the connection opens with the HTTP/2 client
// preface. It waits for more bytes only while those it has could still be
// the preface, so a short HTTP/1.1 request is never held up.
func (c *conn) sawPreface() bool {
	for {
		n := min(c.br.Buffered(), len(clientPreface))
		b, _ := c.br.Peek(n)
		if !bytes.HasPrefix(clientPreface, b) {
			return false
		}
		if n == len(clientPreface) {
			return true
		}
		// The header-read limits apply to the preface too.
		if _, err := c.br.Peek(n + 1); err != nil {
			return false
		}
	}
}

// serveRequest runs the handler for w's request and finishes the
// response. It reports whether the connection may serve another request.
func (c *conn) serveRequest(w *response) (keep bool) {
	c.rdMu.Lock()
	c.rdClosed = false
	c.rdMu.Unlock()
	c.armWatch(w)
	defer func() {
		w.ctx.Cancel()
		c.curReq.Store(nil)
		if p := recover(); p != nil {
			w.handlerDone.Store(true)
			c.endHandlerDeadline()
			c.abortWatch()
			keep = false
			if p != http.ErrAbortHandler {
				buf := make([]byte, 16<<10)
				buf = buf[:runtime.Stack(buf, false)]
				c.s.logf("h1server: panic serving "+c.remote+": "+panicString(p)+"\n"+string(buf), nil)
			}
			if !c.hijacked {
				// Whatever was buffered stays unsent: the client sees a
				// cut-off response, never a truncated success.
				c.rwc.Close()
			}
			if w.body != nil {
				// A reader the handler left behind must not reach the
				// connection's buffer, which goes back to a pool. (After
				// the close: such a reader blocked on the connection holds
				// the body's lock.)
				w.body.close()
			}
		}
	}()
	c.s.Handler.ServeHTTP(w, w.req)
	c.endHandlerDeadline()
	c.abortWatch()
	if c.hijacked {
		return false
	}
	c.wmu.Lock()
	gone := c.wConnClosed
	c.wmu.Unlock()
	if gone && w.status == 0 {
		// The client went away (the watcher read its FIN, or a write
		// failed) and the handler, told so by its context, wrote
		// nothing. The default 200 with no body is then no answer the
		// handler gave: a proxy that gave up on the upstream would have
		// it report a success. A client that only half-closed its
		// connection (shutdown(SHUT_WR) after the request), which reads
		// as one gone, gets the connection's end instead.
		w.handlerDone.Store(true)
		c.rwc.Close()
		if w.body != nil {
			// As after a panic: a reader the handler left behind must
			// not reach the pooled buffer (after the close, which ends
			// such a reader blocked on the connection).
			w.body.close()
		}
		return false
	}
	w.finish()
	c.wmu.Lock()
	gone = c.wConnClosed
	c.wmu.Unlock()
	// A close the client did not ask for (Shutdown, the handler's
	// "Connection: close", a response without a length to an HTTP/1.0
	// keep-alive request) may meet requests it pipelined, arriving
	// after the server stopped reading: a close with them unread sends
	// a reset, which drops what the socket still holds of the response
	// (RFC 9112 §9.6). The connection is closed in stages instead.
	if w.lingerClose || w.closeAfter && !w.req.Close && !gone {
		c.lingerClose()
	}
	return !w.closeAfter && !gone
}

func panicString(p any) string {
	switch v := p.(type) {
	case error:
		return v.Error()
	case string:
		return v
	}
	return "non-error panic value"
}

// endHandlerDeadline takes the read deadline back from the handler once
// it has returned: a SetReadDeadline still on its way (from a goroutine
// the handler left) fails, and a deadline the handler set is cleared or
// replaced before the connection reads again.
func (c *conn) endHandlerDeadline() {
	c.rdMu.Lock()
	c.rdClosed = true
	c.rdMu.Unlock()
	if c.rdByHandler.Swap(false) {
		c.hasDeadline = true
	}
}

// watchConnEnd makes rc the connection's current request context. A
// request context is not a child of the connection's context (that
// would cost a children map entry and, with a transport watching it,
// a map of its own per request): one context.AfterFunc on the
// connection's context, registered at the first request, ends whichever
// request context is current then. A request context made after the
// connection's context ended starts ended.
func (c *conn) watchConnEnd(rc *reqctx.Context) {
	if c.stopReqWatch == nil {
		c.reqConn.Init(c.ctx)
		c.stopReqWatch = context.AfterFunc(c.ctx, c.connEnded)
	}
	rc.Init(&c.reqConn)
	c.curReq.Store(rc)
	// After the store: either the AfterFunc, which runs after c.ctx's
	// error is set, finds rc current, or this sees the error.
	if c.ctx.Err() != nil {
		rc.EndWithConn()
	}
}

// connEnded runs, in its own goroutine, when the connection's context
// ends.
func (c *conn) connEnded() {
	if rc := c.curReq.Load(); rc != nil {
		rc.EndWithConn()
	}
}

// Client-gone detection. net/http starts a background read on every
// request to notice a client that closes its connection while the
// handler runs; that costs a goroutine, an extra read system call
// (usually EAGAIN) and deadline changes per request. Here a request that
// is still running after watchDelay, and whose body has been fully read
// with no pipelined request behind it, gets one watcher read on the
// connection: EOF or an error cancels the request's context, a byte (the
// client pipelining) is kept for the next request and ends the watch.
// Detection therefore takes at most watchDelay after the client leaves
// (or after the body's end, if that comes later), plus the kernel's
// notice of the FIN or RST.

func (c *conn) armWatch(w *response) {
	if c.timer == nil {
		c.timer = time.AfterFunc(time.Hour, c.watchFired)
	}
	c.wmu.Lock()
	c.wArmed, c.wFired, c.wRunning, c.wAborted = true, false, false, false
	c.wReq = &w.ctx
	c.wBodyDone = w.body == nil
	c.wPipelined = c.br.Buffered() > 0
	c.wmu.Unlock()
	c.timer.Reset(watchDelay)
}

// watchFired runs on the timer's goroutine. A stale firing (the request
// it was armed for has ended) finds wArmed false, or merely starts the
// next request's watch early, which is harmless.
func (c *conn) watchFired() {
	c.wmu.Lock()
	if !c.wArmed || c.wRunning {
		c.wmu.Unlock()
		return
	}
	c.wFired = true
	start := c.wBodyDone && !c.wPipelined
	if start {
		c.wRunning, c.wDone = true, make(chan struct{})
	}
	c.wmu.Unlock()
	if start {
		c.watchRead()
	}
}

// bodyDone is called by the request body's reader at its end; pipelined
// says whether bytes of another request were already buffered.
func (c *conn) bodyDone(pipelined bool) {
	c.wmu.Lock()
	c.wBodyDone, c.wPipelined = true, pipelined
	start := c.wArmed && c.wFired && !c.wRunning && !pipelined
	if start {
		c.wRunning, c.wDone = true, make(chan struct{})
	}
	c.wmu.Unlock()
	if start {
		go c.watchRead()
	}
}

func (c *conn) watchRead() {
	n, err := c.rwc.Read(c.cr.byteBuf[:])
	var cancel *reqctx.Context
	c.wmu.Lock()
	switch {
	case n > 0:
		c.cr.hasByte = true
	case err != nil && !c.wAborted && !(c.rdByHandler.Load() && errors.Is(err, os.ErrDeadlineExceeded)):
		// (A deadline the handler set is not the client leaving: the
		// watch just ends, and the connection stays usable.)
		c.cr.err = err
		c.wConnClosed = true
		cancel = c.wReq
	}
	c.wRunning = false
	done := c.wDone
	c.wmu.Unlock()
	if cancel != nil {
		cancel.Cancel()
	}
	close(done)
}

// abortWatch disarms the watch and ends (and waits for) a watcher read in
// progress, so that the connection's reader is the serving goroutine's
// alone again.
func (c *conn) abortWatch() {
	c.wmu.Lock()
	c.wArmed = false
	running, done := c.wRunning, c.wDone
	if running {
		c.wAborted = true
	}
	c.wmu.Unlock()
	c.timer.Stop()
	if running {
		_ = c.rwc.SetReadDeadline(aLongTimeAgo)
		<-done
		_ = c.rwc.SetReadDeadline(time.Time{})
		c.hasDeadline = false
	}
}

// lingerClose half-closes the connection and reads (and drops) what the
// client still sends for a moment, so that the response is not lost to a
// reset caused by unread request bytes (net/http's closeWriteAndWait).
func (c *conn) lingerClose() {
	_ = c.bw.Flush()
	if cw, ok := c.rwc.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
	_ = c.rwc.SetReadDeadline(time.Now().Add(lingerTime))
	c.hasDeadline = true
	_, _ = io.CopyN(io.Discard, c.rwc, maxDrain)
}

const lingerTime = 500 * time.Millisecond

// replyError answers a request that could not be read, if there is
// anything to answer, reports it to Server.Refused with what hd holds of
// its head, and leaves the connection to be closed.
func (c *conn) replyError(err error, hd *head) {
	var he *httpError
	if !errors.As(err, &he) {
		// EOF, a timeout or a reset: nobody to answer.
		return
	}
	start := time.Now()
	// The answer is written with no request's write deadline in force:
	// WriteTimeout, or else the idle timeout, bounds it, as the idle
	// timeout bounds the end of a response (see finish).
	d := c.s.WriteTimeout
	if d == 0 {
		d = c.lim.idleTimeout
	}
	if d > 0 {
		_ = c.rwc.SetWriteDeadline(start.Add(d))
	}
	code := he.code
	text := http.StatusText(code)
	msg := text
	if he.msg != "" {
		msg = text + ": " + he.msg
	}
	bw := c.bw
	_, _ = bw.WriteString("HTTP/1.1 ")
	_, _ = bw.Write(appendStatus(nil, code))
	_, _ = bw.WriteString("\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\nContent-Length: ")
	_, _ = bw.Write(appendInt(nil, int64(len(msg))))
	_, _ = bw.WriteString("\r\n\r\n")
	_, _ = bw.WriteString(msg)
	_ = bw.Flush()
	if fn := c.s.Refused; fn != nil {
		r := Refusal{RemoteAddr: c.remote, Status: code, Detail: text, Bytes: len(msg), Duration: time.Since(start)}
		if he.msg != "" {
			r.Detail = he.msg
		}
		if hd.url != nil {
			// The request line was read (hd's fields are set together).
			r.Method, r.Path, r.Proto = hd.method, hd.url.Path, hd.proto
			r.Host = hd.url.Host
			if r.Host == "" && len(hd.hosts) == 1 {
				r.Host = hd.hosts[0]
			}
		}
		if v := hd.header["User-Agent"]; len(v) > 0 {
			// The fields read before the fault.
			r.UserAgent = strings.Clone(v[0])
		}
		fn(r)
	}
	c.lingerClose()
}

// httpError is a request the server answers itself with code.
type httpError struct {
	code int
	msg  string
}

func (e *httpError) Error() string { return http.StatusText(e.code) + ": " + e.msg }

func badRequest(msg string) error { return &httpError{http.StatusBadRequest, msg} }

// serveH2 hands the connection to H2, with the bytes already buffered
// as its prefix. upgrade and settings are set for an h2c upgrade.
func (c *conn) serveH2(upgrade *http.Request, settings []byte) {
	c.state.Store(stateH2)
	var prefix []byte
	if n := c.br.Buffered(); n > 0 {
		b, _ := c.br.Peek(n)
		prefix = append(prefix, b...)
	}
	// A response's write deadline (or the 101's) must not outlive the
	// switch.
	if c.s.WriteTimeout > 0 || upgrade != nil {
		_ = c.rwc.SetWriteDeadline(time.Time{})
	}
	c.s.H2.ServeConn(c.rwc, &h2server.ConnOpts{
		Context:  c.ctx,
		Prefix:   prefix,
		Upgrade:  upgrade,
		Settings: settings,
		Limits:   c.lim.h2,
		TLS:      c.tlsState,
	})
}

// upgradeH2C switches the connection to HTTP/2 for an "Upgrade: h2c"
// request (RFC 7540 §3.2): 101, then H2 serves the request as
// stream 1 and the connection from there on.
func (c *conn) upgradeH2C(w *response) {
	// Bounded as an answer of the server's own (see replyError); serveH2
	// clears it.
	if d := c.lim.idleTimeout; d > 0 && c.s.WriteTimeout == 0 {
		_ = c.rwc.SetWriteDeadline(time.Now().Add(d))
	}
	_, _ = c.bw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n")
	if err := c.bw.Flush(); err != nil {
		return
	}
	c.serveH2(w.req, w.h2cSettings)
}
