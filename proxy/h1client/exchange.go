package h1client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"
)

// exchange sends req on c and reads the response head. It owns c: on
// success the response body (or, for a body-less response, the pool) has
// it; on error it is closed. stale reports a failure a fresh connection
// might not have had: c was reused, no byte of a response arrived, the
// context did not end nor the deadline pass, and the request may be sent
// again (idempotent, or not a byte of it written). deadline (zero: none)
// bounds the exchange and the body, as the context does.
func (c *conn) exchange(ctx context.Context, deadline time.Time, req *http.Request, o *outgoing, ev *events) (_ *http.Response, stale bool, _ error) {
	t := c.hp.t
	c.written = 0
	c.exchanges++
	c.setDeadline(deadline)
	c.watch(ctx)
	rb := &responseBody{c: c, ctx: ctx}
	resp := &rb.resp
	resp.Request = req

	keep := !o.close
	haveHead := false // a final response head was read while sending
	mode := bodyNone
	var err error
	if c.br == nil {
		c.br = t.getReader(c.nc)
	}
	c.bw = t.getWriter(c)
	o.writeHead(c.bw, req)
	switch {
	case o.length == 0:
		err = c.bw.Flush()
	case o.expect && t.ExpectContinueTimeout > 0:
		if err = c.bw.Flush(); err != nil {
			break
		}
		ev.wait100Continue()
		var send, silent bool
		send, mode, silent, err = c.awaitContinue(rb, ev, t.ExpectContinueTimeout, o.method)
		switch {
		case err != nil:
			// A malformed or missing interim response. One that never
			// began, on a reused connection, is a stale connection's
			// failure, as on the plain read path below.
			t.putWriter(c.bw)
			c.bw = nil
			c.fail()
			stale = silent && !c.ended(ctx) && c.reused && o.idempotent
			if silent {
				err = c.refusedHandshake(err)
			}
			return nil, stale, c.wrapErr(ctx, "reading response", err)
		case send:
			err = c.writeBody(o, req)
		default:
			// A final response refused the body: the server may or
			// may not read the unsent body, so the connection ends here.
			haveHead, keep = true, false
			o.closeBody()
		}
	default:
		err = c.writeBody(o, req)
	}
	t.putWriter(c.bw)
	c.bw = nil
	if err != nil {
		var be *bodyReadError
		if errors.As(err, &be) || c.ended(ctx) {
			c.fail()
			return nil, false, c.wrapErr(ctx, "writing request", err)
		}
		// The server may have answered before it stopped reading (a
		// 413, a 401): read what it said, else report the write.
		if o.length != 0 && c.written > 0 {
			mode, rerr := c.readHead(rb, ev, o.method, false)
			if rerr == nil {
				return c.finish(ctx, rb, mode, false)
			}
			// The server that stopped reading may have refused the
			// handshake.
			var he *HandshakeError
			if errors.As(c.refusedHandshake(rerr), &he) {
				err = he
			}
		}
		c.fail()
		return nil, c.reused && (o.idempotent || c.written == 0), c.wrapErr(ctx, "writing request", err)
	}
	if !haveHead {
		ev.wroteRequest()
		if _, err = c.br.Peek(1); err != nil {
			c.fail()
			stale = !c.ended(ctx) && c.reused && o.idempotent
			return nil, stale, c.wrapErr(ctx, "reading response", c.refusedHandshake(noResponse(err)))
		}
		if mode, err = c.readHead(rb, ev, o.method, false); err != nil {
			c.fail()
			return nil, false, c.wrapErr(ctx, "reading response", err)
		}
	}
	return c.finish(ctx, rb, mode, keep)
}

// noResponse names an end of stream before any byte of a response.
func noResponse(err error) error {
	if err == io.EOF {
		return errNoResponse
	}
	return err
}

// finish hands the connection to the response body, or, when there is no
// body, back to the pool.
func (c *conn) finish(ctx context.Context, rb *responseBody, mode int, keep bool) (*http.Response, bool, error) {
	resp := &rb.resp
	resp.TLS = c.tlsState
	keep = keep && !resp.Close
	if resp.StatusCode == http.StatusSwitchingProtocols {
		if resp.Request.Header["Upgrade"] == nil {
			// RFC 9110 §15.2.2: a server switches only to a protocol
			// the request's Upgrade offered. What follows an unasked
			// 101 is not HTTP this client can frame, and handing the
			// raw connection to a caller that asked for none would
			// let the server talk past the response.
			c.fail()
			return nil, false, errors.New("h1client: 101 Switching Protocols to a request without Upgrade")
		}
		// The connection now carries another protocol: it leaves the
		// pool (still counted under MaxConnsPerHost until closed) and
		// the context no longer governs it.
		if !c.unwatch() || c.expired() {
			c.discard()
			return nil, false, fmt.Errorf("h1client: reading response: %w", c.cause(ctx))
		}
		c.setDeadline(time.Time{})
		resp.Body = &upgradeBody{c: c}
		return resp, false, nil
	}
	if mode == bodyNone || mode == bodyNoneClose {
		resp.Body = http.NoBody
		c.unframedRisk = true
		c.release(keep && mode == bodyNone)
		return resp, false, nil
	}
	rb.mode = mode
	rb.n = resp.ContentLength
	if mode == bodyChunked {
		rb.n = 0
	}
	rb.keep = keep
	resp.Body = rb
	return resp, false, nil
}

