package h1server

import (
	"bufio"
	"errors"
	"net"
	"net/http"
	"net/textproto"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/net/http/httpguts"

	"github.com/outrigger-mesh/outrigger/proxy/internal/reqctx"
	"github.com/outrigger-mesh/outrigger/proxy/internal/wire"
)

// response is the http.ResponseWriter of one HTTP/1.1 request. Its
// methods follow net/http's: the header map is snapshotted by the final
// WriteHeader; up to bodyBufSize of body is held back so that a handler
// that returns having written it all gets a Content-Length and a single
// write; a longer or flushed body is sent chunked (HTTP/1.1) or
// delimited by the connection's close (HTTP/1.0).
type response struct {
	c   *conn
	req *http.Request // &reqv, or for an h2c upgrade one of its own
	// ctx is the request's context (unused for an h2c upgrade, whose
	// request lives on the connection's context).
	ctx    reqctx.Context
	reqv   http.Request
	body   *body // nil: no request body
	header http.Header

	// h2cSettings is set for an h2c upgrade request.
	h2cSettings []byte

	status      int   // final status, 0 until WriteHeader or Write
	declaredCL  int64 // the handler's Content-Length, or -1
	written     int64 // body bytes the handler wrote
	snapLen     int   // len(header) at the snapshot
	committed   bool  // the header block went to the connection's writer
	chunked     bool
	hasDate     bool
	connClose   bool     // the handler's header says Connection: close
	hasTrailers bool     // trailers are announced or set with http.TrailerPrefix
	trailerKeys []string // announced by the "Trailer" header
	closeAfter  bool     // close the connection after this response
	lingerClose bool     // close it gently: request bytes may be unread
	hijacked    bool

	// handlerDone: the handler returned (or panicked). From then on the
	// connection's writer belongs to the next request, so what a
	// goroutine left behind writes must go nowhere. Atomic, so that such a
	// goroutine sees it.
	handlerDone atomic.Bool

	// writeDeadline: the handler set a write deadline, which must not
	// outlive its response; guarded by c.wdMu while the handler runs.
	writeDeadline bool

	// canContinue: the client expects "100 Continue" before sending the
	// body, and it has not been sent nor made moot by the final header;
	// guarded by c.contMu once the handler runs.
	canContinue   bool
	contDone      atomic.Bool // "100 Continue" was sent or is moot
	sentContinue  atomic.Bool // "100 Continue" was sent
	expectedFirst bool        // the request asked for 100-continue
}

func (w *response) Header() http.Header {
	if w.header == nil {
		w.header = make(http.Header)
	}
	return w.header
}

// AdoptHeader makes h the response's header map, as if Header had
// returned it and the handler had filled it, and reports whether it
// did: it does only while Header has not been called and nothing was
// written. A proxy hands over the header map of the response it
// forwards instead of copying it into a new one; h is the response's
// from then on, and the caller reaches it only through Header.
func (w *response) AdoptHeader(h http.Header) bool {
	if w.header != nil || w.status != 0 || h == nil {
		return false
	}
	w.header = h
	return true
}

// WriteHeader sends an informational (1xx) response at once, with the
// current header map, which it leaves as it is (RFC 8297; net/http does
// the same). A final status is recorded, with a snapshot of the header
// map; later calls are ignored.
func (w *response) WriteHeader(code int) {
	if w.handlerDone.Load() {
		w.c.s.logf("h1server: WriteHeader after the handler returned", nil)
		return
	}
	if w.hijacked {
		w.c.s.logf("h1server: WriteHeader on a hijacked connection", nil)
		return
	}
	if code < 100 || code > 999 {
		panic("h1server: invalid WriteHeader code " + strconv.Itoa(code))
	}
	if code < 200 && code != http.StatusSwitchingProtocols {
		w.writeInformational(code)
		return
	}
	if w.status != 0 {
		return
	}
	w.status = code
	w.snapshot()
}

