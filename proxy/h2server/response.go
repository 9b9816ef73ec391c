package h2server

import (
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http/httpguts"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/outrigger-mesh/outrigger/proxy/internal/wire"
)

// responseWriter is a stream's http.ResponseWriter. Only the handler's
// goroutine uses it; what it shares with the connection is under sc.mu.
type responseWriter struct {
	st *stream
	sc *serverConn

	header      http.Header
	fields      *[]hpack.HeaderField // the header block, fixed at WriteHeader; from fieldsPool until sent
	status      int
	wroteHeader bool
	sentHeader  bool // HEADERS appended
	bodyAllowed bool
	declCL      int64 // the handler's content-length, or -1
	hasCL       bool  // the header block has a valid content-length
	written     int64
	buf         *[]byte // body held back, from bodyBufPool
	done        bool
	// finishing: the handler has returned and finish sends the rest.
	finishing bool
	// endBound: the write deadline is the idle timeout's bound on the
	// end of the response (see waitSendLocked), not the handler's.
	endBound bool
}

var (
	_ http.ResponseWriter = (*responseWriter)(nil)
	_ http.Flusher        = (*responseWriter)(nil)
)

func (rw *responseWriter) Header() http.Header {
	if rw.header == nil {
		rw.header = make(http.Header)
	}
	return rw.header
}

// AdoptHeader makes h the response's header map, as if Header had
// returned it and the handler had filled it, and reports whether it
// did: it does only while Header has not been called and nothing was
// written. A proxy hands over the header map of the response it
// forwards instead of copying it into a new one; h is the response's
// from then on, and the caller reaches it only through Header.
func (rw *responseWriter) AdoptHeader(h http.Header) bool {
	if rw.header != nil || rw.wroteHeader || rw.done || h == nil {
		return false
	}
	rw.header = h
	return true
}

func (rw *responseWriter) WriteHeader(code int) {
	if rw.done || rw.wroteHeader {
		return
	}
	if code < 100 || code > 999 {
		panic("invalid WriteHeader code " + strconv.Itoa(code))
	}
	if code < 200 {
		// 1xx goes out at once, as its own header block; the header map
		// stays as it is. 101 has no meaning in HTTP/2 (RFC 9113 §8.6).
		if code == http.StatusSwitchingProtocols {
			return
		}
		fields := appendFields(nil, rw.header, false)
		sc := rw.sc
		sc.mu.Lock()
		if !rw.st.reset && !sc.dead {
			sc.appendHeadersLocked(rw.st.id, code, fields, false)
			sc.queueLocked()
		}
		sc.mu.Unlock()
		return
	}
	rw.wroteHeader = true
	rw.status = code
	rw.bodyAllowed = bodyAllowed(code) && !rw.st.isHead
	// A 304's content-length describes the representation (RFC 9110
	// §8.6) and goes out; a 204 has none.
	withLength := code != http.StatusNoContent
	if cl := rw.header["Content-Length"]; len(cl) > 0 && withLength {
		if n, ok := wire.ParseDecimal(cl[0]); !ok {
			delete(rw.header, "Content-Length")
		} else if rw.hasCL = true; rw.bodyAllowed {
			// (A 304's or a HEAD response's describes a body not sent.)
			rw.declCL = n
		}
	}
	rw.fields = fieldsPool.Get().(*[]hpack.HeaderField)
	*rw.fields = appendFields((*rw.fields)[:0], rw.header, withLength)
	if _, ok := rw.header["Date"]; !ok {
		// RFC 9110 §6.6.1: a server with a clock sends Date, and one
		// that forwards a response without it adds it; the HTTP/1.1
		// server does too.
		*rw.fields = append(*rw.fields, hpack.HeaderField{Name: "date", Value: dateValue(time.Now())})
	}
}

// The Date field's value, formatted once a second.
type dateText struct {
	sec int64
	s   string
}

var dateCache atomic.Pointer[dateText]

func dateValue(now time.Time) string {
	sec := now.Unix()
	if d := dateCache.Load(); d != nil && d.sec == sec {
		return d.s
	}
	s := now.UTC().Format(http.TimeFormat)
	dateCache.Store(&dateText{sec: sec, s: s})
	return s
}

// fieldsPool holds the buffers of final header blocks, each a
// responseWriter's from WriteHeader until its HEADERS are appended.
var fieldsPool = sync.Pool{New: func() any { f := make([]hpack.HeaderField, 0, 8); return &f }}

