// Package h2client is an HTTP/2 client transport (an http.RoundTripper,
// RFC 9113) for the proxy's upstream connections to h2c and h2 (TLS)
// servers, gRPC among them. It is built for many concurrent streams over
// few connections: the frames of all streams of a connection are encoded
// into one buffer and leave in one write system call, where
// x/net/http2's Transport flushes each request's frames on their own.
//
// # What it does
//
// A Transport keeps, per host:port (Request.URL.Host), a list of open
// connections. A request takes a stream on the first connection with
// room under the server's SETTINGS_MAX_CONCURRENT_STREAMS and opens
// another connection when all are full; one dial per host is in flight at
// a time, and requests that find every connection full wait for it (or
// for their context). The dialling request takes the new connection's
// first stream, and no request dials twice: a server that allows no
// streams is an error, not a loop of dials, and that connection is
// closed rather than kept. A dial runs on the context
// of the request that started it; when that context ends first, the
// requests that waited for it try again, one of them dialling. A
// request whose slot a lowered SETTINGS_MAX_CONCURRENT_STREAMS took away
// before its HEADERS were queued (the acknowledgement goes first, and
// the server may count on the new limit from then on, RFC 9113 §6.5.3)
// goes to another connection. Dial returns a ready connection — plain TCP for h2c,
// or TLS that negotiated "h2" — and the Transport runs the handshake on
// it: client preface, SETTINGS (ENABLE_PUSH 0, INITIAL_WINDOW_SIZE 1 MiB,
// MAX_HEADER_LIST_SIZE), a connection WINDOW_UPDATE to 4 MiB, and it
// waits for the server's SETTINGS before the connection takes requests.
// A server that sends no SETTINGS within PingTimeout of the preface, or
// does not acknowledge ours within it, is sent GOAWAY SETTINGS_TIMEOUT
// and its connection closes (RFC 9113 §6.5.3).
//
// Each connection has one reader goroutine, which reads frames (with
// x/net/http2's Framer; header blocks are decoded with its HPACK decoder
// into a buffer the connection reuses, with the checks the Framer's
// ReadMetaHeaders makes) and hands them to the streams, and one writer goroutine. Streams and the reader append their
// frames, HPACK-encoded under the connection's mutex so that the
// encoder's dynamic table follows the byte order, to a queue; the writer,
// when woken, yields once (runtime.Gosched: with GOMAXPROCS=1 the streams
// that are ready append their frames first), swaps the queue with a spare
// buffer and writes it out in one call, so appenders never wait for the
// system call. DATA waits while more than 512 KiB are queued.
//
// A request without a body goes out as HEADERS with END_STREAM; one with
// a body of known length up to 16 KiB (read ahead, checked to end at its
// length) as HEADERS and DATA with END_STREAM in one append, when the
// flow-control windows allow. Other bodies are sent by a goroutine per
// request, in DATA frames within the stream and connection windows and
// the server's SETTINGS_MAX_FRAME_SIZE, followed by the request's
// trailers (Request.Trailer, announced in a "trailer" field) as HEADERS
// with END_STREAM. The body is sent while the response is read (full
// duplex, as gRPC bidirectional streams need); when the response ends
// first, the rest of the request body is cancelled (RST_STREAM CANCEL),
// as x/net/http2 does.
//
// A request with a body and "Expect: 100-continue", when the Transport
// has an ExpectContinueTimeout, sends its HEADERS alone (without
// END_STREAM) and holds its body back, as net/http's transports do:
// after a 100 Continue, or once ExpectContinueTimeout passed, the body
// is sent as above; a final response that comes first is returned and
// the body is never sent (it is closed), and once that response has
// ended the stream is closed with RST_STREAM NO_ERROR (RFC 9113 §8.1).
// Other 1xx responses (103 Early Hints) do not end the wait. The
// request's context ending while it waits resets the stream with CANCEL.
// Without an ExpectContinueTimeout, or without a body, the Expect field
// is passed on and nothing waits.
//
// Before a request's HEADERS are encoded, its header list is sized as
// RFC 9113 §6.5.2 says (name and value lengths plus 32 per field,
// pseudo-fields included) and, when it exceeds the
// SETTINGS_MAX_HEADER_LIST_SIZE the server announced, the request fails
// with ErrHeaderListTooLarge without anything sent: no stream id is
// spent and the connection and its other streams carry on. Trailers
// over the limit are not sent either: the stream is reset with CANCEL
// and the request fails with ErrHeaderListTooLarge.
//
// Requests carry :method, :scheme ("https" over TLS, else the URL's
// scheme, "http" when it is neither), :authority (Request.Host, else URL.Host) and :path
// (URL.RequestURI), then the header fields lowercased, without the
// connection-specific ones (Connection, Keep-Alive, Proxy-Connection,
// Transfer-Encoding, Upgrade, TE other than "trailers") and Host, and
// content-length when the body's length is known and not zero (and "0"
// for POST, PUT and PATCH without a body). Nothing else is added (no
// User-Agent, no Accept-Encoding: bodies pass through as encoded).
//
// RoundTrip returns when the final response head arrived. 1xx responses
// are reported through httptrace's Got1xxResponse (on the RoundTrip
// goroutine, never the reader's; a 100 also through Got100Continue);
// GotConn is called once a connection and stream slot are taken, GetConn
// before; Wait100Continue when a request starts waiting for a 100
// Continue; other hooks are not called. RoundTripHooks is RoundTrip on a
// context given beside the request, reporting GotConn (once per round
// trip) and the 1xx responses to proxy/internal/roundtrip's Hooks
// without httptrace, and with a deadline that bounds the round trip and
// the response body as a context's would: a timer on the stream, stopped
// when the stream ends, resets it with CANCEL when the deadline passes,
// and the round trip or Body.Read fails with an error wrapping
// context.DeadlineExceeded. The response is what
// x/net/http2 gives: Proto "HTTP/2.0", canonical header keys, the
// "Trailer" field's keys in Response.Trailer with nil values, filled
// (undeclared keys too) when the trailers arrive and before Body returns
// io.EOF; ContentLength from content-length, else -1 (0, with
// http.NoBody, when the head ended the stream). EndedAtHead tells a
// response whose header block ended the stream, as gRPC's Trailers-Only
// responses do. The body gives back
// stream window (WINDOW_UPDATE per 256 KiB read) as it is read; closing
// it early resets the stream with CANCEL.
//
// # Errors and retries
//
// A stream the server resets fails with http2.StreamError{StreamID,
// Code}; a malformed response (no or bad :status, connection-specific or
// uppercase fields, an invalid or differing content-length, pseudo-fields
// in trailers, DATA before HEADERS or
// beyond the declared content-length, DATA with content in a response
// to HEAD or a 204 or 304, HEADERS after END_STREAM) resets
// the stream with PROTOCOL_ERROR and fails it with such a StreamError.
// Protocol errors of the connection (PUSH_PROMISE, frames for streams
// never opened, window overflow, bad SETTINGS, SETTINGS_ENABLE_PUSH 1,
// a HEADERS frame whose header block cannot be decoded, such as one
// with more padding than payload, a frame too short for the fields its
// flags announce) send GOAWAY and close it,
// also when they are in the server's connection preface.
// Dial errors are returned wrapped, so errors.As finds the Dial func's
// error types; a failed handshake (the server closed, broke the
// protocol in its preface or sent no SETTINGS in time) is a
// HandshakeError, a failure to connect, for the request that dialled
// and those that waited for the dial; one the dialling request's
// context cut short is a HandshakeError wrapping its cause, for that
// request alone. When the request's context ends
// the stream is reset with CANCEL and RoundTrip, or Body.Read, returns
// an error wrapping context.Cause. A context with WatchEnd and StopWatch
// methods (proxy/internal/reqctx's, the proxy's request contexts) is
// watched through them, without context.AfterFunc's allocations.
//
// A request the server did not process — refused with REFUSED_STREAM
// or above the last stream id of a GOAWAY before any response (1xx
// included), or queued on a connection that failed before its HEADERS
// were handed to the socket — is sent once
// more on another connection when its body can be sent again (none, read
// ahead, not started yet, or given anew by Request.GetBody); when it is
// not, or that try fails the same way, its error wraps ErrUnprocessed, so
// that the caller may send it again itself. A stream refused after a 1xx
// response, which the caller has been given, is neither: it fails as a
// reset (a StreamError, REFUSED_STREAM, or the GOAWAY's error), since the
// server answered and sending it again would bring the 1xx again.
//
// # Connection lifetime
//
// A connection that received GOAWAY, failed, or spent its stream ids
// takes no new streams; it closes when its last stream ends. One without streams for IdleTimeout
// (by the Transport's clock, checked by a timer and when a connection is
// taken) is closed, as CloseIdleConnections closes all of them at once.
// After ReadIdleTimeout without a frame read the connection is sent a
// PING, and closed when the answer does not come within PingTimeout; a
// connection that stays silent is sent the next PING no sooner than
// MinPingInterval (5 minutes) after the previous one, which gRPC
// servers' keepalive enforcement allows (closer PINGs make them end the
// connection with GOAWAY ENHANCE_YOUR_CALM "too_many_pings").
// The same check, every ReadIdleTimeout, closes a connection whose
// server stopped reading: a write that has not returned between two
// checks (the server may go on sending frames, so that no PING is due).
// Closing a connection fails its streams, drops the frames not yet
// handed to the socket (a request whose HEADERS are dropped is one the
// server never saw, and may be sent again elsewhere), writes GOAWAY when
// the server broke the protocol (within a second), and closes the
// socket, which ends its reader and writer; request bodies still being
// read are closed. A
// server that floods PING or SETTINGS while not reading the answers gets
// GOAWAY ENHANCE_YOUR_CALM once 1 MiB of answers is queued.
//
// A response header block is read whole (HEADERS and CONTINUATION
// frames decoded together, the decoded size bounded by
// MaxHeaderListSize), and while it is open no other frame, PING answers
// included, can come. So a block may have at most 16 CONTINUATION frames
// plus one per KiB of MaxHeaderListSize (as proxy/h2server allows a
// request's), and must end within PingTimeout of its HEADERS; beyond
// either the connection ends with GOAWAY ENHANCE_YOUR_CALM. Empty
// CONTINUATION frames, which decode to nothing, cannot hold the reader.
//
// # What it does not do
//
// No CONNECT (nor extended CONNECT), no server push, no priorities, no
// compression. Retries are only for requests the
// server did not process; a request that failed on a connection that
// died after its HEADERS were written is not retried.
package h2client