// writeInformational writes a 1xx response. None goes to an HTTP/1.0
// client (RFC 9110 §15.2) or after the final status.
func (w *response) writeInformational(code int) {
	if w.status != 0 || w.req.ProtoMinor == 0 {
		return
	}
	c := w.c
	c.contMu.Lock()
	defer c.contMu.Unlock()
	if code == http.StatusContinue {
		if w.sentContinue.Load() {
			return
		}
		w.sentContinue.Store(true)
		w.contDone.Store(true)
		w.canContinue = false
	}
	bw := c.bw
	_, _ = bw.WriteString("HTTP/1.1 ")
	_, _ = bw.Write(appendStatus(c.scratch[:0], code))
	_, _ = bw.WriteString("\r\n")
	for k, vv := range w.header {
		if k == "Content-Length" || k == "Transfer-Encoding" || framingKey(k) || !httpguts.ValidHeaderFieldName(k) {
			continue
		}
		for _, v := range vv {
			writeField(bw, k, v)
		}
	}
	_, _ = bw.WriteString("\r\n")
	_ = w.flushInterim()
}

// writeContinue sends "100 Continue" unless the final header made it
// moot; the body reader calls it on its first read. An error means the
// 100 could not be sent: the client, waiting for it, will not send the
// body.
func (w *response) writeContinue() error {
	c := w.c
	c.contMu.Lock()
	defer c.contMu.Unlock()
	if !w.canContinue {
		return nil
	}
	w.canContinue = false
	w.contDone.Store(true)
	w.sentContinue.Store(true)
	_, _ = c.bw.WriteString("HTTP/1.1 100 Continue\r\n\r\n")
	return w.flushInterim()
}

// idleBoundsWrite reports whether a write the server makes for w on its
// own (a 1xx, what is left of the response once the handler has
// returned) gets the idle timeout as its deadline: neither WriteTimeout
// nor a write deadline the handler set bounds it. While the handler
// runs, its caller holds c.wdMu, which guards writeDeadline.
func (w *response) idleBoundsWrite() bool {
	c := w.c
	return c.s.WriteTimeout == 0 && !w.writeDeadline && c.lim.idleTimeout > 0
}

// flushInterim sends a 1xx response; c.contMu is held. Unless
// WriteTimeout or a write deadline the handler set bounds it, the idle
// timeout does, as it bounds the server's other writes of its own (see
// finish): a client that takes nothing (its socket buffers full with the
// answers to requests it pipelined) held the handler there for good,
// past any deadline it set on the body's reads.
func (w *response) flushInterim() error {
	c := w.c
	c.wdMu.Lock()
	own := w.idleBoundsWrite()
	if own {
		_ = c.rwc.SetWriteDeadline(time.Now().Add(c.lim.idleTimeout))
	}
	c.wdMu.Unlock()
	err := c.bw.Flush()
	c.wdMu.Lock()
	if own && !w.writeDeadline {
		_ = c.rwc.SetWriteDeadline(time.Time{})
	}
	c.wdMu.Unlock()
	return err
}

// snapshot records the header block as the final WriteHeader finds it:
// later changes to the map do not show, except trailers.
func (w *response) snapshot() {
	c := w.c
	buf := c.hdrBuf[:0]
	for k, vv := range w.header {
		switch k {
		case "Content-Length":
			if len(vv) > 0 {
				if n, ok := wire.ParseDecimal(textproto.TrimString(vv[0])); ok {
					w.declaredCL = n
				} else {
					w.c.s.logf("h1server: handler set an invalid Content-Length "+strconv.Quote(vv[0]), nil)
				}
			}
			continue
		case "Transfer-Encoding":
			// The server frames the body itself.
			continue
		case "Date":
			w.hasDate = true
		case "Connection":
			if httpguts.HeaderValuesContainsToken(vv, "close") {
				w.connClose, w.closeAfter = true, true
			}
		case "Trailer":
			for _, v := range vv {
				for _, t := range strings.Split(v, ",") {
					t = textproto.CanonicalMIMEHeaderKey(textproto.TrimString(t))
					// Names are written as they are in the trailer
					// section: only valid ones, so none can add a field.
					if t != "" && !badTrailer(t) && httpguts.ValidHeaderFieldName(t) {
						w.trailerKeys = append(w.trailerKeys, t)
						w.hasTrailers = true
					}
				}
			}
		}
		if strings.HasPrefix(k, http.TrailerPrefix) {
			w.hasTrailers = true
			continue
		}
		if !httpguts.ValidHeaderFieldName(k) || framingKey(k) {
			continue
		}
		for _, v := range vv {
			buf = appendField(buf, k, v)
		}
	}
	c.hdrBuf = buf
	w.snapLen = len(w.header)
}