// keptFields bounds the header block buffers kept in fieldsPool.
const keptFields = 64

// putFields returns rw.fields to fieldsPool.
func (rw *responseWriter) putFields() {
	if f := rw.fields; f != nil {
		rw.fields = nil
		clear(*f) // the pool must not keep the strings
		if cap(*f) <= keptFields {
			*f = (*f)[:0]
			fieldsPool.Put(f)
		}
	}
}

// appendFields turns a header map into HTTP/2 fields: lowercase names,
// without connection-specific fields (RFC 9113 §8.2.2), trailers or
// invalid fields; without content-length unless withLength, and then
// with its first value only. A server must not send one with a 1xx or a
// 204 (RFC 9110 §8.6), and an HTTP/2 client that checks (nghttp2, so
// curl) fails the request on a non-zero one, or on a second field even
// of the same value; a proxy's handler passes on such fields from an
// HTTP/1.1 upstream's response (or any upstream's 1xx) as they came.
// (WriteHeader has dropped a first value that is not a length.)
func appendFields(dst []hpack.HeaderField, h http.Header, withLength bool) []hpack.HeaderField {
	for k, vv := range h {
		if strings.HasPrefix(k, http.TrailerPrefix) {
			continue
		}
		name := lowerHeader(k)
		switch name {
		case "connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade":
			continue
		case "content-length":
			if withLength && len(vv) > 0 {
				dst = append(dst, hpack.HeaderField{Name: name, Value: vv[0]})
			}
			continue
		}
		if !httpguts.ValidHeaderFieldName(k) {
			continue
		}
		for _, v := range vv {
			if !httpguts.ValidHeaderFieldValue(v) || name == "te" && v != "trailers" {
				continue
			}
			dst = append(dst, hpack.HeaderField{Name: name, Value: v})
		}
	}
	return dst
}

func bodyAllowed(code int) bool {
	return !(code >= 100 && code <= 199 || code == http.StatusNoContent || code == http.StatusNotModified)
}

func (rw *responseWriter) Write(p []byte) (int, error) {
	if rw.done {
		return 0, http.ErrHandlerTimeout
	}
	if !rw.wroteHeader {
		rw.WriteHeader(http.StatusOK)
	}
	if !rw.bodyAllowed {
		if rw.st.isHead {
			// Not sent, but counted: a HEAD response announces the
			// length the GET response would have (see finish).
			rw.written += int64(len(p))
			return len(p), nil
		}
		return 0, http.ErrBodyNotAllowed
	}
	if rw.declCL >= 0 && rw.written+int64(len(p)) > rw.declCL {
		return 0, http.ErrContentLength
	}
	if len(p) == 0 {
		return 0, nil
	}
	rw.written += int64(len(p))
	if !rw.sentHeader {
		if rw.buf == nil {
			rw.buf = bodyBufPool.Get().(*[]byte)
		}
		if len(*rw.buf)+len(p) <= bodyBufSize {
			if rw.st.dl.Load() != nil {
				// A write past the deadline fails, even one that
				// would only be held back.
				if err := rw.writeDeadlinePassed(); err != nil {
					rw.written -= int64(len(p))
					return 0, err
				}
			}
			*rw.buf = append(*rw.buf, p...)
			return len(p), nil
		}
	}
	sc := rw.sc
	sc.mu.Lock()
	err := rw.sendLocked(p, false, nil)
	sc.unlock()
	if err != nil {
		return 0, err
	}
	return len(p), nil
}

func (rw *responseWriter) WriteString(s string) (int, error) {
	// Small strings go to the buffer without a conversion.
	if rw.wroteHeader && rw.bodyAllowed && !rw.sentHeader && !rw.done && rw.buf != nil && rw.st.dl.Load() == nil &&
		len(*rw.buf)+len(s) <= bodyBufSize && (rw.declCL < 0 || rw.written+int64(len(s)) <= rw.declCL) {
		*rw.buf = append(*rw.buf, s...)
		rw.written += int64(len(s))
		return len(s), nil
	}
	return rw.Write([]byte(s))
}

// Flush sends what the handler has written (and the header block) and
// wakes the writer; it does not wait for the write.
func (rw *responseWriter) Flush() { _ = rw.FlushError() }

// FlushError is Flush that reports a stream or connection already gone.
func (rw *responseWriter) FlushError() error {
	if rw.done {
		return http.ErrHandlerTimeout
	}
	if !rw.wroteHeader {
		rw.WriteHeader(http.StatusOK)
	}
	sc := rw.sc
	sc.mu.Lock()
	defer sc.unlock()
	return rw.sendLocked(nil, false, nil)
}

