// Package h1server is the proxy's downstream HTTP server: a hand-written
// HTTP/1.1 server for an http.Handler that hands HTTP/2 connections to
// proxy/h2server.
//
// # Why not net/http's server
//
// Per request, net/http's server starts a background read (a goroutine,
// an extra read system call that usually returns EAGAIN, deadline changes)
// to notice a client that goes away, and allocates a response, buffered
// writers and contexts. A sidecar pays that on every request. This server
// keeps what a proxy needs of net/http's semantics and drops the rest.
//
// # What it does
//
// One goroutine per connection reads a request, calls the handler on that
// goroutine, writes the response and reads the next one: keep-alive,
// HTTP/1.0 keep-alive, pipelined requests in order. Each connection keeps
// a 4 KiB bufio.Reader and an 8 KiB bufio.Writer (pooled between
// connections) for its life. A response of at most 4 KiB whose handler
// returns without flushing gets a Content-Length and leaves in one write
// system call, header block and body together; a longer or flushed one is
// sent chunked (HTTP/1.1) or delimited by the connection's close
// (HTTP/1.0). Trailers work both ways net/http supports: keys announced in
// the "Trailer" header, and keys set with http.TrailerPrefix after
// writing. The header map is snapshotted by the final WriteHeader, as in
// net/http; 1xx responses are written at once and leave the map as it is
// (RFC 8297). A Date field is added (formatted once a second) unless the
// handler set one (a nil value suppresses it).
//
// Requests are parsed strictly. Bad request lines (the asterisk-form
// target included, for a method other than OPTIONS; the authority-form,
// for a method other than CONNECT, or with more than host and port; an
// absolute-form target that is not
// an http or https URI with a host and without userinfo; any target
// with a '#', since no target has a fragment), headers, Host
// fields (one, and host[:port]: see wire.ValidAuthority), Content-Length values or chunk sizes get 400 with
// "Connection: close";
// a header block over MaxHeaderBytes 431; a Transfer-Encoding whose final
// coding is not chunked, or that is not one plain "chunked" (chunked
// twice, spread over field lines, with empty list elements), 400 (RFC
// 9112 §6.1); another coding before a final chunked 501; an HTTP major
// version other than 1 505; an Expect other
// than 100-continue 417 (these names are compared in ASCII, as in
// net/http: no Unicode case folding or trimming). A request with both Transfer-Encoding and
// Content-Length, with differing Content-Length values, or with
// Transfer-Encoding in HTTP/1.0 is refused with 400 rather than
// reinterpreted, so nothing can smuggle a second request past it.
// "Expect: 100-continue" is answered with 100 when the handler first reads
// the body. A body the handler leaves unread is drained, up to 256 KiB,
// after it returns and before its response goes out; a longer one, or
// one whose rest does not arrive within a second, closes the connection
// (and ends any reader the handler left on the body).
// A connection closed after a response when its client did not ask for
// it (Shutdown, the handler's "Connection: close", a body delimited by
// the close) is closed in stages (RFC 9112 §9.6): its sending side
// first, then what the client still sends (requests it pipelined) is
// read and dropped until it closes (up to half a second and 256 KiB),
// so that those bytes do not make the socket reset and drop the
// response's end.
//
// The ResponseWriter implements http.Flusher, FlushError, http.Hijacker
// (the bufio.ReadWriter's reader holds the bytes already read),
// SetReadDeadline, SetWriteDeadline and EnableFullDuplex (the server never
// touches the body while the handler runs), so http.ResponseController
// works. SetReadDeadline may be called from any goroutine while the
// handler runs (a timer ending a request body the client stopped
// sending): a body Read blocked on the connection, or made after the
// deadline, fails with an error wrapping os.ErrDeadlineExceeded, and the
// connection closes after the response, the body's framing being lost; a
// zero time clears it. Such a deadline is not taken for the client leaving
// and ends with the request. Once the handler has returned, its ResponseWriter's methods fail
// (a goroutine left behind must not write into the next response), and
// its request body's reads fail with http.ErrBodyReadAfterClose, also
// after a panic. A handler that panics with http.ErrAbortHandler has its
// connection closed with whatever was buffered unsent, so the client sees
// a broken response, never a truncated success; other panics are also
// reported to ErrorLog.
//
// # Client-gone detection
//
// A request's context is cancelled when the client closes its connection
// while the handler runs, as with net/http, but without a read per
// request: a request still running after 10 ms whose body has been read
// (with no pipelined request behind it) gets one watcher read on the
// connection; EOF or an error cancels the context. Detection takes at most
// 10 ms after the client leaves (or after the body's end, if later).
// Requests shorter than that cost a timer reset and stop. A write to the
// client that fails also cancels the context at once. A client that
// half-closes its connection after its request reads as one gone, as
// with net/http. A handler that returns without having written a
// response after its client went away gets none sent, not the default
// 200: the connection is closed.
//
// # Request contexts
//
// A request's context is not context.WithCancel of its connection's
// context but a proxy/internal/reqctx Context, held inside the request's
// ResponseWriter (which also holds the Request: no context or Request
// copy is allocated per request). It behaves as that cancelCtx would:
// it ends with context.Canceled when the handler returns or the client
// goes away, and with the connection context's error (and
// context.Cause) when that ends (Close, BaseContext, the connection's
// close), through one context.AfterFunc per connection rather than a
// child per request; its values and deadline are the connection
// context's, and its Done channel is made only when asked for. It has
// an AfterFunc method, so context.AfterFunc, WithCancel, WithDeadline
// and the like on it need no goroutine or children map, and a
// registration that allocates nothing for transports:
//
//	WatchEnd(f func()) (token uint64)
//	StopWatch(token uint64) bool
//
// f runs at most once, synchronously on the goroutine that ends the
// context (or on WatchEnd's caller's if it has ended), so it must not
// block; StopWatch reports whether it unregistered f before it ran
// (false: f ran, is running or is about to). Package h1client uses it,
// found by its method set. A request context, like the Request, keeps
// its ResponseWriter reachable while anything holds it.
//
// # HTTP/2
//
// With H2 set, a connection that opens with the HTTP/2 client preface
// (over TLS, only when ALPN chose no protocol: one that chose
// "http/1.1" is HTTP/1.1, and its preface a request of version 2.0,
// answered 505), and one whose request asks "Upgrade: h2c" with one valid HTTP2-Settings
// header (RFC 7540 §3.2; a body of up to 64 KiB is read first, within
// ReadHeaderTimeout), is served
// by H2's ServeConn (package h2server), with the bytes the HTTP/1.1 reader
// had buffered passed along as the connection's prefix; the upgraded
// request reaches the handler as stream 1, as an HTTP/2.0 request without
// the switch headers, nor the fields its Connection header named (but TE). Shutdown runs H2's Shutdown, which sends these
// connections GOAWAY, and waits for their streams; Close closes them.
//
// # Timeouts and shutdown
//
// ReadHeaderTimeout, IdleTimeout and WriteTimeout are connection
// deadlines; there is no timer goroutine. Without WriteTimeout, what the
// server writes with no handler running (the end of a response, as much
// of it as the handler left buffered, unless the handler set a write
// deadline; its own answers to refused requests and h2c upgrades), and
// 1xx responses (the automatic 100 Continue, those the handler sends)
// unless the handler set a write deadline, wait for the client at most
// IdleTimeout: a client that pipelines requests and reads no answer
// fills the socket's buffers, and would otherwise hold the connection
// and its goroutine, or the handler, for good. A 100 Continue that
// cannot be sent fails the body's read.
//
// SetLimits replaces the header limit, read-header timeout and idle
// timeout that MaxHeaderBytes, ReadHeaderTimeout and IdleTimeout set
// (the fields keep their values) while the Server serves (a
// configuration reload), from any goroutine. A connection takes the
// limits in force when Serve's Accept returns it (one atomic load per
// connection, none per request; a client still in the listen backlog
// gets those in force when it is taken) and keeps them for its life, for
// its heads and its chunked bodies' trailer blocks alike: connections
// already accepted are not affected, as with Envoy's listener updates.
// An HTTP/2 connection (prior knowledge, or an h2c upgrade on any of its
// requests) is handed to H2 with the same limits as its header list
// limit (SETTINGS_MAX_HEADER_LIST_SIZE) and idle timeout, through
// h2server.ConnOpts.Limits; until SetLimits is first called, H2's own
// MaxHeaderBytes and IdleTimeout apply.
//
// # Admission
//
// Gate, when set, decides at each accept whether the connection is
// served: one it refuses is closed at once, before a read or a write,
// and before it costs buffers or a goroutine; the accept loop goes on
// (Envoy's listener connection limit does the same). An admitted
// connection is released once the server is done with it: closed, for
// HTTP/1.1 and HTTP/2 (whose ServeConn returns when it has closed), or
// when the handler that hijacked it returns. A Gate that counts admitted
// connections against a cap thus bounds the sockets, goroutines and
// buffers a listener's clients hold.
//
// Shutdown closes the listeners
// and idle connections, lets busy ones finish their request (their
// response says "Connection: close") and waits for them until its
// context ends; Close ends everything at once and cancels the context all
// requests derive from.
//
// # What it does not do
//
// No TLS of its own (Limits.TLS hands the handshake to crypto/tls, on
// each connection's goroutine), no HTTP/2 of its own, no
// Content-Type sniffing (a response without Content-Type goes without
// one; the proxy's handlers set it), no Pragma to Cache-Control rewrite,
// no http.ServerContextKey in request contexts (http.LocalAddrContextKey
// is there), no ConnState hook, and no handler-chosen Transfer-Encoding
// (the server frames bodies itself). Hijacked connections are neither
// tracked nor closed by Shutdown or Close; their requests end when
// BaseContext is cancelled or Close is called. Libraries don't log:
// errors go to ErrorLog, and each request the server answers itself
// before any handler runs (the bad requests above) to Refused, with
// what was read of it, so that whoever logs and counts requests sees
// those too (H2 reports its refused streams the same way).
package h1server