// framingKey reports whether k is "Content-Length" or
// "Transfer-Encoding" under a non-canonical spelling. The server frames
// the body itself from the canonical keys; sent as set, such a key would
// give the client a second, conflicting framing.
func framingKey(k string) bool {
	switch len(k) {
	case len("Content-Length"):
		return k != "Content-Length" && wire.EqualFold(k, "Content-Length")
	case len("Transfer-Encoding"):
		return k != "Transfer-Encoding" && wire.EqualFold(k, "Transfer-Encoding")
	}
	return false
}

func bodyAllowed(status int) bool {
	return status >= 200 && status != http.StatusNoContent && status != http.StatusNotModified
}

// commit writes the status line and header block to the connection's
// writer, choosing the body's framing, then the body held back so far.
// final: the handler has returned, so the whole body is known.
func (w *response) commit(final bool) {
	c := w.c
	if w.expectedFirst {
		// From here on no "100 Continue" may be written.
		c.contMu.Lock()
		w.canContinue = false
		w.contDone.Store(true)
		c.contMu.Unlock()
	}
	w.committed = true
	req := w.req
	if final && !w.hasTrailers && len(w.header) != w.snapLen {
		// Keys added after WriteHeader: trailers set with TrailerPrefix?
		for k := range w.header {
			if strings.HasPrefix(k, http.TrailerPrefix) {
				w.hasTrailers = true
				break
			}
		}
	}
	head := req.Method == http.MethodHead
	http11 := req.ProtoMinor >= 1
	cl := int64(-1)
	switch {
	case !bodyAllowed(w.status):
		if w.status == http.StatusNotModified {
			cl = w.declaredCL
		}
	case w.hasTrailers && http11 && !head:
		w.chunked = true
	case w.declaredCL >= 0:
		cl = w.declaredCL
	case final && (!head || w.written > 0):
		cl = w.written
	case head:
	case http11:
		w.chunked = true
	default:
		// HTTP/1.0 without a known length: the close ends the body.
		w.closeAfter = true
	}
	if req.Close || c.s.inShutdown.Load() || c.s.noKeepAlive.Load() {
		w.closeAfter = true
	}

	bw := c.bw
	if http11 {
		_, _ = bw.WriteString("HTTP/1.1 ")
	} else {
		_, _ = bw.WriteString("HTTP/1.0 ")
	}
	_, _ = bw.Write(appendStatus(c.scratch[:0], w.status))
	_, _ = bw.WriteString("\r\n")
	_, _ = bw.Write(c.hdrBuf)
	if cap(c.hdrBuf) > maxKeptHdrBuf {
		c.hdrBuf = nil // the next snapshot allocates what it needs
	}
	if cl >= 0 {
		_, _ = bw.WriteString("Content-Length: ")
		_, _ = bw.Write(appendInt(c.scratch[:0], cl))
		_, _ = bw.WriteString("\r\n")
	}
	if w.chunked {
		_, _ = bw.WriteString("Transfer-Encoding: chunked\r\n")
	}
	if !w.hasDate {
		_, _ = bw.Write(dateField(time.Now()))
	}
	switch {
	case w.closeAfter && !w.connClose:
		_, _ = bw.WriteString("Connection: close\r\n")
	case !w.closeAfter && !http11:
		_, _ = bw.WriteString("Connection: keep-alive\r\n")
	}
	_, _ = bw.WriteString("\r\n")
	if len(c.body) > 0 {
		w.writeBody(c.body)
		c.body = c.body[:0]
	}
}

func (w *response) writeBody(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	bw := w.c.bw
	if w.chunked {
		_, _ = bw.Write(strconv.AppendInt(w.c.scratch[:0], int64(len(p)), 16))
		_, _ = bw.WriteString("\r\n")
		n, err := bw.Write(p)
		if err != nil {
			return n, err
		}
		_, err = bw.WriteString("\r\n")
		return n, err
	}
	return bw.Write(p)
}

func (w *response) Write(p []byte) (int, error) {
	if w.handlerDone.Load() {
		return 0, errHandlerDone
	}
	if w.hijacked {
		return 0, http.ErrHijacked
	}
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	if !bodyAllowed(w.status) {
		return 0, http.ErrBodyNotAllowed
	}
	var err error
	if w.declaredCL >= 0 && w.written+int64(len(p)) > w.declaredCL {
		p = p[:w.declaredCL-w.written]
		err = http.ErrContentLength
	}
	w.written += int64(len(p))
	if w.req.Method == http.MethodHead {
		return len(p), err
	}
	c := w.c
	if !w.committed {
		if len(c.body)+len(p) <= cap(c.body) {
			c.body = append(c.body, p...)
			return len(p), err
		}
		w.commit(false)
	}
	n, werr := w.writeBody(p)
	if werr != nil {
		err = werr
	}
	return n, err
}