// EnableFullDuplex lets the handler read the request body while it writes
// the response, which HTTP/2 always allows.
func (rw *responseWriter) EnableFullDuplex() error { return nil }

// SetReadDeadline sets the stream's request body read deadline, for
// http.ResponseController: a Read blocked waiting for DATA, or made after
// t, fails with an error wrapping os.ErrDeadlineExceeded; a zero t clears
// it. The stream and the connection are otherwise unaffected: DATA the
// client still sends is buffered (within the flow-control window) and
// dropped when the handler returns, which then resets the stream
// NO_ERROR after the response as for any unread body. It may be called
// from any goroutine while the handler runs.
func (rw *responseWriter) SetReadDeadline(t time.Time) error { return rw.st.setDeadline(t, false) }

// SetWriteDeadline sets the stream's response write deadline, for
// http.ResponseController: a Write or Flush waiting for flow-control
// window or for the connection's pending bytes to drain, or made after
// t, fails with an error wrapping os.ErrDeadlineExceeded, and so does
// the end of the response once the handler returns; the stream is then
// reset INTERNAL_ERROR (see deadline.go), the connection's other streams
// unaffected. A zero t clears it (the end of the response then waits
// for the client at most the server's IdleTimeout per wait, as when no
// deadline was set); a later t lifts an expired deadline unless a write
// has failed (the stream is gone). It may be called from any goroutine
// while the handler runs.
func (rw *responseWriter) SetWriteDeadline(t time.Time) error { return rw.st.setDeadline(t, true) }

// writeDeadlinePassed checks the write deadline for a write that needs
// no lock otherwise (one held back in the buffer).
func (rw *responseWriter) writeDeadlinePassed() error {
	sc, st := rw.sc, rw.st
	sc.mu.Lock()
	defer sc.unlock()
	if st.writeExpiredLocked() {
		return sc.sendBlockedLocked(st)
	}
	return nil
}

// finish sends the rest of the response once the handler has returned.
func (rw *responseWriter) finish() {
	if !rw.wroteHeader {
		rw.WriteHeader(http.StatusOK)
	}
	trailers := rw.trailerFields()
	short := rw.bodyAllowed && rw.declCL >= 0 && rw.written < rw.declCL
	sc := rw.sc
	sc.mu.Lock()
	rw.finishing = true
	if !rw.sentHeader && !rw.hasCL && (rw.bodyAllowed || rw.st.isHead && rw.written > 0) && bodyAllowed(rw.status) {
		// Whole in the buffer (until the header block is sent, all that
		// was written is there; a HEAD response's is only counted):
		// announce its length, as x/net/http2 does.
		*rw.fields = append(*rw.fields, hpack.HeaderField{Name: "content-length", Value: strconv.FormatInt(rw.written, 10)})
	}
	if short {
		// Less body than its content-length: the client must not take
		// it for a whole response.
		if rw.sendLocked(nil, false, nil) == nil {
			sc.resetLocked(rw.st, http2.ErrCodeInternal)
		}
	} else {
		_ = rw.sendLocked(nil, true, trailers)
	}
	sc.unlock()
	rw.done = true
}

func (rw *responseWriter) release() {
	rw.done = true
	rw.putFields()
	if rw.buf != nil {
		*rw.buf = (*rw.buf)[:0]
		bodyBufPool.Put(rw.buf)
		rw.buf = nil
	}
}

// trailerFields collects the trailers: the keys the "Trailer" header
// declared, and keys set with http.TrailerPrefix. Fields that must not
// ride in a trailer (framing, routing, authentication, content metadata:
// httpguts.ValidTrailerHeader) are dropped, as x/net/http2 does.
func (rw *responseWriter) trailerFields() []hpack.HeaderField {
	var out []hpack.HeaderField
	add := func(k string, vv []string) {
		if !httpguts.ValidHeaderFieldName(k) || !httpguts.ValidTrailerHeader(k) {
			return
		}
		name := lowerHeader(k)
		switch name {
		case "connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "te", "trailer", "content-length":
			return
		}
		for _, v := range vv {
			if v != "" && httpguts.ValidHeaderFieldValue(v) {
				out = append(out, hpack.HeaderField{Name: name, Value: v})
			}
		}
	}
	for _, decl := range rw.header["Trailer"] {
		for _, k := range strings.Split(decl, ",") {
			k = http.CanonicalHeaderKey(strings.TrimSpace(k))
			if k != "" {
				add(k, rw.header[k])
			}
		}
	}
	for k, vv := range rw.header {
		if strings.HasPrefix(k, http.TrailerPrefix) {
			add(http.CanonicalHeaderKey(k[len(http.TrailerPrefix):]), vv)
		}
	}
	return out
}

