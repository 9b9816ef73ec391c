// Package h1client is an HTTP/1.1 client transport (an http.RoundTripper)
// for the proxy's upstream connections. It does each exchange — writing the
// request, reading the response head and, later, the body — on the calling
// goroutine: there is no read or write goroutine per connection and no
// goroutine per request, so a round trip costs no goroutine hand-offs.
//
// # What it does
//
// A Transport keeps, per scheme and host:port, a LIFO list of idle
// keep-alive connections (at most MaxIdlePerHost, expired after IdleTimeout
// by the injected clock, checked when a connection is taken) and a count of
// open connections (at most MaxConnsPerHost; a request at the cap waits for
// a connection to be returned or closed, or for its context). It writes a
// request line, the Host header and the caller's headers in one buffered
// write, with a body framed by Content-Length or chunked encoding (with
// trailers), honours "Expect: 100-continue", and reads responses framed by
// Content-Length, chunked encoding (trailers land in Response.Trailer at
// EOF; fields RFC 9110 §6.5.1 keeps out of trailers — framing, routing,
// authentication, content metadata, as httpguts.ValidTrailerHeader lists
// them — are dropped) or the connection's close. 1xx responses are
// reported through httptrace (Got1xxResponse, Got100Continue; of the
// other hooks, GetConn, GotConn — once per round trip — Wait100Continue
// and WroteRequest are called, the rest are not) and, for a caller that
// acts on them, through Hooks given to RoundTripHooks (GotConn and
// Got1xxResponse, called on the round trip's goroutine before it returns,
// with no context value or closure per request); a 101 response's Body
// is the connection itself, an io.ReadWriteCloser; a 101 to a request
// without an Upgrade header is an error (RFC 9110 §15.2.2) and closes
// the connection. https URLs get TLS over the dialled connection with
// ALPN "http/1.1". A request body longer than its ContentLength is an
// error, as in net/http. A host's pool is dropped when its last
// connection closes. A response's header values are substrings of one
// string holding its head, and the value slices of its first four
// fields live in the allocation of the response and its Body: keeping
// one keeps the response, and what it refers to, reachable.
//
// # Invariants
//
//   - A connection serves one exchange at a time and goes back to the idle
//     list only when its response body reached EOF cleanly (or, closed
//     early, had the rest of a Content-Length body, at most 4 KiB, already
//     buffered), nothing unread is left in its buffer (nor, under TLS, in
//     the TLS layer's, which a read that may not reach the socket finds), the exchange
//     was not cancelled, and neither side asked to close (Connection: close,
//     HTTP/1.0 without keep-alive, a close-delimited body, a request whose
//     body was refused by a final response to "Expect: 100-continue", a
//     204 with Content-Length or Transfer-Encoding, a 304 with
//     Transfer-Encoding). A response without a body (HEAD, 204, 304,
//     Content-Length: 0) gives its connection back before RoundTrip
//     returns, with http.NoBody as its Body.
//   - Cancellation is context.AfterFunc on the request's context (for
//     RoundTripHooks, the context it is given), or, when the context has
//     them, its WatchEnd and StopWatch methods (h1server's request
//     contexts do), which cost no allocation: the function runs
//     synchronously on the goroutine that ends the context, which it
//     never blocks. Either moves the connection's deadline into the
//     past, which ends any blocked read or write at once, for the head
//     and for the body read after RoundTrip returned. A connection whose
//     cancellation fired (or may be firing: the stop reported false) is
//     closed, never reused.
//     Errors caused by the context wrap context.Cause of it. A deadline
//     given to RoundTripHooks is the connection's deadline for the
//     exchange and its body; errors past it wrap
//     context.DeadlineExceeded, and its connection is closed as a
//     cancelled one is. It stays on the connection while it is idle
//     (nothing reads or writes an idle connection: the liveness peek
//     is a system call of its own) and is replaced by the next
//     exchange's, or cleared when that has none, so that an exchange
//     with the deadline the connection has already costs no deadline
//     change.
//   - Nothing that would let one message be read as two is sent or
//     accepted: invalid header names or values, request targets with
//     spaces or control bytes, and hosts that are not valid Host headers
//     are refused before a connection is taken; responses with both
//     Content-Length and Transfer-Encoding, differing Content-Lengths, a
//     transfer coding other than chunked, bad chunk sizes, chunk framing
//     that far outweighs its data (as net/http limits it), obsolete line
//     folding or a malformed status line are errors, and their connection
//     is closed.
//   - The Transport adds no header net/http would add by default (no
//     User-Agent, no Accept-Encoding) and skips a User-Agent whose only
//     value is "" (the idiom that keeps net/http from adding one). It adds
//     only framing: Host, Content-Length (including "Content-Length: 0" for
//     POST, PUT and PATCH without a body, as net/http does),
//     Transfer-Encoding, Trailer and, for Request.Close, Connection: close.
//
// # Stale idle connections
//
// A server may close a keep-alive connection while it sits idle. When a
// connection is taken from the idle list after at least a second of
// idleness, a non-blocking MSG_PEEK on its socket (Linux and macOS, through
// syscall.RawConn when the net.Conn exposes SyscallConn) finds one the peer
// has closed, or one with unsolicited bytes, and discards it (under TLS,
// bytes waiting may be a post-handshake message: the request taking the
// connection reads them through TLS, for at most a millisecond, and
// keeps it only if they yield nothing, neither data nor close_notify;
// the sweep below, which may not read, lets them be unless, on Linux, a
// POLLRDHUP says the peer has also ended its side, as a server closing
// a TLS connection does after its close_notify); shorter idle
// spells skip the check, so a busy connection costs no extra system call
// (but one whose net.Conn is an InputPender that says input may have come
// since its response was read is checked too, so that bytes a server sent
// unasked are not read as another request's response once the socket's
// poller has seen them: only bytes that arrive in the moment before a
// reuse can still slip past; a connection handed straight to a request
// waiting at MaxConnsPerHost is checked on the same terms, bar the idle
// time, and one it discards leaves that request its slot to dial in),
// except for a request that could not be sent again (below): a POST, or
// a body without GetBody, is never written into a connection the server
// closed right after its last response without saying so (RFC 9112
// §9.3.1), so every connection it reuses, from the idle list or handed
// over at MaxConnsPerHost, is peeked at first (one system call, no
// allocation).
// While any connection is idle, a sweep every second (a time.AfterFunc
// timer: no goroutine lives between sweeps) peeks at each idle connection
// the same way and closes those the server closed or that expired, so
// that a host nobody calls holds no half-closed socket and no
// MaxConnsPerHost slot. A request that still fails on a reused connection before any byte of the
// response arrived (EOF or a reset on write or on the first read) is sent
// again once on a fresh connection (not on another idle one, which a
// server that closed one may have closed too; at MaxConnsPerHost an idle
// one is taken, checked first) when net/http would do the same: the
// body can be sent again (none, http.NoBody, or Request.GetBody) and the
// method is idempotent (GET, HEAD, OPTIONS, TRACE, or an Idempotency-Key
// header), or nothing at all had been written.
//
// # What it does not do
//
// No HTTP/2, no proxies (HTTP_PROXY is ignored: the caller is the proxy),
// no compression (bodies pass through as encoded; no Accept-Encoding is
// added), no cookies, no redirects, no per-request timeouts of its own (the
// request's context, and RoundTripHooks' deadline, bound everything). A
// response that arrives while the request body is still being sent is
// read only once the body is sent (or its write fails): full-duplex
// HTTP/1.1 exchanges are not supported. When
// Request.ContentLength is 0 but the body is neither nil nor http.NoBody,
// one byte is read from it (blocking) to learn whether it is empty, where
// net/http gives up waiting after 200ms.
package h1client