// WriteString lets io.WriteString skip a conversion.
func (w *response) WriteString(s string) (int, error) {
	if !w.handlerDone.Load() && !w.committed && !w.hijacked && w.status != 0 && len(w.c.body)+len(s) <= cap(w.c.body) &&
		bodyAllowed(w.status) && w.declaredCL < 0 && w.req.Method != http.MethodHead {
		w.c.body = append(w.c.body, s...)
		w.written += int64(len(s))
		return len(s), nil
	}
	return w.Write([]byte(s))
}

// Flush sends the header block and the body written so far.
func (w *response) Flush() { _ = w.FlushError() }

// FlushError is Flush reporting the write error, for
// http.ResponseController.
func (w *response) FlushError() error {
	if w.handlerDone.Load() {
		return errHandlerDone
	}
	if w.hijacked {
		return http.ErrHijacked
	}
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	if !w.committed {
		w.commit(false)
	}
	return w.c.bw.Flush()
}

// Hijack hands the connection to the caller, with a bufio.ReadWriter
// whose reader holds the bytes already read from it. Any response
// started is flushed first; the server does nothing more with the
// connection, and the request's context ends when the handler returns.
func (w *response) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	if w.hijacked {
		return nil, nil, http.ErrHijacked
	}
	if w.handlerDone.Load() {
		return nil, nil, errHandlerDone
	}
	c := w.c
	c.abortWatch()
	if w.status != 0 && !w.committed {
		w.commit(false)
	}
	if err := c.bw.Flush(); err != nil {
		return nil, nil, err
	}
	c.rdMu.Lock()
	w.hijacked, c.hijacked = true, true
	c.rdMu.Unlock()
	c.state.Store(stateHijacked)
	c.s.trackConn(c, false)
	if c.cr.hasByte {
		// Move the byte the watcher read into the reader's buffer, where
		// the new owner looks.
		_, _ = c.br.Peek(1)
	}
	if w.body != nil {
		w.body.close()
	}
	_ = c.rwc.SetDeadline(time.Time{})
	return c.rwc, bufio.NewReadWriter(c.br, c.bw), nil
}

// SetReadDeadline sets the connection's read deadline, for
// http.ResponseController: a request body Read blocked on the connection,
// or one made after t, fails with an error wrapping
// os.ErrDeadlineExceeded (the body is then unusable: its framing is lost,
// so the connection closes after the response); a zero t clears it. It may
// be called from any goroutine while the handler runs; the deadline ends
// with the request.
func (w *response) SetReadDeadline(t time.Time) error {
	c := w.c
	c.rdMu.Lock()
	defer c.rdMu.Unlock()
	if w.hijacked {
		return http.ErrHijacked
	}
	if c.rdClosed || w.handlerDone.Load() {
		return errHandlerDone
	}
	c.rdByHandler.Store(true)
	return c.rwc.SetReadDeadline(t)
}

// SetWriteDeadline sets the connection's write deadline, for
// http.ResponseController.
func (w *response) SetWriteDeadline(t time.Time) error {
	if w.handlerDone.Load() {
		return errHandlerDone
	}
	if w.hijacked {
		return http.ErrHijacked
	}
	// A 1xx being sent meanwhile (see flushInterim) then keeps this
	// deadline rather than its own. (Not under contMu, which such a
	// write holds while it waits: this deadline applies to it at once.)
	c := w.c
	c.wdMu.Lock()
	defer c.wdMu.Unlock()
	w.writeDeadline = true
	return c.rwc.SetWriteDeadline(t)
}

// EnableFullDuplex is accepted for http.ResponseController: the server
// never touches the request body while the handler runs, so the handler
// may read it while writing the response.
func (w *response) EnableFullDuplex() error { return nil }