// sendLocked appends the header block if not yet sent, the held-back
// body, then p; with end it ends the stream (on the last DATA, on the
// trailers, or on HEADERS if there is no body). It waits for flow control
// and for the pending bytes to drain, and fails past the write deadline
// (resetting the stream). sc.mu is held; the caller releases it with
// sc.unlock.
func (rw *responseWriter) sendLocked(p []byte, end bool, trailers []hpack.HeaderField) error {
	sc, st := rw.sc, rw.st
	if err := sc.sendBlockedLocked(st); err != nil {
		return err
	}
	var held []byte
	if rw.buf != nil {
		held = *rw.buf
	}
	if !rw.sentHeader {
		// A header block waits for room as DATA does: a response
		// without a body is all header block, which no window holds
		// back, and a client that asks for many and reads none would
		// grow the buffer without end.
		for len(sc.wbuf) >= maxPending {
			sc.waitSendLocked(st, waitRoom)
			if err := sc.sendBlockedLocked(st); err != nil {
				return err
			}
		}
		if !sc.headerListFitsLocked(st, *rw.fields, true) {
			return errHeaderListTooLarge
		}
		rw.sentHeader = true
		st.respStarted = true
		headEnd := end && len(held) == 0 && len(p) == 0 && len(trailers) == 0
		sc.appendHeadersLocked(st.id, rw.status, *rw.fields, headEnd)
		rw.putFields()
		if headEnd {
			st.localEnded = true
			sc.completed++
			sc.queueLocked()
			return nil
		}
	}
	dataEnd := end && len(trailers) == 0
	if len(held) > 0 {
		if err := rw.sendDataLocked(held, dataEnd && len(p) == 0); err != nil {
			return err
		}
		*rw.buf = held[:0]
	}
	if len(p) > 0 || dataEnd && len(held) == 0 {
		if err := rw.sendDataLocked(p, dataEnd); err != nil {
			return err
		}
	}
	if end && len(trailers) > 0 {
		if !sc.headerListFitsLocked(st, trailers, false) {
			return errHeaderListTooLarge
		}
		sc.appendHeadersLocked(st.id, 0, trailers, true)
	}
	if end {
		st.localEnded = true
		// Counted when the answer is queued, before the client can
		// read it and reset another stream (rapid-reset rule).
		sc.completed++
	}
	sc.queueLocked()
	return nil
}

// sendDataLocked appends p as DATA frames within the peer's frame size
// and the send windows, waiting for WINDOW_UPDATE (or for the writer to
// drain a full buffer) as needed.
func (rw *responseWriter) sendDataLocked(p []byte, end bool) error {
	sc, st := rw.sc, rw.st
	// A handler woken for the connection's window passes on what it
	// leaves of it, when it stops taking it (see wakeSendersLocked).
	waited := false
	for {
		if err := sc.sendBlockedLocked(st); err != nil {
			if waited {
				sc.passWindowLocked()
			}
			return err
		}
		n := 0
		if len(p) > 0 {
			avail := min(st.sendWindow, sc.sendWindow)
			if avail <= 0 || len(sc.wbuf) >= maxPending {
				if waited {
					sc.passWindowLocked()
				}
				st.sendNeed = len(p)
				sc.waitSendLocked(st, waitWindow)
				waited = true
				continue
			}
			n = int(min(int64(len(p)), avail, int64(sc.peerMaxFrame)))
		}
		last := end && n == len(p)
		sc.appendDataLocked(st.id, p[:n], last)
		st.sendWindow -= int64(n)
		sc.sendWindow -= int64(n)
		p = p[n:]
		if len(p) == 0 {
			if waited {
				sc.passWindowLocked()
			}
			return nil
		}
		if len(sc.wbuf) >= maxPending/4 {
			// Start the write of what is there while more is appended.
			sc.queueLocked()
		}
	}
}

// sendWait says what a handler waiting to send waits for.
type sendWait uint8

