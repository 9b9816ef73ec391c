package h2client

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"time"

	"github.com/outrigger-mesh/outrigger/proxy/internal/roundtrip"
)

// RoundTripHooks is RoundTrip governed by ctx, not by req's context
// (which it does not read, so a caller may reuse a Request value without
// WithContext's copy), that also reports the round trip's events to h
// (nil means none) and ends at deadline (zero means none). An
// httptrace.ClientTrace in ctx is called as well, its hooks before h's.
// h's GotConn is called once, when the request first has a stream slot,
// not again when the request is sent once more on another connection
// (see ErrUnprocessed).
//
// The deadline bounds the round trip and the reading of the response body
// as a deadline on ctx would, with the same errors (wrapping
// context.DeadlineExceeded), but without a context of its own: the
// stream has a timer that resets it (CANCEL) when the deadline passes,
// stopped when the stream ends, and only a dial or a wait for a
// connection makes a context for it. ctx still cancels everything.
func (t *Transport) RoundTripHooks(ctx context.Context, req *http.Request, h roundtrip.Hooks, deadline time.Time) (*http.Response, error) {
	o, err := prepare(req)
	if err != nil {
		closeReqBody(req)
		return nil, err
	}
	ev := events{hooks: h, trace: httptrace.ContextClientTrace(ctx)}
	ev.getConn(req.URL.Host)
	var prev *conn
	for attempt := 0; ; attempt++ {
		if err := ended(ctx, deadline); err != nil {
			o.closeBody()
			return nil, err
		}
		c, reused, err := t.getConn(ctx, deadline, hostAddr(req.URL), prev)
		if err != nil {
			o.closeBody()
			return nil, err
		}
		ev.gotConn(c, reused, attempt == 0)
		resp, retry, err := c.roundTrip(ctx, deadline, req, o, &ev)
		if err == nil {
			return resp, nil
		}
		if !retry {
			o.closeBody()
			return nil, err
		}
		if attempt > 0 {
			o.closeBody()
			return nil, fmt.Errorf("%w: %w", err, ErrUnprocessed)
		}
		prev = c
		// The server did not process the request: send it once more,
		// on another connection, when its body can be sent again.
		if !o.rewind(ctx, deadline, req) {
			o.closeBody()
			if err := ended(ctx, deadline); err != nil {
				return nil, err
			}
			return nil, fmt.Errorf("%w: %w", err, ErrUnprocessed)
		}
	}
}

// errDeadline fails a round trip, or a response body, whose deadline
// passed: as a context's deadline would, it wraps
// context.DeadlineExceeded.
var errDeadline = fmt.Errorf("h2client: %w", context.DeadlineExceeded)

// ended is the error of a round trip whose ctx ended or whose deadline
// (zero: none) passed, or nil.
func ended(ctx context.Context, deadline time.Time) error {
	if ctx.Err() != nil {
		return fmt.Errorf("h2client: %w", context.Cause(ctx))
	}
	if !deadline.IsZero() && !time.Now().Before(deadline) {
		return errDeadline
	}
	return nil
}

// events is where a round trip reports what happens: to the caller's
// Hooks and to an httptrace.ClientTrace from its context, either or both
// nil.
type events struct {
	hooks roundtrip.Hooks
	trace *httptrace.ClientTrace
}

func (e *events) getConn(host string) {
	if e.trace != nil && e.trace.GetConn != nil {
		e.trace.GetConn(host)
	}
}

// gotConn reports a stream slot taken on c; first says it is the round
// trip's first (the hooks hear only of that one).
func (e *events) gotConn(c *conn, reused, first bool) {
	if e.trace != nil && e.trace.GotConn != nil {
		e.trace.GotConn(httptrace.GotConnInfo{Conn: c.nc, Reused: reused})
	}
	if e.hooks != nil && first {
		e.hooks.GotConn()
	}
}

func (e *events) wait100Continue() {
	if e.trace != nil && e.trace.Wait100Continue != nil {
		e.trace.Wait100Continue()
	}
}

func (e *events) got1xx(code int, header http.Header) error {
	if e.trace != nil {
		if e.trace.Got1xxResponse != nil {
			if err := e.trace.Got1xxResponse(code, textproto.MIMEHeader(header)); err != nil {
				return err
			}
		}
		if code == http.StatusContinue && e.trace.Got100Continue != nil {
			e.trace.Got100Continue()
		}
	}
	if e.hooks != nil {
		return e.hooks.Got1xxResponse(code, textproto.MIMEHeader(header))
	}
	return nil
}
