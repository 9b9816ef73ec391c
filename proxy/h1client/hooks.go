package h1client

import (
	"context"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"time"

	"github.com/outrigger-mesh/outrigger/proxy/internal/roundtrip"
)

// Hooks receives the events of one round trip that a caller acts on,
// without the context value, the httptrace.ClientTrace and the closures
// that httptrace needs per request. It is proxy/internal/roundtrip's,
// which proxy/h2client takes too. GotConn is called once per round trip,
// when a connection for the request was taken from the idle list or
// dialled, before any byte of the request is written; Got1xxResponse for
// each informational response read before the final one, and an error
// from it ends the round trip and closes the connection.
type Hooks = roundtrip.Hooks

// RoundTripHooks is RoundTrip governed by ctx, not by req's context
// (which it does not read, so a caller may reuse a Request value without
// WithContext's copy), that also reports the round trip's events to h
// (nil means none) and ends at deadline (zero means none). An
// httptrace.ClientTrace in ctx is called as well, its hooks before h's.
//
// The deadline bounds the round trip and the reading of the response body
// as a deadline on ctx would, with the same errors (wrapping
// context.DeadlineExceeded), but without a context of its own: it is the
// connection's deadline for the exchange, and only a dial or a wait for a
// connection makes a context for it. ctx still cancels everything; a 101
// response's connection is bound by neither.
func (t *Transport) RoundTripHooks(ctx context.Context, req *http.Request, h Hooks, deadline time.Time) (*http.Response, error) {
	o := outgoing{body: req.Body}
	resp, err := t.roundTrip(ctx, req, &o, h, deadline)
	if err != nil {
		o.closeBody()
	}
	return resp, err
}

// events is where an exchange reports what happens: to the caller's
// Hooks and to an httptrace.ClientTrace from the request's context,
// either or both nil.
type events struct {
	hooks Hooks
	trace *httptrace.ClientTrace
}

func (e *events) gotConn(info httptrace.GotConnInfo) {
	if e.trace != nil && e.trace.GotConn != nil {
		e.trace.GotConn(info)
	}
	if e.hooks != nil {
		e.hooks.GotConn()
	}
}

func (e *events) wait100Continue() {
	if e.trace != nil && e.trace.Wait100Continue != nil {
		e.trace.Wait100Continue()
	}
}

func (e *events) wroteRequest() {
	if e.trace != nil && e.trace.WroteRequest != nil {
		e.trace.WroteRequest(httptrace.WroteRequestInfo{})
	}
}

func (e *events) got1xx(code int, header http.Header) error {
	if e.trace != nil {
		if code == http.StatusContinue && e.trace.Got100Continue != nil {
			e.trace.Got100Continue()
		}
		if e.trace.Got1xxResponse != nil {
			if err := e.trace.Got1xxResponse(code, textproto.MIMEHeader(header)); err != nil {
				return err
			}
		}
	}
	if e.hooks != nil {
		return e.hooks.Got1xxResponse(code, textproto.MIMEHeader(header))
	}
	return nil
}
