// Package h2server is an HTTP/2 server (RFC 9113) for connections
// already accepted and known to speak HTTP/2: cleartext with prior
// knowledge, or switched by "Upgrade: h2c" (proxy/h1server hands both
// over). It serves net/http handlers, with the observable behaviour of
// golang.org/x/net/http2's Server that a proxy relies on, and is built so
// that many streams' responses leave in one write.
//
// # Goroutines and writes
//
// ServeConn's goroutine reads frames (x/net/http2's Framer) and acts on
// them; it decodes header blocks itself (HPACK, with x/net's checks of
// field names and values, pseudo-header fields and the header list
// limit), into a buffer it reuses; each stream's handler runs on a
// goroutine of the connection's, one a new stream gets when no other
// waits: a goroutine whose handler has returned waits for the next
// stream, its stack already grown (up to 64 wait per connection; the
// others end, those waiting end when the connection has had no stream
// for 10 s (when its idle timeout is longer), and all end with the
// connection), so what a handler
// leaves in its goroutine (pprof labels set with SetGoroutineLabels, a
// LockOSThread not undone) is seen by those after it; a writer goroutine
// per connection writes. Every outgoing frame
// is encoded, under the connection's mutex, into one write buffer (HPACK
// encoding too, so that the dynamic table changes in byte order). The
// writer, once woken, yields once so that handlers readied by the same
// network poll can append their responses, then writes all that has
// accumulated in one call while appends go to a second buffer. A
// response that fits the 4 KiB body buffer leaves as one append when its
// handler returns: HEADERS and DATA(END_STREAM), or HEADERS(END_STREAM)
// with no body, or HEADERS, DATA and trailer HEADERS(END_STREAM). Flush
// appends what is held and wakes the writer; it never waits for the
// write. Handlers wait only for flow-control windows and, before
// appending a response's header block or DATA, while more than 256 KiB
// is pending on the connection; a stream's write deadline bounds these
// waits (see below).
//
// # Requests and responses
//
// Requests have Proto "HTTP/2.0", Host from :authority (or Host),
// RequestURI from :path, ContentLength from content-length (-1 without
// it, 0 with http.NoBody when HEADERS ended the stream), cookies joined
// with "; ". Trailers the request declared in its "Trailer" header are
// set in Request.Trailer before Body returns io.EOF (undeclared ones are
// dropped, as in x/net; one that may not be a trailer, such as Host or
// Content-Length, resets the stream PROTOCOL_ERROR). A body that does
// not match its content-length fails and the stream is reset with
// PROTOCOL_ERROR; one the connection's end cuts short (the client
// closes it, a connection error) fails too, never reading as complete. Each stream
// announces a 1 MiB receive window (and the connection 1 MiB); window
// updates are sent as the handler reads (padding counts as read when it
// arrives), once half a window is consumed; a stream whose handler has
// read all that came keeps at most a frame's worth of buffer, so what
// the server holds of request bodies is what is unread, within the
// connection's window, however many streams got bursts. Unread DATA holds the
// connection's window as well as its stream's, so one handler that stops
// reading (an upstream that does not take the body) can hold all of it:
// with the defaults the other streams' request bodies then wait until
// that handler reads, returns or is reset, as with x/net/http2. A
// MaxUploadBufferPerConnection several times MaxUploadBufferPerStream
// leaves them room, at that much memory per connection.
// "Expect: 100-continue" is answered 100 on the first Body read.
//
// # Request contexts
//
// A stream's context is a proxy/internal/reqctx Context inside the
// stream, not context.WithCancel of the connection's context: the
// connection knows its streams and ends their contexts itself, so a
// stream costs the connection's context no children map entry. It
// behaves as that cancelCtx would: it ends with context.Canceled (and
// that cause) when the handler returns, when the client resets the
// stream and when the connection ends (the client closes it, a
// connection error, Close, Shutdown's deadline); with the connection
// context's error and cause when that context (ConnOpts.Context or
// BaseContext) ends; its values and deadline are the connection
// context's. A reset ends it under the connection's lock, with the
// children made on it (WithCancel, WithDeadline), so a handler woken by
// the reset finds them ended; WatchEnd's functions run once the lock is
// released. It has an AfterFunc method, so
// context.AfterFunc, WithCancel and WithDeadline on it start no
// goroutine, and WatchEnd/StopWatch, with which proxy/h1client watches
// it without allocating (WatchEnd's function runs synchronously on the
// goroutine that ends the context: the handler's, the connection's
// reader, or Close's caller). Streams are never reused: a context a
// handler keeps stays valid (and ended) after the stream and the
// connection are gone.
//
// Responses: WriteHeader with a 1xx code sends that header block at once
// (the header map is left as it is); trailers are declared with the
// "Trailer" header or set with http.TrailerPrefix keys; a content-length
// the handler set is kept (writing past it fails with
// http.ErrContentLength, ending short resets the stream INTERNAL_ERROR);
// a response that fits the buffer when the handler returns gets a
// content-length. No Date or Content-Type is added. Connection-specific
// header fields are dropped. A handler panic resets the stream
// (INTERNAL_ERROR) and, unless the value is http.ErrAbortHandler, is
// logged. A handler that returns while the client is still sending gets
// its response sent then RST_STREAM NO_ERROR (RFC 9113 §8.1). Hijack is
// not supported.
//
// SetReadDeadline and SetWriteDeadline (http.ResponseController) set
// per-stream deadlines, callable from any goroutine while the handler
// runs; each is a timer made only when a deadline in the future is set
// (a stream that sets none has none), and a zero time clears it. Past
// the read deadline, a body Read blocked waiting for DATA, or made after
// it, fails with an error wrapping os.ErrDeadlineExceeded, until a later
// or zero deadline is set; the stream and the connection are otherwise
// unaffected (the handler typically answers and returns, and the unread
// body gets RST_STREAM NO_ERROR as above). Past the write deadline, a
// Write or Flush waiting for flow-control window or for the pending
// bytes to drain is woken and fails with an error wrapping
// os.ErrDeadlineExceeded, as does one made after it (even one the body
// buffer would take) and the end of the response once the handler
// returns; the stream is then reset INTERNAL_ERROR, as x/net/http2 and
// nghttpx reset a stream whose write timed out, which ends its context,
// frees its place among the concurrent streams and tells the client the
// response is cut short; the connection's other streams go on. A client
// that stops reading, or never opens the windows, so holds a handler
// that writes to it no longer than its write deadline.
//
// # Protocol limits
//
// The server announces SETTINGS_MAX_CONCURRENT_STREAMS (default 250),
// SETTINGS_INITIAL_WINDOW_SIZE and SETTINGS_MAX_HEADER_LIST_SIZE
// (MaxHeaderBytes, default 1 MiB; a larger header list is answered 431),
// and keeps the 16 KiB frame size. A stream opened beyond the limit is
// refused (RST_STREAM REFUSED_STREAM); a stream the client reset counts
// against the limit until its handler returns. Rapid-reset rule
// (CVE-2023-44487): every stream refused, malformed (its request, its
// trailers, a body that does not match its content-length, a frame on
// it after the client ended it, a window overflow), or reset
// by the client within a second of opening it and before its response
// ended is "bad" (a later reset is a client giving up, not an attack); once a
// connection has more than 100 bad streams and more bad streams than
// completed ones, it gets GOAWAY ENHANCE_YOUR_CALM and is closed. Each
// request stream ended before a handler ran, malformed or over the
// header list limit, is reported to Refused once (the server does not
// log); the rule above bounds them per connection to the streams it
// completed plus about 100. A client that does not read
// while making the server answer (PING and SETTINGS acknowledgements,
// streams refused or reset) is cut off once 1 MiB of answers is pending.
// Frames that cost the server work and do nothing are bounded too, each
// breach ending the connection with GOAWAY ENHANCE_YOUR_CALM: more than
// 100 DATA frames in a row without data or END_STREAM, a SETTINGS frame
// of more than 100 entries, a header block of more CONTINUATION frames
// than 16 plus one per KiB of the header list limit. A header block may
// stay open (HEADERS without END_HEADERS, waiting for its CONTINUATION)
// for ReadHeaderTimeout (default 10 s), a timer armed only for blocks of
// more than one frame: the client can send nothing else meanwhile, and
// the fields decoded so far are held, so a block left open while
// another stream keeps the idle timeout away would hold the connection
// for as long as that stream lasts. Past it the connection gets GOAWAY
// ENHANCE_YOUR_CALM, naming the last stream opened, and is closed. The
// client preface, up to the end of its SETTINGS frame, gets
// ReadHeaderTimeout too, from the start of ServeConn (after an h2c
// upgrade's 101 as well), with the same end past it: a client that
// sends the preface and then nothing is not held until the idle
// timeout.
//
// Malformed requests (missing pseudo-header fields, connection-specific
// fields, "te" other than "trailers", uppercase names, and, unlike x/net
// but as nghttp2, a field value that starts or ends with SP or HTAB,
// RFC 9113 §8.2.1, in the request or its trailers) are stream errors;
// frames on idle streams, even or decreasing stream ids, PUSH_PROMISE,
// window overflows of the connection, bad SETTINGS and a HEADERS frame
// with more padding than payload (whose header block is not decoded, a
// stream error in x/net) are connection errors: GOAWAY with the last stream id seen and the error code, then
// close once it is written. PRIORITY frames and unknown frame types are
// ignored, but for a stream made to depend on itself (a stream error,
// RFC 9113 §5.3.1). IdleTimeout closes a connection without streams with GOAWAY
// NO_ERROR; when a connection ends without streams (idle, drained, or
// told GOAWAY by the client), what is still pending for it, the GOAWAY
// included, gets IdleTimeout to be written, so a client that stopped
// reading and says nothing does not hold it open.
//
// ConnOpts.Limits replaces MaxHeaderBytes, IdleTimeout and
// ReadHeaderTimeout for one connection (proxy/h1server passes the
// limits in force when it accepted the connection, so that a change of
// its limits applies to new connections only); the connection keeps
// them for its life, and their zero values mean the defaults above, not
// the Server's fields.
//
// # Shutdown
//
// Shutdown closes each connection in two steps (RFC 9113 §6.8, as
// Envoy and grpc-go's server do): a GOAWAY(NO_ERROR) naming stream
// 2^31-1, with a PING, which stops the client opening streams and
// refuses none; then, on the PING's acknowledgement (the client has
// read the notice, and every stream it opened before has arrived) or a
// second after the notice without one, a GOAWAY(NO_ERROR) naming the
// last stream the client opened. Streams opened between the two are
// served; those opened after the second are refused with REFUSED_STREAM
// so that the client retries them elsewhere. Connections handed to
// ServeConn after Shutdown get the same two steps. The idle timeout and
// a client's GOAWAY close in one step: a connection without streams has
// none to lose, and a stream that races with that GOAWAY is refused and
// may be retried. A connection error sends one GOAWAY with its code,
// naming the last stream the client opened, or the stream a GOAWAY
// before it named if that is lower. Each connection closes once the
// final GOAWAY is out and its streams are done; Shutdown returns when
// all have, or closes the rest when its context ends. Close closes
// every connection at once. ServeConn returns only after every handler
// it started has returned.
//
// # Not supported
//
// TLS of its own (the connection is served as given: proxy/h1server
// does the handshake and passes its state in ConnOpts.TLS), server
// push, extended CONNECT (RFC 8441), priorities, a SETTINGS
// acknowledgement timeout, and server-wide write or read timeouts: a
// client that stops reading holds the handlers that write to it (within
// flow control and the pending-bytes bound) until their write deadlines
// pass, it resets its streams, the connection ends, Shutdown's deadline
// passes or Close.
package h2server