// finish completes the response after the handler returned.
func (w *response) finish() {
	c := w.c
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	w.handlerDone.Store(true)
	if b := w.body; b != nil {
		// Before anything takes the body's lock: a reader the handler
		// left blocked on the body (holding that lock) ends too, at the
		// latest when the drain's time is up.
		_ = c.rwc.SetReadDeadline(time.Now().Add(drainTimeout))
		c.hasDeadline = true
		switch {
		case w.expectedFirst && !w.sentContinue.Load() && !b.ended():
			// The client waits for "100 Continue" before sending the
			// body; the next bytes may be neither body nor request.
			b.close()
			w.closeAfter, w.lingerClose = true, true
		case !b.drain():
			w.closeAfter, w.lingerClose = true, true
		}
	}
	// What is left of the response is written now, the handler gone:
	// unless a write deadline bounds it, the idle timeout does, or a
	// client that takes nothing (one that pipelines requests and reads
	// no answer fills the socket's buffers) would hold the connection
	// and its goroutine for good.
	ownDeadline := w.idleBoundsWrite()
	if ownDeadline {
		_ = c.rwc.SetWriteDeadline(time.Now().Add(c.lim.idleTimeout))
	}
	if !w.committed {
		w.commit(true)
	}
	if w.chunked {
		_, _ = c.bw.WriteString("0\r\n")
		w.writeTrailers()
		_, _ = c.bw.WriteString("\r\n")
	}
	if w.declaredCL >= 0 && w.written < w.declaredCL && bodyAllowed(w.status) && w.req.Method != http.MethodHead {
		// The client would wait for the missing bytes.
		w.closeAfter = true
	}
	if err := c.bw.Flush(); err != nil {
		w.closeAfter = true
	}
	if c.s.WriteTimeout > 0 || w.writeDeadline || ownDeadline {
		_ = c.rwc.SetWriteDeadline(time.Time{})
	}
}

func (w *response) writeTrailers() {
	bw := w.c.bw
	for _, k := range w.trailerKeys {
		for _, v := range w.header[k] {
			writeField(bw, k, v)
		}
	}
	// Keys with http.TrailerPrefix count whenever they were set: a
	// response sent chunked because it was flushed learns of them only
	// now (net/http sends them too).
	for k, vv := range w.header {
		if !strings.HasPrefix(k, http.TrailerPrefix) {
			continue
		}
		name := textproto.CanonicalMIMEHeaderKey(k[len(http.TrailerPrefix):])
		if badTrailer(name) || !httpguts.ValidHeaderFieldName(name) {
			continue
		}
		for _, v := range vv {
			writeField(bw, name, v)
		}
	}
}

// appendField appends "k: v\r\n", v trimmed and with any CR or LF turned
// into a space so that a value cannot start a new field.
func appendField(b []byte, k, v string) []byte {
	b = append(b, k...)
	b = append(b, ':', ' ')
	v = textproto.TrimString(v)
	if strings.ContainsAny(v, "\r\n") {
		for i := 0; i < len(v); i++ {
			ch := v[i]
			if ch == '\r' || ch == '\n' {
				ch = ' '
			}
			b = append(b, ch)
		}
	} else {
		b = append(b, v...)
	}
	return append(b, '\r', '\n')
}

// writeField writes "k: v\r\n" as appendField makes it, built in the
// writer's free space (a field longer than that grows a copy).
func writeField(bw *bufio.Writer, k, v string) {
	_, _ = bw.Write(appendField(bw.AvailableBuffer(), k, v))
}

// appendStatus appends "200 OK".
func appendStatus(b []byte, code int) []byte {
	b = strconv.AppendInt(b, int64(code), 10)
	b = append(b, ' ')
	if t := http.StatusText(code); t != "" {
		return append(b, t...)
	}
	b = append(b, "status code "...)
	return strconv.AppendInt(b, int64(code), 10)
}

func appendInt(b []byte, n int64) []byte { return strconv.AppendInt(b, n, 10) }

// The Date field, formatted once a second (RFC 9110 §6.6.1: an origin
// server with a clock MUST send it).
type dateLine struct {
	sec  int64
	line []byte
}

var dateCache atomic.Pointer[dateLine]

func dateField(now time.Time) []byte {
	sec := now.Unix()
	if d := dateCache.Load(); d != nil && d.sec == sec {
		return d.line
	}
	line := make([]byte, 0, 40)
	line = append(line, "Date: "...)
	line = now.UTC().AppendFormat(line, http.TimeFormat)
	line = append(line, '\r', '\n')
	dateCache.Store(&dateLine{sec: sec, line: line})
	return line
}

// errHandlerDone is returned by the ResponseWriter's methods once the
// handler has returned.
var errHandlerDone = errors.New("h1server: ResponseWriter used after the handler returned")

var (
	_ http.ResponseWriter = (*response)(nil)
	_ http.Flusher        = (*response)(nil)
	_ http.Hijacker       = (*response)(nil)
)