// readHead reads response heads into rb.resp until a final one (or a
// 101), reporting interim ones to ev. oneInterim ends the loop after one
// interim response too (its framing is bodyNone): the caller is waiting
// to send a body. It returns the body's framing.
func (c *conn) readHead(rb *responseBody, ev *events, method string, oneInterim bool) (int, error) {
	resp := &rb.resp
	limit := c.hp.t.maxHeaderBytes()
	for n := 0; ; n++ {
		block, err := readBlock(c.br, limit)
		if err != nil {
			if err == io.EOF {
				return 0, errNoResponse
			}
			return 0, err
		}
		used, err := parseHead(block, resp, rb.vals[rb.used:])
		if err != nil {
			return 0, err
		}
		rb.used += uint8(used)
		code := resp.StatusCode
		if code < 100 || code > 199 || code == http.StatusSwitchingProtocols {
			return framing(resp, method)
		}
		if n >= max1xx {
			return 0, errors.New("h1client: too many 1xx informational responses")
		}
		if err := ev.got1xx(code, resp.Header); err != nil {
			return 0, err
		}
		if oneInterim {
			return bodyNone, nil
		}
	}
}

// awaitContinue waits, up to d, for the server's answer to "Expect:
// 100-continue". send is true after a 100 Continue or when d passed
// without one (other 1xx responses are reported and do not stop the
// clock, as in net/http: a server may send 103 Early Hints and then wait
// for the body); false when a final response (now in rb.resp, framed by
// mode) came instead. silent, with an error, means the connection failed
// before any byte of a response.
func (c *conn) awaitContinue(rb *responseBody, ev *events, d time.Duration, method string) (send bool, mode int, silent bool, err error) {
	resp := &rb.resp
	end := time.Now().Add(d)
	if !c.deadline.IsZero() && c.deadline.Before(end) {
		end = c.deadline
	}
	for n := 0; ; n++ {
		// Only the wait for a response's first byte is under the
		// timeout: a head cut by it would leave the reader mid-line.
		// The exchange's own deadline then applies again.
		c.setReadDeadline(end)
		_, err = c.br.Peek(1)
		c.setReadDeadline(c.deadline)
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) && !c.cancelled.Load() && !c.expired() {
				return true, 0, false, nil
			}
			return false, 0, n == 0, noResponse(err)
		}
		if mode, err = c.readHead(rb, ev, method, true); err != nil {
			return false, 0, false, err
		}
		switch code := resp.StatusCode; {
		case code == http.StatusContinue:
			return true, mode, false, nil
		case code/100 != 1 || code == http.StatusSwitchingProtocols:
			return false, mode, false, nil
		case n >= max1xx:
			return false, 0, false, errors.New("h1client: too many 1xx informational responses")
		}
	}
}

// writeBody sends the head (if still buffered) and the body: a body
// that fits the write buffer goes in the same write as the head; a larger
// or streamed one follows the head, which is flushed first so the server
// sees the request while the body comes.
func (c *conn) writeBody(o *outgoing, req *http.Request) error {
	bw := c.bw
	var err error
	if o.length > 0 && o.length <= int64(bw.Available()) {
		err = writeFixed(bw, o.body, o.length, &c.probe)
	} else if err = bw.Flush(); err == nil {
		if o.length > 0 {
			err = writeFixed(bw, o.body, o.length, &c.probe)
		} else {
			err = writeChunked(bw, o.body, req.Trailer)
		}
	}
	if err == nil {
		err = bw.Flush()
	}
	o.closeBody()
	return err
}

// wrapErr says what failed; when the context ended, its cause is what is
// wrapped (the deadline error it caused says nothing), and when the
// exchange's deadline passed, context.DeadlineExceeded.
func (c *conn) wrapErr(ctx context.Context, op string, err error) error {
	if c.ended(ctx) {
		return fmt.Errorf("h1client: %s: %w", op, c.cause(ctx))
	}
	var be *bodyReadError
	if errors.As(err, &be) || err == errNoResponse || isOwn(err) {
		return err
	}
	return fmt.Errorf("h1client: %s: %w", op, err)
}

// isOwn reports an error this package made, which already says what
// failed.
func isOwn(err error) bool { return strings.HasPrefix(err.Error(), "h1client: ") }
