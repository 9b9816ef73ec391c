package roundtrip

import "net/textproto"

// Hooks receives the events of one round trip that a caller acts on. Its
// methods are called on the goroutine that runs the round trip, before
// it returns, never after.
type Hooks interface {
	// GotConn is called once per round trip, when the request has a
	// connection (and, over HTTP/2, a stream slot on it), before any
	// byte of the request is written. A round trip that fails before it
	// has one does not call it.
	GotConn()
	// Got1xxResponse is called for each informational response (1xx
	// other than 101) read before the final one, 100 Continue included,
	// with its header block. A non-nil error ends the round trip with
	// that error (the connection closed over HTTP/1.1, the stream reset
	// over HTTP/2).
	Got1xxResponse(code int, header textproto.MIMEHeader) error
}