const (
	notWaiting sendWait = iota
	waitRoom            // the pending bytes to fall below maxPending
	waitWindow          // that, and both send windows to be open
)

// waitSendLocked waits until st's handler may send (wakeSenderLocked) or
// st or the connection is gone; sc.mu is held, and released meanwhile.
// Each stream has its own wake-up, so that a window update, a SETTINGS
// frame or a write wakes only the handlers it lets go on: one shared
// sync.Cond woke every waiting handler of the connection for each frame
// of a few bytes that the client sent.
func (sc *serverConn) waitSendLocked(st *stream, what sendWait) {
	if st.rw.finishing && sc.idleTimeout > 0 {
		// The handler has returned: the end of its response waits for
		// a client that takes nothing at most the idle timeout, unless
		// the handler set a write deadline of its own. Each wait gets
		// the whole timeout: a client that takes some of the end (the
		// wait before this one ended) is not cut off, however slowly
		// it reads.
		if d := st.deadlinesLocked(); d.write.at.IsZero() || st.rw.endBound {
			d.write.move(time.Now().Add(sc.idleTimeout))
			st.rw.endBound = true
		}
	}
	if st.armWriteLocked() {
		return // the caller finds the deadline passed
	}
	if st.sendWake == nil {
		st.sendWake = make(chan struct{}, 1)
	}
	sc.queueLocked()
	sc.sendWaiters++
	st.sendWaiting = what
	sc.mu.Unlock()
	<-st.sendWake
	sc.mu.Lock()
	st.sendWaiting = notWaiting
	sc.sendWaiters--
	sc.sendWakes++
}

// wakeSenderLocked wakes st's handler if it waits to send and may now:
// st or the connection is gone, or there is room and, for DATA, window.
func (sc *serverConn) wakeSenderLocked(st *stream) {
	switch {
	case st.sendWaiting == notWaiting:
		return
	case st.reset || sc.dead || st.writeExpiredLocked():
	case len(sc.wbuf) >= maxPending:
		return
	case st.sendWaiting == waitWindow && (st.sendWindow <= 0 || sc.sendWindow <= 0):
		return
	}
	select {
	case st.sendWake <- struct{}{}:
	default:
	}
}

// wakeSendersLocked wakes the handlers that wait to send and may now,
// but of those waiting for the connection's window only as many as it
// can serve: each counts for what it waits to send, within its stream's
// window, and those woken already count too. Waking all of them, a
// client that opened the window a byte at a time had every handler woken
// for each byte, one to take it and the rest to wait again. One woken
// that takes less than it counted for passes the rest on when it stops
// taking (passWindowLocked), so the window is never left unused while
// handlers wait for it.
func (sc *serverConn) wakeSendersLocked() {
	if sc.sendWaiters == 0 {
		return
	}
	budget := sc.sendWindow
	for _, st := range sc.streams {
		if st.sendWaiting != waitWindow || st.reset || sc.dead || st.writeExpiredLocked() {
			sc.wakeSenderLocked(st)
			continue
		}
		if st.sendWindow <= 0 || budget <= 0 || len(sc.wbuf) >= maxPending {
			continue
		}
		budget -= min(st.sendWindow, int64(st.sendNeed))
		sc.wakeSenderLocked(st)
	}
}

// passWindowLocked is called by a handler woken for the connection's
// window once it stops taking it: what it left goes to the next ones.
func (sc *serverConn) passWindowLocked() {
	if sc.sendWindow > 0 {
		sc.wakeSendersLocked()
	}
}

// headerListFitsLocked reports whether a header block of fields (and
// :status, with status) is within the client's SETTINGS_MAX_HEADER_LIST_SIZE
// (RFC 9113 §6.5.2: each field counts its name's and value's lengths and
// 32). One that is not is not sent: the stream is reset INTERNAL_ERROR,
// as the block could not be answered otherwise. A client that gets a
// block over its limit may end the whole connection (grpc-go does, with
// COMPRESSION_ERROR), every other stream of it with it.
func (sc *serverConn) headerListFitsLocked(st *stream, fields []hpack.HeaderField, status bool) bool {
	limit := uint64(sc.peerMaxHeaderList)
	if limit == 0 {
		return true
	}
	var size uint64
	if status {
		size = uint64(len(":status") + 3 + 32)
	}
	for _, f := range fields {
		size += uint64(len(f.Name) + len(f.Value) + 32)
	}
	if size <= limit {
		return true
	}
	sc.resetLocked(st, http2.ErrCodeInternal)
	return false
}
